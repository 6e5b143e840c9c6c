/** Steps remembered for the estimate. */
const HISTORY = 64;
/** A step may take this many times the expected time before it is declared lost. */
const MARGIN = 4;
/** At this many times the expected time, a step is overdue: the replicas of its route are asked whether they are alive. */
const OVERDUE_MARGIN = 2;
/** New tokens that cost as much as one step's fixed overhead (a decode row is ~1/32 of a unit). */
const TOKENS_PER_UNIT = 32;

/**
 * The deadline of each step, from measured step times: a hung replica (SIGSTOP, a stalled host)
 * is detected when a step takes MARGIN × what steps of its size have been taking, bounded to
 * [minMs, maxMs] — seconds at most, not keepalive's tens of seconds. A step that is expected
 * to take longer than maxMs (a huge prefill) gets twice its expectation instead. Before that, at
 * OVERDUE_MARGIN × the expectation, the step is overdue: a cheap check (a health probe of its
 * route) can then tell a hung replica from a slow step long before the deadline.
 */
export class StepTimeout {
  /** Recent milliseconds per unit of work, newest last. */
  private readonly perUnit: number[] = [];
  /** p90 of perUnit, computed once per observation (a step asks for it two or three times). */
  private p90PerUnit: number | undefined;

  constructor(
    private readonly maxMs: number,
    private readonly minMs: number,
  ) {}

  observe(tokens: number, elapsedMs: number): void {
    this.perUnit.push(elapsedMs / units(tokens));
    if (this.perUnit.length > HISTORY) this.perUnit.shift();
    this.p90PerUnit = undefined;
  }

  /**
   * Milliseconds after which a step of `tokens` new tokens is overdue (never below minOverdueMs,
   * never past its deadline); undefined before any step was measured.
   */
  overdueMs(tokens: number, minOverdueMs: number): number | undefined {
    const expected = this.expectedMs(tokens);
    if (expected === undefined) return undefined;
    return Math.ceil(Math.min(this.timeoutMs(tokens), Math.max(minOverdueMs, expected * OVERDUE_MARGIN)));
  }

  /** Milliseconds a step of `tokens` new tokens may take before it is treated as lost. */
  timeoutMs(tokens: number): number {
    const expected = this.expectedMs(tokens);
    if (expected === undefined) return this.maxMs;
    if (expected * 1.5 > this.maxMs) return Math.ceil(expected * 2);
    return Math.ceil(Math.min(this.maxMs, Math.max(this.minMs, expected * MARGIN)));
  }

  /** What a step of `tokens` new tokens takes, from the slow end (p90) of recent steps. */
  private expectedMs(tokens: number): number | undefined {
    if (this.perUnit.length === 0) return undefined;
    if (this.p90PerUnit === undefined) {
      const sorted = [...this.perUnit].sort((a, b) => a - b);
      this.p90PerUnit = sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.9))];
    }
    return this.p90PerUnit * units(tokens);
  }
}

function units(tokens: number): number {
  return 1 + tokens / TOKENS_PER_UNIT;
}
