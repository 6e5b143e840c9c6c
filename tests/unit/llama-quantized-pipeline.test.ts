import { readFile } from 'node:fs/promises';
import * as path from 'node:path';
import { InProcessPipeline } from '../../services/node/in-process-pipeline';
import { DEFAULT_GENERATION_CONFIG, type GenerationConfig } from '../../shared/generation-config';
import type { ModelManifest, WeightFormat } from '../../shared/model/manifest';
import { tinyLlamaModel } from '../support/llama-test-models';
import { QUANTIZED_CASES } from '../support/quantized-cases';
import type { TinyModelOptions } from '../support/test-models';

/**
 * Quantized stages of a Llama-family model (the llama-tiny preset: grouped-query attention 9
 * over 3, SwiGLU, RMSNorm, rotary positions, tied head; hidden 144, which is not a multiple of
 * the 32-wide quantization block): every split gives the tokens of the monolithic graph of the
 * same format, as for GPT-2 (quantized-pipeline.test.ts).
 */
const MODEL_TEST_TIMEOUT_MS = 600_000;
const GREEDY_TOKENS = 24;
const GREEDY: GenerationConfig = { ...DEFAULT_GENERATION_CONFIG, temperature: 0, maxNewTokens: GREEDY_TOKENS };
const PROMPTS = [
  [464, 2068, 7586, 21831, 18045],
  [15496, 11, 616, 1438, 318],
  [7454, 2402, 257, 640],
];

async function withPipeline<T>(options: TinyModelOptions, use: (pipeline: InProcessPipeline, dir: string) => Promise<T>): Promise<T> {
  const dir = await tinyLlamaModel(options);
  const pipeline = await InProcessPipeline.load(dir);
  try {
    return await use(pipeline, dir);
  } finally {
    await pipeline.close();
  }
}

async function greedyAlone(pipeline: InProcessPipeline): Promise<number[][]> {
  const alone: number[][] = [];
  for (const prompt of PROMPTS) alone.push((await pipeline.generate(prompt, GREEDY)).tokenIds);
  return alone;
}

describe('quantized Llama-family in-process pipeline', () => {
  test.each(QUANTIZED_CASES)(
    '$name: greedy tokens of every split equal the monolithic quantized graph, and each prompt continues its own way',
    async ({ weights, ops, splits }) => {
      const monolithic = await withPipeline({ stages: 1, ops, weights }, greedyAlone);
      monolithic.forEach((tokens) => expect(tokens).toHaveLength(GREEDY_TOKENS));
      // The quantized model stays prompt-sensitive: different prompts, different continuations.
      expect(new Set(monolithic.map((tokens) => tokens.join(','))).size).toBe(PROMPTS.length);
      for (const split of splits) {
        const result = await withPipeline({ ...split, ops, weights }, async (pipeline, dir) => {
          const manifest = JSON.parse(await readFile(path.join(dir, 'manifest.json'), 'utf8')) as ModelManifest;
          return { formats: manifest.stages.map((stage) => stage.weights.format), alone: await greedyAlone(pipeline) };
        });
        expect({ split, ...result }).toEqual({ split, formats: Array(split.stages).fill(weights.format), alone: monolithic });
      }
    },
    MODEL_TEST_TIMEOUT_MS,
  );

  test(
    'the int4 Llama model is not the fp32 one: its greedy tokens differ somewhere',
    async () => {
      const generate = (weights: WeightFormat) => withPipeline({ stages: 1, ops: 'fused', weights }, greedyAlone);
      expect(await generate({ format: 'int4' })).not.toEqual(await generate({ format: 'fp32' }));
    },
    MODEL_TEST_TIMEOUT_MS,
  );
});
