import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Gpt2Config } from '../../tools/families/gpt2/gpt2-config';
import { writeCheckpoint } from '../../tools/families/checkpoint';
import { gpt2Checkpoint } from '../../tools/families/gpt2/gpt2-family';
import { parseHfCausalLmConfig } from '../../tools/bench/hf-causal-lm-config';
import { exportForTransformersJs } from '../../tools/bench/transformers-js-export';
import { ensureTransformersJsExport } from '../../tools/bench/transformers-js-model-folder';
import { TransformersJsRunner } from '../../tools/bench/transformers-js-runner';
import { buildGpt2TokenizerFiles } from '../../tools/init/gpt2-tokenizer-files';
import { randomGpt2Checkpoint } from '../../tools/init/random-gpt2';
import { naiveGpt2Logits } from '../support/naive-gpt2';
import { naiveLlamaLogits } from '../support/naive-llama';
import { writeRandomLlamaCheckpoint } from '../support/random-llama-checkpoint';

/** Largest |transformers.js − reference| over a step's logits, relative to the largest reference logit. */
const LOGITS_RELATIVE_TOLERANCE = 1e-4;
const NEW_TOKENS = 8;
const EOS_TOKEN_ID = 2;
/** Different lengths, so the batched call left-pads two of the three. */
const PROMPTS = [
  [17, 250, 3, 99, 42],
  [5, 180, 77, 12, 260, 31, 8, 144, 201],
  [290, 64, 133],
];
const SEED = 7;
const EXPORT_TIMEOUT_MS = 60_000;

/** The tiny Llama-family shape: 2 layers, hidden 64, 4 query heads over 2 KV heads of 16, MLP 128, vocabulary 300. */
const TINY_LLAMA = {
  vocab_size: 300,
  hidden_size: 64,
  intermediate_size: 128,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  max_position_embeddings: 64,
  rms_norm_eps: 1e-5,
  hidden_act: 'silu',
  bos_token_id: 1,
  eos_token_id: EOS_TOKEN_ID,
};

const TINY_GPT2: Gpt2Config = {
  modelType: 'gpt2',
  vocabSize: 300,
  nPositions: 64,
  nEmbd: 64,
  nLayer: 2,
  nHead: 4,
  nInner: 256,
  layerNormEpsilon: 1e-5,
  activation: 'gelu_new',
  bosTokenId: 1,
  eosTokenId: EOS_TOKEN_ID,
};

interface LlamaCase {
  readonly title: string;
  readonly folder: string;
  readonly config: Record<string, unknown>;
  readonly shards?: number;
  readonly dtype?: 'F32' | 'BF16';
  /** A config field whose removal must change the reference logits: proof that the case exercises it. */
  readonly feature?: string;
}

const LLAMA_CASES: LlamaCase[] = [
  {
    folder: 'llama-llama3-rope',
    title: 'LlamaForCausalLM with llama3 rope scaling, rope_theta 500000, head_dim 32 (≠ hidden/heads), attention and MLP biases, tied head',
    config: {
      ...TINY_LLAMA,
      architectures: ['LlamaForCausalLM'],
      model_type: 'llama',
      head_dim: 32,
      rope_theta: 500_000,
      // Wavelengths span 2π…1e6: some stay (< 64/8), some blend, most are divided by the factor (> 64/1).
      rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 8, original_max_position_embeddings: 64 },
      attention_bias: true,
      mlp_bias: true,
      tie_word_embeddings: true,
    },
    feature: 'rope_scaling',
  },
  {
    folder: 'llama-linear-rope',
    title: 'LlamaForCausalLM with linear rope scaling (legacy "type" key), untied head, two shards',
    config: {
      ...TINY_LLAMA,
      architectures: ['LlamaForCausalLM'],
      model_type: 'llama',
      rope_scaling: { type: 'linear', factor: 4 },
      tie_word_embeddings: false,
    },
    shards: 2,
    feature: 'rope_scaling',
  },
  {
    folder: 'mistral',
    title: 'MistralForCausalLM with a sliding window of 4, untied head',
    config: { ...TINY_LLAMA, architectures: ['MistralForCausalLM'], model_type: 'mistral', sliding_window: 4, tie_word_embeddings: false },
    feature: 'sliding_window',
  },
  {
    folder: 'qwen2',
    title: 'Qwen2ForCausalLM with q/k/v biases, rope_theta 1e6, untied head, BF16 weights',
    config: {
      ...TINY_LLAMA,
      architectures: ['Qwen2ForCausalLM'],
      model_type: 'qwen2',
      rope_theta: 1_000_000,
      use_sliding_window: false,
      sliding_window: 4,
      max_window_layers: 2,
      tie_word_embeddings: false,
    },
    dtype: 'BF16',
    feature: 'rope_theta',
  },
];

let root: string;

beforeAll(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'transformers-js-export-'));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('transformers.js export', () => {
  test(
    'GPT2LMHeadModel: transformers.js greedy tokens equal the naive GPT-2, every step within 1e-4',
    async () => {
      const checkpoint = randomGpt2Checkpoint(TINY_GPT2, SEED);
      const from = path.join(root, 'gpt2');
      await writeCheckpoint(from, gpt2Checkpoint(checkpoint), buildGpt2TokenizerFiles());
      await expectTransformersJsMatches(from, (ids) => naiveGpt2Logits(checkpoint, ids));
    },
    EXPORT_TIMEOUT_MS,
  );

  test.each(LLAMA_CASES)(
    '$title: transformers.js greedy tokens equal the naive Llama, every step within 1e-4',
    async ({ folder, config, shards, dtype, feature }) => {
      const from = path.join(root, folder);
      const tensors = await writeRandomLlamaCheckpoint(from, config, SEED, { shards, dtype });
      const reference = (ids: readonly number[]): Float32Array[] => naiveLlamaLogits({ config, tensors }, ids);
      if (feature !== undefined) {
        const { [feature]: _removed, ...without } = config;
        const changed = naiveLlamaLogits({ config: without, tensors }, PROMPTS[1]).at(-1) as Float32Array;
        expect(maxAbsDifference(changed, reference(PROMPTS[1]).at(-1) as Float32Array, new Set())).toBeGreaterThan(1e-2);
      }
      await expectTransformersJsMatches(from, reference);
    },
    EXPORT_TIMEOUT_MS,
  );

  test('the exported folder holds what transformers.js loads, and the graph takes Optimum names plus num_logits_to_keep', async () => {
    const from = path.join(root, 'layout');
    await writeRandomLlamaCheckpoint(from, { ...TINY_LLAMA, architectures: ['LlamaForCausalLM'], model_type: 'llama' }, SEED);
    const out = path.join(root, 'layout-export');
    const exported = await exportForTransformersJs({ from, out });
    for (const file of ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'onnx/model.onnx', 'onnx/model.onnx.data']) {
      expect(existsSync(path.join(out, file))).toBe(true);
    }
    expect(exported.onnxFiles.map((file) => path.relative(out, file.path))).toEqual(['onnx/model.onnx', 'onnx/model.onnx.data']);
    expect(JSON.parse(await readFile(path.join(out, 'generation_config.json'), 'utf8'))).toMatchObject({ bos_token_id: 1, eos_token_id: EOS_TOKEN_ID });
    const runner = await TransformersJsRunner.load(out);
    try {
      expect([...runner.inputNames].sort()).toEqual(
        [
          'input_ids',
          'attention_mask',
          'position_ids',
          'num_logits_to_keep',
          ...[0, 1].flatMap((layer) => [`past_key_values.${layer}.key`, `past_key_values.${layer}.value`]),
        ].sort(),
      );
    } finally {
      await runner.close();
    }
  });

  test('a benchmark reuses the export beside a compiled model folder until its checkpoint changes', async () => {
    const modelDir = path.join(root, 'compiled');
    await writeRandomLlamaCheckpoint(path.join(modelDir, 'checkpoint'), { ...TINY_LLAMA, architectures: ['LlamaForCausalLM'], model_type: 'llama' }, SEED);
    const exportDir = await ensureTransformersJsExport(modelDir);
    expect(exportDir).toBe(`${modelDir}-transformers-js`);
    const graph = path.join(exportDir, 'onnx', 'model.onnx');
    const first = (await stat(graph)).mtimeMs;
    expect(await ensureTransformersJsExport(modelDir)).toBe(exportDir);
    expect((await stat(graph)).mtimeMs).toBe(first);
    const later = new Date(first + 60_000);
    await utimes(path.join(modelDir, 'checkpoint', 'model.safetensors'), later, later);
    await ensureTransformersJsExport(modelDir);
    expect((await stat(graph)).mtimeMs).toBeGreaterThan(first);
  });

  test('refuses a checkpoint holding tensors its config does not account for, and leaves no output folder', async () => {
    const from = path.join(root, 'mismatch');
    const qwen2 = { ...TINY_LLAMA, architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2' };
    await writeRandomLlamaCheckpoint(from, qwen2, SEED);
    // Llama without attention_bias has no q/k/v biases; the Qwen2 weights do.
    await writeFile(path.join(from, 'config.json'), JSON.stringify({ ...qwen2, architectures: ['LlamaForCausalLM'], model_type: 'llama' }));
    const out = path.join(root, 'mismatch-export');
    await expect(exportForTransformersJs({ from, out })).rejects.toThrow(/does not account for tensors model\.layers\.0\.self_attn\.q_proj\.bias/);
    expect(existsSync(out)).toBe(false);
  });

  test('refuses rope types it does not implement and architectures it does not know, naming the field', () => {
    const llama = { ...TINY_LLAMA, architectures: ['LlamaForCausalLM'], model_type: 'llama' };
    expect(() => parseHfCausalLmConfig({ ...llama, rope_scaling: { rope_type: 'yarn', factor: 2 } }, 'config.json')).toThrow(
      'config.json: field rope_scaling: rope type "yarn" is not supported (default, linear, llama3)',
    );
    expect(() => parseHfCausalLmConfig({ ...llama, architectures: ['PhiForCausalLM'] }, 'config.json')).toThrow(/field architectures: PhiForCausalLM/);
    expect(() => parseHfCausalLmConfig({ ...llama, model_type: 'mistral' }, 'config.json')).toThrow(/field model_type/);
  });
});

/**
 * Exports `from`, generates NEW_TOKENS for all PROMPTS in one batched transformers.js call, and
 * checks each stream against `reference` run on that stream alone: the same greedy tokens
 * (EOS excluded, as min_new_tokens does), and at every step — the prompt step and each cached
 * one — the same next-token logits within the tolerance.
 */
async function expectTransformersJsMatches(from: string, reference: (ids: readonly number[]) => Float32Array[]): Promise<void> {
  const exported = await exportForTransformersJs({ from, out: `${from}-transformers-js` });
  const runner = await TransformersJsRunner.load(exported.dir, { intraOpThreads: 1 });
  const steps: Float32Array[][] = [];
  const run = await runner.generate(PROMPTS, NEW_TOKENS, {
    observeScores: (step, scores) => {
      steps[step] = [...scores];
    },
  }).finally(() => runner.close());

  expect(steps).toHaveLength(NEW_TOKENS);
  PROMPTS.forEach((prompt, stream) => {
    const ids = [...prompt];
    for (let step = 0; step < NEW_TOKENS; step++) {
      const expected = reference(ids).at(-1) as Float32Array;
      const actual = steps[step][stream];
      expect(actual[EOS_TOKEN_ID]).toBe(-Infinity);
      const scale = Math.max(...expected.map(Math.abs));
      expect(maxAbsDifference(actual, expected, new Set([EOS_TOKEN_ID]))).toBeLessThanOrEqual(LOGITS_RELATIVE_TOLERANCE * scale);
      ids.push(argmaxExcept(expected, EOS_TOKEN_ID));
    }
    expect(run.streams[stream].generatedIds).toEqual(ids.slice(prompt.length));
  });

  // The weights are random but not degenerate: each prompt continues in its own way.
  const continuations = run.streams.map((s) => s.generatedIds.join(','));
  expect(new Set(continuations).size).toBe(PROMPTS.length);
  for (const s of run.streams) expect(new Set(s.generatedIds).size).toBeGreaterThanOrEqual(3);

  expect(run.generatedTokens).toBe(PROMPTS.length * NEW_TOKENS);
  expect(run.tokensPerSecond).toBeCloseTo(run.generatedTokens / run.seconds);
  expect(run.peakRss.bytes).toBeGreaterThan(0);
  for (const s of run.streams) {
    expect(s.timeToFirstTokenMs).toBeGreaterThan(0);
    expect(s.interTokenMs).toHaveLength(NEW_TOKENS - 1);
    expect(s.timeToFirstTokenMs + s.interTokenMs.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(run.seconds * 1000);
  }
}

function maxAbsDifference(a: Float32Array, b: Float32Array, skip: ReadonlySet<number>): number {
  let max = 0;
  for (let i = 0; i < b.length; i++) if (!skip.has(i)) max = Math.max(max, Math.abs(a[i] - b[i]));
  return max;
}

function argmaxExcept(values: Float32Array, excluded: number): number {
  let best = excluded === 0 ? 1 : 0;
  for (let i = 0; i < values.length; i++) if (i !== excluded && values[i] > values[best]) best = i;
  return best;
}
