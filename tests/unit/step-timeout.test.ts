import { StepTimeout } from '../../services/coordinator/step-timeout';

describe('StepTimeout', () => {
  test('without measurements a step gets the maximum', () => {
    expect(new StepTimeout(3_000, 250).timeoutMs(1)).toBe(3_000);
  });

  test('a hung step is declared lost at a few times what steps of its size take, never below the minimum nor above the maximum', () => {
    const timeout = new StepTimeout(3_000, 250);
    for (let i = 0; i < 50; i++) timeout.observe(10, 40);
    const decode = timeout.timeoutMs(10);
    expect(decode).toBeGreaterThanOrEqual(250);
    expect(decode).toBeLessThan(3_000);
    expect(decode).toBe(250);
    for (let i = 0; i < 50; i++) timeout.observe(10, 200);
    expect(timeout.timeoutMs(10)).toBe(800);
    // A bigger step is expected to take longer: the deadline scales with its tokens.
    expect(timeout.timeoutMs(320)).toBe(3_000);
  });

  test('a step expected to outlast the maximum (a huge prefill) gets twice its expectation instead', () => {
    const timeout = new StepTimeout(3_000, 250);
    for (let i = 0; i < 10; i++) timeout.observe(32, 1_000);
    // 4096 tokens = 129 units at 500 ms per unit.
    expect(timeout.timeoutMs(4_096)).toBe(2 * 500 * 129);
  });
});
