import { cp, mkdtemp, open, rm } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { status } from '@grpc/grpc-js';
import { InProcessPipeline } from '../../services/node/in-process-pipeline';
import { StageRuntime, type StepRow } from '../../services/node/stage-runtime';
import { ServiceError } from '../../shared/errors';
import { naiveGpt2Logits } from '../support/naive-gpt2';
import { tinyCheckpoint, tinyModel } from '../support/test-models';

const MODEL_TEST_TIMEOUT_MS = 300_000;
/** ONNX against ONNX (same float32 arithmetic, different cuts, batching or caching). */
const TOLERANCE = 1e-4;
/**
 * ONNX (float32) against the naive pass (float64 accumulation): with logits of magnitude ~30,
 * float32 rounding alone reaches ~1e-4, so the check is |a - b| <= 1e-4 + 1e-5·|b| (allclose).
 */
const NAIVE_ABSOLUTE_TOLERANCE = 1e-4;
const NAIVE_RELATIVE_TOLERANCE = 1e-5;
const VOCAB = 50257;
const ROOMY_BUDGET_BYTES = 64 << 20;

/** Reproducible token ids (mulberry32), independent of the code under test. */
function randomIds(seed: number, count: number): number[] {
  let state = seed >>> 0;
  return Array.from({ length: count }, () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) % VOCAB) as number;
  });
}

function rowOf(logits: Float32Array, row: number): Float32Array {
  return logits.subarray(row * VOCAB, (row + 1) * VOCAB);
}

function maxAbsDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
  return max;
}

/** Last-position logits of the naive float64 TypeScript forward pass. */
function naiveLast(ids: readonly number[]): Float32Array {
  const all = naiveGpt2Logits(tinyCheckpoint(), ids);
  return all[all.length - 1];
}

/** The largest |a - b| beyond what allclose(atol, rtol) allows; <= 0 when every element is close. */
function excessOverNaive(actual: ArrayLike<number>, naive: ArrayLike<number>): number {
  expect(actual.length).toBe(naive.length);
  let worst = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < actual.length; i++) {
    const allowed = NAIVE_ABSOLUTE_TOLERANCE + NAIVE_RELATIVE_TOLERANCE * Math.abs(naive[i]);
    worst = Math.max(worst, Math.abs(actual[i] - naive[i]) - allowed);
  }
  return worst;
}

async function expectServiceError(promise: Promise<unknown>, code: status, message: RegExp): Promise<void> {
  let caught: unknown;
  try {
    await promise;
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(ServiceError);
  expect(status[(caught as ServiceError).code]).toBe(status[code]);
  expect((caught as ServiceError).message).toMatch(message);
}

describe('stage runtime on the tiny model', () => {
  let oneStage: InProcessPipeline;
  let threeStages: InProcessPipeline;

  beforeAll(async () => {
    oneStage = await InProcessPipeline.load(await tinyModel({ stages: 1 }), { kvBudgetBytes: ROOMY_BUDGET_BYTES });
    threeStages = await InProcessPipeline.load(await tinyModel({ stages: 3 }), { kvBudgetBytes: ROOMY_BUDGET_BYTES });
  }, MODEL_TEST_TIMEOUT_MS);

  afterAll(async () => {
    await oneStage?.close();
    await threeStages?.close();
  });

  test(
    '3-stage last-token logits equal the 1-stage compile within 1e-4 for random prompts and a padded batch of different lengths, and both equal the naive TypeScript forward pass (tiny)',
    async () => {
      const prompts = [randomIds(1, 9), randomIds(2, 1), randomIds(3, 17), randomIds(4, 4)];
      const batchRows = (tag: string): StepRow[] => prompts.map((ids, i) => ({ sequenceId: `${tag}-${i}`, pastLength: 0, tokenIds: ids }));
      const batchOne = await oneStage.forward(batchRows('batch1'));
      const batchThree = await threeStages.forward(batchRows('batch3'));
      for (const [i, ids] of prompts.entries()) {
        const alone = await threeStages.forward([{ sequenceId: `alone-${i}`, pastLength: 0, tokenIds: ids }]);
        const naive = naiveLast(ids);
        expect(maxAbsDifference(rowOf(batchThree, i), rowOf(batchOne, i))).toBeLessThan(TOLERANCE);
        expect(maxAbsDifference(alone, rowOf(batchOne, i))).toBeLessThan(TOLERANCE);
        expect(excessOverNaive(rowOf(batchOne, i), naive)).toBeLessThanOrEqual(0);
        expect(excessOverNaive(rowOf(batchThree, i), naive)).toBeLessThanOrEqual(0);
        oneStage.release(`batch1-${i}`);
        threeStages.release(`batch3-${i}`);
        threeStages.release(`alone-${i}`);
      }
    },
    MODEL_TEST_TIMEOUT_MS,
  );

  test(
    "the last stage's argmax is each row's largest logit in the step's row order, also when prompt and decode rows run separately",
    async () => {
      const first = (logits: Float32Array): number => logits.indexOf(Math.max(...logits));
      // One decode row between two prompt rows: the runtime runs the prompts and the decode row apart and puts them back in step order.
      await threeStages.forward([{ sequenceId: 'argmax-b', pastLength: 0, tokenIds: randomIds(31, 5) }]);
      const rows: StepRow[] = [
        { sequenceId: 'argmax-a', pastLength: 0, tokenIds: randomIds(30, 7) },
        { sequenceId: 'argmax-b', pastLength: 5, tokenIds: randomIds(32, 1) },
        { sequenceId: 'argmax-c', pastLength: 0, tokenIds: randomIds(33, 3) },
      ];
      const output = await threeStages.forwardWithLogsumexp(rows);
      const logits = output.logits as Float32Array;
      expect(output.argmax).toBeInstanceOf(Int32Array);
      const picks = Array.from(output.argmax as Int32Array);
      expect(picks).toEqual(rows.map((_, i) => first(rowOf(logits, i))));
      // Different prompts, different picks: the check is not passing on a constant.
      expect(new Set(picks).size).toBeGreaterThan(1);
      for (const id of ['argmax-a', 'argmax-b', 'argmax-c']) threeStages.release(id);
    },
    MODEL_TEST_TIMEOUT_MS,
  );

  test(
    'KV-cache decoding equals full recomputation without cache (logits within 1e-4) at every step',
    async () => {
      const ids = randomIds(10, 6);
      let logits = await threeStages.forward([{ sequenceId: 'cached', pastLength: 0, tokenIds: ids }]);
      for (let step = 0; step < 12; step++) {
        // Each step recomputes the whole sequence from scratch under a fresh id: no cache at all.
        const recomputed = await threeStages.forward([{ sequenceId: `full-${step}`, pastLength: 0, tokenIds: ids }]);
        threeStages.release(`full-${step}`);
        expect(maxAbsDifference(logits, recomputed)).toBeLessThan(TOLERANCE);
        expect(excessOverNaive(logits, naiveLast(ids))).toBeLessThanOrEqual(0);
        // Feed a token that is not the argmax, so the check does not depend on greedy behaviour.
        const next = randomIds(100 + step, 1)[0];
        logits = await threeStages.forward([{ sequenceId: 'cached', pastLength: ids.length, tokenIds: [next] }]);
        ids.push(next);
      }
      threeStages.release('cached');
    },
    MODEL_TEST_TIMEOUT_MS,
  );

  test(
    'a batch whose rows have different past lengths gives each row what it gets alone',
    async () => {
      const histories = { a: randomIds(20, 7), b: randomIds(21, 2) };
      const additions = { a: randomIds(22, 1), b: randomIds(23, 4), c: randomIds(24, 5) };
      // Prefill a and b separately, then one step mixing a decode, a multi-token extension and a new sequence.
      await threeStages.forward([{ sequenceId: 'mix-a', pastLength: 0, tokenIds: histories.a }]);
      await threeStages.forward([{ sequenceId: 'mix-b', pastLength: 0, tokenIds: histories.b }]);
      const mixed = await threeStages.forward([
        { sequenceId: 'mix-a', pastLength: 7, tokenIds: additions.a },
        { sequenceId: 'mix-b', pastLength: 2, tokenIds: additions.b },
        { sequenceId: 'mix-c', pastLength: 0, tokenIds: additions.c },
      ]);

      await threeStages.forward([{ sequenceId: 'solo-a', pastLength: 0, tokenIds: histories.a }]);
      const soloA = await threeStages.forward([{ sequenceId: 'solo-a', pastLength: 7, tokenIds: additions.a }]);
      await threeStages.forward([{ sequenceId: 'solo-b', pastLength: 0, tokenIds: histories.b }]);
      const soloB = await threeStages.forward([{ sequenceId: 'solo-b', pastLength: 2, tokenIds: additions.b }]);
      const soloC = await threeStages.forward([{ sequenceId: 'solo-c', pastLength: 0, tokenIds: additions.c }]);

      expect(maxAbsDifference(rowOf(mixed, 0), soloA)).toBeLessThan(TOLERANCE);
      expect(maxAbsDifference(rowOf(mixed, 1), soloB)).toBeLessThan(TOLERANCE);
      expect(maxAbsDifference(rowOf(mixed, 2), soloC)).toBeLessThan(TOLERANCE);
      expect(excessOverNaive(rowOf(mixed, 1), naiveLast([...histories.b, ...additions.b]))).toBeLessThanOrEqual(0);

      // The cache kept exactly the real tokens: a further decode of every row still matches naive.
      const next = await threeStages.forward([
        { sequenceId: 'mix-a', pastLength: 8, tokenIds: [11] },
        { sequenceId: 'mix-b', pastLength: 6, tokenIds: [12] },
        { sequenceId: 'mix-c', pastLength: 5, tokenIds: [13] },
      ]);
      expect(excessOverNaive(rowOf(next, 0), naiveLast([...histories.a, ...additions.a, 11]))).toBeLessThanOrEqual(0);
      expect(excessOverNaive(rowOf(next, 1), naiveLast([...histories.b, ...additions.b, 12]))).toBeLessThanOrEqual(0);
      expect(excessOverNaive(rowOf(next, 2), naiveLast([...additions.c, 13]))).toBeLessThanOrEqual(0);
      for (const id of ['mix-a', 'mix-b', 'mix-c', 'solo-a', 'solo-b', 'solo-c']) threeStages.release(id);
    },
    MODEL_TEST_TIMEOUT_MS,
  );

  test(
    'a batch that decodes step after step, gains a sequence, loses one and reorders still gives each row its naive logits',
    async () => {
      // A stable batch is fed from its group of the cache in place; every change of membership
      // or order rearranges the groups. Each phase is checked against naive.
      const ids: Record<string, number[]> = { p: randomIds(30, 5), q: randomIds(31, 5), r: randomIds(32, 3) };
      const step = async (names: string[], fresh: string[] = []): Promise<void> => {
        const rows = names.map((name) => {
          const isNew = fresh.includes(name);
          const tokenIds = isNew ? ids[name] : [randomIds(ids[name].length * 7 + name.charCodeAt(0), 1)[0]];
          const pastLength = isNew ? 0 : ids[name].length;
          if (!isNew) ids[name].push(tokenIds[0]);
          return { sequenceId: `stable-${name}`, pastLength, tokenIds };
        });
        const logits = await threeStages.forward(rows);
        names.forEach((name, row) => expect(excessOverNaive(rowOf(logits, row), naiveLast(ids[name]))).toBeLessThanOrEqual(0));
      };
      await step(['p', 'q'], ['p', 'q']); // prefill, both 5 tokens, into one group
      for (let i = 0; i < 3; i++) await step(['p', 'q']); // decode steps fed in place
      await step(['p', 'q', 'r'], ['r']); // r's 3-token prompt runs apart from the decode rows
      await step(['p', 'q', 'r']);
      await step(['p', 'q', 'r']);
      threeStages.release('stable-q'); // q leaves: the group is compacted
      await step(['p', 'r']);
      await step(['r', 'p']); // same members, other order
      await step(['r', 'p']);
      for (const name of ['p', 'r']) threeStages.release(`stable-${name}`);
    },
    MODEL_TEST_TIMEOUT_MS,
  );
});

describe('stage runtime checks', () => {
  let modelDir: string;
  let first: StageRuntime;
  let middle: StageRuntime;

  beforeAll(async () => {
    modelDir = await tinyModel({ stages: 3 });
    first = await StageRuntime.load(modelDir, 0, { kvBudgetBytes: ROOMY_BUDGET_BYTES });
    middle = await StageRuntime.load(modelDir, 1, { kvBudgetBytes: ROOMY_BUDGET_BYTES });
  }, MODEL_TEST_TIMEOUT_MS);

  afterAll(async () => {
    await first?.close();
    await middle?.close();
  });

  test('a release issued while a step of the sequence is queued waits for that step', async () => {
    await first.step({ rows: [{ sequenceId: 'ordered', pastLength: 0, tokenIds: randomIds(40, 4) }] });
    const decoding = first.step({ rows: [{ sequenceId: 'ordered', pastLength: 4, tokenIds: [7] }] });
    const released = first.releaseInOrder('ordered');
    await expect(decoding).resolves.toHaveProperty('hiddenStates');
    await expect(released).resolves.toBe(true);
    expect(first.cachedLength('ordered')).toBe(0);
  });

  test('a sequence reserves its whole KV room at admission: a full budget refuses a newcomer, never a running sequence', async () => {
    // Stage 0 of 3 holds 2 layers: 1 KiB of KV per token, and the 64 floats it passes on (kept for a
    // partial replay of stage 1): 1280 bytes per reserved position. 40 of them fit one sequence reserving 36.
    const perPosition = 1024 + 64 * 4;
    const tight = await StageRuntime.load(modelDir, 0, { kvBudgetBytes: 40 * perPosition });
    try {
      await tight.step({ rows: [{ sequenceId: 'runner', pastLength: 0, tokenIds: randomIds(41, 4), reserveTokens: 36 }] });
      expect(tight.kvStats()).toMatchObject({ bytesPerToken: 1024, reservedBytesPerToken: perPosition, reservedBytes: 36 * perPosition });
      await expectServiceError(
        tight.step({ rows: [{ sequenceId: 'newcomer', pastLength: 0, tokenIds: randomIds(42, 2), reserveTokens: 8 }] }),
        status.RESOURCE_EXHAUSTED,
        /KV cache budget exhausted/,
      );
      for (let length = 4; length < 36; length++) {
        await tight.step({ rows: [{ sequenceId: 'runner', pastLength: length, tokenIds: [length] }] });
      }
      expect(tight.cachedLength('runner')).toBe(36);
      expect(tight.kvStats().reservedBytes).toBe(36 * perPosition);
    } finally {
      await tight.close();
    }
  });

  test('a pastLength that disagrees with the cache is FAILED_PRECONDITION naming the sequence', async () => {
    await first.step({ rows: [{ sequenceId: 'known', pastLength: 0, tokenIds: [1, 2, 3] }] });
    await expectServiceError(
      first.step({ rows: [{ sequenceId: 'known', pastLength: 2, tokenIds: [4] }] }),
      status.FAILED_PRECONDITION,
      /sequence known: stage 0 holds 3 cached tokens, the step says pastLength 2/,
    );
    await expectServiceError(
      first.step({ rows: [{ sequenceId: 'never-seen', pastLength: 5, tokenIds: [4] }] }),
      status.FAILED_PRECONDITION,
      /sequence never-seen: stage 0 holds 0 cached tokens/,
    );
    expect(first.cachedLength('known')).toBe(3);
    expect(first.release('known')).toBe(true);
  });

  test('out-of-range token ids and positions are INVALID_ARGUMENT naming the field', async () => {
    await expectServiceError(
      first.step({ rows: [{ sequenceId: 'x', pastLength: 0, tokenIds: [5, VOCAB] }] }),
      status.INVALID_ARGUMENT,
      /^rows\[0\]\.tokenIds\[1\]: 50257 is not a token id/,
    );
    await expectServiceError(
      first.step({ rows: [{ sequenceId: 'x', pastLength: 0, tokenIds: new Array(257).fill(1) }] }),
      status.INVALID_ARGUMENT,
      /^rows\[0\]\.tokenIds: positions 0…256 exceed the model's 256 positions/,
    );
    await expectServiceError(
      first.step({ rows: [{ sequenceId: 'x', pastLength: 0, tokenIds: [] }] }),
      status.INVALID_ARGUMENT,
      /^rows\[0\]\.tokenIds: a row needs at least one new token/,
    );
    await expectServiceError(
      first.step({
        rows: [
          { sequenceId: 'x', pastLength: 0, tokenIds: [1] },
          { sequenceId: 'x', pastLength: 0, tokenIds: [2] },
        ],
      }),
      status.INVALID_ARGUMENT,
      /^rows\[1\]\.sequenceId: x appears twice/,
    );
    expect(first.kvStats().sequences).toBe(0);
  });

  test('hidden states are required by a middle stage and must hold Σ tokens × E floats', async () => {
    await expectServiceError(
      middle.step({ rows: [{ sequenceId: 'h', pastLength: 0, tokenIds: [1, 2] }] }),
      status.INVALID_ARGUMENT,
      /^hiddenStates: stage 1 is not the first/,
    );
    await expectServiceError(
      middle.step({ rows: [{ sequenceId: 'h', pastLength: 0, tokenIds: [1, 2] }], hiddenStates: new Float32Array(64) }),
      status.INVALID_ARGUMENT,
      /^hiddenStates: expected 2 tokens × 64 = 128 floats, got 64/,
    );
    await expectServiceError(
      first.step({ rows: [{ sequenceId: 'h', pastLength: 0, tokenIds: [1] }], hiddenStates: new Float32Array(64) }),
      status.INVALID_ARGUMENT,
      /^hiddenStates: the first stage/,
    );
  });

  test('a middle stage returns packed hidden states, one E-wide vector per real token', async () => {
    const rows: StepRow[] = [
      { sequenceId: 'p1', pastLength: 0, tokenIds: [1, 2, 3] },
      { sequenceId: 'p2', pastLength: 0, tokenIds: [4] },
    ];
    const fromFirst = await first.step({ rows });
    expect(fromFirst.logits).toBeUndefined();
    expect(fromFirst.hiddenStates?.length).toBe(4 * 64);
    // Row p2 alone must give the same vector as its packed slot (the last one).
    const alone = await first.step({ rows: [{ sequenceId: 'p3', pastLength: 0, tokenIds: [4] }] });
    expect(maxAbsDifference((fromFirst.hiddenStates as Float32Array).subarray(3 * 64), alone.hiddenStates as Float32Array)).toBeLessThan(
      TOLERANCE,
    );
    const fromMiddle = await middle.step({ rows, hiddenStates: fromFirst.hiddenStates });
    expect(fromMiddle.hiddenStates?.length).toBe(4 * 64);
    for (const id of ['p1', 'p2', 'p3']) first.release(id);
    for (const id of ['p1', 'p2']) middle.release(id);
  });

  test(
    'a step past the KV budget is RESOURCE_EXHAUSTED and admits nothing, while admitted sequences keep working',
    async () => {
      // Stage 0 holds 2 layers: one token costs 2 layers × (key + value) × 64 floats × 4 bytes = 1 KiB.
      const tight = await StageRuntime.load(modelDir, 0, { kvBudgetBytes: 20 * 1024 });
      try {
        await tight.step({ rows: [{ sequenceId: 'fits', pastLength: 0, tokenIds: randomIds(30, 12) }] });
        await expectServiceError(
          tight.step({ rows: [{ sequenceId: 'too-many', pastLength: 0, tokenIds: randomIds(31, 10) }] }),
          status.RESOURCE_EXHAUSTED,
          /KV cache budget exhausted/,
        );
        expect(tight.kvStats().sequences).toBe(1);
        await tight.step({ rows: [{ sequenceId: 'fits', pastLength: 12, tokenIds: [7] }] });
        expect(tight.cachedLength('fits')).toBe(13);
        expect(tight.kvStats().reservedBytes).toBeLessThanOrEqual(20 * 1024);
        tight.release('fits');
        expect(tight.kvStats()).toMatchObject({ bytes: 0, reservedBytes: 0, sequences: 0 });
      } finally {
        await tight.close();
      }
    },
    MODEL_TEST_TIMEOUT_MS,
  );

  test(
    'loading a stage whose weights do not match the manifest sha256 fails naming the file',
    async () => {
      const copy = await mkdtemp(path.join(os.tmpdir(), 'stage-runtime-tampered-'));
      try {
        await cp(modelDir, copy, { recursive: true });
        const dataFile = path.join(copy, 'stage-1.onnx.data');
        const handle = await open(dataFile, 'r+');
        await handle.write(Buffer.from([0x42, 0x42, 0x42, 0x42]), 0, 4, 128);
        await handle.close();
        await expect(StageRuntime.load(copy, 1, { kvBudgetBytes: ROOMY_BUDGET_BYTES })).rejects.toThrow(/stage-1\.onnx\.data.*sha256/);
        await expect(StageRuntime.load(copy, 3, { kvBudgetBytes: ROOMY_BUDGET_BYTES })).rejects.toThrow(/stage: .* has stages 0…2, not 3/);
      } finally {
        await rm(copy, { recursive: true, force: true });
      }
    },
    MODEL_TEST_TIMEOUT_MS,
  );
});
