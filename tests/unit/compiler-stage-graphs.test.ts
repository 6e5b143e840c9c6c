import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { OnnxSession } from '../../services/node/onnx-session';
import type { Tensor } from '../../shared/tensor';
import { compileCheckpoint } from '../../tools/compiler/compile-model';
import type { SplitSpec } from '../../tools/compiler/split-plan';
import type { Gpt2Config } from '../../tools/families/gpt2/gpt2-config';
import { gpt2Checkpoint, gpt2Shape } from '../../tools/families/gpt2/gpt2-family';
import type { Gpt2Checkpoint } from '../../tools/families/gpt2/gpt2-weights';
import { GPT2_PRESETS, randomGpt2Checkpoint } from '../../tools/init/random-gpt2';
import { maxAbsDifference, maxPresentDifference, row, runStep, type StepResult } from '../support/compiler-fixtures';
import { naiveGpt2Logits } from '../support/naive-gpt2';

const MODEL_TEST_TIMEOUT_MS = 180_000;
const TOLERANCE = 1e-4;
const TINY_CONFIG = GPT2_PRESETS.tiny;

/**
 * Three prompts of different lengths (a right-padded first step with no past), then one token
 * per row (a decode step whose rows have different pasts), then a longer continuation of one
 * row alone (the only shape a multi-token step with a past may take, see docs/stage-graph.md).
 */
const FIRST_STEP = [
  [464, 2068, 7586, 21831, 18045],
  [40, 1101],
  [7, 50256, 3, 999, 12345, 42, 50000],
];
const SECOND_STEP = [[318], [257], [11]];
const CONTINUATION = [3797, 13, 2, 999];

interface Compiled {
  readonly stages: { session: OnnxSession; layerStart: number; layerEnd: number }[];
}

let workDir: string;
const opened: OnnxSession[] = [];

beforeAll(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), 'compiler-stage-graphs-'));
});

afterAll(async () => {
  await Promise.all(opened.map((session) => session.close()));
  await rm(workDir, { recursive: true, force: true });
});

/** 'plain', or 'fused' with its default kernel, or 'fused-gqa' (GroupQueryAttention). */
type GraphVariant = 'plain' | 'fused' | 'fused-gqa';

async function compile(checkpoint: Gpt2Checkpoint, name: string, stages: number, split: SplitSpec, variant: GraphVariant): Promise<Compiled> {
  const out = path.join(workDir, name);
  const ops = variant === 'plain' ? 'plain' : 'fused';
  const attention = variant === 'fused-gqa' ? 'gqa' : undefined;
  const manifest = await compileCheckpoint(gpt2Checkpoint(checkpoint), out, { stages, split, ops, attention, modelName: name, tokenizerFiles: [] });
  expect(manifest.attention).toBe(ops === 'plain' ? undefined : (attention ?? 'split'));
  const sessions = [];
  for (const stage of manifest.stages) {
    const session = await OnnxSession.open(path.join(out, stage.files[0].path), { intraOpThreads: 1 });
    opened.push(session);
    sessions.push({ session, layerStart: stage.layerStart, layerEnd: stage.layerEnd });
  }
  return { stages: sessions };
}

/** The first two steps for every row, then the third row's continuation alone. */
async function runSteps(compiled: Compiled, config: Gpt2Config): Promise<[StepResult, StepResult, StepResult]> {
  const shape = gpt2Shape(config);
  const first = await runStep(compiled.stages, shape, { newTokens: FIRST_STEP }, undefined);
  const second = await runStep(compiled.stages, shape, { newTokens: SECOND_STEP }, first.past);
  const row2 = (t: Tensor<'float32'>): Tensor<'float32'> => {
    const [b, h, p, d] = t.dims;
    const size = h * p * d;
    expect(b).toBe(3);
    return { dtype: 'float32', dims: [1, h, p, d], data: t.data.subarray(2 * size, 3 * size) } as Tensor<'float32'>;
  };
  const alonePast = {
    keys: new Map([...second.past.keys].map(([layer, t]) => [layer, row2(t)])),
    values: new Map([...second.past.values].map(([layer, t]) => [layer, row2(t)])),
    lengths: [second.past.lengths[2]],
  };
  const third = await runStep(compiled.stages, shape, { newTokens: [CONTINUATION] }, alonePast);
  return [first, second, third];
}

const STEP_TOKENS = [FIRST_STEP, SECOND_STEP, [CONTINUATION]];
const HISTORIES = [FIRST_STEP, FIRST_STEP.map((tokens, r) => [...tokens, ...SECOND_STEP[r]]), [[...FIRST_STEP[2], ...SECOND_STEP[2], ...CONTINUATION]]];

/** The float64 reference's logits for the last of `tokens` (the only position a stage graph returns). */
function referenceLastLogits(checkpoint: Gpt2Checkpoint, tokens: readonly number[]): Float32Array {
  const logits = naiveGpt2Logits(checkpoint, tokens);
  return logits[logits.length - 1];
}

function allFinite(t: Tensor): boolean {
  return (t.data as Float32Array).every((v) => Number.isFinite(v));
}

describe('stage graphs', () => {
  const checkpoint = randomGpt2Checkpoint(TINY_CONFIG, 7);

  /** Each step's logits against the naive float64 pass over the whole history. */
  function expectReferenceLogits(steps: readonly StepResult[], weights: Gpt2Checkpoint): void {
    steps.forEach((step, k) => {
      HISTORIES[k].forEach((history, r) => {
        const expected = referenceLastLogits(weights, history);
        // Guard against a vacuous comparison: the logits must actually vary.
        expect(Math.max(...expected) - Math.min(...expected)).toBeGreaterThan(1);
        expect(maxAbsDifference(row(step.logits, r), expected)).toBeLessThan(TOLERANCE);
      });
    });
  }

  test(
    'the 1-stage plain graph gives the float64 reference logits within 1e-4: right-padded prompts, a decode step with different pasts, a continuation with a past',
    async () => {
      expectReferenceLogits(await runSteps(await compile(checkpoint, 'plain-1', 1, { kind: 'even' }, 'plain'), TINY_CONFIG), checkpoint);
    },
    MODEL_TEST_TIMEOUT_MS,
  );

  test(
    'chaining 3 plain stages gives the same logits and new keys/values as the 1-stage graph within 1e-4, at P = 0 and with a past',
    async () => {
      const single = await runSteps(await compile(checkpoint, 'plain-1b', 1, { kind: 'even' }, 'plain'), TINY_CONFIG);
      const chained = await compile(checkpoint, 'plain-3', 3, { kind: 'explicit', ranges: [[0, 1], [1, 4], [4, 6]] }, 'plain');
      expect(chained.stages.map((s) => [s.layerStart, s.layerEnd])).toEqual([[0, 1], [1, 4], [4, 6]]);
      const multi = await runSteps(chained, TINY_CONFIG);
      expect(multi[0].hiddenOut).toHaveLength(2);
      multi.forEach((step, k) => {
        const counts = STEP_TOKENS[k].map((t) => t.length);
        expect(maxAbsDifference(step.logits.data, single[k].logits.data)).toBeLessThan(TOLERANCE);
        for (let layer = 0; layer < TINY_CONFIG.nLayer; layer++) {
          expect(maxPresentDifference(step.presentKeys.get(layer)!, single[k].presentKeys.get(layer)!, counts)).toBeLessThan(TOLERANCE);
          expect(maxPresentDifference(step.presentValues.get(layer)!, single[k].presentValues.get(layer)!, counts)).toBeLessThan(TOLERANCE);
        }
      });
    },
    MODEL_TEST_TIMEOUT_MS,
  );

  test.each(['fused', 'fused-gqa'] as const)(
    '%s stages (split attention by default, GroupQueryAttention with gqa) equal plain stages within 1e-4 on every step kind (logits, hidden states and new keys/values)',
    async (variant) => {
      const split: SplitSpec = { kind: 'even' };
      const plain = await runSteps(await compile(checkpoint, `plain-2-${variant}`, 2, split, 'plain'), TINY_CONFIG);
      const fused = await runSteps(await compile(checkpoint, `${variant}-2`, 2, split, variant), TINY_CONFIG);
      plain.forEach((p, k) => {
        const f = fused[k];
        const counts = STEP_TOKENS[k].map((t) => t.length);
        expect(maxAbsDifference(f.logits.data, p.logits.data)).toBeLessThan(TOLERANCE);
        // hidden_states_out [B, S, E]: compare the real (non-padding) positions, the first of each row.
        const [batch, seq, e] = p.hiddenOut[0].dims;
        for (let r = 0; r < batch; r++) {
          const from = r * seq * e;
          const to = from + counts[r] * e;
          expect(maxAbsDifference(f.hiddenOut[0].data.subarray(from, to), p.hiddenOut[0].data.subarray(from, to))).toBeLessThan(TOLERANCE);
        }
        for (let layer = 0; layer < TINY_CONFIG.nLayer; layer++) {
          expect(maxPresentDifference(f.presentKeys.get(layer)!, p.presentKeys.get(layer)!, counts)).toBeLessThan(TOLERANCE);
          expect(maxPresentDifference(f.presentValues.get(layer)!, p.presentValues.get(layer)!, counts)).toBeLessThan(TOLERANCE);
        }
      });
      expectReferenceLogits(fused, checkpoint);
    },
    MODEL_TEST_TIMEOUT_MS,
  );

  test.each(['fused', 'fused-gqa'] as const)(
    "%s graphs give a row the same logits, bit for bit, alone or batched with a longer row (its padding never changes a sum)",
    async (variant) => {
      const compiled = await compile(checkpoint, `batch-invariant-${variant}`, 2, { kind: 'even' }, variant);
      const shape = gpt2Shape(TINY_CONFIG);
      const short = [464, 2068, 7586, 21831, 18045];
      const long = Array.from({ length: 37 }, (_, i) => (i * 977 + 31) % TINY_CONFIG.vocabSize);
      const next = [[318], [257]];
      const batchedFirst = await runStep(compiled.stages, shape, { newTokens: [long, short] }, undefined);
      const batchedSecond = await runStep(compiled.stages, shape, { newTokens: next }, batchedFirst.past);
      const aloneFirst = await runStep(compiled.stages, shape, { newTokens: [short] }, undefined);
      const aloneSecond = await runStep(compiled.stages, shape, { newTokens: [next[1]] }, aloneFirst.past);
      // The batched past is 38 columns wide, the short row's own 5: the short row must not notice.
      expect(batchedFirst.past.keys.get(0)?.dims[2]).toBe(long.length);
      expect(aloneFirst.past.keys.get(0)?.dims[2]).toBe(short.length);
      const differing = (a: Float32Array, b: Float32Array): number => a.reduce((n, x, i) => n + (Object.is(x, b[i]) ? 0 : 1), 0);
      expect(differing(row(batchedFirst.logits, 1), row(aloneFirst.logits, 0))).toBe(0);
      expect(differing(row(batchedSecond.logits, 1), row(aloneSecond.logits, 0))).toBe(0);
    },
    MODEL_TEST_TIMEOUT_MS,
  );

  test.each(['plain', 'fused'] as const)(
    "%s last stages summarise each row's logits: argmax is the first largest logit, logsumexp is log Σ exp in float64 within 1e-5 relative",
    async (variant) => {
      const steps = await runSteps(await compile(checkpoint, `summary-${variant}`, 2, { kind: 'even' }, variant), TINY_CONFIG);
      for (const step of steps) {
        const [batch, vocab] = step.logits.dims;
        for (let r = 0; r < batch; r++) {
          const logits = step.logits.data.subarray(r * vocab, (r + 1) * vocab);
          let best = 0;
          for (let v = 1; v < vocab; v++) if (logits[v] > logits[best]) best = v;
          let sum = 0;
          for (let v = 0; v < vocab; v++) sum += Math.exp(logits[v] - logits[best]);
          const expected = logits[best] + Math.log(sum);
          expect(Number(step.argmax.data[r])).toBe(best);
          expect(Math.abs(step.logsumexp.data[r] - expected)).toBeLessThan(1e-5 * Math.max(1, Math.abs(expected)));
        }
      }
    },
    MODEL_TEST_TIMEOUT_MS,
  );

  test.each(['plain', 'fused', 'fused-gqa'] as const)(
    '%s graphs keep every real output finite and never let padding leak into real rows',
    async (ops) => {
      const steps = await runSteps(await compile(checkpoint, `finite-${ops}`, 2, { kind: 'even' }, ops), TINY_CONFIG);
      steps.forEach((step, k) => {
        expect(allFinite(step.logits)).toBe(true);
        const counts = STEP_TOKENS[k].map((t) => t.length);
        for (const hidden of step.hiddenOut) {
          const [batch, seq, e] = hidden.dims;
          for (let r = 0; r < batch; r++) expect(hidden.data.subarray(r * seq * e, (r * seq + counts[r]) * e).every(Number.isFinite)).toBe(true);
        }
        for (const tensor of [...step.past.keys.values(), ...step.past.values.values()]) expect(allFinite(tensor)).toBe(true);
      });
    },
    MODEL_TEST_TIMEOUT_MS,
  );

  test.each(['plain', 'fused'] as const)(
    "%s graphs implement the exact erf 'gelu' when the config asks for it",
    async (ops) => {
      const config: Gpt2Config = { ...TINY_CONFIG, activation: 'gelu', nLayer: 2 };
      const erfCheckpoint = randomGpt2Checkpoint(config, 11);
      expectReferenceLogits(await runSteps(await compile(erfCheckpoint, `gelu-${ops}`, 1, { kind: 'even' }, ops), config), erfCheckpoint);
    },
    MODEL_TEST_TIMEOUT_MS,
  );
});
