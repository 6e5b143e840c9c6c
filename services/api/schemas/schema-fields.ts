import { MAX_STOP_STRINGS } from '../../../shared/generation-config';
import { MAX_TOP_LOGPROBS, PRIORITIES } from '../generation-settings';
import { z } from './zod-openapi';

export const MAX_UINT32 = 2 ** 32 - 1;

/**
 * Field schemas that more than one body uses, each with the message a client sees when it is
 * wrong (parseInput prefixes the field name and appends the rejected value).
 */
export const fields = {
  /** An integer in [min, max]; one message for every way of missing it. */
  integer(min: number, max: number, problem: string) {
    return z.int({ error: problem }).min(min, { error: problem }).max(max, { error: problem });
  },

  temperature(max: number) {
    const problem = max === Number.POSITIVE_INFINITY ? 'must be a number >= 0 (0 = greedy)' : `must be a number between 0 and ${max} (0 = greedy)`;
    const schema = z.number({ error: problem }).min(0, { error: problem });
    return (Number.isFinite(max) ? schema.max(max, { error: problem }) : schema).openapi({ description: '0 = greedy' });
  },

  topK() {
    const problem = 'must be an integer >= 0 (0 = off)';
    return fields.integer(0, MAX_UINT32, problem).openapi({ description: 'Keep the K most likely tokens; 0 = off (the default)' });
  },

  topP() {
    const problem = 'must be a number greater than 0 and at most 1';
    return z.number({ error: problem }).gt(0, { error: problem }).max(1, { error: problem }).openapi({ description: 'Nucleus sampling; 1 = off (the default)' });
  },

  repetitionPenalty() {
    const problem = 'must be a number > 0 (1 = off)';
    return z.number({ error: problem }).gt(0, { error: problem }).openapi({ description: '1 = off (the default)' });
  },

  seed() {
    return fields.integer(0, MAX_UINT32, `must be an integer between 0 and ${MAX_UINT32}`);
  },

  stopList() {
    const problem = `must be an array of at most ${MAX_STOP_STRINGS} non-empty strings`;
    return z
      .array(z.string({ error: problem }).min(1, { error: problem }), { error: problem })
      .max(MAX_STOP_STRINGS, { error: problem })
      .openapi({ description: 'The text ends before the first match' });
  },

  topLogprobs() {
    return fields.integer(0, MAX_TOP_LOGPROBS, `must be an integer between 0 and ${MAX_TOP_LOGPROBS}`);
  },

  ignoreEos() {
    return z.boolean({ error: 'must be a boolean' }).openapi({ description: 'Keep generating past the end-of-text token up to the token limit (benchmarks)' });
  },

  priority() {
    return z
      .enum(PRIORITIES, { error: `must be one of ${PRIORITIES.map((p) => `"${p}"`).join(', ')}` })
      .openapi({ description: 'Admission class: when the queue is full, "batch" requests are refused first (default "interactive")' });
  },

  /** Any JSON object, kept as the very value received (no copy, so nothing in it is re-interpreted). */
  jsonObject(problem: string) {
    return z
      .custom<Record<string, unknown>>((value) => typeof value === 'object' && value !== null && !Array.isArray(value), { error: problem })
      .openapi({ type: 'object', additionalProperties: true });
  },
};
