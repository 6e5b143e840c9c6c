import { mkdir, mkdtemp, rename, rm } from 'node:fs/promises';
import * as path from 'node:path';
import type { ModelManifest, OpsVariant } from '../../shared/model/manifest';
import { writeCheckpoint } from '../families/checkpoint';
import { CHECKPOINT_FOLDER, compileModel } from '../compiler/compile-model';
import { checkOutputFolder, moveIntoPlace } from '../output-folder';
import { buildGpt2TokenizerFiles } from './gpt2-tokenizer-files';
import { MODEL_PRESETS, type PresetName } from './model-presets';

export interface InitDefaultModelOptions {
  readonly preset: PresetName;
  /** The model folder: manifest.json and stage files, with the source checkpoint in `checkpoint/`. */
  readonly out: string;
  readonly seed?: number;
  readonly stages?: number;
  readonly ops?: OpsVariant;
  /** Replace a non-empty `out`. */
  readonly force?: boolean;
  /** Called as each step of the build ends (for progress bars); there are `initStepCount(stages)` of them. */
  readonly onStep?: (step: InitStep) => void;
}

/** A step of a build: the random weights drawn, the checkpoint written, one stage compiled. */
export type InitStep =
  | { readonly kind: 'weights' }
  | { readonly kind: 'checkpoint' }
  | { readonly kind: 'stage'; readonly index: number; readonly count: number };

/** How many `onStep` calls a build of `stages` stages makes. */
export function initStepCount(stages: number): number {
  return stages + 2;
}

export const INIT_DEFAULTS = { preset: 'small', seed: 42, stages: 3, ops: 'fused' } as const;
/** Where the Hugging Face checkpoint goes inside the model folder (the compiler names its compiles after the model). */
export { CHECKPOINT_FOLDER } from '../compiler/compile-model';

/**
 * Builds an offline model: a seeded random checkpoint of a preset with the real GPT-2 tokenizer, written
 * as a Hugging Face checkpoint and compiled into pipeline stages (balanced split). Everything is
 * built in a temporary sibling folder and renamed into place, so a failure leaves `out` as it was.
 */
export async function initDefaultModel(options: InitDefaultModelOptions): Promise<ModelManifest> {
  const seed = options.seed ?? INIT_DEFAULTS.seed;
  const preset = MODEL_PRESETS[options.preset];
  const target = path.resolve(options.out);
  const targetExists = await checkOutputFolder(target, options.force === true);
  await mkdir(path.dirname(target), { recursive: true });
  const staging = await mkdtemp(`${target}.init-`);
  try {
    // The compiler names the model after the checkpoint's folder, so write it under that name first.
    const modelName = `${preset.stem}-random-seed${seed}`;
    const checkpointDir = path.join(staging, modelName);
    const tokenizer = buildGpt2TokenizerFiles();
    const checkpoint = preset.build(seed);
    options.onStep?.({ kind: 'weights' });
    await writeCheckpoint(checkpointDir, checkpoint, {
      tokenizerJson: tokenizer.tokenizerJson,
      tokenizerConfigJson: { ...tokenizer.tokenizerConfigJson, model_max_length: checkpoint.model.shape.contextLength },
    });
    options.onStep?.({ kind: 'checkpoint' });
    const compiled = path.join(staging, 'model');
    const manifest = await compileModel({
      from: checkpointDir,
      out: compiled,
      stages: options.stages ?? INIT_DEFAULTS.stages,
      split: { kind: 'balanced' },
      ops: options.ops ?? INIT_DEFAULTS.ops,
      onStage: (index, count) => options.onStep?.({ kind: 'stage', index, count }),
    });
    await rename(checkpointDir, path.join(compiled, CHECKPOINT_FOLDER));
    await moveIntoPlace(compiled, target, targetExists);
    return manifest;
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}
