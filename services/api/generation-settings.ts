/** Admission classes of the coordinator: when its queue is full, "batch" requests are refused first. */
export const PRIORITIES = ['interactive', 'batch'] as const;
export type Priority = (typeof PRIORITIES)[number];

/** Alternatives per token the pipeline can report (GenerationParameters.top_logprobs). */
export const MAX_TOP_LOGPROBS = 5;

/**
 * What every generation route asks of the coordinator, parsed from its own body. Optional
 * sampling fields stay absent when the client left them out, so the coordinator's documented
 * defaults apply (each sits in a one-field oneof, which keeps presence on the wire).
 */
export interface GenerationSettings {
  /** Absent: the coordinator's default, lowered to what the model's context leaves after the prompt. */
  readonly maxNewTokens?: number;
  /** 0 = greedy. */
  readonly temperature?: number;
  readonly topK?: number;
  readonly topP?: number;
  readonly repetitionPenalty?: number;
  readonly seed?: number;
  readonly stop: readonly string[];
  /** Most likely alternatives to report with each token (0-MAX_TOP_LOGPROBS). */
  readonly topLogprobs: number;
  /** Generate past EOS up to maxNewTokens (benchmarks). */
  readonly ignoreEos: boolean;
  readonly priority: Priority;
}
