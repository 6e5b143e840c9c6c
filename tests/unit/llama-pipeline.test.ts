import { status } from '@grpc/grpc-js';
import { InProcessPipeline } from '../../services/node/in-process-pipeline';
import { StageRuntime } from '../../services/node/stage-runtime';
import { ServiceError } from '../../shared/errors';
import { DEFAULT_GENERATION_CONFIG, type GenerationConfig } from '../../shared/generation-config';
import { readManifest } from '../../shared/model/manifest';
import type { Weight } from '../../shared/model/weight';
import type { SplitSpec } from '../../tools/compiler/split-plan';
import { TransformersJsRunner } from '../../tools/bench/transformers-js-runner';
import { loadCheckpoint } from '../../tools/families/checkpoint';
import { LLAMA_PRESETS } from '../../tools/init/random-llama';
import { tinyLlamaCheckpointDir, tinyLlamaModel, transformersJsExportOf, variantCheckpointDir, variantModel, variantTensors } from '../support/llama-test-models';
import { LLAMA_VARIANTS, VARIANT_EOS_TOKEN_ID, type LlamaVariant } from '../support/llama-variants';
import { naiveLlamaLogits, type NaiveLlamaCheckpoint } from '../support/naive-llama';
import type { TinyModelOptions } from '../support/test-models';

const MODEL_TEST_TIMEOUT_MS = 600_000;
const FLOAT32_BYTES = 4;
/** ONNX (float32) against the naive pass (float64): |a − b| ≤ 1e-4 + 1e-5·|b| (allclose). */
const NAIVE_ABSOLUTE_TOLERANCE = 1e-4;
const NAIVE_RELATIVE_TOLERANCE = 1e-5;

/** Every cut of the variants' 4 layers into 1–4 stages, even and balanced, in both op variants with the default kernel; both kernels by name at 1 and 3 stages. */
const LAYOUTS: (TinyModelOptions & { name: string })[] = [
  ...(['plain', 'fused'] as const).flatMap((ops) => [
    { name: `1 stage, ${ops}`, stages: 1, ops },
    ...[2, 3, 4].flatMap((stages) =>
      (['even', 'balanced'] as const).map((kind) => ({ name: `${stages} stages ${kind}, ${ops}`, stages, split: { kind } as SplitSpec, ops })),
    ),
  ]),
  ...(['split', 'gqa'] as const).flatMap((attention) => [
    { name: `1 stage, fused, ${attention} attention`, stages: 1, ops: 'fused' as const, attention },
    { name: `3 stages even, fused, ${attention} attention`, stages: 3, split: { kind: 'even' } as SplitSpec, ops: 'fused' as const, attention },
  ]),
];

/** Different lengths, so every batch is padded; the Mistral window (4) is outgrown by every row. */
const VARIANT_PROMPTS = [
  [17, 250, 3, 99, 42],
  [5, 180, 77, 12, 260, 31, 8, 144, 201],
  [290, 64, 133],
];
const VARIANT_NEW_TOKENS = 16;

function greedyConfig(maxNewTokens: number): GenerationConfig {
  return { ...DEFAULT_GENERATION_CONFIG, temperature: 0, maxNewTokens };
}

/**
 * Greedy decoding with the naive reference: `stopAt` ends a continuation after the first of those
 * ids (as the pipeline does), `forbidden` ids are never chosen (as transformers.js does while
 * min_new_tokens holds).
 */
function naiveGreedy(reference: NaiveLlamaCheckpoint, prompt: readonly number[], tokens: number, options: { stopAt?: readonly number[]; forbidden?: readonly number[] }): number[] {
  const ids = [...prompt];
  const generated: number[] = [];
  while (generated.length < tokens) {
    const logits = naiveLlamaLogits(reference, ids).at(-1) as Float32Array;
    let best = -1;
    logits.forEach((value, id) => {
      if (options.forbidden?.includes(id) !== true && (best < 0 || value > logits[best])) best = id;
    });
    ids.push(best);
    generated.push(best);
    if (options.stopAt?.includes(best) === true) break;
  }
  return generated;
}

/** transformers.js greedy continuations of all prompts in one batched (left-padded) call of its own graph. */
async function transformersJsGreedy(checkpointDir: string, prompts: readonly (readonly number[])[], tokens: number): Promise<number[][]> {
  const runner = await TransformersJsRunner.load(await transformersJsExportOf(checkpointDir), { intraOpThreads: 1 });
  try {
    return (await runner.generate(prompts, tokens)).streams.map((stream) => stream.generatedIds);
  } finally {
    await runner.close();
  }
}

/**
 * What the pipeline generates (stopping after EOS) is what transformers.js generates (which may not
 * stop: min_new_tokens masks EOS) up to that point.
 */
function expectSameUntilEos(pipeline: readonly number[], transformersJs: readonly number[], eos: readonly number[]): void {
  const stoppedOnEos = pipeline.length > 0 && eos.includes(pipeline[pipeline.length - 1]);
  const before = stoppedOnEos ? pipeline.slice(0, -1) : pipeline;
  expect(transformersJs.slice(0, before.length)).toEqual(before);
  if (!stoppedOnEos) expect(pipeline).toEqual(transformersJs);
}

async function withPipeline<T>(modelDir: string, use: (pipeline: InProcessPipeline) => Promise<T>): Promise<T> {
  const pipeline = await InProcessPipeline.load(modelDir, { intraOpThreads: 1 });
  try {
    return await use(pipeline);
  } finally {
    await pipeline.close();
  }
}

/** Each stage's StageRuntime reports 2 × its layers × kvHeads × headDim × 4 bytes per cached token. */
async function expectKvBytesPerToken(modelDir: string, kvHeads: number, headDim: number): Promise<void> {
  const manifest = await readManifest(modelDir);
  expect(manifest.shape).toMatchObject({ kvHeads, headDim });
  for (const stage of manifest.stages) {
    const runtime = await StageRuntime.load(modelDir, stage.index, { kvBudgetBytes: 1 << 20, intraOpThreads: 1 });
    try {
      expect(runtime.kvStats().bytesPerToken).toBe(2 * (stage.layerEnd - stage.layerStart) * kvHeads * headDim * FLOAT32_BYTES);
    } finally {
      await runtime.close();
    }
  }
}

describe.each(LLAMA_VARIANTS)('$title', (variant: LlamaVariant) => {
  let reference: NaiveLlamaCheckpoint;
  let untilEos: number[][];
  let transformersJs: number[][];

  beforeAll(async () => {
    reference = { config: variant.config, tensors: await variantTensors(variant) };
    untilEos = VARIANT_PROMPTS.map((prompt) => naiveGreedy(reference, prompt, VARIANT_NEW_TOKENS, { stopAt: [VARIANT_EOS_TOKEN_ID] }));
    transformersJs = await transformersJsGreedy(await variantCheckpointDir(variant), VARIANT_PROMPTS, VARIANT_NEW_TOKENS);
  }, MODEL_TEST_TIMEOUT_MS);

  test('the two references agree: transformers.js on its own monolithic graph gives the naive greedy tokens (EOS masked as it masks it)', () => {
    VARIANT_PROMPTS.forEach((prompt, i) => {
      expect(transformersJs[i]).toEqual(naiveGreedy(reference, prompt, VARIANT_NEW_TOKENS, { forbidden: [VARIANT_EOS_TOKEN_ID] }));
    });
    // The random weights are not degenerate: each prompt continues in its own way.
    expect(new Set(transformersJs.map((ids) => ids.join())).size).toBe(VARIANT_PROMPTS.length);
    if (variant.feature !== undefined) {
      // The variant exercises its feature: without it, the reference computes other logits.
      const { [variant.feature]: _removed, ...without } = variant.config;
      const changed = naiveLlamaLogits({ config: without, tensors: reference.tensors }, VARIANT_PROMPTS[1]).at(-1) as Float32Array;
      const original = naiveLlamaLogits(reference, VARIANT_PROMPTS[1]).at(-1) as Float32Array;
      expect(Math.max(...changed.map((v, i) => Math.abs(v - original[i])))).toBeGreaterThan(1e-2);
    }
  });

  test(
    'greedy tokens at 1–4 stages, even and balanced, plain and fused, batched and alone, equal the naive pass and transformers.js',
    async () => {
      for (const layout of LAYOUTS) {
        await withPipeline(await variantModel(variant, layout), async (pipeline) => {
          const batched = await pipeline.generateBatch(VARIANT_PROMPTS, greedyConfig(VARIANT_NEW_TOKENS));
          for (const [i, prompt] of VARIANT_PROMPTS.entries()) {
            const alone = await pipeline.generate(prompt, greedyConfig(VARIANT_NEW_TOKENS));
            expect({ layout: layout.name, prompt: i, batched: batched[i].tokenIds, alone: alone.tokenIds }).toEqual({
              layout: layout.name,
              prompt: i,
              batched: untilEos[i],
              alone: untilEos[i],
            });
            expectSameUntilEos(batched[i].tokenIds, transformersJs[i], [VARIANT_EOS_TOKEN_ID]);
          }
        });
      }
    },
    MODEL_TEST_TIMEOUT_MS,
  );

  test(
    'one step mixing a decode, a continuation of 5 tokens and a new prompt gives each row its naive logits (3 stages, fused and plain)',
    async () => {
      for (const ops of ['fused', 'plain'] as const) {
        await withPipeline(await variantModel(variant, { stages: 3, split: { kind: 'balanced' }, ops }), async (pipeline) => {
          const [a, b, c] = VARIANT_PROMPTS;
          await pipeline.forward([{ sequenceId: 'a', pastLength: 0, tokenIds: a }]);
          await pipeline.forward([{ sequenceId: 'b', pastLength: 0, tokenIds: b }]);
          const more = [7, 77, 177, 277, 17];
          const logits = await pipeline.forward([
            { sequenceId: 'a', pastLength: a.length, tokenIds: [11] },
            { sequenceId: 'b', pastLength: b.length, tokenIds: more },
            { sequenceId: 'c', pastLength: 0, tokenIds: c },
          ]);
          const vocab = variant.config.vocab_size as number;
          [[...a, 11], [...b, ...more], c].forEach((history, row) => {
            const expected = naiveLlamaLogits(reference, history).at(-1) as Float32Array;
            const actual = logits.subarray(row * vocab, (row + 1) * vocab);
            const excess = Math.max(...expected.map((v, i) => Math.abs(actual[i] - v) - (NAIVE_ABSOLUTE_TOLERANCE + NAIVE_RELATIVE_TOLERANCE * Math.abs(v))));
            expect({ ops, row, excess: excess <= 0 }).toEqual({ ops, row, excess: true });
          });
        });
      }
    },
    MODEL_TEST_TIMEOUT_MS,
  );

  test(
    'every stage of a 4-stage compile reports 2 × its layers × KV heads × head size × 4 bytes per cached token',
    async () => {
      const config = variant.config as { num_attention_heads: number; num_key_value_heads: number; hidden_size: number; head_dim?: number };
      const headDim = config.head_dim ?? config.hidden_size / config.num_attention_heads;
      await expectKvBytesPerToken(await variantModel(variant, { stages: 4, split: { kind: 'even' }, ops: 'fused' }), config.num_key_value_heads, headDim);
    },
    MODEL_TEST_TIMEOUT_MS,
  );
});

describe('the llama-tiny preset (9 query heads over 3 KV heads of 16, GPT-2 tokenizer)', () => {
  const TINY = LLAMA_PRESETS.tiny;
  const NEW_TOKENS = 24;
  /** "The quick brown fox jumps", "Hello, my name is", "I like to eat", "What is the meaning of" in GPT-2 ids. */
  const PROMPTS = [
    [464, 2068, 7586, 21831, 18045],
    [15496, 11, 616, 1438, 318],
    [40, 588, 284, 4483],
    [2061, 318, 262, 3139, 286],
  ];
  /** GPT-2's own init loops on one token; the Llama init must not either. */
  const MAX_SAME_TOKEN_RUN = 3;
  let reference: NaiveLlamaCheckpoint;
  let expected: number[][];

  beforeAll(async () => {
    const checkpoint = await loadCheckpoint(await tinyLlamaCheckpointDir());
    reference = { config: checkpoint.model.toConfigJson(), tensors: checkpoint.tensors as ReadonlyMap<string, Weight> };
    expected = PROMPTS.map((prompt) => naiveGreedy(reference, prompt, NEW_TOKENS, { stopAt: TINY.eosTokenIds }));
  }, MODEL_TEST_TIMEOUT_MS);

  test(
    'greedy tokens of a 3-stage fused and a 2-stage plain compile, batched, equal the naive pass and transformers.js',
    async () => {
      const transformersJs = await transformersJsGreedy(await tinyLlamaCheckpointDir(), PROMPTS, NEW_TOKENS);
      const layouts: TinyModelOptions[] = [
        { stages: 3, split: { kind: 'balanced' }, ops: 'fused' },
        { stages: 2, split: { kind: 'even' }, ops: 'plain' },
      ];
      for (const layout of layouts) {
        await withPipeline(await tinyLlamaModel(layout), async (pipeline) => {
          const batched = await pipeline.generateBatch(PROMPTS, greedyConfig(NEW_TOKENS));
          batched.forEach((result, i) => {
            expect(result.tokenIds).toEqual(expected[i]);
            expectSameUntilEos(result.tokenIds, transformersJs[i], TINY.eosTokenIds);
          });
        });
      }
    },
    MODEL_TEST_TIMEOUT_MS,
  );

  test('different prompts give different, non-repeating greedy continuations', () => {
    for (let a = 0; a < expected.length; a++) {
      for (let b = a + 1; b < expected.length; b++) expect(expected[a]).not.toEqual(expected[b]);
    }
    for (const tokens of expected) {
      expect(new Set(tokens).size).toBeGreaterThanOrEqual(NEW_TOKENS / 2);
      let run = 1;
      for (let i = 1; i < tokens.length; i++) {
        run = tokens[i] === tokens[i - 1] ? run + 1 : 1;
        expect(run).toBeLessThanOrEqual(MAX_SAME_TOKEN_RUN);
      }
    }
  });

  test(
    'a stage of 2 layers caches 2 × 2 × 3 × 16 × 4 = 768 bytes per token, a third of full multi-head attention, and reserves that way',
    async () => {
      const modelDir = await tinyLlamaModel({ stages: 3, split: { kind: 'even' }, ops: 'fused' });
      await expectKvBytesPerToken(modelDir, 3, 16);
      const bytesPerToken = 2 * 2 * TINY.kvHeads * TINY.headDim * FLOAT32_BYTES;
      expect(bytesPerToken).toBe(768);
      expect(bytesPerToken * 3).toBe(2 * 2 * TINY.attentionHeads * TINY.headDim * FLOAT32_BYTES);
      // A reserved position also holds what stage 0 passes on (hidden × 4 bytes, kept for a partial replay of stage 1).
      const perPosition = bytesPerToken + TINY.hiddenSize * FLOAT32_BYTES;
      // 40 positions' worth fits one sequence reserving 36 tokens, and not a second one reserving 8.
      const runtime = await StageRuntime.load(modelDir, 0, { kvBudgetBytes: 40 * perPosition, intraOpThreads: 1 });
      try {
        await runtime.step({ rows: [{ sequenceId: 'runner', pastLength: 0, tokenIds: PROMPTS[0], reserveTokens: 36 }] });
        expect(runtime.kvStats()).toMatchObject({ sequences: 1, reservedBytes: 36 * perPosition, bytesPerToken, reservedBytesPerToken: perPosition });
        const refused = await runtime.step({ rows: [{ sequenceId: 'newcomer', pastLength: 0, tokenIds: PROMPTS[1], reserveTokens: 8 }] }).catch((e: unknown) => e);
        expect(refused).toBeInstanceOf(ServiceError);
        expect((refused as ServiceError).code).toBe(status.RESOURCE_EXHAUSTED);
        await runtime.reserve('small', 4);
        expect(runtime.kvStats().reservedBytes).toBe(40 * perPosition);
      } finally {
        await runtime.close();
      }
    },
    MODEL_TEST_TIMEOUT_MS,
  );
});
