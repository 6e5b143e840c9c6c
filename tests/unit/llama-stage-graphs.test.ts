import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { OnnxSession } from '../../services/node/onnx-session';
import type { ModelShape } from '../../shared/model/model-shape';
import type { Weight } from '../../shared/model/weight';
import type { Tensor } from '../../shared/tensor';
import { compileCheckpoint } from '../../tools/compiler/compile-model';
import type { SplitSpec } from '../../tools/compiler/split-plan';
import { parseModelConfig } from '../../tools/families/model-families';
import { LLAMA_VARIANTS, type LlamaVariant } from '../support/llama-variants';
import { maxAbsDifference, maxPresentDifference, row, runStep, type StepResult } from '../support/compiler-fixtures';
import { naiveLlamaLogits } from '../support/naive-llama';
import { writeRandomLlamaCheckpoint } from '../support/random-llama-checkpoint';

const MODEL_TEST_TIMEOUT_MS = 180_000;
/** ONNX against ONNX: the same float32 arithmetic in other ops or cuts. */
const TOLERANCE = 1e-4;
/** ONNX (float32) against the naive pass (float64): |a − b| ≤ 1e-4 + 1e-5·|b| (allclose). */
const NAIVE_ABSOLUTE_TOLERANCE = 1e-4;
const NAIVE_RELATIVE_TOLERANCE = 1e-5;
const SEED = 7;

/**
 * Three prompts of different lengths (a right-padded first step with no past), then one token per
 * row (a decode step whose rows have different pasts), then a longer continuation of the third
 * row alone. Rows reach 6, 3 and 14 positions: past the sliding window of 4.
 */
const FIRST_STEP = [
  [17, 250, 3, 99, 42],
  [5, 180],
  [290, 64, 133, 8, 144, 201, 77, 12, 260],
];
const SECOND_STEP = [[31], [257], [11]];
const CONTINUATION = [120, 13, 2, 99];
const STEP_TOKENS = [FIRST_STEP, SECOND_STEP, [CONTINUATION]];
const HISTORIES = [FIRST_STEP, FIRST_STEP.map((tokens, r) => [...tokens, ...SECOND_STEP[r]]), [[...FIRST_STEP[2], ...SECOND_STEP[2], ...CONTINUATION]]];

interface Compiled {
  readonly shape: ModelShape;
  readonly stages: { session: OnnxSession; layerStart: number; layerEnd: number }[];
}

let workDir: string;
const opened: OnnxSession[] = [];
const checkpoints = new Map<string, Map<string, Weight>>();

beforeAll(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), 'llama-stage-graphs-'));
  for (const variant of LLAMA_VARIANTS) {
    checkpoints.set(variant.name, await writeRandomLlamaCheckpoint(path.join(workDir, `hf-${variant.name}`), variant.config, SEED));
  }
});

afterAll(async () => {
  await Promise.all(opened.map((session) => session.close()));
  await rm(workDir, { recursive: true, force: true });
});

/** 'plain', or 'fused' with the split kernel or with GroupQueryAttention (the default where kvHeads < heads). */
type GraphVariant = 'plain' | 'fused-split' | 'fused-gqa';

/** Each compile once, however many tests compare against it. */
const compiled = new Map<string, Promise<Compiled>>();

function compile(variant: LlamaVariant, stages: number, split: SplitSpec, graphVariant: GraphVariant): Promise<Compiled> {
  const name = `${variant.name}-${stages}-${split.kind}-${graphVariant}`;
  let result = compiled.get(name);
  if (result === undefined) {
    result = compileOnce(variant, stages, split, graphVariant, name);
    compiled.set(name, result);
  }
  return result;
}

async function compileOnce(variant: LlamaVariant, stages: number, split: SplitSpec, graphVariant: GraphVariant, name: string): Promise<Compiled> {
  const out = path.join(workDir, name);
  const model = parseModelConfig(variant.config, 'config.json');
  const tensors = checkpoints.get(variant.name) as Map<string, Weight>;
  const ops = graphVariant === 'plain' ? 'plain' : 'fused';
  const attention = graphVariant === 'plain' ? undefined : graphVariant === 'fused-gqa' ? 'gqa' : 'split';
  const manifest = await compileCheckpoint({ model, tensors }, out, { stages, split, ops, attention, modelName: name, tokenizerFiles: [] });
  const sessions = [];
  for (const stage of manifest.stages) {
    const session = await OnnxSession.open(path.join(out, stage.files[0].path), { intraOpThreads: 1 });
    opened.push(session);
    sessions.push({ session, layerStart: stage.layerStart, layerEnd: stage.layerEnd });
  }
  return { shape: manifest.shape, stages: sessions };
}

async function runSteps(compiled: Compiled): Promise<StepResult[]> {
  const first = await runStep(compiled.stages, compiled.shape, { newTokens: FIRST_STEP }, undefined);
  const second = await runStep(compiled.stages, compiled.shape, { newTokens: SECOND_STEP }, first.past);
  const row2 = (t: Tensor<'float32'>): Tensor<'float32'> => {
    const [, h, p, d] = t.dims;
    const size = h * p * d;
    return { dtype: 'float32', dims: [1, h, p, d], data: t.data.subarray(2 * size, 3 * size) } as Tensor<'float32'>;
  };
  const alonePast = {
    keys: new Map([...second.past.keys].map(([layer, t]) => [layer, row2(t)])),
    values: new Map([...second.past.values].map(([layer, t]) => [layer, row2(t)])),
    lengths: [second.past.lengths[2]],
  };
  const third = await runStep(compiled.stages, compiled.shape, { newTokens: [CONTINUATION] }, alonePast);
  return [first, second, third];
}

/** ONNX against ONNX: the largest |a − b| beyond TOLERANCE + 1e-6·|b|; ≤ 0 when every element is close. */
function excessOverClose(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  let worst = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < expected.length; i++) worst = Math.max(worst, Math.abs(actual[i] - expected[i]) - (TOLERANCE + 1e-6 * Math.abs(expected[i])));
  return worst;
}

/** The largest |a − b| beyond what allclose allows; ≤ 0 when every element is close. */
function excessOverNaive(actual: ArrayLike<number>, naive: ArrayLike<number>): number {
  let worst = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < naive.length; i++) {
    worst = Math.max(worst, Math.abs(actual[i] - naive[i]) - (NAIVE_ABSOLUTE_TOLERANCE + NAIVE_RELATIVE_TOLERANCE * Math.abs(naive[i])));
  }
  return worst;
}

function expectNaiveLogits(variant: LlamaVariant, steps: readonly StepResult[]): void {
  const tensors = checkpoints.get(variant.name) as Map<string, Weight>;
  steps.forEach((step, k) => {
    HISTORIES[k].forEach((history, r) => {
      const expected = naiveLlamaLogits({ config: variant.config, tensors }, history).at(-1) as Float32Array;
      // Guard against a vacuous comparison: the logits must actually vary.
      expect(Math.max(...expected) - Math.min(...expected)).toBeGreaterThan(1);
      expect(excessOverNaive(row(step.logits, r), expected)).toBeLessThanOrEqual(0);
    });
  });
}

describe.each(LLAMA_VARIANTS)('$title', (variant) => {
  test('a fused compile without --attention takes GroupQueryAttention under grouped-query attention, the split kernel otherwise', async () => {
    const model = parseModelConfig(variant.config, 'config.json');
    const tensors = checkpoints.get(variant.name) as Map<string, Weight>;
    const out = path.join(workDir, `${variant.name}-default-kernel`);
    const manifest = await compileCheckpoint({ model, tensors }, out, { stages: 1, split: { kind: 'even' }, ops: 'fused', modelName: variant.name, tokenizerFiles: [] });
    expect(manifest.attention).toBe(model.shape.kvHeads < model.shape.attentionHeads ? 'gqa' : 'split');
  });

  test(
    'the 1-stage plain graph gives the naive float64 logits: right-padded prompts, a decode step with different pasts, a continuation with a past',
    async () => {
      expectNaiveLogits(variant, await runSteps(await compile(variant, 1, { kind: 'even' }, 'plain')));
    },
    MODEL_TEST_TIMEOUT_MS,
  );

  test.each(['fused-split', 'fused-gqa'] as const)(
    '%s stages (split attention or GroupQueryAttention, RotaryEmbedding, SkipSimplifiedLayerNormalization) equal plain stages within 1e-4: logits, hidden states (plus 1e-6 relative), new keys and values',
    async (graphVariant) => {
      const split: SplitSpec = { kind: 'even' };
      const plain = await runSteps(await compile(variant, 2, split, 'plain'));
      const fused = await runSteps(await compile(variant, 2, split, graphVariant));
      const layers = variant.config.num_hidden_layers as number;
      plain.forEach((p, k) => {
        const f = fused[k];
        const counts = STEP_TOKENS[k].map((t) => t.length);
        expect(maxAbsDifference(f.logits.data, p.logits.data)).toBeLessThan(TOLERANCE);
        const [batch, seq, e] = p.hiddenOut[0].dims;
        for (let r = 0; r < batch; r++) {
          const from = r * seq * e;
          const to = from + counts[r] * e;
          // The residual stream grows to several units: float32 sums in another order differ by its ulp, so relative too.
          expect(excessOverClose(f.hiddenOut[0].data.subarray(from, to), p.hiddenOut[0].data.subarray(from, to))).toBeLessThanOrEqual(0);
        }
        for (let layer = 0; layer < layers; layer++) {
          expect(maxPresentDifference(f.presentKeys.get(layer)!, p.presentKeys.get(layer)!, counts)).toBeLessThan(TOLERANCE);
          expect(maxPresentDifference(f.presentValues.get(layer)!, p.presentValues.get(layer)!, counts)).toBeLessThan(TOLERANCE);
        }
      });
      expectNaiveLogits(variant, fused);
    },
    MODEL_TEST_TIMEOUT_MS,
  );
});
