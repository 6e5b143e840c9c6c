import { CircuitBreaker } from '../../services/coordinator/circuit-breaker';

const OPTIONS = { failureThreshold: 3, openMs: 1_000, successThreshold: 2 };

describe('CircuitBreaker', () => {
  test('opens after the threshold of consecutive failures, and a success in between resets the count', () => {
    const breaker = new CircuitBreaker(OPTIONS);
    breaker.recordFailure(0);
    breaker.recordFailure(1);
    breaker.recordSuccess(2);
    breaker.recordFailure(3);
    breaker.recordFailure(4);
    expect(breaker.state(5)).toBe('closed');
    breaker.recordFailure(6);
    expect(breaker.state(7)).toBe('open');
    expect(breaker.allows(7)).toBe(false);
  });

  test('after openMs it lets probes through (half-open); enough successes close it', () => {
    const breaker = new CircuitBreaker(OPTIONS);
    breaker.trip(100);
    expect(breaker.allows(1_099)).toBe(false);
    expect(breaker.state(1_100)).toBe('half-open');
    expect(breaker.allows(1_100)).toBe(true);
    breaker.recordSuccess(1_101);
    expect(breaker.state(1_102)).toBe('half-open');
    breaker.recordSuccess(1_103);
    expect(breaker.state(1_104)).toBe('closed');
  });

  test('one failure while half-open opens it again for another openMs', () => {
    const breaker = new CircuitBreaker(OPTIONS);
    breaker.trip(0);
    expect(breaker.state(1_000)).toBe('half-open');
    breaker.recordFailure(1_000);
    expect(breaker.state(1_500)).toBe('open');
    expect(breaker.state(2_000)).toBe('half-open');
  });

  test('half-open admits one probe at a time: the next waits for its answer, or for openMs without one', () => {
    const breaker = new CircuitBreaker(OPTIONS);
    breaker.trip(0);
    expect(breaker.allows(1_000)).toBe(true);
    breaker.admit(1_000);
    expect(breaker.allows(1_001)).toBe(false);
    expect(breaker.state(1_001)).toBe('half-open');
    // A probe never answered does not block the replica for good.
    expect(breaker.allows(2_000)).toBe(true);
    breaker.admit(2_000);
    breaker.recordSuccess(2_100);
    expect(breaker.allows(2_101)).toBe(true);
    breaker.admit(2_101);
    expect(breaker.allows(2_102)).toBe(false);
    breaker.recordSuccess(2_200);
    expect(breaker.state(2_201)).toBe('closed');
    // Closed: admitting traffic changes nothing.
    breaker.admit(2_202);
    expect(breaker.allows(2_203)).toBe(true);
  });

  test('a flapping replica: a failed probe opens it again, and admitting while open lets nothing through', () => {
    const breaker = new CircuitBreaker(OPTIONS);
    breaker.trip(0);
    breaker.admit(1_000);
    breaker.recordFailure(1_050);
    expect(breaker.state(1_051)).toBe('open');
    breaker.admit(1_100);
    expect(breaker.allows(1_100)).toBe(false);
    expect(breaker.allows(2_050)).toBe(true);
  });
});
