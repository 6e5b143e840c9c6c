import { status } from '@grpc/grpc-js';
import { Dispatcher, type DispatchListener, type InFlightStep, type StepFailure } from '../../services/coordinator/dispatcher';
import { Lane } from '../../services/coordinator/lane';
import type { NodeSessions } from '../../services/coordinator/node-sessions';
import { Sequence } from '../../services/coordinator/sequence';
import { StepTimeout } from '../../services/coordinator/step-timeout';
import { DEFAULT_GENERATION_CONFIG } from '../../shared/generation-config';
import type { NodeReplica } from '../../shared/node-directory';
import type { Step } from '../../protos/generated/pipeserve/v1/Step';
import { createLogger } from '../../shared/logger';

const TEST_LOGGER = createLogger('test', 'error');

const ROUTE: NodeReplica[] = [
  { id: 'node1a', stage: 0, address: '127.0.0.1:1' },
  { id: 'node2a', stage: 1, address: '127.0.0.1:2' },
] as NodeReplica[];

class Recorder implements DispatchListener {
  readonly done: number[] = [];
  readonly failed: { stepId: number; failure: StepFailure }[] = [];
  readonly overdue: number[] = [];
  onStepDone(step: InFlightStep): void {
    this.done.push(step.stepId);
  }
  onStepFailed(step: InFlightStep, failure: StepFailure): void {
    this.failed.push({ stepId: step.stepId, failure });
  }
  onStepOverdue(step: InFlightStep): void {
    this.overdue.push(step.stepId);
  }
}

/** `measuredStepMs`: what recent steps of 3 new tokens (the size these tests send) took. */
function setUp(measuredStepMs: number | undefined): { dispatcher: Dispatcher; listener: Recorder; sent: Step[]; lane: Lane; sequence: Sequence } {
  const sent: Step[] = [];
  const sessions = { get: () => ({ step: (step: Step) => (sent.push(step), Promise.resolve()) }) } as unknown as NodeSessions;
  const timeout = new StepTimeout(2_000, 1_000);
  if (measuredStepMs !== undefined) for (let i = 0; i < 20; i++) timeout.observe(3, measuredStepMs);
  const listener = new Recorder();
  const dispatcher = new Dispatcher(sessions, timeout, listener, TEST_LOGGER);
  const sequence = new Sequence(
    { requestId: 'r1', promptIds: [1, 2, 3], sampling: { ...DEFAULT_GENERATION_CONFIG, maxNewTokens: 4, stop: [], topLogprobs: 0, ignoreEos: true }, deadlineUnixMs: Date.now() + 60_000, priority: 'interactive' },
    { onToken: () => undefined, onFinish: () => undefined, onError: () => undefined },
  );
  sequence.newIncarnation(ROUTE);
  return { dispatcher, listener, sent, lane: new Lane(ROUTE, 'route', 0), sequence };
}

describe('Dispatcher', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  test('a step still out at twice the measured step time is reported overdue once, then fails at its deadline', () => {
    const { dispatcher, listener, sent, lane, sequence } = setUp(200);
    const step = dispatcher.send(lane, [{ sequence, start: 0, count: 3, sample: true }], 'r1');
    expect(sent).toHaveLength(1);
    expect(sent[0].timeout_ms).toBe(1_000);
    expect(sequence.inFlight).toBe(true);
    jest.advanceTimersByTime(399);
    expect(listener.overdue).toEqual([]);
    jest.advanceTimersByTime(1);
    expect(listener.overdue).toEqual([step.stepId]);
    jest.advanceTimersByTime(599);
    expect(listener.failed).toEqual([]);
    jest.advanceTimersByTime(1);
    expect(listener.failed).toEqual([{ stepId: step.stepId, failure: expect.objectContaining({ replicaId: '', unreachable: false }) }]);
    expect(listener.failed[0].failure.error.code).toBe(status.DEADLINE_EXCEEDED);
    expect(listener.overdue).toEqual([step.stepId]);
    expect(sequence.inFlight).toBe(false);
  });

  test('a step that comes back in time is never overdue; a result after the step settled is ignored', () => {
    const { dispatcher, listener, lane, sequence } = setUp(200);
    const step = dispatcher.send(lane, [{ sequence, start: 0, count: 3, sample: true }], 'r1');
    jest.advanceTimersByTime(150);
    dispatcher.onResult('node2a', { step_id: step.stepId, tokens: [], timings: [] });
    jest.advanceTimersByTime(5_000);
    expect(listener.done).toEqual([step.stepId]);
    expect(listener.overdue).toEqual([]);
    expect(listener.failed).toEqual([]);
    dispatcher.onResult('node2a', { step_id: step.stepId, tokens: [], timings: [] });
    expect(listener.done).toEqual([step.stepId]);
  });

  test('before any step was measured there is no overdue check, only the maximum deadline; a lost replica fails its steps at once', () => {
    const { dispatcher, listener, sent, lane, sequence } = setUp(undefined);
    const step = dispatcher.send(lane, [{ sequence, start: 0, count: 3, sample: true }], 'r1');
    expect(sent[0].timeout_ms).toBe(2_000);
    jest.advanceTimersByTime(1_999);
    expect(listener.overdue).toEqual([]);
    dispatcher.failThrough('node2a', Object.assign(new Error('gone'), { code: status.UNAVAILABLE }) as never);
    expect(listener.failed.map((f) => [f.stepId, f.failure.replicaId, f.failure.unreachable])).toEqual([[step.stepId, 'node2a', true]]);
    jest.advanceTimersByTime(5_000);
    expect(listener.failed).toHaveLength(1);
  });
});
