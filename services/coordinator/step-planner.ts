import type { Sequence } from './sequence';

/** One row of a planned step: `count` history tokens of a sequence from `start`; the row samples when they reach its end. */
export interface PlannedRow {
  readonly sequence: Sequence;
  readonly start: number;
  readonly count: number;
  readonly sample: boolean;
}

export interface StepLimits {
  /** Rows of one step (max_batch_size). */
  readonly maxRows: number;
  /** New tokens of one step, all rows together (max_batch_tokens, and what fits in a message). */
  readonly maxTokens: number;
}

/**
 * The next step of one micro-batch (lane): every member that has a token to decode gets a
 * one-token row first, then the members still prefilling (or replaying after a failover) get
 * chunks of their history with what is left of the token budget. Members in flight or done are
 * skipped. Rows are in the lane's order, so a stable lane sends the same rows step after step.
 */
export function planLaneStep(members: readonly Sequence[], limits: StepLimits): PlannedRow[] {
  const rows: PlannedRow[] = [];
  let budget = limits.maxTokens;
  const ready = members.filter((s) => s.state === 'running' && !s.inFlight && s.fed < s.historyLength);
  for (const sequence of ready) {
    if (rows.length >= limits.maxRows || budget < 1) break;
    if (sequence.historyLength - sequence.fed !== 1) continue;
    rows.push({ sequence, start: sequence.fed, count: 1, sample: true });
    budget -= 1;
  }
  for (const sequence of ready) {
    if (rows.length >= limits.maxRows || budget < 1) break;
    const remaining = sequence.historyLength - sequence.fed;
    if (remaining === 1) continue;
    const count = Math.min(remaining, budget);
    rows.push({ sequence, start: sequence.fed, count, sample: count === remaining });
    budget -= count;
  }
  return rows;
}
