import { ServiceError } from '../../shared/errors';

export type Priority = 'interactive' | 'batch';
export const PRIORITIES: readonly Priority[] = ['interactive', 'batch'];

/** Batch requests may fill at most this share of the queue: interactive ones always find room. */
const BATCH_SHARE = 0.5;
/** The drain rate counts admissions over this last stretch of time. */
const DRAIN_WINDOW_MS = 10_000;
const MIN_RETRY_AFTER_MS = 1_000;
const MAX_RETRY_AFTER_MS = 60_000;

/**
 * The bounded wait before admission, by priority class. A request that finds the queue full is
 * refused at once (RESOURCE_EXHAUSTED) with a retry hint of (queue length ÷ measured drain
 * rate): latency never grows without bound, and a client knows when to come back.
 */
export class AdmissionQueue<T> {
  private readonly waiting = new Map<Priority, T[]>(PRIORITIES.map((p) => [p, []]));
  /** Times of the admissions within the drain window, oldest first. */
  private readonly admissions: number[] = [];

  constructor(
    private readonly capacity: number,
    private readonly clock: () => number = Date.now,
  ) {}

  get length(): number {
    let n = 0;
    for (const list of this.waiting.values()) n += list.length;
    return n;
  }

  /** Queues an item, or throws RESOURCE_EXHAUSTED at once, with a retry hint from the measured drain rate. */
  offer(item: T, priority: Priority): void {
    const limit = priority === 'batch' ? Math.floor(this.capacity * BATCH_SHARE) : this.capacity;
    if (this.length >= limit) {
      throw ServiceError.resourceExhausted(`the queue is full (${this.length} requests waiting${priority === 'batch' ? ', batch share reached' : ''})`, this.retryAfterMs());
    }
    (this.waiting.get(priority) as T[]).push(item);
  }

  /** Puts an item back at the front (it could not be admitted after all). */
  requeue(item: T, priority: Priority): void {
    (this.waiting.get(priority) as T[]).unshift(item);
  }

  /** The next item to admit, interactive first; counts toward the drain rate. */
  take(): T | undefined {
    for (const priority of PRIORITIES) {
      const list = this.waiting.get(priority) as T[];
      if (list.length > 0) {
        this.recordAdmission();
        return list.shift();
      }
    }
    return undefined;
  }

  peek(): T | undefined {
    for (const priority of PRIORITIES) {
      const list = this.waiting.get(priority) as T[];
      if (list.length > 0) return list[0];
    }
    return undefined;
  }

  remove(item: T): boolean {
    for (const list of this.waiting.values()) {
      const at = list.indexOf(item);
      if (at >= 0) {
        list.splice(at, 1);
        return true;
      }
    }
    return false;
  }

  drain(): T[] {
    const all = [...this.waiting.values()].flat();
    for (const list of this.waiting.values()) list.length = 0;
    return all;
  }

  /** Milliseconds until the queue has likely drained to half, by the measured admission rate. */
  retryAfterMs(): number {
    const perSecond = this.drainPerSecond();
    if (perSecond <= 0) return MIN_RETRY_AFTER_MS;
    const ms = (this.length / 2 / perSecond) * 1000;
    return Math.min(MAX_RETRY_AFTER_MS, Math.max(MIN_RETRY_AFTER_MS, Math.ceil(ms)));
  }

  /** Admissions per second over the drain window. */
  drainPerSecond(): number {
    this.forgetOldAdmissions(this.clock());
    return (this.admissions.length * 1000) / DRAIN_WINDOW_MS;
  }

  private recordAdmission(): void {
    const now = this.clock();
    this.admissions.push(now);
    this.forgetOldAdmissions(now);
  }

  private forgetOldAdmissions(now: number): void {
    let old = 0;
    while (old < this.admissions.length && now - this.admissions[old] > DRAIN_WINDOW_MS) old++;
    if (old > 0) this.admissions.splice(0, old);
  }
}
