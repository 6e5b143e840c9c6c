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
 * counted. Open: no traffic until `openMs` has passed. Half-open: traffic is let through as a
 * probe; `successThreshold` successes close the breaker, one failure opens it again. The clock
 * is passed in, so the breaker is a pure state machine that tests drive directly.
 */
export class CircuitBreaker {
  private current: BreakerState = 'closed';
  private failures = 0;
  private successes = 0;
  private openedAt = 0;

  constructor(private readonly options: CircuitBreakerOptions) {}

  state(nowMs: number): BreakerState {
    if (this.current === 'open' && nowMs - this.openedAt >= this.options.openMs) {
      this.current = 'half-open';
      this.successes = 0;
    }
    return this.current;
  }

  /** Whether traffic may go to the replica now. */
  allows(nowMs: number): boolean {
    return this.state(nowMs) !== 'open';
  }

  recordSuccess(nowMs: number): void {
    const state = this.state(nowMs);
    this.failures = 0;
    if (state === 'half-open' && ++this.successes >= this.options.successThreshold) this.current = 'closed';
  }

  recordFailure(nowMs: number): void {
    const state = this.state(nowMs);
    this.failures++;
    if (state === 'half-open' || this.failures >= this.options.failureThreshold) this.trip(nowMs);
  }

  /** Opens the breaker at once (the replica was found dead), whatever the count. */
  trip(nowMs: number): void {
    this.current = 'open';
    this.openedAt = nowMs;
    this.successes = 0;
  }
}
