import * as grpc from '@grpc/grpc-js';
import type { GenerationSummary } from '../../protos/generated/pipeserve/v1/GenerationSummary';
import type { TokenEvent } from '../../protos/generated/pipeserve/v1/TokenEvent';
import { ServiceError } from '../../shared/errors';
import type { Logger } from '../../shared/logger';
import type { SampledToken } from '../node/sampling/sampler';
import { IncrementalDecoder, type Decoder } from '../tokenizer/incremental-decoder';
import type { Scheduler } from './scheduler';
import type { FinishReason, Sequence, SequenceObserver, SequenceRequest } from './sequence';
import { StopStringMatcher } from './stop-string-matcher';

/** Where a session's output goes: a gRPC stream, a unary answer, a test. */
export interface GenerationSink {
  token(event: TokenEvent): void;
  summary(summary: GenerationSummary): void;
  error(error: ServiceError): void;
}

/**
 * One request from submission to its last word. It owns the sequence's text: each token is
 * decoded incrementally where it arrives (the tokenizer files are loaded in this process, so
 * streaming costs no RPC per token), cut at the first stop string, and passed to the sink with
 * the token; then exactly one summary or one error. The scheduler drives it through
 * SequenceObserver; a client that leaves calls `cancel`.
 */
export class GenerationSession implements SequenceObserver {
  private readonly decoder: IncrementalDecoder;
  private readonly matcher: StopStringMatcher;
  private readonly kept: number[] = [];
  private sequence: Sequence | undefined;
  private ended = false;

  constructor(
    private readonly request: SequenceRequest,
    private readonly scheduler: Scheduler,
    decoder: Decoder,
    private readonly sink: GenerationSink,
    private readonly logger: Logger,
  ) {
    this.decoder = new IncrementalDecoder(decoder);
    this.matcher = new StopStringMatcher(request.sampling.stop);
  }

  /** Submits the request; a refusal (full queue, no replica) goes to the sink at once. */
  start(): void {
    try {
      this.sequence = this.scheduler.submit(this.request, this);
    } catch (error) {
      this.end(() => this.sink.error(ServiceError.from(error)));
      return;
    }
    this.logger.info('generation started', {
      request_id: this.request.requestId,
      sequence_id: this.sequence.id,
      prompt_tokens: this.request.promptIds.length,
      max_new_tokens: this.request.sampling.maxNewTokens,
    });
  }

  /** The client went away: the sequence is dropped and its KV caches freed. */
  cancel(): void {
    if (this.ended) return;
    this.ended = true;
    if (this.sequence !== undefined) this.scheduler.cancel(this.sequence);
  }

  onToken(index: number, token: SampledToken, final: boolean): void {
    if (this.ended || this.matcher.stopped) return;
    let text = this.matcher.push(this.decoder.push([token.tokenId]));
    this.kept.push(token.tokenId);
    if (final && !this.matcher.stopped) {
      // The last token carries whatever the decoder and the matcher still hold, so the pieces add up to the final text.
      text += this.matcher.push(this.decoder.flush()) + this.matcher.finish();
    }
    this.sink.token({
      index,
      token_id: token.tokenId,
      logprob: token.logprob,
      text,
      top_logprobs: token.topLogprobs.map((t) => ({ token_id: t.tokenId, logprob: t.logprob })),
    });
    if (this.matcher.stopped) this.scheduler.stop(this.sequence as Sequence, 'stop_string');
  }

  onFinish(reason: FinishReason): void {
    this.end(() => this.sink.summary(this.summarize(reason)));
  }

  onError(error: ServiceError): void {
    if (error.code !== grpc.status.CANCELLED) {
      this.logger.warn('generation failed', { request_id: this.request.requestId, code: grpc.status[error.code], error: error.message });
    }
    this.end(() => this.sink.error(error));
  }

  private end(report: () => void): void {
    if (this.ended) return;
    this.ended = true;
    report();
  }

  private summarize(reason: FinishReason): GenerationSummary {
    const sequence = this.sequence as Sequence;
    const nodes = [...sequence.nodeTimings.values()].sort((a, b) => a.stage - b.stage);
    const arrived = sequence.arrivedAt;
    return {
      request_id: this.request.requestId,
      token_ids: this.kept,
      text: this.matcher.fullText,
      finish_reason: reason,
      prompt_tokens: this.request.promptIds.length,
      generated_tokens: this.kept.length,
      timings: {
        queue_ms: (sequence.admittedAt ?? arrived) - arrived,
        time_to_first_token_ms: (sequence.firstTokenAt ?? arrived) - arrived,
        total_ms: performance.now() - arrived,
        nodes: nodes.map((n) => ({ node_id: n.nodeId, stage: n.stage, forward_ms: n.forwardMs, steps: n.steps })),
      },
    };
  }
}
