import { randomBytes, randomUUID } from 'node:crypto';
import type { ServiceError } from '../../shared/errors';
import type { GenerationConfig } from '../../shared/generation-config';
import type { NodeReplica } from '../../shared/node-directory';
import type { SampledToken } from '../node/sampling/sampler';
import type { Priority } from './admission-queue';

export type FinishReason = 'stop' | 'length' | 'stop_string';

/** What a request asks for: the generation config plus what the coordinator itself checks. */
export interface SamplingSettings extends GenerationConfig {
  readonly stop: readonly string[];
  /** Alternatives to report with each token (0-5). */
  readonly topLogprobs: number;
  /** EOS does not end the sequence: it runs to maxNewTokens (or the context's end). */
  readonly ignoreEos: boolean;
}

export interface SequenceRequest {
  readonly requestId: string;
  readonly promptIds: readonly number[];
  readonly sampling: SamplingSettings;
  readonly deadlineUnixMs: number;
  readonly priority: Priority;
}

/** Receives what happens to a sequence; called by the scheduler in generation order. */
export interface SequenceObserver {
  /** `final`: the sequence ends with this token (EOS, or its length limit). */
  onToken(index: number, token: SampledToken, final: boolean): void;
  onFinish(reason: FinishReason): void;
  onError(error: ServiceError): void;
}

export interface NodeTimingTotal {
  readonly nodeId: string;
  readonly stage: number;
  forwardMs: number;
  steps: number;
}

/**
 * One placement of a sequence on the pipeline: a route (one replica per stage) and the id and
 * token the replicas know it by. A full failover abandons the incarnation and opens a new one on
 * another route, which rebuilds the KV caches by replaying the history from position 0; a
 * partial one (one stage's replica lost) keeps the id on the healthy stages and moves only that
 * stage to a new replica, under a new token.
 */
export interface Incarnation {
  readonly nodeSequenceId: string;
  readonly token: Buffer;
  readonly route: readonly NodeReplica[];
  /** Replicas that acknowledged the open, and so hold KV to release. */
  readonly opened: Set<string>;
  /**
   * Replicas whose open went unanswered (its deadline passed): a hung replica may still open the
   * sequence when it resumes, so these are released too (the release queues behind the open).
   */
  readonly unanswered: Set<string>;
}

export type SequenceState = 'queued' | 'opening' | 'running' | 'recovering' | 'done';

/** Bytes of the per-sequence secret every step row carries. */
const SEQUENCE_TOKEN_BYTES = 16;

/**
 * One generation request as the scheduler tracks it. The token history (prompt + generated)
 * is the truth: `fed` counts how much of it the current incarnation's KV caches hold, and
 * every step feeds history[fed …]; a decode step is the case of one token, a prefill chunk the
 * case of many, and a replay after failover the case of starting again from 0.
 */
export class Sequence {
  readonly id = randomUUID();
  readonly generated: number[] = [];
  state: SequenceState = 'queued';
  incarnation: Incarnation | undefined;
  private epoch = 0;
  /** History tokens in the current incarnation's KV caches. */
  fed = 0;
  inFlight = false;
  /** Failovers so far, and when the current run of failures began (undefined while healthy). */
  recoveries = 0;
  failingSince: number | undefined;
  readonly arrivedAt = performance.now();
  admittedAt: number | undefined;
  firstTokenAt: number | undefined;
  lastTokenAt: number | undefined;
  /** Longest gap between two tokens (a failover shows here as a stall). */
  longestGapMs = 0;
  readonly nodeTimings = new Map<string, NodeTimingTotal>();
  deadlineTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly request: SequenceRequest,
    readonly observer: SequenceObserver,
  ) {}

  get done(): boolean {
    return this.state === 'done';
  }

  get promptLength(): number {
    return this.request.promptIds.length;
  }

  /** Prompt plus generated tokens. */
  get historyLength(): number {
    return this.request.promptIds.length + this.generated.length;
  }

  /** Positions the sequence may reach: what each stage reserves for it. */
  get reserveTokens(): number {
    return this.promptLength + this.request.sampling.maxNewTokens;
  }

  /** `count` history tokens from `start`. */
  historySlice(start: number, count: number): number[] {
    const prompt = this.request.promptIds;
    const out: number[] = [];
    for (let i = start; i < start + count; i++) out.push(i < prompt.length ? prompt[i] : this.generated[i - prompt.length]);
    return out;
  }

  /**
   * The same placement with stage `stage` on `replica` and a new token (steps of the failed
   * placement can no longer match); the lost replica no longer counts as holding the sequence,
   * and what is fed stays: the healthy stages are cut back to it.
   */
  replaceStage(stage: number, replica: NodeReplica): Incarnation {
    const current = this.incarnation;
    if (current === undefined) throw new Error(`sequence ${this.id} has no placement to repair`);
    const lost = current.route[stage];
    const opened = new Set([...current.opened].filter((id) => id !== lost.id));
    this.incarnation = { nodeSequenceId: current.nodeSequenceId, token: randomBytes(SEQUENCE_TOKEN_BYTES), route: current.route.map((r, k) => (k === stage ? replica : r)), opened, unanswered: new Set([...current.unanswered].filter((id) => id !== lost.id)) };
    return this.incarnation;
  }

  /** A fresh placement on `route`: a new id and token (stale messages of the old one can never match it), nothing fed yet. */
  newIncarnation(route: readonly NodeReplica[]): Incarnation {
    this.epoch += 1;
    this.fed = 0;
    this.incarnation = { nodeSequenceId: `${this.id}.${this.epoch}`, token: randomBytes(SEQUENCE_TOKEN_BYTES), route, opened: new Set(), unanswered: new Set() };
    return this.incarnation;
  }
}
