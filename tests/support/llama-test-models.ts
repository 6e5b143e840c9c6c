import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import * as path from 'node:path';
import { readSafetensors } from '../../shared/model/safetensors';
import type { Weight } from '../../shared/model/weight';
import { exportForTransformersJs } from '../../tools/bench/transformers-js-export';
import { writeCheckpoint } from '../../tools/families/checkpoint';
import { compileCheckpoint, compileModel } from '../../tools/compiler/compile-model';
import { parseModelConfig } from '../../tools/families/model-families';
import { buildGpt2TokenizerFiles } from '../../tools/init/gpt2-tokenizer-files';
import { LLAMA_PRESETS, randomLlamaCheckpoint } from '../../tools/init/random-llama';
import type { LlamaVariant } from './llama-variants';
import { writeRandomLlamaCheckpoint } from './random-llama-checkpoint';
import { buildOnce, CACHE_ROOT, sourceFingerprint, TINY_SEED, weightsKeyOf, type TinyModelOptions } from './test-models';

/** The seed of every variant checkpoint (tests/support/random-llama-checkpoint.ts). */
export const VARIANT_SEED = 7;
/** Sources beyond the compiler's that the cached folders depend on: the variant writer and the transformers.js exporter. */
const EXTRA_SOURCES = [path.resolve(__dirname, 'random-llama-checkpoint.ts'), path.resolve(__dirname, 'llama-variants.ts')];
const EXPORTER_DIR = path.resolve(__dirname, '../../tools/bench');

let fingerprint: Promise<string> | undefined;

/** A Hugging Face folder of the variant: config.json, model.safetensors (random, VARIANT_SEED), GPT-2 tokenizer files. */
export async function variantCheckpointDir(variant: LlamaVariant): Promise<string> {
  const dir = path.join(CACHE_ROOT, `hf-${variant.name}-${await llamaFingerprint()}`);
  await buildOnce(dir, async (tmp) => {
    await writeRandomLlamaCheckpoint(tmp, variant.config, VARIANT_SEED);
  });
  return dir;
}

/** The variant's tensors by Hugging Face name, read back from its folder (for the naive reference). */
export async function variantTensors(variant: LlamaVariant): Promise<Map<string, Weight>> {
  return readSafetensors(path.join(await variantCheckpointDir(variant), 'model.safetensors'));
}

/**
 * A compiled folder of the variant, built once per layout. The variants' 300-id vocabulary is
 * smaller than the GPT-2 tokenizer in their folders, so they are compiled from memory without
 * tokenizer files (the in-process pipeline takes token ids).
 */
export async function variantModel(variant: LlamaVariant, options: TinyModelOptions): Promise<string> {
  const split = options.split ?? { kind: 'even' };
  const ops = options.ops ?? 'plain';
  const splitKey = split.kind === 'explicit' ? split.ranges.map(([a, b]) => `${a}-${b}`).join('_') : split.kind;
  const attentionKey = options.attention === undefined ? '' : `-${options.attention}`;
  const dir = path.join(CACHE_ROOT, `${variant.name}-${await llamaFingerprint()}-${options.stages}s-${splitKey}-${ops}${attentionKey}`);
  const tensors = await variantTensors(variant);
  await buildOnce(dir, async (tmp) => {
    const model = parseModelConfig(variant.config, 'config.json');
    await compileCheckpoint({ model, tensors }, tmp, { stages: options.stages, split, ops, attention: options.attention, modelName: variant.name, tokenizerFiles: [] });
  });
  return dir;
}

/** The transformers.js export (tools/bench/transformers-js-export.ts) of a Hugging Face folder: a monolithic plain-op graph of its own. */
export async function transformersJsExportOf(checkpointDir: string): Promise<string> {
  const dir = `${checkpointDir}-transformers-js`;
  await buildOnce(dir, async (tmp) => {
    await exportForTransformersJs({ from: checkpointDir, out: tmp });
  });
  return dir;
}

/** A Hugging Face folder of the llama-tiny preset with TINY_SEED weights and the GPT-2 tokenizer. */
export async function tinyLlamaCheckpointDir(): Promise<string> {
  const dir = path.join(CACHE_ROOT, `hf-llama-tiny-${await llamaFingerprint()}`);
  await buildOnce(dir, (tmp) => writeCheckpoint(tmp, randomLlamaCheckpoint(LLAMA_PRESETS.tiny, TINY_SEED), buildGpt2TokenizerFiles()));
  return dir;
}

/** A compiled folder of the llama-tiny preset (TINY_SEED), through the same path as `model:compile`. */
export async function tinyLlamaModel(options: TinyModelOptions): Promise<string> {
  const split = options.split ?? { kind: 'even' };
  const ops = options.ops ?? 'plain';
  const splitKey = split.kind === 'explicit' ? split.ranges.map(([a, b]) => `${a}-${b}`).join('_') : split.kind;
  const from = await tinyLlamaCheckpointDir();
  const attentionKey = options.attention === undefined ? '' : `-${options.attention}`;
  const weights = options.weights ?? { format: 'fp32' };
  const dir = path.join(CACHE_ROOT, `llama-tiny-${await llamaFingerprint()}-${options.stages}s-${splitKey}-${ops}${attentionKey}${weightsKeyOf(weights)}`);
  await buildOnce(dir, async (tmp) => {
    await compileModel({ from, out: tmp, stages: options.stages, split, ops, attention: options.attention, weights });
  });
  return dir;
}

function llamaFingerprint(): Promise<string> {
  fingerprint ??= (async () => {
    const hash = createHash('sha256').update(await sourceFingerprint()).update(`variant seed ${VARIANT_SEED}\n`);
    const exporter = (await readdir(EXPORTER_DIR)).filter((n) => n.endsWith('.ts')).sort().map((n) => path.join(EXPORTER_DIR, n));
    for (const file of [...EXTRA_SOURCES, ...exporter]) hash.update(path.basename(file)).update(await readFile(file));
    return hash.digest('hex').slice(0, 12);
  })();
  return fingerprint;
}
