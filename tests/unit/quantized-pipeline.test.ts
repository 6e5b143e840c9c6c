import { InProcessPipeline } from '../../services/node/in-process-pipeline';
import { DEFAULT_GENERATION_CONFIG, type GenerationConfig } from '../../shared/generation-config';
import type { WeightFormat } from '../../shared/model/manifest';
import { QUANTIZED_CASES } from '../support/quantized-cases';
import { tinyModel, type TinyModelOptions } from '../support/test-models';

const MODEL_TEST_TIMEOUT_MS = 600_000;
const GREEDY_TOKENS = 32;
const GREEDY: GenerationConfig = { ...DEFAULT_GENERATION_CONFIG, temperature: 0, maxNewTokens: GREEDY_TOKENS };
/** "The quick brown fox jumps", "Hello, my name is" and "Once upon a time" in GPT-2 ids. */
const PROMPTS = [
  [464, 2068, 7586, 21831, 18045],
  [15496, 11, 616, 1438, 318],
  [7454, 2402, 257, 640],
];

async function withPipeline<T>(options: TinyModelOptions, use: (pipeline: InProcessPipeline) => Promise<T>): Promise<T> {
  const pipeline = await InProcessPipeline.load(await tinyModel(options));
  try {
    return await use(pipeline);
  } finally {
    await pipeline.close();
  }
}

/** Each prompt alone, then all of them as one batch (prefill together, decode rows with different pasts). */
async function greedyAloneAndBatched(pipeline: InProcessPipeline): Promise<{ alone: number[][]; batched: number[][] }> {
  const alone: number[][] = [];
  for (const prompt of PROMPTS) alone.push((await pipeline.generate(prompt, GREEDY)).tokenIds);
  const batched = (await pipeline.generateBatch(PROMPTS, GREEDY)).map((r) => r.tokenIds);
  return { alone, batched };
}

/**
 * Whether a row's logits are bit for bit the same alone and in a batch. onnxruntime 1.30's 4-bit
 * MatMulNBits kernels (accuracy_level 4) on AVX2-only CPUs are not: a row's result moves by an ulp
 * (~5e-7) with the number of rows multiplied at once — measured on an AMD EPYC without AVX-512,
 * where int8 and fp32 stay exact — and a chaotic random model turns an ulp into other tokens
 * after a few dozen steps. On the CPUs where it holds, the batched tokens must equal the lone ones.
 */
async function batchInvariant(pipeline: InProcessPipeline): Promise<boolean> {
  const batch = await pipeline.forward(PROMPTS.map((tokenIds, i) => ({ sequenceId: `batch-${i}`, pastLength: 0, tokenIds })));
  const alone = await pipeline.forward([{ sequenceId: 'alone', pastLength: 0, tokenIds: PROMPTS[0] }]);
  return alone.every((v, i) => v === batch[i]);
}

describe('quantized in-process pipeline', () => {
  test.each(QUANTIZED_CASES)(
    '$name: greedy tokens of every split equal the monolithic quantized graph, alone and batched',
    async ({ weights, ops, splits }) => {
      const monolithic = await withPipeline({ stages: 1, ops, weights }, async (pipeline) => ({ invariant: await batchInvariant(pipeline), ...(await greedyAloneAndBatched(pipeline)) }));
      const { invariant } = monolithic;
      // fp32 and int8 are batch-invariant on every CPU; int4 where its kernels are (see batchInvariant).
      if (weights.format !== 'int4') expect(invariant).toBe(true);
      if (invariant) expect(monolithic.batched).toEqual(monolithic.alone);
      monolithic.alone.forEach((tokens) => expect(tokens).toHaveLength(GREEDY_TOKENS));
      for (const split of splits) {
        // Splits never change tokens: alone equals the monolithic graph alone, batched equals it batched.
        const result = await withPipeline({ ...split, ops, weights }, greedyAloneAndBatched);
        expect({ split, ...result }).toEqual({ split, alone: monolithic.alone, batched: monolithic.batched });
      }
    },
    MODEL_TEST_TIMEOUT_MS,
  );

  test.each<[string, WeightFormat]>([
    ['fp32', { format: 'fp32' }],
    ['int4', { format: 'int4' }],
  ])(
    '%s, fused: 3 balanced stages give the monolithic logits bit for bit (a stage boundary normalises as the monolithic graph does)',
    async (name, weights) => {
      const rows = PROMPTS.map((tokenIds, i) => ({ sequenceId: `bits-${i}`, pastLength: 0, tokenIds }));
      const logits = (options: TinyModelOptions) => withPipeline(options, (pipeline) => pipeline.forward(rows));
      const monolithic = await logits({ stages: 1, ops: 'fused', weights });
      const split = await logits({ stages: 3, split: { kind: 'balanced' }, ops: 'fused', weights });
      expect(split.some((v, i) => v !== monolithic[i])).toBe(false);
    },
    MODEL_TEST_TIMEOUT_MS,
  );

  test(
    'the int4 model is not the fp32 one: its greedy tokens differ somewhere',
    async () => {
      const generate = (weights: WeightFormat) => withPipeline({ stages: 1, ops: 'fused', weights }, greedyAloneAndBatched);
      expect((await generate({ format: 'int4' })).alone).not.toEqual((await generate({ format: 'fp32' })).alone);
    },
    MODEL_TEST_TIMEOUT_MS,
  );
});
