/**
 * Limits of the stage protocol, checked where a message is received. They bound what one
 * message can make a node do; the sizes of legitimate messages come from config (max_batch_size,
 * max_batch_tokens), which the coordinator keeps far below these.
 */
export const PROTOCOL_LIMITS = {
  /** Rows of one step. */
  maxStepRows: 1024,
  /** New tokens of one step, all rows together. */
  maxStepTokens: 65_536,
  /** Length of a sequence, request or coordinator id. */
  maxIdLength: 128,
  /** Bytes of a sequence's token (the coordinator makes 16). */
  minTokenBytes: 16,
  maxTokenBytes: 64,
  /** Stage timings one step may carry. */
  maxTimings: 64,
  /** Sequences one release may name. */
  maxReleaseIds: 4096,
} as const;

/** Ids the protocol accepts: short, printable, no whitespace (they end up in logs and metrics). */
export const ID_PATTERN = /^[A-Za-z0-9._:@/+=-]+$/;

/** Checks an id field; returns an error text, or undefined when it is fine. */
export function idProblem(value: string): string | undefined {
  if (value === '') return 'is empty';
  if (value.length > PROTOCOL_LIMITS.maxIdLength) return `is ${value.length} characters long, more than ${PROTOCOL_LIMITS.maxIdLength}`;
  if (!ID_PATTERN.test(value)) return 'may hold only letters, digits and . _ : @ / + = -';
  return undefined;
}
