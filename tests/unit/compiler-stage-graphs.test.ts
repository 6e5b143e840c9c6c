import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { OnnxSession } from '../../services/node/onnx-session';
import type { Gpt2Config } from '../../shared/model/gpt2-config';
import type { Gpt2Checkpoint } from '../../shared/model/gpt2-weights';
import type { Tensor } from '../../shared/tensor';
import { compileCheckpoint } from '../../tools/compiler/compile-model';
import type { SplitSpec } from '../../tools/compiler/split-plan';
import { GPT2_PRESETS, randomGpt2Checkpoint } from '../../tools/init/random-gpt2';
import { maxAbsDifference, row, runStep, type StepResult } from '../support/compiler-fixtures';
import { naiveGpt2Logits } from '../support/naive-gpt2';

const MODEL_TEST_TIMEOUT_MS = 180_000;
const TOLERANCE = 1e-4;
const TINY_CONFIG = GPT2_PRESETS.tiny;

/** Three rows of different lengths, so both steps carry left padding; the second step has a past. */
const FIRST_STEP = [
  [464, 2068, 7586, 21831, 18045],
  [40, 1101],
  [7, 50256, 3, 999, 12345, 42, 50000],
];
const SECOND_STEP = [[318], [257, 3797, 13], [11, 2]];

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

async function compile(checkpoint: Gpt2Checkpoint, name: string, stages: number, split: SplitSpec, ops: 'plain' | 'fused'): Promise<Compiled> {
  const out = path.join(workDir, name);
  const manifest = await compileCheckpoint(checkpoint, out, { stages, split, ops, modelName: name, tokenizerFiles: [] });
  const sessions = [];
  for (const stage of manifest.stages) {
    const session = await OnnxSession.open(path.join(out, stage.files[0].path), { intraOpThreads: 1 });
    opened.push(session);
    sessions.push({ session, layerStart: stage.layerStart, layerEnd: stage.layerEnd });
  }
  return { stages: sessions };
}

async function runTwoSteps(compiled: Compiled, config: Gpt2Config): Promise<[StepResult, StepResult]> {
  const first = await runStep(compiled.stages, config, { newTokens: FIRST_STEP }, undefined);
  const second = await runStep(compiled.stages, config, { newTokens: SECOND_STEP }, first.past);
  return [first, second];
}

/** Compares two [B, H, T, D] present tensors only where the mask marks a real token. */
function maxPresentDifference(a: Tensor<'float32'>, b: Tensor<'float32'>, mask: number[][]): number {
  expect(a.dims).toEqual(b.dims);
  const [batch, heads, total, d] = a.dims;
  let max = 0;
  for (let r = 0; r < batch; r++) {
    for (let h = 0; h < heads; h++) {
      for (let t = 0; t < total; t++) {
        if (mask[r][t] === 0) continue;
        const offset = ((r * heads + h) * total + t) * d;
        max = Math.max(max, maxAbsDifference(a.data.subarray(offset, offset + d), b.data.subarray(offset, offset + d)));
      }
    }
  }
  return max;
}

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

  test(
    'the 1-stage plain graph gives the float64 reference logits within 1e-4 for a left-padded batch, without and with a past',
    async () => {
      const [first, second] = await runTwoSteps(await compile(checkpoint, 'plain-1', 1, { kind: 'even' }, 'plain'), TINY_CONFIG);
      FIRST_STEP.forEach((tokens, r) => {
        const expected = referenceLastLogits(checkpoint, tokens);
        // Guard against a vacuous comparison: the logits must actually vary.
        expect(Math.max(...expected) - Math.min(...expected)).toBeGreaterThan(5);
        expect(maxAbsDifference(row(first.logits, r), expected)).toBeLessThan(TOLERANCE);
      });
      SECOND_STEP.forEach((tokens, r) => {
        const expected = referenceLastLogits(checkpoint, [...FIRST_STEP[r], ...tokens]);
        expect(maxAbsDifference(row(second.logits, r), expected)).toBeLessThan(TOLERANCE);
      });
    },
    MODEL_TEST_TIMEOUT_MS,
  );

  test(
    'chaining 3 plain stages gives the same logits and presents as the 1-stage graph within 1e-4, at P = 0 and with a past',
    async () => {
      const [single1, single2] = await runTwoSteps(await compile(checkpoint, 'plain-1b', 1, { kind: 'even' }, 'plain'), TINY_CONFIG);
      const chained = await compile(checkpoint, 'plain-3', 3, { kind: 'explicit', ranges: [[0, 1], [1, 4], [4, 6]] }, 'plain');
      expect(chained.stages.map((s) => [s.layerStart, s.layerEnd])).toEqual([[0, 1], [1, 4], [4, 6]]);
      const [chained1, chained2] = await runTwoSteps(chained, TINY_CONFIG);
      expect(chained1.hiddenOut).toHaveLength(2);
      for (const [single, multi] of [
        [single1, chained1],
        [single2, chained2],
      ]) {
        expect(maxAbsDifference(multi.logits.data, single.logits.data)).toBeLessThan(TOLERANCE);
        for (let layer = 0; layer < TINY_CONFIG.nLayer; layer++) {
          const mask = multi.past.mask;
          expect(maxPresentDifference(multi.past.keys.get(layer)!, single.past.keys.get(layer)!, mask)).toBeLessThan(TOLERANCE);
          expect(maxPresentDifference(multi.past.values.get(layer)!, single.past.values.get(layer)!, mask)).toBeLessThan(TOLERANCE);
        }
      }
    },
    MODEL_TEST_TIMEOUT_MS,
  );

  test(
    'fused stages equal plain stages within 1e-4 on a padded batch with a past (logits, hidden states and presents)',
    async () => {
      const split: SplitSpec = { kind: 'even' };
      const plain = await runTwoSteps(await compile(checkpoint, 'plain-2', 2, split, 'plain'), TINY_CONFIG);
      const fused = await runTwoSteps(await compile(checkpoint, 'fused-2', 2, split, 'fused'), TINY_CONFIG);
      for (const step of [0, 1]) {
        const [p, f] = [plain[step], fused[step]];
        expect(maxAbsDifference(f.logits.data, p.logits.data)).toBeLessThan(TOLERANCE);
        // hidden_states_out [B, S, E]: compare the real (non-padding) positions.
        const newTokens = step === 0 ? FIRST_STEP : SECOND_STEP;
        const [batch, seq, e] = p.hiddenOut[0].dims;
        for (let r = 0; r < batch; r++) {
          const from = (r * seq + seq - newTokens[r].length) * e;
          const to = (r + 1) * seq * e;
          expect(maxAbsDifference(f.hiddenOut[0].data.subarray(from, to), p.hiddenOut[0].data.subarray(from, to))).toBeLessThan(TOLERANCE);
        }
        for (let layer = 0; layer < TINY_CONFIG.nLayer; layer++) {
          expect(maxPresentDifference(f.past.keys.get(layer)!, p.past.keys.get(layer)!, p.past.mask)).toBeLessThan(TOLERANCE);
          expect(maxPresentDifference(f.past.values.get(layer)!, p.past.values.get(layer)!, p.past.mask)).toBeLessThan(TOLERANCE);
        }
      }
      SECOND_STEP.forEach((tokens, r) => {
        const expected = referenceLastLogits(checkpoint, [...FIRST_STEP[r], ...tokens]);
        expect(maxAbsDifference(row(fused[1].logits, r), expected)).toBeLessThan(TOLERANCE);
      });
    },
    MODEL_TEST_TIMEOUT_MS,
  );

  test.each(['plain', 'fused'] as const)(
    '%s graphs keep every output finite, padding positions included, even where a padding query sees no real key',
    async (ops) => {
      const steps = await runTwoSteps(await compile(checkpoint, `finite-${ops}`, 2, { kind: 'even' }, ops), TINY_CONFIG);
      for (const step of steps) {
        expect(allFinite(step.logits)).toBe(true);
        for (const hidden of step.hiddenOut) expect(allFinite(hidden)).toBe(true);
        for (const tensor of [...step.past.keys.values(), ...step.past.values.values()]) expect(allFinite(tensor)).toBe(true);
      }
    },
    MODEL_TEST_TIMEOUT_MS,
  );

  test.each(['plain', 'fused'] as const)(
    "%s graphs implement the exact erf 'gelu' when the config asks for it",
    async (ops) => {
      const config: Gpt2Config = { ...TINY_CONFIG, activation: 'gelu', nLayer: 2 };
      const erfCheckpoint = randomGpt2Checkpoint(config, 11);
      const [first, second] = await runTwoSteps(await compile(erfCheckpoint, `gelu-${ops}`, 1, { kind: 'even' }, ops), config);
      FIRST_STEP.forEach((tokens, r) => {
        expect(maxAbsDifference(row(first.logits, r), referenceLastLogits(erfCheckpoint, tokens))).toBeLessThan(TOLERANCE);
      });
      SECOND_STEP.forEach((tokens, r) => {
        const expected = referenceLastLogits(erfCheckpoint, [...FIRST_STEP[r], ...tokens]);
        expect(maxAbsDifference(row(second.logits, r), expected)).toBeLessThan(TOLERANCE);
      });
    },
    MODEL_TEST_TIMEOUT_MS,
  );
});
