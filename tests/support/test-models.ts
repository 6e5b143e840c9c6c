import { createHash, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeCheckpoint } from '../../tools/families/checkpoint';
import { gpt2Checkpoint } from '../../tools/families/gpt2/gpt2-family';
import type { Gpt2Checkpoint } from '../../tools/families/gpt2/gpt2-weights';
import { compileModel } from '../../tools/compiler/compile-model';
import type { SplitSpec } from '../../tools/compiler/split-plan';
import type { AttentionKernel, WeightFormat } from '../../shared/model/manifest';
import { buildGpt2TokenizerFiles } from '../../tools/init/gpt2-tokenizer-files';
import { GPT2_PRESETS, randomGpt2Checkpoint } from '../../tools/init/random-gpt2';

/** The one seed of the tiny test model: every test that compares numbers uses the same weights. */
export const TINY_SEED = 1234;

export interface TinyModelOptions {
  readonly stages: number;
  readonly split?: SplitSpec;
  readonly ops?: 'plain' | 'fused';
  /** Fused only: the attention kernel, the compiler's default when absent. */
  readonly attention?: AttentionKernel;
  /** fp32 by default. */
  readonly weights?: WeightFormat;
}

/** The part of a cached folder's name that tells weight formats apart ('' for fp32). */
export function weightsKeyOf(weights: WeightFormat): string {
  return weights.format === 'fp32' ? '' : `-${weights.format}-b${weights.blockSize ?? 'default'}${(weights.keptFp32 ?? []).map((k) => `-${k}`).join('')}`;
}

export const CACHE_ROOT = path.join(os.tmpdir(), 'pipeserve-test-models');
/** Sources whose output lands in the cached folders: editing any of them must not reuse stale files. */
const SOURCE_DIRS = ['tools/compiler', 'tools/init', 'tools/families', 'shared/model'].map((dir) => path.resolve(__dirname, '../..', dir));

let checkpoint: Gpt2Checkpoint | undefined;
let fingerprint: Promise<string> | undefined;

/** The tiny preset with TINY_SEED weights, in memory (for the naive reference forward pass). */
export function tinyCheckpoint(): Gpt2Checkpoint {
  checkpoint ??= randomGpt2Checkpoint(GPT2_PRESETS.tiny, TINY_SEED);
  return checkpoint;
}

/** A Hugging Face checkpoint folder of `tinyCheckpoint()` with the GPT-2 tokenizer files. */
export async function tinyCheckpointDir(): Promise<string> {
  const dir = path.join(CACHE_ROOT, `hf-tiny-${await sourceFingerprint()}`);
  await buildOnce(dir, (tmp) => writeCheckpoint(tmp, gpt2Checkpoint(tinyCheckpoint()), buildGpt2TokenizerFiles()));
  return dir;
}

/**
 * A compiled folder of the tiny model, built once per (stages, split, ops, sources) and shared
 * by every test file: jest runs files in parallel workers, so the folder is built under a
 * unique temporary name and renamed into place; whoever renames second discards its copy.
 */
export async function tinyModel(options: TinyModelOptions): Promise<string> {
  const split = options.split ?? { kind: 'even' };
  const ops = options.ops ?? 'plain';
  const splitKey = split.kind === 'explicit' ? split.ranges.map(([a, b]) => `${a}-${b}`).join('_') : split.kind;
  const weights = options.weights ?? { format: 'fp32' };
  const weightsKey = weightsKeyOf(weights);
  const from = await tinyCheckpointDir();
  const attentionKey = options.attention === undefined ? '' : `-${options.attention}`;
  const dir = path.join(CACHE_ROOT, `tiny-${await sourceFingerprint()}-${options.stages}s-${splitKey}-${ops}${attentionKey}${weightsKey}`);
  await buildOnce(dir, async (tmp) => {
    await compileModel({ from, out: tmp, stages: options.stages, split, ops, attention: options.attention, weights });
  });
  return dir;
}

/** Builds `dir` with `build` unless it exists; safe when several jest workers race for it. */
export async function buildOnce(dir: string, build: (tmp: string) => Promise<void>): Promise<void> {
  if (existsSync(dir)) return;
  await mkdir(path.dirname(dir), { recursive: true });
  const tmp = `${dir}.tmp-${process.pid}-${randomUUID()}`;
  try {
    await build(tmp);
    await rename(tmp, dir);
  } catch (error) {
    await rm(tmp, { recursive: true, force: true });
    const lostTheRace = existsSync(dir) && ['EEXIST', 'ENOTEMPTY'].includes((error as NodeJS.ErrnoException).code ?? '');
    if (!lostTheRace) throw error;
  }
}

/** Hash of the seed and of the sources that produce the cached files. */
export function sourceFingerprint(): Promise<string> {
  fingerprint ??= (async () => {
    const hash = createHash('sha256').update(`seed ${TINY_SEED}\n`);
    for (const dir of SOURCE_DIRS) {
      const names = (await readdir(dir, { recursive: true })).filter((n) => n.endsWith('.ts')).sort();
      for (const name of names) hash.update(name).update(await readFile(path.join(dir, name)));
    }
    return hash.digest('hex').slice(0, 12);
  })();
  return fingerprint;
}
