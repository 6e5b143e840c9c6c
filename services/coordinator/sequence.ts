import { randomUUID } from 'node:crypto';
import type { NodeEntry } from '../../shared/config';
import type { ServiceError } from '../../shared/errors';
import type { GenerationConfig } from '../../shared/generation-config';

export type FinishReason = 'stop' | 'length' | 'stop_string';

/** What a request asks for: the generation config plus stop strings, which the coordinator checks. */
export interface SamplingSettings extends GenerationConfig {
  readonly stop: readonly string[];
}

export interface SequenceRequest {
  readonly requestId: string;
  readonly promptIds: readonly number[];
  readonly sampling: SamplingSettings;
  readonly deadlineUnixMs: number;
}

/** Receives what happens to a sequence; called by the scheduler in generation order. */
export interface SequenceObserver {
  onToken(index: number, tokenId: number, logprob: number): void;
  onFinish(reason: FinishReason): void;
  onError(error: ServiceError): void;
}

export interface NodeTimingTotal {
  readonly nodeId: string;
  readonly stage: number;
  forwardMs: number;
  steps: number;
}

/** One generation request as the coordinator tracks it. */
export class Sequence {
  readonly id = randomUUID();
  readonly generated: number[] = [];
  /** Prompt tokens already in every stage's KV cache. */
  prefilled = 0;
  route: readonly NodeEntry[] | undefined;
  inFlight = false;
  done = false;
  readonly arrivedAt = performance.now();
  admittedAt: number | undefined;
  firstTokenAt: number | undefined;
  lastTokenAt: number | undefined;
  readonly nodeTimings = new Map<string, NodeTimingTotal>();
  deadlineTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly request: SequenceRequest,
    readonly observer: SequenceObserver,
  ) {}

  get promptLength(): number {
    return this.request.promptIds.length;
  }

  get needsPrefill(): boolean {
    return this.prefilled < this.promptLength;
  }

  /** Tokens every stage holds in its KV cache for this sequence. */
  get cachedLength(): number {
    return this.prefilled + Math.max(0, this.generated.length - 1);
  }
}
