import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import {
  ATTENTION_KERNELS,
  defaultAttentionKernel,
  fileDigest,
  MANIFEST_FILE_NAME,
  MANIFEST_FORMAT_VERSION,
  parseManifest,
  readManifest,
  type AttentionKernel,
  type ManifestFile,
  type ModelManifest,
  type OpsVariant,
  type StageManifest,
  type WeightFormat,
} from '../../shared/model/manifest';
import type { ModelShape } from '../../shared/model/model-shape';
import { loadCheckpoint, readModelDefinition, type Checkpoint } from '../families/checkpoint';
import { checkOutputFolder, moveIntoPlace } from '../output-folder';
import { planStages, type SplitSpec } from './split-plan';
import { buildStageGraph } from './stage-graph';
import { resolveWeightFormat } from './weight-quantization';
import { writeOnnxModel } from './write-onnx-model';

export const FP32_WEIGHTS: WeightFormat = { format: 'fp32' };

export interface CompileCheckpointOptions {
  readonly stages: number;
  readonly split: SplitSpec;
  readonly ops: OpsVariant;
  /** Fused graphs only: the attention kernel (default: defaultAttentionKernel of the model's shape). */
  readonly attention?: AttentionKernel;
  readonly weights?: WeightFormat;
  readonly modelName: string;
  /** Copied next to the manifest under their base names. */
  readonly tokenizerFiles: readonly string[];
  /** Replace a non-empty `out`. */
  readonly force?: boolean;
  /** Called as each stage is written (for progress bars). */
  readonly onStage?: (index: number, count: number) => void;
}

export interface CompileModelOptions {
  /** A Hugging Face checkpoint folder (config.json, safetensors weights, tokenizer files). */
  readonly from: string;
  readonly out: string;
  readonly stages: number;
  readonly split: SplitSpec;
  readonly ops: OpsVariant;
  /** Fused graphs only: the attention kernel (default: defaultAttentionKernel of the model's shape). */
  readonly attention?: AttentionKernel;
  readonly weights?: WeightFormat;
  /** The model's name in its manifest (metrics, logs, the bench); default `defaultModelName(from)`. */
  readonly name?: string;
  readonly force?: boolean;
  readonly onStage?: (index: number, count: number) => void;
}

/** The folder model:init keeps a model folder's Hugging Face checkpoint in. */
export const CHECKPOINT_FOLDER = 'checkpoint';

/** What --name accepts: the characters of a Hub id (owner/name) and of a folder name. */
const MODEL_NAME = /^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$/;

/**
 * A compiled model is named after the checkpoint folder it came from (models/hf/openai-community/gpt2
 * → gpt2), except the `checkpoint/` folder that model:init keeps inside a model folder: a compile
 * of models/default/checkpoint is named after models/default's model, not "checkpoint".
 */
export async function defaultModelName(from: string): Promise<string> {
  const folder = path.resolve(from);
  const parent = path.dirname(folder);
  if (path.basename(folder) === CHECKPOINT_FOLDER) {
    // No readable manifest beside it: an ordinary folder that happens to be called checkpoint.
    const parentName = await readManifest(parent).then(
      (manifest) => manifest.modelName,
      () => undefined,
    );
    if (parentName !== undefined) return parentName;
  }
  return path.basename(folder);
}

/**
 * Compiles a checkpoint into `out`: per stage `stage-K.onnx` + `stage-K.onnx.data`, the
 * tokenizer files, and `manifest.json` with the sha256 and size of every file. Everything is
 * built in a temporary sibling folder and renamed into place, so a failure leaves `out` as it was.
 */
export async function compileCheckpoint(checkpoint: Checkpoint, out: string, options: CompileCheckpointOptions): Promise<ModelManifest> {
  const { model } = checkpoint;
  checkTensorShapes(checkpoint);
  const plan = planStages(model, options.stages, options.split);
  const weights = resolveWeightFormat(options.weights ?? FP32_WEIGHTS);
  const kernel = resolveAttentionKernel(options.ops, options.attention, model.shape);
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
      const graph = buildStageGraph(model, checkpoint.tensors, range, options.ops, kernel, weights, `${options.modelName}-stage-${index}`);
      const written = await writeOnnxModel(graph, path.join(building, `stage-${index}.onnx`));
      stages.push({
        index,
        layerStart: range.layerStart,
        layerEnd: range.layerEnd,
        isFirst: index === 0,
        isLast: index === plan.length - 1,
        weights,
        files: written.map((file) => ({ path: path.basename(file.path), sha256: file.sha256, bytes: file.bytes })),
      });
      options.onStage?.(index, plan.length);
    }
    const tokenizerFiles: ManifestFile[] = [];
    for (const [i, file] of options.tokenizerFiles.entries()) {
      const copy = path.join(building, tokenizerNames[i]);
      await copyFile(file, copy);
      tokenizerFiles.push({ path: tokenizerNames[i], ...(await fileDigest(copy)) });
    }
    // Parsed like any reader would, so the compiler can never write a manifest that readers reject.
    const manifest = parseManifest({
      formatVersion: MANIFEST_FORMAT_VERSION,
      modelName: options.modelName,
      family: model.family,
      architecture: model.architecture,
      shape: model.shape,
      ops: options.ops,
      ...(options.ops === 'fused' ? { attention: kernel } : {}),
      stages,
      tokenizerFiles,
      sourceConfig: model.toConfigJson(),
    });
    await writeFile(path.join(building, MANIFEST_FILE_NAME), `${JSON.stringify(manifest, null, 2)}\n`);
    await moveIntoPlace(building, target, targetExists);
    return manifest;
  } catch (error) {
    await rm(building, { recursive: true, force: true });
    throw error;
  }
}

/** The kernel a fused graph attends with; plain graphs take none (asking for one is an error, not ignored). */
function resolveAttentionKernel(ops: OpsVariant, attention: AttentionKernel | undefined, shape: ModelShape): AttentionKernel {
  if (attention !== undefined && !ATTENTION_KERNELS.includes(attention)) {
    throw new Error(`attention: expected ${ATTENTION_KERNELS.join(' or ')}, got ${JSON.stringify(attention)}`);
  }
  if (ops === 'plain' && attention !== undefined) throw new Error(`attention: applies only to ops fused (plain graphs attend in standard ops)`);
  return attention ?? defaultAttentionKernel(shape);
}

/** A weight of the wrong shape (a Linear [out, in] stored where a Conv1D [in, out] belongs is the classic) is refused by name. */
function checkTensorShapes({ model, tensors }: Checkpoint): void {
  for (const [name, dims] of model.tensorLayout.expected) {
    const weight = tensors.get(name);
    if (weight === undefined) throw new Error(`weights ${name}: missing`);
    if (weight.dims.length !== dims.length || weight.dims.some((d, i) => d !== dims[i])) {
      throw new Error(`weights ${name}: expected dims [${dims.join(', ')}], got [${weight.dims.join(', ')}]`);
    }
  }
}

/**
 * Checks the folder's config.json (a supported architecture, every field understood), the split
 * and that `out` may be written, without reading any weights, so a bad argument fails in
 * milliseconds rather than after loading gigabytes.
 */
export async function checkCompileOptions(options: CompileModelOptions): Promise<void> {
  const model = await readModelDefinition(options.from).catch((error: unknown) => {
    const message = (error as Error).message;
    throw new Error(message.includes('missing file') ? `from: ${message}` : message, { cause: error });
  });
  planStages(model, options.stages, options.split);
  resolveWeightFormat(options.weights ?? FP32_WEIGHTS);
  if (options.name !== undefined && !MODEL_NAME.test(options.name)) {
    throw new Error(`name: '${options.name.slice(0, 140)}' must be 1-128 letters, digits and . _ - / starting with a letter or digit`);
  }
  resolveAttentionKernel(options.ops, options.attention, model.shape);
  await checkOutputFolder(path.resolve(options.out), options.force === true);
}

/** Loads a Hugging Face folder and compiles it; the model is named `name`, else after the folder (`defaultModelName`). */
export async function compileModel(options: CompileModelOptions): Promise<ModelManifest> {
  await checkCompileOptions(options);
  const checkpoint = await loadCheckpoint(options.from);
  return compileCheckpoint(checkpoint, options.out, {
    stages: options.stages,
    split: options.split,
    ops: options.ops,
    attention: options.attention,
    weights: options.weights,
    force: options.force,
    onStage: options.onStage,
    modelName: options.name ?? (await defaultModelName(options.from)),
    tokenizerFiles: checkpoint.tokenizerFiles,
  });
}
