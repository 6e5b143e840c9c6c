export interface CircuitBreakerOptions {
  /** Consecutive failures that open the breaker. */
  readonly failureThreshold: number;
  /** How long the breaker stays open before it lets probes through (half-open). */
  readonly openMs: number;
  /** Consecutive successes in half-open that close it again. */
  readonly successThreshold: number;
}

export type BreakerState = 'closed' | 'open' | 'half-open';

/**
 * One replica's circuit breaker (the classic three states). Closed: traffic flows, failures are
 * counted. Open: no traffic until `openMs` has passed. Half-open: one probe at a time — the
 * router admits one new sequence (`admit`), and the next waits until that probe's step succeeds
 * or fails (or `openMs` passes without either); `successThreshold` successes close the breaker,
 * one failure opens it again. Only traffic counts: a health check that answers says the process
 * is up, not that its steps succeed, so it neither resets the failure count nor closes the
 * breaker. The clock is passed in, so the breaker is a pure state machine that tests drive.
 */
export class CircuitBreaker {
  private current: BreakerState = 'closed';
  private failures = 0;
  private successes = 0;
  private openedAt = 0;
  /** When the outstanding half-open probe was admitted; undefined when none is. */
  private probeSince: number | undefined;

  constructor(private readonly options: CircuitBreakerOptions) {}

  state(nowMs: number): BreakerState {
    if (this.current === 'open' && nowMs - this.openedAt >= this.options.openMs) {
      this.current = 'half-open';
      this.successes = 0;
      this.probeSince = undefined;
    }
    return this.current;
  }

  /** Whether traffic may go to the replica now: closed, or half-open with no probe outstanding. */
  allows(nowMs: number): boolean {
    const state = this.state(nowMs);
    if (state === 'closed') return true;
    if (state === 'open') return false;
    return this.probeSince === undefined || nowMs - this.probeSince >= this.options.openMs;
  }

  /** New traffic was sent to the replica: while half-open, it is the probe, and no more is let through until it is answered. */
  admit(nowMs: number): void {
    if (this.state(nowMs) === 'half-open') this.probeSince = nowMs;
  }

  recordSuccess(nowMs: number): void {
    const state = this.state(nowMs);
    this.failures = 0;
    this.probeSince = undefined;
    if (state === 'half-open' && ++this.successes >= this.options.successThreshold) this.current = 'closed';
  }

  recordFailure(nowMs: number): void {
    const state = this.state(nowMs);
    this.failures++;
    this.probeSince = undefined;
    if (state === 'half-open' || this.failures >= this.options.failureThreshold) this.trip(nowMs);
  }

  /** Opens the breaker at once (the replica was found dead), whatever the count. */
  trip(nowMs: number): void {
    this.current = 'open';
    this.openedAt = nowMs;
    this.successes = 0;
    this.probeSince = undefined;
  }
}
