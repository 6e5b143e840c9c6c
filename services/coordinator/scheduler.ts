import * as grpc from '@grpc/grpc-js';
import type { SamplingParameters } from '../../protos/generated/pipeserve/v1/SamplingParameters';
import type { StepResult__Output } from '../../protos/generated/pipeserve/v1/StepResult';
import { ServiceError } from '../../shared/errors';
import type { SampledToken } from '../node/sampling/sampler';
import type { Logger } from '../../shared/logger';
import { isEos, type ModelShape } from '../../shared/model/model-shape';
import type { NodeDirectory, NodeReplica } from '../../shared/node-directory';
import { AdmissionQueue } from './admission-queue';
import type { CoordinatorMetrics } from './coordinator-metrics';
import { Dispatcher, type DispatchListener, type InFlightStep, type StepFailure } from './dispatcher';
import { Lane, routeKeyOf } from './lane';
import { NodeSessions } from './node-sessions';
import type { ReplicaHealth } from './replica-health';
import { Router } from './router';
import { Sequence, type FinishReason, type Incarnation, type SequenceObserver, type SequenceRequest } from './sequence';
import { planLaneStep, type StepLimits } from './step-planner';
import { StepTimeout } from './step-timeout';

/** A token recorded by accept(), for its observer once the next step is on its way. */
interface Accepted {
  readonly sequence: Sequence;
  readonly token: SampledToken;
  readonly index: number;
  readonly reason: FinishReason | undefined;
}

export interface SchedulerOptions {
  readonly stages: number;
  /** Micro-batches per route (lanes); one per stage keeps every stage busy. */
  readonly lanesPerRoute: number;
  readonly step: StepLimits;
  readonly maxQueuedRequests: number;
  readonly maxRunningSequences: number;
  /** Upper bound of a step's deadline (the measured step time usually sets it lower). */
  readonly stepTimeoutMaxMs: number;
  readonly openTimeoutMs: number;
  readonly releaseTimeoutMs: number;
  /** How long a sequence may go without any usable route before it fails (UNAVAILABLE). */
  readonly recoveryWindowMs: number;
}

/** The shortest step deadline: below this, a busy machine's jitter would look like a hang. */
const MIN_STEP_TIMEOUT_MS = 1_000;
/** The shortest open deadline of a sequence in recovery: a healthy replica answers an open well within it. */
const MIN_RECOVERY_OPEN_MS = 250;
/** A replica that takes longer than this to answer a health check while a step through it is overdue is down. */
const OVERDUE_PROBE_TIMEOUT_MS = 300;
/** How often a sequence without a usable route looks for one again. */
const ROUTE_RETRY_MS = 100;
/** Admissions wait this long after a replica refused a sequence for lack of KV memory. */
const KV_FULL_PAUSE_MS = 250;
/** Statuses after which a replay cannot help: the request itself is wrong. */
const NOT_RETRYABLE = new Set([grpc.status.INVALID_ARGUMENT, grpc.status.OUT_OF_RANGE, grpc.status.PERMISSION_DENIED, grpc.status.UNAUTHENTICATED]);

/**
 * Continuous batching over the pipeline, in four parts: admission (a bounded priority queue
 * that refuses at once when full), routing (a replica per stage, sticky), step planning (each
 * lane — micro-batch — of a route steps its members together, decode rows and prefill chunks
 * mixed, one step in flight per lane) and dispatch (the step goes into the first stage; the
 * last stage's tokens come straight back). Sequences join and leave between steps.
 *
 * Faults: when a step fails, a replica's session breaks, a health check fails or a step
 * outlives its deadline, each sequence on the affected route is released there and replayed on
 * a new route (its whole history prefilled at the same positions), so the client sees the same
 * tokens after a stall. A sequence fails only when some stage has had no usable replica for
 * `recoveryWindowMs`.
 */
export class Scheduler implements DispatchListener {
  private readonly queue: AdmissionQueue<Sequence>;
  /** Admitted sequences: opening, running or recovering. */
  private readonly live = new Set<Sequence>();
  private readonly lanesByRoute = new Map<string, Lane[]>();
  private readonly laneOf = new Map<Sequence, Lane>();
  private readonly sessions: NodeSessions;
  private readonly dispatcher: Dispatcher;
  private readonly router: Router;
  private admissionPausedUntil = 0;
  private closed = false;

  constructor(
    private readonly shape: ModelShape,
    directory: NodeDirectory,
    private readonly health: ReplicaHealth,
    coordinatorId: string,
    private readonly options: SchedulerOptions,
    private readonly metrics: CoordinatorMetrics,
    private readonly logger: Logger,
  ) {
    this.queue = new AdmissionQueue(options.maxQueuedRequests);
    this.sessions = new NodeSessions(
      coordinatorId,
      {
        onResult: (replicaId, result) => this.dispatcher.onResult(replicaId, result),
        onFailed: (replicaId, failed) => this.dispatcher.onFailed(replicaId, failed),
        onClosed: (replicaId, error) => {
          this.health.markDown(replicaId, `session ended: ${error.message}`);
          this.replicaLost(replicaId, error);
        },
      },
      logger,
    );
    this.dispatcher = new Dispatcher(this.sessions, new StepTimeout(options.stepTimeoutMaxMs, Math.min(MIN_STEP_TIMEOUT_MS, options.stepTimeoutMaxMs)), this, logger);
    this.router = new Router(directory, health, options.stages, (replicaId) => this.load(replicaId));
  }

  get queueLength(): number {
    return this.queue.length;
  }

  get runningCount(): number {
    return this.live.size;
  }

  /** Milliseconds a refused request should wait before retrying, from the measured drain rate. */
  retryAfterMs(): number {
    return this.queue.retryAfterMs();
  }

  /**
   * Queues a request. Throws at once: RESOURCE_EXHAUSTED (QueueFullError, with a retry hint)
   * when the queue is full, UNAVAILABLE when some stage has no usable replica.
   */
  submit(request: SequenceRequest, observer: SequenceObserver): Sequence {
    if (this.closed) throw new ServiceError(grpc.status.UNAVAILABLE, 'the coordinator is shutting down');
    this.router.pick();
    const sequence = new Sequence(request, observer);
    this.queue.offer(sequence, request.priority);
    sequence.deadlineTimer = setTimeout(
      () => this.fail(sequence, new ServiceError(grpc.status.DEADLINE_EXCEEDED, `request ${request.requestId} passed its deadline after ${sequence.generated.length} tokens`)),
      Math.max(0, request.deadlineUnixMs - Date.now()),
    );
    this.updateGauges();
    this.pump();
    return sequence;
  }

  /** Ends a sequence early (a stop string was found): it finishes with `reason` and frees its KV caches. */
  stop(sequence: Sequence, reason: FinishReason): void {
    if (!sequence.done) this.complete(sequence, reason);
  }

  /** The client went away: forget the sequence and free its KV caches in every stage that holds them. */
  cancel(sequence: Sequence): void {
    if (sequence.done) return;
    this.metrics.requestsFinished.inc({ finish_reason: 'cancelled' });
    this.retire(sequence);
  }

  /** A replica is gone (its session broke, or its health check failed): move its sequences elsewhere. */
  replicaLost(replicaId: string, error: ServiceError): void {
    if (this.closed) return;
    this.dispatcher.failThrough(replicaId, new ServiceError(grpc.status.UNAVAILABLE, `${replicaId} is gone: ${error.message}`));
    // A sequence waiting for its next step has been stuck since the replica went silent: its recovery window counts from then.
    const silentSince = this.health.lastSeen(replicaId) ?? Date.now();
    for (const sequence of [...this.live]) {
      if (sequence.state !== 'running' || sequence.inFlight) continue;
      if (!sequence.incarnation?.route.some((r) => r.id === replicaId)) continue;
      sequence.failingSince ??= silentSince;
      this.recover(sequence, error, new Set([replicaId]));
    }
  }

  close(): void {
    this.closed = true;
    const error = new ServiceError(grpc.status.UNAVAILABLE, 'the coordinator is shutting down');
    for (const sequence of [...this.queue.drain(), ...this.live]) this.fail(sequence, error);
    this.dispatcher.failAll(error);
    this.sessions.closeAll();
  }

  onStepDone(step: InFlightStep, result: StepResult__Output): void {
    this.laneIdle(step.lane);
    for (const replica of step.lane.route) this.health.recordSuccess(replica.id);
    for (const timing of result.timings) {
      this.metrics.nodeStepSeconds.observe({ node_id: timing.node_id, stage: String(timing.stage) }, timing.forward_ms / 1000);
      for (const { sequence } of step.rows) {
        const total = sequence.nodeTimings.get(timing.node_id) ?? { nodeId: timing.node_id, stage: timing.stage, forwardMs: 0, steps: 0 };
        total.forwardMs += timing.forward_ms;
        total.steps += 1;
        sequence.nodeTimings.set(timing.node_id, total);
      }
    }
    const tokens = new Map(result.tokens.map((t) => [t.sequence_id, t]));
    const accepted: Accepted[] = [];
    step.rows.forEach((row, i) => {
      const { sequence } = row;
      if (sequence.done) {
        this.releaseIncarnation(sequence);
        return;
      }
      // A sequence moved to a new placement while this step travelled: the result is the old one's.
      if (sequence.incarnation?.nodeSequenceId !== step.nodeSequenceIds[i]) return;
      sequence.fed = row.start + row.count;
      if (!row.sample) return;
      const token = tokens.get(step.nodeSequenceIds[i]);
      if (token === undefined) {
        this.fail(sequence, new ServiceError(grpc.status.INTERNAL, `the last stage returned no token for sequence ${sequence.id}`));
        return;
      }
      accepted.push(this.accept(sequence, { tokenId: token.token_id, logprob: token.logprob, topLogprobs: token.top_logprobs.map((t) => ({ tokenId: t.token_id, logprob: t.logprob })) }));
    });
    // The next step goes out before the observers see the tokens: decoding and streaming text
    // run while the pipeline computes, not between two of its steps. Deferred, not just later in
    // this callback: Node flushes an HTTP/2 write only when the callback that wrote it has
    // returned, so tokens delivered here would hold the step back (16 tokens: ~1.5 ms a step).
    this.pump();
    if (accepted.length > 0) setImmediate(() => accepted.forEach((entry) => this.deliver(entry)));
  }

  onStepFailed(step: InFlightStep, failure: StepFailure): void {
    this.laneIdle(step.lane);
    const { error } = failure;
    this.metrics.stepFailures.inc({ code: grpc.status[error.code] });
    this.logger.warn('step failed', { step_id: step.stepId, rows: step.rows.length, code: grpc.status[error.code], error: error.message, replica: failure.replicaId, unreachable: failure.unreachable });
    const sequences = step.rows.map((r) => r.sequence).filter((s, i) => s.incarnation?.nodeSequenceId === step.nodeSequenceIds[i] || s.done);
    // Out of the schedule at once: no new step may go out on the old placement while the route is examined.
    // The recovery window counts from when the failed step went out, not from when its failure
    // was noticed: a hung replica is found only after the step is overdue and a probe has timed
    // out, and a stream must not wait that long and then a whole window more.
    const failingSince = Date.now() - (performance.now() - step.sentAt);
    for (const sequence of sequences) {
      if (sequence.done) continue;
      this.leaveLane(sequence);
      sequence.state = 'recovering';
      sequence.failingSince ??= failingSince;
    }
    const settle = (avoid: Set<string>): void => {
      for (const sequence of sequences) {
        if (sequence.done) this.releaseIncarnation(sequence);
        else if (NOT_RETRYABLE.has(error.code)) this.fail(sequence, error);
        else this.recover(sequence, error, avoid);
      }
      this.pump();
    };
    if (failure.replicaId !== '') {
      if (failure.unreachable) this.health.markDown(failure.replicaId, error.message);
      else this.health.recordFailure(failure.replicaId);
      settle(failure.unreachable ? new Set([failure.replicaId]) : new Set());
      return;
    }
    // Nobody said what went wrong (the step timed out): ask every replica of the route, now.
    // Whoever does not answer in time is down; the sequences then go around it.
    void this.unresponsive(step.lane.route, `no answer after step ${step.stepId} timed out`).then(settle);
  }

  /**
   * A step is overdue (twice what steps of its size take): ask every replica of its route, with
   * a short probe. One that does not answer is down, and its steps fail now instead of at their
   * deadline, so a hung replica (SIGSTOP, a stalled host) costs a stall of about twice a step
   * plus the probe. A step that is merely slow is left alone: its replicas answer.
   */
  onStepOverdue(step: InFlightStep): void {
    const detail = `no answer to a health check within ${OVERDUE_PROBE_TIMEOUT_MS} ms while step ${step.stepId} was overdue`;
    void this.unresponsive(step.lane.route, detail, OVERDUE_PROBE_TIMEOUT_MS).then((dead) => {
      for (const id of dead) this.replicaLost(id, new ServiceError(grpc.status.UNAVAILABLE, detail));
    });
  }

  /** Health-checks every replica of a route now; the ones that do not answer in time are marked down (`why`) and returned. */
  private async unresponsive(route: Lane['route'], why: string, timeoutMs?: number): Promise<Set<string>> {
    const alive = await Promise.all(route.map((replica) => this.health.probe(replica.id, timeoutMs)));
    const dead = new Set(route.filter((_, i) => !alive[i]).map((r) => r.id));
    for (const id of dead) this.health.markDown(id, why);
    return dead;
  }

  private pump(): void {
    if (this.closed) return;
    while (this.live.size < this.options.maxRunningSequences && Date.now() >= this.admissionPausedUntil) {
      const sequence = this.queue.take();
      if (sequence === undefined) break;
      sequence.admittedAt = performance.now();
      this.metrics.queueWaitSeconds.observe((sequence.admittedAt - sequence.arrivedAt) / 1000);
      this.metrics.promptLength.observe(sequence.promptLength);
      this.live.add(sequence);
      this.place(sequence, new Set());
    }
    for (const lanes of this.lanesByRoute.values()) {
      for (const lane of lanes) {
        if (lane.busy) continue;
        const rows = planLaneStep(lane.members, this.options.step);
        if (rows.length === 0) continue;
        lane.busy = true;
        this.dispatcher.send(lane, rows, rows[0].sequence.request.requestId);
      }
    }
    this.updateGauges();
  }

  /** Picks a route and opens a new incarnation on every replica of it; the sequence runs once all acknowledge. */
  private place(sequence: Sequence, avoid: ReadonlySet<string>): void {
    let route;
    try {
      route = this.router.pick(avoid);
    } catch (error) {
      this.noRouteYet(sequence, ServiceError.from(error), avoid);
      return;
    }
    const incarnation = sequence.newIncarnation(route);
    sequence.state = 'opening';
    const openedAt = Date.now();
    const sampling = this.samplingOf(sequence);
    const opens = route.map((replica, k) =>
      this.sessions
        .get(replica)
        .open(
          {
            sequence_id: incarnation.nodeSequenceId,
            request_id: sequence.request.requestId,
            token: incarnation.token,
            reserve_tokens: Math.min(this.shape.contextLength, sequence.reserveTokens),
            next_node_id: route[k + 1]?.id ?? '',
            sampling: k === route.length - 1 ? sampling : undefined,
          },
          this.openTimeoutMs(sequence),
        )
        .then(
          () => {
            incarnation.opened.add(replica.id);
          },
          (error: unknown) => {
            this.noteUnanswered(incarnation, replica.id, error);
            throw error;
          },
        ),
    );
    void Promise.allSettled(opens).then((outcomes) => {
      if (sequence.done || sequence.incarnation !== incarnation) {
        this.releaseOf(incarnation, sequence.request.requestId);
        return;
      }
      const failed = outcomes.flatMap((o, k) => (o.status === 'rejected' ? [{ replica: route[k], error: ServiceError.from(o.reason) }] : []));
      if (failed.length === 0) {
        sequence.state = 'running';
        this.joinLane(sequence, route);
        this.pump();
        return;
      }
      this.releaseIncarnation(sequence);
      const { error } = failed[0];
      if (failed.some((f) => f.error.code === grpc.status.RESOURCE_EXHAUSTED) && sequence.generated.length === 0) {
        this.metrics.kvRefusals.inc();
        if (this.live.size > 1) {
          // Room frees up as running sequences finish: wait in the queue instead of failing.
          this.live.delete(sequence);
          sequence.state = 'queued';
          this.queue.requeue(sequence, sequence.request.priority);
          this.admissionPausedUntil = Date.now() + KV_FULL_PAUSE_MS;
          setTimeout(() => this.pump(), KV_FULL_PAUSE_MS).unref();
        } else {
          this.fail(sequence, new ServiceError(grpc.status.RESOURCE_EXHAUSTED, `no KV memory for this request: ${error.message}`));
        }
        return;
      }
      if (NOT_RETRYABLE.has(error.code)) {
        this.fail(sequence, error);
        return;
      }
      for (const { replica, error: cause } of failed) {
        if (cause.code === grpc.status.UNAVAILABLE || cause.code === grpc.status.DEADLINE_EXCEEDED) this.health.markDown(replica.id, cause.message);
      }
      // As for a failed step: the window counts from when the open went out (a hung replica answers it only by its timeout).
      sequence.failingSince ??= openedAt;
      this.recover(sequence, error, new Set([...avoid, ...failed.map((f) => f.replica.id)]));
    });
  }

  /**
   * Moves a sequence off a failed placement: when exactly one stage's replica is lost and the
   * others still serve, only that stage is replayed (replayLostStage); otherwise the placement
   * is abandoned and the whole history replayed on a new route.
   */
  private recover(sequence: Sequence, cause: ServiceError, avoid: ReadonlySet<string>): void {
    if (sequence.done) return;
    if (this.replayLostStage(sequence, cause, avoid)) return;
    this.replayEverywhere(sequence, cause, avoid);
  }

  /**
   * Partial replay: the healthy stages keep their KV caches, cut back to what the coordinator
   * knows they hold (`fed`: a failed step may have gone part of the way), under a new token;
   * a replacement replica of the lost stage is opened and filled — by the previous stage from
   * the hidden states it cached, or, for the first stage, from the token ids — so one stage
   * recomputes the history instead of all of them. Any refusal falls back to the full replay.
   * Returns whether it started.
   */
  private replayLostStage(sequence: Sequence, cause: ServiceError, avoid: ReadonlySet<string>): boolean {
    const current = sequence.incarnation;
    if (current === undefined || sequence.fed === 0 || current.route.some((r) => !current.opened.has(r.id))) return false;
    // The refill travels as one message: a history longer than a step may carry is replayed in chunks by the full replay instead.
    if (sequence.fed > this.options.step.maxTokens) return false;
    const lost = current.route.flatMap((r, k) => (avoid.has(r.id) || !this.health.serving(r.id) ? [k] : []));
    if (lost.length !== 1) return false;
    const stage = lost[0];
    const lostReplica = current.route[stage];
    let replacement;
    try {
      replacement = this.router.pickStage(stage, new Set([...avoid, lostReplica.id]));
    } catch {
      return false;
    }
    if (replacement.id === lostReplica.id) return false;

    this.leaveLane(sequence);
    sequence.state = 'recovering';
    sequence.recoveries += 1;
    sequence.failingSince ??= Date.now();
    // The lost replica's copy is dropped there if it ever answers again.
    this.releaseOn(lostReplica, current.nodeSequenceId, sequence.request.requestId);
    const incarnation = sequence.replaceStage(stage, replacement);
    const { route, nodeSequenceId: id, token } = incarnation;
    const length = sequence.fed;
    const requestId = sequence.request.requestId;
    this.logger.info('replaying one stage of a sequence on a new replica', {
      request_id: requestId,
      sequence_id: sequence.id,
      stage,
      lost: lostReplica.id,
      replacement: replacement.id,
      history_tokens: length,
      cause: cause.message,
    });
    const last = stage === route.length - 1;
    const opened = this.sessions
      .get(replacement)
      .open(
        {
          sequence_id: id,
          request_id: requestId,
          token,
          reserve_tokens: Math.min(this.shape.contextLength, sequence.reserveTokens),
          next_node_id: route[stage + 1]?.id ?? '',
          sampling: last ? this.samplingOf(sequence) : undefined,
        },
        this.openTimeoutMs(sequence),
      )
      .then(
        () => {
          incarnation.opened.add(replacement.id);
        },
        (error: unknown) => {
          this.noteUnanswered(incarnation, replacement.id, error);
          throw error;
        },
      );
    const repaired = opened.then(() => {
      const history = sequence.historySlice(0, length);
      // The fill passes through the replacement, and through the previous stage when that one sends it.
      const fill = this.dispatcher.expectFill(stage === 0 ? [replacement.id] : [route[stage - 1].id, replacement.id], length);
      const rewinds = route.flatMap((replica, k) =>
        k === stage
          ? []
          : [
              this.sessions.get(replica).rewind(
                {
                  sequence_id: id,
                  token,
                  length,
                  next_node_id: route[k + 1]?.id ?? '',
                  refill: k === stage - 1,
                  step_id: fill.stepId,
                  history: k === stage - 1 ? history : [],
                  timeout_ms: fill.timeoutMs,
                  request_id: requestId,
                },
                this.options.openTimeoutMs,
              ),
            ],
      );
      if (stage === 0) {
        this.sessions
          .get(replacement)
          .step({ step_id: fill.stepId, rows: [{ sequence_id: id, token, past_length: 0, token_ids: history, sample: false, generated_index: 0 }], timeout_ms: fill.timeoutMs, request_id: requestId, fill_only: true })
          .catch(() => undefined); // a session that fails fails the fill through replicaLost
      }
      return Promise.all([...rewinds, fill.done]);
    });
    repaired.then(
      () => {
        if (sequence.done || sequence.incarnation !== incarnation) {
          this.releaseOf(incarnation, requestId);
          return;
        }
        this.metrics.failovers.inc();
        this.metrics.stageReplays.inc();
        // A replica of the route may have been lost while the replay was under way (its loss skips sequences that are recovering).
        const gone = route.find((r) => !this.health.serving(r.id));
        if (gone !== undefined) {
          this.recover(sequence, new ServiceError(grpc.status.UNAVAILABLE, `${gone.id} went down during the partial replay`), new Set([gone.id]));
          return;
        }
        sequence.state = 'running';
        this.joinLane(sequence, route);
        this.pump();
      },
      (error: unknown) => {
        if (sequence.done || sequence.incarnation !== incarnation) {
          this.releaseOf(incarnation, requestId);
          return;
        }
        const why = ServiceError.from(error);
        this.logger.warn('partial replay failed; replaying the whole history', { request_id: requestId, sequence_id: sequence.id, error: why.message });
        this.replayEverywhere(sequence, why, new Set([...avoid, lostReplica.id]));
      },
    );
    return true;
  }

  /** Abandons the sequence's placement and replays its history on a new route. */
  private replayEverywhere(sequence: Sequence, cause: ServiceError, avoid: ReadonlySet<string>): void {
    if (sequence.done) return;
    this.leaveLane(sequence);
    this.releaseIncarnation(sequence);
    sequence.state = 'recovering';
    sequence.recoveries += 1;
    sequence.failingSince ??= Date.now();
    this.metrics.failovers.inc();
    this.logger.info('replaying sequence on a new route', {
      request_id: sequence.request.requestId,
      sequence_id: sequence.id,
      history_tokens: sequence.historyLength,
      cause: cause.message,
      avoid: [...avoid],
    });
    this.place(sequence, avoid);
  }

  /**
   * The deadline of an open: the configured one, but a sequence in recovery waits no longer
   * than its recovery window leaves (at least MIN_RECOVERY_OPEN_MS), so a replacement replica
   * that hangs too (every replica of a stage frozen) fails the stream within the window, not a
   * whole open timeout later.
   */
  private openTimeoutMs(sequence: Sequence): number {
    if (sequence.failingSince === undefined) return this.options.openTimeoutMs;
    const left = sequence.failingSince + this.options.recoveryWindowMs - Date.now();
    return Math.max(MIN_RECOVERY_OPEN_MS, Math.min(this.options.openTimeoutMs, left));
  }

  /** No route right now: retry shortly, until the recovery window is over. */
  private noRouteYet(sequence: Sequence, error: ServiceError, avoid: ReadonlySet<string>): void {
    if (sequence.done) return;
    sequence.state = 'recovering';
    sequence.failingSince ??= Date.now();
    if (Date.now() - sequence.failingSince >= this.options.recoveryWindowMs) {
      this.fail(sequence, new ServiceError(grpc.status.UNAVAILABLE, `no route for ${this.options.recoveryWindowMs} ms: ${error.message}`));
      return;
    }
    setTimeout(() => {
      if (!sequence.done && sequence.state === 'recovering') this.place(sequence, avoid);
    }, ROUTE_RETRY_MS).unref();
  }

  /**
   * Records a sampled token. A sequence that this token finishes leaves its lane at once, so the
   * next step is planned without it; its observer hears of the token (and the end) in deliver().
   */
  private accept(sequence: Sequence, token: SampledToken): Accepted {
    const now = performance.now();
    if (sequence.firstTokenAt === undefined) {
      sequence.firstTokenAt = now;
      this.metrics.timeToFirstToken.observe((now - sequence.arrivedAt) / 1000);
    } else if (sequence.lastTokenAt !== undefined) {
      const gap = now - sequence.lastTokenAt;
      sequence.longestGapMs = Math.max(sequence.longestGapMs, gap);
      this.metrics.interTokenLatency.observe(gap / 1000);
    }
    sequence.lastTokenAt = now;
    sequence.failingSince = undefined;
    sequence.generated.push(token.tokenId);
    this.metrics.generatedTokens.inc();
    const { maxNewTokens } = sequence.request.sampling;
    const reason: FinishReason | undefined = !sequence.request.sampling.ignoreEos && isEos(this.shape, token.tokenId)
      ? 'stop'
      : sequence.generated.length >= maxNewTokens || sequence.historyLength >= this.shape.contextLength
        ? 'length'
        : undefined;
    if (reason !== undefined) this.leaveLane(sequence);
    return { sequence, token, index: sequence.generated.length - 1, reason };
  }

  private deliver({ sequence, token, index, reason }: Accepted): void {
    if (sequence.done) return; // failed meanwhile (an observer's error, a deadline)
    sequence.observer.onToken(index, token, reason !== undefined);
    if (sequence.done) return; // the observer stopped it (stop string)
    if (reason !== undefined) this.complete(sequence, reason);
  }

  private complete(sequence: Sequence, reason: FinishReason): void {
    this.metrics.requestsFinished.inc({ finish_reason: reason });
    this.metrics.requestDuration.observe((performance.now() - sequence.arrivedAt) / 1000);
    this.metrics.generationLength.observe(sequence.generated.length);
    this.retire(sequence);
    sequence.observer.onFinish(reason);
  }

  private fail(sequence: Sequence, error: ServiceError): void {
    if (sequence.done) return;
    this.metrics.requestsFinished.inc({ finish_reason: 'error' });
    this.retire(sequence);
    sequence.observer.onError(error);
  }

  /** Takes a sequence out of the schedule and frees its KV caches (now, or when its step settles). */
  private retire(sequence: Sequence): void {
    sequence.state = 'done';
    clearTimeout(sequence.deadlineTimer);
    this.queue.remove(sequence);
    this.leaveLane(sequence);
    this.live.delete(sequence);
    if (!sequence.inFlight) this.releaseIncarnation(sequence);
    this.updateGauges();
    // A slot is free: a waiting request may be admitted.
    setImmediate(() => this.pump());
  }

  private releaseIncarnation(sequence: Sequence): void {
    const incarnation = sequence.incarnation;
    if (incarnation === undefined) return;
    sequence.incarnation = undefined;
    this.releaseOf(incarnation, sequence.request.requestId);
  }

  /**
   * Releases an incarnation on every replica that acknowledged it, the ones past a failed hop
   * included, and on every one whose open went unanswered (it may open the sequence late).
   */
  private releaseOf(incarnation: Incarnation, requestId: string): void {
    for (const replica of incarnation.route) {
      if (incarnation.opened.has(replica.id) || incarnation.unanswered.has(replica.id)) this.releaseOn(replica, incarnation.nodeSequenceId, requestId);
    }
  }

  /** An open that timed out has an unknown outcome: remember the replica, to release there too. */
  private noteUnanswered(incarnation: Incarnation, replicaId: string, error: unknown): void {
    if (ServiceError.from(error).code === grpc.status.DEADLINE_EXCEEDED) incarnation.unanswered.add(replicaId);
  }

  private releaseOn(replica: NodeReplica, nodeSequenceId: string, requestId: string): void {
    this.sessions
      .get(replica)
      .release([nodeSequenceId], requestId, this.options.releaseTimeoutMs)
      .catch((error: unknown) =>
        // A replica that is gone has dropped the sequence with its session; a live one will drop it on its idle TTL.
        this.logger.debug('release not acknowledged', { node_id: replica.id, sequence_id: nodeSequenceId, error: ServiceError.from(error).message }),
      );
  }

  private samplingOf(sequence: Sequence): SamplingParameters {
    const s = sequence.request.sampling;
    return { temperature: s.temperature, top_k: s.topK, top_p: s.topP, repetition_penalty: s.repetitionPenalty, seed: s.seed, top_logprobs: s.topLogprobs };
  }

  private joinLane(sequence: Sequence, route: Incarnation['route']): void {
    const key = routeKeyOf(route);
    let lanes = this.lanesByRoute.get(key);
    if (lanes === undefined) {
      lanes = Array.from({ length: this.options.lanesPerRoute }, (_, i) => new Lane(route, key, i));
      this.lanesByRoute.set(key, lanes);
    }
    const lane = lanes.reduce((best, l) => (l.members.length < best.members.length ? l : best));
    lane.add(sequence);
    this.laneOf.set(sequence, lane);
  }

  private leaveLane(sequence: Sequence): void {
    const lane = this.laneOf.get(sequence);
    if (lane === undefined) return;
    lane.remove(sequence);
    this.laneOf.delete(sequence);
    this.forgetRouteIfIdle(lane.routeKey);
  }

  private laneIdle(lane: Lane): void {
    lane.busy = false;
    this.forgetRouteIfIdle(lane.routeKey);
  }

  /** A route whose lanes are all empty and idle is dropped (routes come and go with failovers). */
  private forgetRouteIfIdle(routeKey: string): void {
    const lanes = this.lanesByRoute.get(routeKey) ?? [];
    if (lanes.every((l) => l.members.length === 0 && !l.busy)) this.lanesByRoute.delete(routeKey);
  }

  /** Sequences placed on a replica (its load, for routing). */
  private load(replicaId: string): number {
    let count = 0;
    for (const sequence of this.live) if (sequence.incarnation?.route.some((r) => r.id === replicaId)) count++;
    return count;
  }

  private updateGauges(): void {
    this.metrics.queueDepth.set(this.queue.length);
    this.metrics.runningSequences.set(this.live.size);
    this.metrics.stepsInFlight.set(this.dispatcher.inFlightCount);
  }
}
