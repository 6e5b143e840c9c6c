import * as grpc from '@grpc/grpc-js';
import type { StepFailed__Output } from '../../protos/generated/pipeserve/v1/StepFailed';
import type { StepResult__Output } from '../../protos/generated/pipeserve/v1/StepResult';
import { ServiceError } from '../../shared/errors';
import type { Logger } from '../../shared/logger';
import type { Lane } from './lane';
import type { NodeSessions } from './node-sessions';
import type { PlannedRow } from './step-planner';
import type { StepTimeout } from './step-timeout';

/** A step on its way through the pipeline. */
export interface InFlightStep {
  readonly stepId: number;
  readonly lane: Lane;
  readonly rows: readonly PlannedRow[];
  /** The node-side id each row was sent under: a result is for that incarnation only. */
  readonly nodeSequenceIds: readonly string[];
  readonly tokens: number;
  readonly sentAt: number;
  readonly timer: NodeJS.Timeout;
  /** Fires when the step is overdue (well before its deadline), if steps have been measured. */
  readonly overdueTimer: NodeJS.Timeout | undefined;
}

/** Why a step did not come back: its status, and which replica is to blame if any is known. */
export interface StepFailure {
  readonly error: ServiceError;
  /** The replica that failed or could not be reached ('' when unknown, e.g. a timeout). */
  readonly replicaId: string;
  /** The replica could not be reached (route around it), rather than refusing the step. */
  readonly unreachable: boolean;
}

export interface DispatchListener {
  onStepDone(step: InFlightStep, result: StepResult__Output): void;
  onStepFailed(step: InFlightStep, failure: StepFailure): void;
  /** The step has taken twice what steps of its size take and is still out: is its route alive? */
  onStepOverdue(step: InFlightStep): void;
}

/** A refill of a partial replay: not a lane's step, but its result (empty) or failure arrives the same way. */
interface PendingFill {
  /** The replicas it passes through: losing one fails it. */
  readonly replicas: ReadonlySet<string>;
  readonly resolve: () => void;
  readonly reject: (error: ServiceError) => void;
  readonly timer: NodeJS.Timeout;
}

/** A step is never overdue sooner than this: below it, a busy machine's jitter would trigger checks on every step. */
export const MIN_OVERDUE_MS = 300;

/**
 * Dispatch: sends a planned step into the first stage of its lane's route, and settles it
 * exactly once — with the last stage's result, with a failure any stage reports, with the
 * loss of a replica on its route, or when it outlives its deadline (derived from measured step
 * times, see StepTimeout). Before the deadline, an overdue step is reported to the listener, which
 * may fail it early (a replica of its route no longer answers). Whatever arrives for a step already settled is ignored.
 */
export class Dispatcher {
  private readonly inFlight = new Map<number, InFlightStep>();
  private readonly fills = new Map<number, PendingFill>();
  private nextStepId = 1;

  constructor(
    private readonly sessions: NodeSessions,
    private readonly timeout: StepTimeout,
    private readonly listener: DispatchListener,
    private readonly logger: Logger,
  ) {}

  get inFlightCount(): number {
    return this.inFlight.size;
  }

  send(lane: Lane, rows: readonly PlannedRow[], requestId: string): InFlightStep {
    const stepId = this.nextStepId++;
    const tokens = rows.reduce((n, r) => n + r.count, 0);
    const timeoutMs = this.timeout.timeoutMs(tokens);
    const timer = setTimeout(() => {
      this.settleFailure(stepId, { error: new ServiceError(grpc.status.DEADLINE_EXCEEDED, `step ${stepId} did not come back within ${timeoutMs} ms`), replicaId: '', unreachable: false });
    }, timeoutMs);
    const overdueMs = this.timeout.overdueMs(tokens, MIN_OVERDUE_MS);
    const overdueTimer =
      overdueMs !== undefined && overdueMs < timeoutMs
        ? setTimeout(() => {
            const overdue = this.inFlight.get(stepId);
            if (overdue !== undefined) this.listener.onStepOverdue(overdue);
          }, overdueMs)
        : undefined;
    const incarnations = rows.map((row) => {
      const incarnation = row.sequence.incarnation;
      if (incarnation === undefined) throw new Error(`sequence ${row.sequence.id} has no incarnation`);
      return incarnation;
    });
    const step: InFlightStep = { stepId, lane, rows, nodeSequenceIds: incarnations.map((i) => i.nodeSequenceId), tokens, sentAt: performance.now(), timer, overdueTimer };
    this.inFlight.set(stepId, step);
    for (const row of rows) row.sequence.inFlight = true;
    const first = lane.route[0];
    this.sessions
      .get(first)
      .step({
        step_id: stepId,
        rows: rows.map((row, i) => {
          const incarnation = incarnations[i];
          return {
            sequence_id: incarnation.nodeSequenceId,
            token: incarnation.token,
            past_length: row.start,
            token_ids: row.sequence.historySlice(row.start, row.count),
            sample: row.sample,
            generated_index: row.sequence.generated.length,
          };
        }),
        timeout_ms: timeoutMs,
        request_id: requestId,
      })
      .catch((error: unknown) => this.settleFailure(stepId, { error: ServiceError.from(error), replicaId: first.id, unreachable: true }));
    return step;
  }

  /**
   * A step id for a refill (a partial replay's fill_only step) and the promise of its outcome:
   * resolved by its result, rejected by its failure, by the loss of one of `replicas`, or after
   * its deadline (the measured time of a step of `tokens` new tokens, see StepTimeout).
   */
  expectFill(replicas: readonly string[], tokens: number): { readonly stepId: number; readonly timeoutMs: number; readonly done: Promise<void> } {
    const stepId = this.nextStepId++;
    const timeoutMs = this.timeout.timeoutMs(tokens);
    const done = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => this.settleFill(stepId, new ServiceError(grpc.status.DEADLINE_EXCEEDED, `refill ${stepId} did not come back within ${timeoutMs} ms`)), timeoutMs);
      this.fills.set(stepId, { replicas: new Set(replicas), resolve, reject, timer });
    });
    return { stepId, timeoutMs, done };
  }

  onResult(replicaId: string, result: StepResult__Output): void {
    const step = this.take(result.step_id);
    if (step === undefined) {
      this.settleFill(result.step_id, undefined);
      return;
    }
    if (replicaId !== step.lane.route[step.lane.route.length - 1].id) {
      this.logger.warn('step result from a replica that is not the last of its route', { step_id: result.step_id, from: replicaId });
    }
    this.timeout.observe(step.tokens, performance.now() - step.sentAt);
    this.listener.onStepDone(step, result);
  }

  onFailed(replicaId: string, failed: StepFailed__Output): void {
    this.settleFailure(failed.step_id, {
      error: new ServiceError(failed.code as grpc.status, failed.message),
      replicaId: failed.node_id || replicaId,
      unreachable: failed.unreachable,
    });
  }

  /** A replica is gone: every step routed through it fails now rather than at its deadline. */
  failThrough(replicaId: string, error: ServiceError): void {
    for (const step of [...this.inFlight.values()]) {
      if (step.lane.route.some((r) => r.id === replicaId)) this.settleFailure(step.stepId, { error, replicaId, unreachable: true });
    }
    for (const [stepId, fill] of [...this.fills]) if (fill.replicas.has(replicaId)) this.settleFill(stepId, error);
  }

  failAll(error: ServiceError): void {
    for (const stepId of [...this.inFlight.keys()]) this.settleFailure(stepId, { error, replicaId: '', unreachable: false });
    for (const stepId of [...this.fills.keys()]) this.settleFill(stepId, error);
  }

  private settleFailure(stepId: number, failure: StepFailure): void {
    const step = this.take(stepId);
    if (step !== undefined) this.listener.onStepFailed(step, failure);
    else this.settleFill(stepId, failure.error);
  }

  private settleFill(stepId: number, error: ServiceError | undefined): void {
    const fill = this.fills.get(stepId);
    if (fill === undefined) return;
    this.fills.delete(stepId);
    clearTimeout(fill.timer);
    if (error === undefined) fill.resolve();
    else fill.reject(error);
  }

  private take(stepId: number): InFlightStep | undefined {
    const step = this.inFlight.get(stepId);
    if (step === undefined) return undefined;
    this.inFlight.delete(stepId);
    clearTimeout(step.timer);
    clearTimeout(step.overdueTimer);
    for (const row of step.rows) row.sequence.inFlight = false;
    return step;
  }
}
