import { status } from '@grpc/grpc-js';
import { type Histogram, Registry } from 'prom-client';
import { CoordinatorMetrics } from '../../services/coordinator/coordinator-metrics';
import { ReplicaHealth } from '../../services/coordinator/replica-health';
import { Scheduler, type SchedulerOptions } from '../../services/coordinator/scheduler';
import type { FinishReason, Sequence, SequenceObserver } from '../../services/coordinator/sequence';
import { DEFAULT_GENERATION_CONFIG } from '../../shared/generation-config';
import type { ServiceError } from '../../shared/errors';
import { readManifest } from '../../shared/model/manifest';
import { InProcessNodes, TEST_LOGGER } from '../support/in-process-nodes';
import { naiveGreedy } from '../support/naive-gpt2';
import { tinyCheckpoint, tinyModel } from '../support/test-models';

const TEST_TIMEOUT_MS = 180_000;
const WAIT_MS = 30_000;
const PROMPTS = [
  [464, 2068, 7586, 21831, 18045],
  [15496, 11, 616, 1438, 318],
  [7, 50256, 3, 999, 12345, 42],
  [40, 1101, 257],
];

interface Outcome {
  readonly tokens: number[];
  finish?: FinishReason;
  error?: ServiceError;
}

function collect(onToken?: (index: number) => void): { observer: SequenceObserver; outcome: Outcome; done: Promise<Outcome> } {
  const outcome: Outcome = { tokens: [] };
  let resolve: (o: Outcome) => void = () => undefined;
  const done = new Promise<Outcome>((r) => (resolve = r));
  return {
    outcome,
    done,
    observer: {
      onToken: (index, token) => {
        outcome.tokens.push(token.tokenId);
        onToken?.(index);
      },
      onFinish: (reason) => {
        outcome.finish = reason;
        resolve(outcome);
      },
      onError: (error) => {
        outcome.error = error;
        resolve(outcome);
      },
    },
  };
}

async function until(condition: () => boolean, what: string): Promise<void> {
  const end = Date.now() + WAIT_MS;
  while (!condition()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('Scheduler on in-process nodes', () => {
  let nodes: InProcessNodes;
  let health: ReplicaHealth;
  let scheduler: Scheduler;
  let options: SchedulerOptions;
  let modelDir: string;
  let metrics: CoordinatorMetrics;
  const counter = async (name: 'stageReplays' | 'failovers'): Promise<number> => (await metrics[name].get()).values[0]?.value ?? 0;

  const submit = (prompt: number[], maxNewTokens: number, observer: SequenceObserver): Sequence =>
    scheduler.submit(
      {
        requestId: `req-${prompt[0]}`,
        promptIds: prompt,
        sampling: { ...DEFAULT_GENERATION_CONFIG, maxNewTokens, stop: [], topLogprobs: 0, ignoreEos: false },
        deadlineUnixMs: Date.now() + 120_000,
        priority: 'interactive',
      },
      observer,
    );

  beforeAll(async () => {
    modelDir = await tinyModel({ stages: 2 });
    nodes = await InProcessNodes.start(modelDir, 2, { replicas: [1, 2] });
    health = new ReplicaHealth(nodes.directory, { breakerFailureThreshold: 3, breakerOpenMs: 2_000, breakerSuccessThreshold: 2, healthIntervalMs: 200, healthTimeoutMs: 1_000, healthFailuresToDown: 2 }, TEST_LOGGER, (state) => {
      if (!state.serving && state.checked) scheduler?.replicaLost(state.replica.id, { code: status.UNAVAILABLE, message: state.detail } as ServiceError);
    });
    health.start();
    options = {
      stages: 2,
      lanesPerRoute: 2,
      step: { maxRows: 8, maxTokens: 64 },
      maxQueuedRequests: 4,
      maxRunningSequences: 4,
      stepTimeoutMaxMs: 3_000,
      openTimeoutMs: 2_000,
      releaseTimeoutMs: 2_000,
      recoveryWindowMs: 2_500,
    };
    metrics = new CoordinatorMetrics(new Registry());
    scheduler = new Scheduler((await readManifest(modelDir)).shape, nodes.directory, health, 'test-coordinator', options, metrics, TEST_LOGGER);
    await health.checkAll();
  }, TEST_TIMEOUT_MS);

  afterAll(async () => {
    scheduler?.close();
    health?.stop();
    await nodes?.stop();
  });

  const kvHeld = (): number[] => nodes.nodes.map((n) => n.runtime.kvStats().sequences);

  test(
    'sequences step together, and one joining mid-batch leaves the tokens of the others unchanged (each equals its naive greedy run)',
    async () => {
      const expected = PROMPTS.map((p) => naiveGreedy(tinyCheckpoint(), p, 20));
      let joined = false;
      const late = collect();
      const first = collect((index) => {
        if (index === 6 && !joined) {
          joined = true;
          submit(PROMPTS[2], 20, late.observer);
        }
      });
      const second = collect();
      submit(PROMPTS[0], 20, first.observer);
      submit(PROMPTS[1], 20, second.observer);
      const [a, b, c] = await Promise.all([first.done, second.done, late.done]);
      expect([a.error, b.error, c.error]).toEqual([undefined, undefined, undefined]);
      expect(a.tokens).toEqual(expected[0]);
      expect(b.tokens).toEqual(expected[1]);
      expect(c.tokens).toEqual(expected[2]);
      await until(() => kvHeld().every((n) => n === 0), 'every stage to release');
    },
    TEST_TIMEOUT_MS,
  );

  test(
    "a token reaches its observer after the sequence's next step went out (text is streamed while the pipeline computes), outside the callback that sent it; a stop from the observer still ends it with its tokens so far",
    async () => {
      const expected = naiveGreedy(tinyCheckpoint(), PROMPTS[3], 8);
      const inFlightAtToken: boolean[] = [];
      const insideResultAtToken: boolean[] = [];
      // Node sends what a callback wrote only once the callback returns: an observer called from
      // inside the result's callback would hold the next step back for as long as it runs.
      let insideResult = false;
      const onStepDone = scheduler.onStepDone.bind(scheduler);
      const spy = jest.spyOn(scheduler, 'onStepDone').mockImplementation((step, result) => {
        insideResult = true;
        try {
          onStepDone(step, result);
        } finally {
          insideResult = false;
        }
      });
      let sequence: Sequence | undefined;
      const run = collect((index) => {
        inFlightAtToken.push(index < 7 && sequence?.inFlight === true);
        insideResultAtToken.push(insideResult);
      });
      sequence = submit(PROMPTS[3], 8, run.observer);
      const outcome = await run.done;
      spy.mockRestore();
      expect(outcome.tokens).toEqual(expected);
      expect(outcome.finish).toBe('length');
      // Every token but the last finds the next step already on its way.
      expect(inFlightAtToken).toEqual([true, true, true, true, true, true, true, false]);
      expect(insideResultAtToken).toEqual(new Array(8).fill(false));

      // Stopped by its observer at the third token (as a stop string does): the step already sent is dropped.
      let stopping: Sequence | undefined;
      const stopped = collect((index) => {
        if (index === 2 && stopping !== undefined) scheduler.stop(stopping, 'stop');
      });
      stopping = submit(PROMPTS[3], 8, stopped.observer);
      const early = await stopped.done;
      expect(early.finish).toBe('stop');
      expect(early.tokens).toEqual(expected.slice(0, 3));
      await until(() => kvHeld().every((n) => n === 0), 'every stage to release');
    },
    TEST_TIMEOUT_MS,
  );

  test(
    'queue wait and prompt length are observed when a request is admitted, generation length when it finishes; a refused request counts in neither',
    async () => {
      // One running sequence and one queue place: A runs, B waits for A, C is refused.
      const metrics = new CoordinatorMetrics(new Registry());
      const oneAtATime = new Scheduler((await readManifest(modelDir)).shape, nodes.directory, health, 'test-coordinator-metrics', { ...options, maxRunningSequences: 1, maxQueuedRequests: 1 }, metrics, TEST_LOGGER);
      const stats = async (histogram: Histogram): Promise<{ count: number; sum: number }> => {
        const values = (await histogram.get()).values;
        const value = (suffix: string): number => values.find((v) => v.metricName?.endsWith(suffix))?.value ?? Number.NaN;
        return { count: value('_count'), sum: value('_sum') };
      };
      const request = (prompt: number[], maxNewTokens: number) => ({
        requestId: `metrics-${prompt[0]}`,
        promptIds: prompt,
        sampling: { ...DEFAULT_GENERATION_CONFIG, maxNewTokens, stop: [], topLogprobs: 0, ignoreEos: true },
        deadlineUnixMs: Date.now() + 120_000,
        priority: 'interactive' as const,
      });
      try {
        let generationAtFirstFinish: Promise<{ count: number; sum: number }> | undefined;
        let firstFinishedAt = Number.NaN;
        const a = collect();
        const onFinishA = a.observer.onFinish;
        a.observer.onFinish = (reason) => {
          firstFinishedAt = performance.now();
          // Read at once: B cannot finish before a step goes through the pipeline.
          generationAtFirstFinish = stats(metrics.generationLength);
          onFinishA(reason);
        };
        let aFinishedBeforeBsFirstToken: boolean | undefined;
        const b = collect((index) => {
          if (index === 0) aFinishedBeforeBsFirstToken = !Number.isNaN(firstFinishedAt);
        });
        oneAtATime.submit(request(PROMPTS[0], 6), a.observer);
        const bSubmittedAt = performance.now();
        oneAtATime.submit(request(PROMPTS[3], 4), b.observer);
        expect(() => oneAtATime.submit(request(PROMPTS[2], 4), collect().observer)).toThrow(expect.objectContaining({ code: status.RESOURCE_EXHAUSTED }));

        // Only A is admitted yet.
        expect(await stats(metrics.queueWaitSeconds)).toEqual({ count: 1, sum: expect.any(Number) });
        expect(await stats(metrics.promptLength)).toEqual({ count: 1, sum: PROMPTS[0].length });
        expect(await stats(metrics.generationLength)).toEqual({ count: 0, sum: 0 });

        const [doneA, doneB] = await Promise.all([a.done, b.done]);
        expect([doneA.tokens.length, doneB.tokens.length]).toEqual([6, 4]);
        expect(await generationAtFirstFinish).toEqual({ count: 1, sum: 6 });
        expect(await stats(metrics.promptLength)).toEqual({ count: 2, sum: PROMPTS[0].length + PROMPTS[3].length });
        expect(await stats(metrics.generationLength)).toEqual({ count: 2, sum: 6 + 4 });
        const wait = await stats(metrics.queueWaitSeconds);
        expect(wait.count).toBe(2);
        // B waited in the queue until A finished: it saw no token before A's end, and its observed
        // wait spans A's generation (within 10 %: the test reads its clock around the scheduler's
        // calls, not at the same instants, and a loaded CI machine was seen 2 ms apart).
        expect(aFinishedBeforeBsFirstToken).toBe(true);
        expect(wait.sum).toBeGreaterThanOrEqual(0.9 * ((firstFinishedAt - bSubmittedAt) / 1000));
        await until(() => kvHeld().every((n) => n === 0), 'every stage to release');
      } finally {
        oneAtATime.close();
      }
    },
    TEST_TIMEOUT_MS,
  );

  test(
    'cancel mid-generation releases the sequence in every stage that holds it',
    async () => {
      let sequence: Sequence | undefined;
      const run = collect((index) => {
        if (index === 3 && sequence !== undefined) scheduler.cancel(sequence);
      });
      sequence = submit(PROMPTS[3], 100, run.observer);
      await until(() => sequence?.done === true, 'the cancel');
      await until(() => kvHeld().every((n) => n === 0), 'every stage to release');
      expect(run.outcome.finish).toBeUndefined();
    },
    TEST_TIMEOUT_MS,
  );

  test(
    'EOS ends a sequence with finish "stop", unless it asked for ignore_eos: then it runs to max_new_tokens',
    async () => {
      const expected = naiveGreedy(tinyCheckpoint(), PROMPTS[1], 12);
      // A shape whose EOS is the 4th greedy token of this prompt (and no earlier one).
      const eos = expected[3];
      expect(expected.slice(0, 3)).not.toContain(eos);
      const shape = { ...(await readManifest(modelDir)).shape, eosTokenIds: [eos] };
      const eosScheduler = new Scheduler(shape, nodes.directory, health, 'test-coordinator-eos', options, new CoordinatorMetrics(new Registry()), TEST_LOGGER);
      try {
        const run = (ignoreEos: boolean) => {
          const outcome = collect();
          eosScheduler.submit(
            {
              requestId: `eos-${ignoreEos}`,
              promptIds: PROMPTS[1],
              sampling: { ...DEFAULT_GENERATION_CONFIG, maxNewTokens: 12, stop: [], topLogprobs: 0, ignoreEos },
              deadlineUnixMs: Date.now() + 120_000,
              priority: 'interactive',
            },
            outcome.observer,
          );
          return outcome.done;
        };
        const stopped = await run(false);
        expect({ tokens: stopped.tokens, finish: stopped.finish }).toEqual({ tokens: expected.slice(0, 4), finish: 'stop' });
        const ignored = await run(true);
        expect({ tokens: ignored.tokens, finish: ignored.finish }).toEqual({ tokens: expected, finish: 'length' });
        await until(() => kvHeld().every((n) => n === 0), 'every stage to release');
      } finally {
        eosScheduler.close();
      }
    },
    TEST_TIMEOUT_MS,
  );

  test(
    'a replica that dies mid-generation costs no sequence: its sequences are replayed elsewhere and finish with their naive tokens',
    async () => {
      const expected = PROMPTS.map((p) => naiveGreedy(tinyCheckpoint(), p, 40));
      const replaysBefore = await counter('stageReplays');
      let crashed = false;
      const runs = PROMPTS.map((_, i) =>
        collect((index) => {
          if (i === 0 && index === 10 && !crashed) {
            crashed = true;
            void nodes.crash('node2a');
          }
        }),
      );
      PROMPTS.forEach((p, i) => submit(p, 40, runs[i].observer));
      const outcomes = await Promise.all(runs.map((r) => r.done));
      outcomes.forEach((outcome, i) => expect({ i, error: outcome.error?.message, tokens: outcome.tokens }).toEqual({ i, error: undefined, tokens: expected[i] }));
      // node2a's sequences moved by partial replay: node1 kept its KV and refilled node2b from its cached hidden states.
      expect(await counter('stageReplays')).toBeGreaterThan(replaysBefore);
      await until(() => nodes.nodes.filter((n) => n.entry.id !== 'node2a').every((n) => n.runtime.kvStats().sequences === 0), 'the live stages to release');
    },
    TEST_TIMEOUT_MS,
  );

  test(
    'when the replacement dies too, the sequences wait for a replica of the stage to come back and still finish with their naive tokens',
    async () => {
      // node2a is down since the previous test: every sequence runs on node2b.
      await nodes.restart('node2a');
      await until(() => health.serving('node2a'), 'node2a to serve again');
      const expected = PROMPTS.map((p) => naiveGreedy(tinyCheckpoint(), p, 40));
      const failoversBefore = await counter('failovers');
      let crashed = false;
      const runs = PROMPTS.map((_, i) =>
        collect((index) => {
          if (i === 0 && index === 10 && !crashed) {
            crashed = true;
            // Both replicas of the last stage at once: whichever the replay picks first is gone too (a partial replay that
            // falls back, or a full one that waits for a route); node2a is back within the recovery window.
            void nodes.crash('node2b');
            void nodes.crash('node2a');
            setTimeout(() => void nodes.restart('node2a'), 300);
          }
        }),
      );
      PROMPTS.forEach((p, i) => submit(p, 40, runs[i].observer));
      const outcomes = await Promise.all(runs.map((r) => r.done));
      outcomes.forEach((outcome, i) => expect({ i, error: outcome.error?.message, tokens: outcome.tokens }).toEqual({ i, error: undefined, tokens: expected[i] }));
      expect(await counter('failovers')).toBeGreaterThan(failoversBefore);
      await until(() => ['node1', 'node2a'].every((id) => nodes.node(id).runtime.kvStats().sequences === 0), 'the live stages to release');
    },
    TEST_TIMEOUT_MS,
  );

  test('a full queue answers RESOURCE_EXHAUSTED at once, with a retry hint', () => {
    const blockers = Array.from({ length: options.maxQueuedRequests + options.maxRunningSequences }, () => collect());
    let refused: unknown;
    const started = performance.now();
    const submitted: Sequence[] = [];
    try {
      for (const blocker of [...blockers, collect()]) submitted.push(submit(PROMPTS[0], 100, blocker.observer));
    } catch (error) {
      refused = error;
    }
    expect(performance.now() - started).toBeLessThan(50);
    expect((refused as ServiceError).code).toBe(status.RESOURCE_EXHAUSTED);
    expect((refused as ServiceError).retryAfterMs).toBeGreaterThanOrEqual(1_000);
    for (const sequence of submitted) scheduler.cancel(sequence);
  });
});
