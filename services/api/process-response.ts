import type { GenerationSummary__Output } from '../../protos/generated/pipeserve/v1/GenerationSummary';

export interface NodeTimingBody {
  readonly node_id: string;
  readonly stage: number;
  readonly forward_ms: number;
  readonly steps: number;
}

/** The JSON of `POST /api/model/process`, also the `done` event of `POST /api/model/generate`. */
export interface ProcessResponse {
  readonly request_id: string;
  readonly text: string;
  /** Generated ids only. */
  readonly token_ids: readonly number[];
  readonly tokens: { readonly prompt: number; readonly generated: number };
  readonly finish_reason: string;
  readonly timings: {
    /** Encode in the tokenizer, measured by the api. */
    readonly tokenize_ms: number;
    /** From the coordinator: waiting for admission, then until the first token. */
    readonly queue_ms: number;
    readonly time_to_first_token_ms: number;
    /** Measured by the api: from the request's arrival to this answer. */
    readonly total_ms: number;
    readonly nodes: readonly NodeTimingBody[];
  };
  readonly metadata: Readonly<Record<string, unknown>>;
}

export function toProcessResponse(
  summary: GenerationSummary__Output,
  context: { readonly requestId: string; readonly tokenizeMs: number; readonly totalMs: number; readonly metadata: Readonly<Record<string, unknown>> },
): ProcessResponse {
  const timings = summary.timings;
  return {
    request_id: context.requestId,
    text: summary.text,
    token_ids: summary.token_ids,
    tokens: { prompt: summary.prompt_tokens, generated: summary.generated_tokens },
    finish_reason: summary.finish_reason,
    timings: {
      tokenize_ms: roundMs(context.tokenizeMs),
      queue_ms: roundMs(timings?.queue_ms ?? 0),
      time_to_first_token_ms: roundMs(timings?.time_to_first_token_ms ?? 0),
      total_ms: roundMs(context.totalMs),
      nodes: (timings?.nodes ?? []).map((n) => ({ node_id: n.node_id, stage: n.stage, forward_ms: roundMs(n.forward_ms), steps: n.steps })),
    },
    metadata: context.metadata,
  };
}

/** Microsecond resolution is all a client can use; more digits are float noise. */
function roundMs(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
