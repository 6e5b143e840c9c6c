import { mkdir, mkdtemp, rename, rm } from 'node:fs/promises';
import * as path from 'node:path';
import { writeHfCheckpoint } from '../../shared/model/hf-checkpoint';
import type { ModelManifest } from '../../shared/model/manifest';
import { compileModel } from '../compiler/compile-model';
import { checkOutputFolder, moveIntoPlace } from '../output-folder';
import { buildGpt2TokenizerFiles } from './gpt2-tokenizer-files';
import { GPT2_PRESETS, randomGpt2Checkpoint } from './random-gpt2';

export type Gpt2Preset = keyof typeof GPT2_PRESETS;

export interface InitDefaultModelOptions {
  readonly preset: Gpt2Preset;
  /** The model folder: manifest.json and stage files, with the source checkpoint in `checkpoint/`. */
  readonly out: string;
  readonly seed?: number;
  readonly stages?: number;
  readonly ops?: 'plain' | 'fused';
  /** Replace a non-empty `out`. */
  readonly force?: boolean;
}

export const INIT_DEFAULTS = { preset: 'small', seed: 42, stages: 3, ops: 'fused' } as const;
/** Where the Hugging Face checkpoint goes inside the model folder. */
export const CHECKPOINT_FOLDER = 'checkpoint';

/**
 * Builds the offline default model: a seeded random GPT-2 with the real GPT-2 tokenizer, written
 * as a Hugging Face checkpoint and compiled into pipeline stages (balanced split). Everything is
 * built in a temporary sibling folder and renamed into place, so a failure leaves `out` as it was.
 */
export async function initDefaultModel(options: InitDefaultModelOptions): Promise<ModelManifest> {
  const seed = options.seed ?? INIT_DEFAULTS.seed;
  const config = GPT2_PRESETS[options.preset];
  const target = path.resolve(options.out);
  const targetExists = await checkOutputFolder(target, options.force === true);
  await mkdir(path.dirname(target), { recursive: true });
  const staging = await mkdtemp(`${target}.init-`);
  try {
    // The compiler names the model after the checkpoint's folder, so write it under that name first.
    const modelName = `gpt2-${options.preset}-random-seed${seed}`;
    const checkpointDir = path.join(staging, modelName);
    const tokenizer = buildGpt2TokenizerFiles();
    await writeHfCheckpoint(checkpointDir, randomGpt2Checkpoint(config, seed), {
      tokenizerJson: tokenizer.tokenizerJson,
      tokenizerConfigJson: { ...tokenizer.tokenizerConfigJson, model_max_length: config.nPositions },
    });
    const compiled = path.join(staging, 'model');
    const manifest = await compileModel({
      from: checkpointDir,
      out: compiled,
      stages: options.stages ?? INIT_DEFAULTS.stages,
      split: { kind: 'balanced' },
      ops: options.ops ?? INIT_DEFAULTS.ops,
    });
    await rename(checkpointDir, path.join(compiled, CHECKPOINT_FOLDER));
    await moveIntoPlace(compiled, target, targetExists);
    return manifest;
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}
