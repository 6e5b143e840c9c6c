import { status } from '@grpc/grpc-js';
import { InProcessPipeline } from '../../services/node/in-process-pipeline';
import { DEFAULT_GENERATION_CONFIG, type GenerationConfig } from '../../shared/generation-config';
import { ServiceError } from '../../shared/errors';
import type { SplitSpec } from '../../tools/compiler/split-plan';
import { naiveGpt2Logits, naiveGreedy } from '../support/naive-gpt2';
import { tinyCheckpoint, tinyModel, type TinyModelOptions } from '../support/test-models';

const MODEL_TEST_TIMEOUT_MS = 600_000;
const GREEDY_TOKENS = 32;
const GREEDY: GenerationConfig = { ...DEFAULT_GENERATION_CONFIG, temperature: 0, maxNewTokens: GREEDY_TOKENS };
/** GPT-2's own init loops on one token ("the the the"); the tiny init must not. */
const MAX_SAME_TOKEN_RUN = 3;
/** "The quick brown fox jumps" and "Hello, my name is" in GPT-2 ids. */
const PROMPTS = [
  [464, 2068, 7586, 21831, 18045],
  [15496, 11, 616, 1438, 318],
];

const LAYOUTS: (TinyModelOptions & { name: string })[] = [
  { name: '1 stage, plain', stages: 1, ops: 'plain' },
  { name: '2 stages even, plain', stages: 2, split: { kind: 'even' }, ops: 'plain' },
  { name: '3 stages balanced, plain', stages: 3, split: { kind: 'balanced' }, ops: 'plain' },
  { name: '4 stages explicit 0-1,1-3,3-5,5-6, plain', stages: 4, split: explicit([0, 1], [1, 3], [3, 5], [5, 6]), ops: 'plain' },
  { name: '1 stage, fused', stages: 1, ops: 'fused' },
  { name: '2 stages explicit 0-4,4-6, fused', stages: 2, split: explicit([0, 4], [4, 6]), ops: 'fused' },
  { name: '3 stages even, fused', stages: 3, split: { kind: 'even' }, ops: 'fused' },
  { name: '4 stages balanced, fused', stages: 4, split: { kind: 'balanced' }, ops: 'fused' },
  { name: '1 stage, fused, GroupQueryAttention', stages: 1, ops: 'fused', attention: 'gqa' },
  { name: '3 stages even, fused, GroupQueryAttention', stages: 3, split: { kind: 'even' }, ops: 'fused', attention: 'gqa' },
];

/** Length of the longest stretch of one id repeated back to back. */
function longestRun(ids: readonly number[]): number {
  let longest = 0;
  let run = 0;
  ids.forEach((id, i) => {
    run = i > 0 && ids[i - 1] === id ? run + 1 : 1;
    longest = Math.max(longest, run);
  });
  return longest;
}

function explicit(...ranges: [number, number][]): SplitSpec {
  return { kind: 'explicit', ranges };
}

async function withPipeline<T>(options: TinyModelOptions, use: (pipeline: InProcessPipeline) => Promise<T>): Promise<T> {
  const pipeline = await InProcessPipeline.load(await tinyModel(options));
  try {
    return await use(pipeline);
  } finally {
    await pipeline.close();
  }
}

/** The naive reference stops where the pipeline must: right after the first EOS. */
function untilEos(ids: number[]): number[] {
  const eos = ids.indexOf(tinyCheckpoint().config.eosTokenId);
  return eos < 0 ? ids : ids.slice(0, eos + 1);
}

describe('in-process pipeline', () => {
  let expected: number[][];

  beforeAll(() => {
    expected = PROMPTS.map((prompt) => untilEos(naiveGreedy(tinyCheckpoint(), prompt, GREEDY_TOKENS)));
  }, MODEL_TEST_TIMEOUT_MS);

  test(
    'greedy generation of 32 tokens is identical for 1, 2, 3 and 4 stages, even / balanced / explicit, plain and fused, and equals naiveGreedy',
    async () => {
      for (const layout of LAYOUTS) {
        const generated = await withPipeline(layout, (pipeline) => Promise.all(PROMPTS.map((prompt) => pipeline.generate(prompt, GREEDY))));
        generated.forEach((result, i) => {
          expect({ layout: layout.name, prompt: i, tokenIds: result.tokenIds }).toEqual({ layout: layout.name, prompt: i, tokenIds: expected[i] });
        });
      }
    },
    MODEL_TEST_TIMEOUT_MS,
  );

  test(
    'a padded batch of different prompt lengths generates what each prompt generates alone (greedy and seeded sampling)',
    async () => {
      const prompts = [[464, 2068, 7586, 21831, 18045, 625, 262], [40], [15496, 11, 616]];
      const sampled: GenerationConfig = { ...DEFAULT_GENERATION_CONFIG, maxNewTokens: 12, temperature: 0.9, topK: 40, topP: 0.95, seed: 17 };
      await withPipeline({ stages: 3, ops: 'plain' }, async (pipeline) => {
        for (const config of [{ ...GREEDY, maxNewTokens: 12 }, sampled]) {
          const batch = await pipeline.generateBatch(prompts, config);
          for (const [i, prompt] of prompts.entries()) {
            const alone = await pipeline.generate(prompt, config);
            expect(batch[i].tokenIds).toEqual(alone.tokenIds);
            batch[i].logprobs.forEach((logprob, n) => expect(logprob).toBeCloseTo(alone.logprobs[n], 3));
          }
        }
        const greedyBatch = await pipeline.generateBatch(prompts, { ...GREEDY, maxNewTokens: 12 });
        prompts.forEach((prompt, i) => expect(greedyBatch[i].tokenIds).toEqual(untilEos(naiveGreedy(tinyCheckpoint(), prompt, 12))));
      });
    },
    MODEL_TEST_TIMEOUT_MS,
  );

  test(
    'greedy logprobs are the log-softmax of the naive logits at each chosen token',
    async () => {
      await withPipeline({ stages: 2, ops: 'plain' }, async (pipeline) => {
        const prompt = PROMPTS[0];
        const result = await pipeline.generate(prompt, { ...GREEDY, maxNewTokens: 4 });
        const ids = [...prompt];
        result.tokenIds.forEach((tokenId, n) => {
          const all = naiveGpt2Logits(tinyCheckpoint(), ids);
          const logits = Array.from(all[all.length - 1]);
          const max = Math.max(...logits);
          const logTotal = Math.log(logits.reduce((sum, v) => sum + Math.exp(v - max), 0));
          expect(result.logprobs[n]).toBeCloseTo(logits[tokenId] - max - logTotal, 3);
          ids.push(tokenId);
        });
      });
    },
    MODEL_TEST_TIMEOUT_MS,
  );

  test(
    'different prompts give different, non-repeating continuations (tiny default init)',
    async () => {
      const prompts = [...PROMPTS, [40, 588, 284, 4483], [2061, 318, 262, 3139, 286]];
      const continuations = await withPipeline({ stages: 2, ops: 'plain' }, (pipeline) =>
        Promise.all(prompts.map(async (prompt) => (await pipeline.generate(prompt, GREEDY)).tokenIds)),
      );
      for (let a = 0; a < continuations.length; a++) {
        for (let b = a + 1; b < continuations.length; b++) expect(continuations[a]).not.toEqual(continuations[b]);
      }
      for (const tokens of continuations) {
        // Not stuck in a loop: many distinct ids, and never one id several times in a row.
        expect(new Set(tokens).size).toBeGreaterThanOrEqual(GREEDY_TOKENS / 4);
        expect(longestRun(tokens)).toBeLessThanOrEqual(MAX_SAME_TOKEN_RUN);
      }
    },
    MODEL_TEST_TIMEOUT_MS,
  );

  test(
    'generation stops at maxNewTokens or a full context with finish reason length, and frees every KV entry',
    async () => {
      await withPipeline({ stages: 2, ops: 'plain' }, async (pipeline) => {
        const short = await pipeline.generate(PROMPTS[0], { ...GREEDY, maxNewTokens: 3 });
        expect(short.tokenIds).toHaveLength(3);
        expect(short.finishReason).toBe('length');
        // 254 prompt tokens in a 256-position model leave room for exactly 2 new tokens.
        const long = Array.from({ length: 254 }, (_, i) => (i * 7919) % 50000);
        const full = await pipeline.generate(long, { ...GREEDY, maxNewTokens: 10 });
        expect(full.tokenIds).toHaveLength(2);
        expect(full.finishReason).toBe('length');
        // A new sequence can use the whole budget again: nothing was left behind.
        const again = await pipeline.generate(long, { ...GREEDY, maxNewTokens: 10 });
        expect(again.tokenIds).toEqual(full.tokenIds);
      });
    },
    MODEL_TEST_TIMEOUT_MS,
  );

  test(
    'an empty or too long prompt is INVALID_ARGUMENT naming the prompt',
    async () => {
      await withPipeline({ stages: 1, ops: 'plain' }, async (pipeline) => {
        await expect(pipeline.generate([], GREEDY)).rejects.toThrow(/^prompts\[0\]: needs at least one token/);
        const error = await pipeline.generateBatch([[1], new Array(257).fill(1)], GREEDY).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(ServiceError);
        expect((error as ServiceError).code).toBe(status.INVALID_ARGUMENT);
        expect((error as ServiceError).message).toMatch(/^prompts\[1\]: 257 tokens exceed the model's 256 positions/);
      });
    },
    MODEL_TEST_TIMEOUT_MS,
  );
});
