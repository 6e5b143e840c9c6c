import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { loadHfCheckpoint, parseGpt2Config } from '../../shared/model/hf-checkpoint';
import type { Gpt2Checkpoint } from '../../shared/model/gpt2-weights';
import { fileDigest, MANIFEST_FILE_NAME, parseManifest, type ManifestFile, type ModelManifest, type StageManifest } from '../../shared/model/manifest';
import { checkOutputFolder, moveIntoPlace } from '../output-folder';
import { planStages, type SplitSpec } from './split-plan';
import { buildStageGraph, type OpsVariant } from './stage-graph';
import { writeOnnxModel } from './write-onnx-model';

/** The Hugging Face config file, read first so bad arguments fail before the weights load. */
const HF_CONFIG_FILE = 'config.json';

export interface CompileCheckpointOptions {
  readonly stages: number;
  readonly split: SplitSpec;
  readonly ops: OpsVariant;
  readonly modelName: string;
  /** Copied next to the manifest under their base names. */
  readonly tokenizerFiles: readonly string[];
  /** Replace a non-empty `out`. */
  readonly force?: boolean;
}

export interface CompileModelOptions {
  /** A Hugging Face GPT-2 folder (config.json, model.safetensors, tokenizer files). */
  readonly from: string;
  readonly out: string;
  readonly stages: number;
  readonly split: SplitSpec;
  readonly ops: OpsVariant;
  readonly force?: boolean;
}

/**
 * Compiles a checkpoint into `out`: per stage `stage-K.onnx` + `stage-K.onnx.data`, the
 * tokenizer files, and `manifest.json` with the sha256 and size of every file. Everything is
 * built in a temporary sibling folder and renamed into place, so a failure leaves `out` as it was.
 */
export async function compileCheckpoint(
  checkpoint: Gpt2Checkpoint,
  out: string,
  options: CompileCheckpointOptions,
): Promise<ModelManifest> {
  const plan = planStages(checkpoint.config, options.stages, options.split);
  const target = path.resolve(out);
  const targetExists = await checkOutputFolder(target, options.force === true);
  const tokenizerNames = options.tokenizerFiles.map((file) => path.basename(file));
  const duplicate = tokenizerNames.find((name, i) => tokenizerNames.indexOf(name) !== i);
  if (duplicate !== undefined) throw new Error(`tokenizerFiles: two files are named ${duplicate}`);

  await mkdir(path.dirname(target), { recursive: true });
  const building = await mkdtemp(`${target}.building-`);
  try {
    const stages: StageManifest[] = [];
    for (const [index, range] of plan.entries()) {
      const graph = buildStageGraph(checkpoint, range, options.ops, `${options.modelName}-stage-${index}`);
      const written = await writeOnnxModel(graph, path.join(building, `stage-${index}.onnx`));
      stages.push({
        index,
        layerStart: range.layerStart,
        layerEnd: range.layerEnd,
        isFirst: index === 0,
        isLast: index === plan.length - 1,
        files: written.map((file) => ({ path: path.basename(file.path), sha256: file.sha256, bytes: file.bytes })),
      });
    }
    const tokenizerFiles: ManifestFile[] = [];
    for (const [i, file] of options.tokenizerFiles.entries()) {
      const copy = path.join(building, tokenizerNames[i]);
      await copyFile(file, copy);
      tokenizerFiles.push({ path: tokenizerNames[i], ...(await fileDigest(copy)) });
    }
    // Parsed like any reader would, so the compiler can never write a manifest that readers reject.
    const manifest = parseManifest({
      formatVersion: 1,
      modelName: options.modelName,
      config: checkpoint.config,
      ops: options.ops,
      stages,
      tokenizerFiles,
    });
    await writeFile(path.join(building, MANIFEST_FILE_NAME), `${JSON.stringify(manifest, null, 2)}\n`);
    await moveIntoPlace(building, target, targetExists);
    return manifest;
  } catch (error) {
    await rm(building, { recursive: true, force: true });
    throw error;
  }
}

/**
 * Checks the split against the folder's config.json and that `out` may be written, without
 * reading any weights, so a bad argument fails in milliseconds rather than after loading
 * gigabytes.
 */
export async function checkCompileOptions(options: CompileModelOptions): Promise<void> {
  const configPath = path.join(options.from, HF_CONFIG_FILE);
  const configText = await readFile(configPath, 'utf8').catch((error: unknown) => {
    throw new Error(`from: cannot read ${configPath}: ${(error as Error).message}`, { cause: error });
  });
  let configJson: unknown;
  try {
    configJson = JSON.parse(configText);
  } catch (error) {
    throw new Error(`${configPath}: not valid JSON: ${(error as Error).message}`, { cause: error });
  }
  planStages(parseGpt2Config(configJson, configPath), options.stages, options.split);
  await checkOutputFolder(path.resolve(options.out), options.force === true);
}

/** Loads a Hugging Face GPT-2 folder and compiles it; the model is named after the folder. */
export async function compileModel(options: CompileModelOptions): Promise<ModelManifest> {
  await checkCompileOptions(options);
  const checkpoint = await loadHfCheckpoint(options.from);
  return compileCheckpoint(checkpoint, options.out, {
    stages: options.stages,
    split: options.split,
    ops: options.ops,
    force: options.force,
    modelName: path.basename(path.resolve(options.from)),
    tokenizerFiles: checkpoint.tokenizerFiles.map((file) => path.resolve(checkpoint.dir, file)),
  });
}
