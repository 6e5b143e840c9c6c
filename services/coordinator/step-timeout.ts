/** Steps remembered for the estimate. */
const HISTORY = 64;
/** A step may take this many times the expected time before it is declared lost. */
const MARGIN = 4;
/** New tokens that cost as much as one step's fixed overhead (a decode row is ~1/32 of a unit). */
const TOKENS_PER_UNIT = 32;

/**
 * The deadline of each step, from measured step times: a hung replica (SIGSTOP, a stalled host)
 * is detected when a step takes MARGIN × what steps of its size have been taking, bounded to
 * [minMs, maxMs] — seconds at most, not keepalive's tens of seconds. A step that is expected
 * to take longer than maxMs (a huge prefill) gets twice its expectation instead.
 */
export class StepTimeout {
  /** Recent milliseconds per unit of work, newest last. */
  private readonly perUnit: number[] = [];

  constructor(
    private readonly maxMs: number,
    private readonly minMs: number,
  ) {}

  observe(tokens: number, elapsedMs: number): void {
    this.perUnit.push(elapsedMs / units(tokens));
    if (this.perUnit.length > HISTORY) this.perUnit.shift();
  }

  /** Milliseconds a step of `tokens` new tokens may take before it is treated as lost. */
  timeoutMs(tokens: number): number {
    if (this.perUnit.length === 0) return this.maxMs;
    const sorted = [...this.perUnit].sort((a, b) => a - b);
    const p90 = sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.9))];
    const expected = p90 * units(tokens);
    if (expected * 1.5 > this.maxMs) return Math.ceil(expected * 2);
    return Math.ceil(Math.min(this.maxMs, Math.max(this.minMs, expected * MARGIN)));
  }
}

function units(tokens: number): number {
  return 1 + tokens / TOKENS_PER_UNIT;
}
