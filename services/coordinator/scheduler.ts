import * as grpc from '@grpc/grpc-js';
import type { Hop } from '../../protos/generated/pipeserve/v1/Hop';
import type { SequenceStep } from '../../protos/generated/pipeserve/v1/SequenceStep';
import type { StepResult__Output } from '../../protos/generated/pipeserve/v1/StepResult';
import type { NodeEntry } from '../../shared/config';
import { ServiceError } from '../../shared/errors';
import type { Logger } from '../../shared/logger';
import { PipelineLinks } from '../../shared/pipeline-link';
import type { CoordinatorMetrics } from './coordinator-metrics';
import type { NodeHealth } from './node-health';
import { Sequence, type FinishReason, type SequenceObserver, type SequenceRequest } from './sequence';

export interface SchedulerOptions {
  readonly stages: number;
  readonly maxBatchSize: number;
  /** Padded tokens (rows x longest row) one prefill step may carry. */
  readonly maxBatchTokens: number;
  readonly maxQueuedRequests: number;
  readonly maxRunningSequences: number;
  readonly eosTokenId: number;
  readonly nPositions: number;
}

interface PlannedRow {
  readonly sequence: Sequence;
  readonly step: SequenceStep;
  /** Prompt tokens this row prefills (0 for a decode row). */
  readonly prefillTokens: number;
}

/**
 * Continuous batching over the pipeline. Sequences wait in a bounded queue, are admitted onto a
 * route (one serving replica per stage, sticky because the KV cache lives there), and at every
 * step the scheduler forms micro-batches from the sequences that are not in flight: prefill
 * rows (chunked to maxBatchTokens) or decode rows, up to `stages` micro-batches in flight per
 * route so that every stage has work. Sequences join and leave between steps.
 */
export class Scheduler {
  private readonly waiting: Sequence[] = [];
  private readonly running = new Set<Sequence>();
  private readonly inFlightByRoute = new Map<string, number>();
  private readonly links: PipelineLinks;

  constructor(
    private readonly nodes: readonly NodeEntry[],
    private readonly health: NodeHealth,
    private readonly options: SchedulerOptions,
    private readonly metrics: CoordinatorMetrics,
    private readonly logger: Logger,
  ) {
    this.links = new PipelineLinks(logger);
  }

  /** Queues a sequence. Throws RESOURCE_EXHAUSTED when the queue is full and UNAVAILABLE when a stage has no serving node. */
  submit(request: SequenceRequest, observer: SequenceObserver): Sequence {
    if (this.waiting.length >= this.options.maxQueuedRequests) {
      throw new ServiceError(grpc.status.RESOURCE_EXHAUSTED, `the queue is full (${this.waiting.length} requests waiting); retry in a few seconds`);
    }
    this.pickRoute(); // fail fast when a stage is down
    const sequence = new Sequence(request, observer);
    sequence.deadlineTimer = setTimeout(
      () => this.fail(sequence, new ServiceError(grpc.status.DEADLINE_EXCEEDED, `request ${request.requestId} passed its deadline after ${sequence.generated.length} tokens`)),
      Math.max(0, request.deadlineUnixMs - Date.now()),
    );
    this.waiting.push(sequence);
    this.updateGauges();
    this.pump();
    return sequence;
  }

  /** Ends a sequence early (stop string found): it finishes with `reason` and frees its KV caches. */
  stop(sequence: Sequence, reason: FinishReason): void {
    if (!sequence.done) this.complete(sequence, reason);
  }

  /** The client went away: forget the sequence and free its KV caches in every stage. */
  cancel(sequence: Sequence): void {
    if (sequence.done) return;
    this.metrics.requestsFinished.inc({ finish_reason: 'cancelled' });
    this.retire(sequence);
  }

  close(): void {
    for (const sequence of [...this.waiting, ...this.running]) this.fail(sequence, new ServiceError(grpc.status.UNAVAILABLE, 'the coordinator is shutting down'));
    this.links.closeAll();
  }

  /** One serving replica per stage, the least loaded of each. */
  private pickRoute(): NodeEntry[] {
    const route: NodeEntry[] = [];
    for (let stage = 0; stage < this.options.stages; stage++) {
      const replicas = this.nodes.filter((n) => n.modelPart === stage);
      const serving = replicas.filter((n) => {
        const state = this.health.state(n.id);
        return state === undefined || state.serving || !state.checked;
      });
      if (serving.length === 0) {
        const detail = replicas.map((n) => `${n.id} at ${n.address}: ${this.health.state(n.id)?.detail ?? 'unknown'}`).join('; ');
        throw new ServiceError(grpc.status.UNAVAILABLE, `no serving node for stage ${stage} (${detail})`);
      }
      route.push(serving.reduce((best, n) => (this.load(n.id) < this.load(best.id) ? n : best)));
    }
    return route;
  }

  private load(nodeId: string): number {
    let count = 0;
    for (const sequence of this.running) if (sequence.route?.some((n) => n.id === nodeId)) count++;
    return count;
  }

  private pump(): void {
    while (this.waiting.length > 0 && this.running.size < this.options.maxRunningSequences) {
      const sequence = this.waiting.shift() as Sequence;
      try {
        sequence.route = this.pickRoute();
      } catch (error) {
        this.fail(sequence, ServiceError.from(error));
        continue;
      }
      sequence.admittedAt = performance.now();
      this.running.add(sequence);
    }
    const byRoute = new Map<string, Sequence[]>();
    for (const sequence of this.running) {
      const key = routeKey(sequence.route ?? []);
      byRoute.set(key, [...(byRoute.get(key) ?? []), sequence]);
    }
    for (const [key, sequences] of byRoute) {
      while ((this.inFlightByRoute.get(key) ?? 0) < this.options.stages) {
        const rows = this.planStep(sequences);
        if (rows.length === 0) break;
        this.dispatch(key, rows);
      }
    }
    this.updateGauges();
  }

  private planStep(sequences: readonly Sequence[]): PlannedRow[] {
    const ready = sequences.filter((s) => !s.inFlight && !s.done);
    const prefill = ready.filter((s) => s.needsPrefill);
    if (prefill.length > 0) {
      const rows: PlannedRow[] = [];
      let longest = 0;
      for (const sequence of prefill) {
        const chunk = Math.min(sequence.promptLength - sequence.prefilled, this.options.maxBatchTokens);
        const padded = (rows.length + 1) * Math.max(longest, chunk);
        if (rows.length > 0 && (padded > this.options.maxBatchTokens || rows.length >= this.options.maxBatchSize)) break;
        longest = Math.max(longest, chunk);
        rows.push(this.prefillRow(sequence, chunk));
      }
      return rows;
    }
    const decoding = sequences.filter((s) => !s.done && !s.needsPrefill).length;
    const microBatch = Math.min(this.options.maxBatchSize, Math.ceil(decoding / this.options.stages));
    return ready.slice(0, microBatch).map((s) => this.decodeRow(s));
  }

  private prefillRow(sequence: Sequence, chunk: number): PlannedRow {
    const start = sequence.prefilled;
    const last = start + chunk === sequence.promptLength;
    return { sequence, prefillTokens: chunk, step: this.stepFor(sequence, start, sequence.request.promptIds.slice(start, start + chunk), last) };
  }

  private decodeRow(sequence: Sequence): PlannedRow {
    const lastToken = sequence.generated[sequence.generated.length - 1];
    return { sequence, prefillTokens: 0, step: this.stepFor(sequence, sequence.cachedLength, [lastToken], true) };
  }

  private stepFor(sequence: Sequence, pastLength: number, tokenIds: readonly number[], sample: boolean): SequenceStep {
    const s = sequence.request.sampling;
    return {
      sequence_id: sequence.id,
      past_length: pastLength,
      token_ids: [...tokenIds],
      generated_index: sequence.generated.length,
      sample,
      reserve_tokens: pastLength === 0 ? sequence.promptLength + s.maxNewTokens : 0,
      sampling: { temperature: s.temperature, top_k: s.topK, top_p: s.topP, repetition_penalty: s.repetitionPenalty, seed: s.seed },
    };
  }

  private dispatch(key: string, rows: readonly PlannedRow[]): void {
    const route = rows[0].sequence.route ?? [];
    for (const row of rows) row.sequence.inFlight = true;
    this.inFlightByRoute.set(key, (this.inFlightByRoute.get(key) ?? 0) + 1);
    this.metrics.stepsInFlight.inc();
    // Every request has its own deadline timer; the step lives as long as its longest-lived
    // request, so one request running out of time never fails the others batched with it.
    const deadline = Math.max(...rows.map((r) => r.sequence.request.deadlineUnixMs));
    this.links.to(route[0].address)
      .send({
        route: route.map(hop),
        sequences: rows.map((r) => r.step),
        deadline_unix_ms: deadline,
        request_id: rows[0].sequence.request.requestId,
      })
      .then(
        (result) => this.onResult(rows, result),
        (error: unknown) => this.onStepFailed(rows, ServiceError.from(error), route[0].id),
      )
      .finally(() => {
        this.inFlightByRoute.set(key, (this.inFlightByRoute.get(key) ?? 1) - 1);
        this.metrics.stepsInFlight.dec();
        this.pump();
      });
  }

  private onResult(rows: readonly PlannedRow[], result: StepResult__Output): void {
    if (result.error_code !== grpc.status.OK) {
      this.onStepFailed(rows, new ServiceError(result.error_code as grpc.status, result.error_message), result.failed_node_id);
      return;
    }
    for (const timing of result.timings) {
      this.metrics.nodeStepSeconds.observe({ node_id: timing.node_id, stage: String(timing.stage) }, timing.forward_ms / 1000);
      for (const { sequence } of rows) {
        const total = sequence.nodeTimings.get(timing.node_id) ?? { nodeId: timing.node_id, stage: timing.stage, forwardMs: 0, steps: 0 };
        total.forwardMs += timing.forward_ms;
        total.steps += 1;
        sequence.nodeTimings.set(timing.node_id, total);
      }
    }
    const sampled = new Map(result.tokens.map((t) => [t.sequence_id, t]));
    for (const { sequence, step, prefillTokens } of rows) {
      sequence.inFlight = false;
      if (sequence.done) {
        this.release(sequence);
        continue;
      }
      sequence.prefilled += prefillTokens;
      if (!step.sample) continue;
      const token = sampled.get(sequence.id);
      if (token === undefined) {
        this.fail(sequence, new ServiceError(grpc.status.INTERNAL, `the last stage returned no token for sequence ${sequence.id}`));
        continue;
      }
      this.accept(sequence, token.token_id, token.logprob);
    }
  }

  private accept(sequence: Sequence, tokenId: number, logprob: number): void {
    const now = performance.now();
    if (sequence.firstTokenAt === undefined) {
      sequence.firstTokenAt = now;
      this.metrics.timeToFirstToken.observe((now - sequence.arrivedAt) / 1000);
    } else if (sequence.lastTokenAt !== undefined) {
      this.metrics.interTokenLatency.observe((now - sequence.lastTokenAt) / 1000);
    }
    sequence.lastTokenAt = now;
    sequence.generated.push(tokenId);
    this.metrics.generatedTokens.inc();
    sequence.observer.onToken(sequence.generated.length - 1, tokenId, logprob);
    if (sequence.done) return; // the observer stopped it (stop string)
    const { maxNewTokens } = sequence.request.sampling;
    if (tokenId === this.options.eosTokenId) this.complete(sequence, 'stop');
    else if (sequence.generated.length >= maxNewTokens || sequence.promptLength + sequence.generated.length >= this.options.nPositions) this.complete(sequence, 'length');
  }

  /** `unreachableNodeId` names the node a step could not reach, if that is why it failed. */
  private onStepFailed(rows: readonly PlannedRow[], error: ServiceError, unreachableNodeId: string): void {
    this.logger.warn('step failed', { request_id: rows[0].sequence.request.requestId, sequences: rows.length, code: grpc.status[error.code], error: error.message });
    // Route new sequences around a dead replica now, not at its next health check.
    if (error.code === grpc.status.UNAVAILABLE && unreachableNodeId !== '') this.health.markDown(unreachableNodeId, error.message);
    for (const { sequence } of rows) {
      sequence.inFlight = false;
      // A sequence retired while this step travelled (deadline, cancel) still holds KV caches.
      if (sequence.done) this.release(sequence);
      else this.fail(sequence, error);
    }
  }

  private complete(sequence: Sequence, reason: FinishReason): void {
    this.metrics.requestsFinished.inc({ finish_reason: reason });
    this.metrics.requestDuration.observe((performance.now() - sequence.arrivedAt) / 1000);
    this.retire(sequence);
    sequence.observer.onFinish(reason);
  }

  private fail(sequence: Sequence, error: ServiceError): void {
    if (sequence.done) return;
    this.metrics.requestsFinished.inc({ finish_reason: 'error' });
    this.retire(sequence);
    sequence.observer.onError(error);
  }

  /** Takes a sequence out of the schedule and frees its KV caches (now, or when its step returns). */
  private retire(sequence: Sequence): void {
    sequence.done = true;
    clearTimeout(sequence.deadlineTimer);
    const queued = this.waiting.indexOf(sequence);
    if (queued >= 0) this.waiting.splice(queued, 1);
    this.running.delete(sequence);
    if (!sequence.inFlight) this.release(sequence);
    this.updateGauges();
  }

  private release(sequence: Sequence): void {
    // A failed step may have left KV entries in the stages before the failure, so every admitted
    // sequence is released along its route; a stage that holds nothing for it ignores the release.
    const route = sequence.route;
    if (route === undefined) return;
    this.links.to(route[0].address).sendOneWay({ route: route.map(hop), release_sequence_ids: [sequence.id], request_id: sequence.request.requestId });
  }

  private updateGauges(): void {
    this.metrics.queueDepth.set(this.waiting.length);
    this.metrics.runningSequences.set(this.running.size);
  }
}

function hop(node: NodeEntry): Hop {
  return { node_id: node.id, address: node.address };
}

function routeKey(route: readonly NodeEntry[]): string {
  return route.map((n) => n.id).join('>');
}
