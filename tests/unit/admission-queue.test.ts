import { status } from '@grpc/grpc-js';
import { AdmissionQueue } from '../../services/coordinator/admission-queue';
import { ServiceError } from '../../shared/errors';

function refusal(fn: () => void): ServiceError {
  try {
    fn();
  } catch (error) {
    return error as ServiceError;
  }
  throw new Error('expected a refusal');
}

describe('AdmissionQueue', () => {
  test('interactive requests are admitted before batch ones, each class in arrival order', () => {
    const queue = new AdmissionQueue<string>(10);
    queue.offer('b1', 'batch');
    queue.offer('i1', 'interactive');
    queue.offer('b2', 'batch');
    queue.offer('i2', 'interactive');
    expect([queue.take(), queue.take(), queue.take(), queue.take(), queue.take()]).toEqual(['i1', 'i2', 'b1', 'b2', undefined]);
  });

  test('a full queue refuses at once with RESOURCE_EXHAUSTED; batch requests may fill only half, so interactive ones still find room', () => {
    const queue = new AdmissionQueue<string>(4);
    queue.offer('b1', 'batch');
    queue.offer('b2', 'batch');
    const batchRefused = refusal(() => queue.offer('b3', 'batch'));
    expect(batchRefused.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(batchRefused.message).toMatch(/batch share/);
    queue.offer('i1', 'interactive');
    queue.offer('i2', 'interactive');
    const refused = refusal(() => queue.offer('i3', 'interactive'));
    expect(refused.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(refused.message).toMatch(/the queue is full \(4 requests waiting\)/);
  });

  test('the retry hint is how long the measured drain rate needs to halve the queue, within [1 s, 60 s]', () => {
    let now = 0;
    const queue = new AdmissionQueue<number>(100, () => now);
    expect(queue.retryAfterMs()).toBe(1_000);
    // 20 admissions in the last 10 s: 2 per second.
    for (let i = 0; i < 20; i++) {
      queue.offer(i, 'interactive');
      now += 500;
      queue.take();
    }
    expect(queue.drainPerSecond()).toBeCloseTo(2, 5);
    for (let i = 0; i < 40; i++) queue.offer(i, 'interactive');
    // 40 waiting, 20 to drain at 2/s: 10 s.
    expect(queue.retryAfterMs()).toBe(10_000);
    now += 60_000;
    expect(queue.drainPerSecond()).toBe(0);
    expect(queue.retryAfterMs()).toBe(1_000);
  });

  test('requeue puts an item back at the front of its class; remove takes one out wherever it is', () => {
    const queue = new AdmissionQueue<string>(10);
    queue.offer('a', 'interactive');
    queue.offer('b', 'interactive');
    queue.requeue(queue.take() as string, 'interactive');
    expect(queue.remove('b')).toBe(true);
    expect(queue.remove('b')).toBe(false);
    expect([queue.take(), queue.length]).toEqual(['a', 0]);
  });
});
