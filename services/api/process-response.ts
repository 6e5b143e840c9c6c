import type { GenerationSummary__Output } from '../../protos/generated/pipeserve/v1/GenerationSummary';
import type { ProcessResponse } from './schemas/process-schemas';

/** The JSON of `POST /api/model/process`, also the `done` event of `/api/model/generate` (its schema: ProcessResponse). */
export function toProcessResponse(
  summary: GenerationSummary__Output,
  context: { readonly requestId: string; readonly tokenizeMs: number; readonly totalMs: number; readonly metadata: Record<string, unknown> },
): ProcessResponse {
  const timings = summary.timings;
  return {
    request_id: context.requestId,
    text: summary.text,
    token_ids: summary.token_ids,
    tokens: { prompt: summary.prompt_tokens, generated: summary.generated_tokens },
    finish_reason: summary.finish_reason as ProcessResponse['finish_reason'],
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
