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

describe('StepTimeout.overdueMs', () => {
  test('before any step was measured, nothing is overdue before the deadline', () => {
    expect(new StepTimeout(2_000, 1_000).overdueMs(1, 300)).toBeUndefined();
  });

  test('a step is overdue at twice what steps of its size take: after the minimum, before the deadline', () => {
    const timeout = new StepTimeout(2_000, 1_000);
    for (let i = 0; i < 50; i++) timeout.observe(8, 100);
    // 100 ms per step of 8 tokens: overdue at 200 ms, but never below the 300 ms minimum.
    expect(timeout.overdueMs(8, 300)).toBe(300);
    expect(timeout.overdueMs(8, 50)).toBe(200);
    for (let i = 0; i < 64; i++) timeout.observe(8, 450);
    // 450 ms steps: overdue at 900 ms, lost at the 2 s maximum (4 x 450 would be 1.8 s).
    expect(timeout.overdueMs(8, 300)).toBe(900);
    expect(timeout.timeoutMs(8)).toBe(1_800);
    // Never past the deadline itself.
    for (let i = 0; i < 64; i++) timeout.observe(8, 900);
    expect(timeout.timeoutMs(8)).toBe(2_000);
    expect(timeout.overdueMs(8, 300)).toBe(1_800);
    expect(timeout.overdueMs(8, 3_000)).toBe(2_000);
  });
});
