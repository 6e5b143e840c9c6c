import { postJson } from '../support/http';
import { RunningSystem, SYSTEM_START_TIMEOUT_MS } from '../support/system';
import { tinyModel } from '../support/test-models';

/** A failing request must answer well before the request deadline of the test system (30 s). */
const FAIL_FAST_MS = 5_000;
const HEALTH_NOTICE_MS = 10_000;

let system: RunningSystem;

beforeAll(async () => {
  system = await RunningSystem.start({ modelDir: await tinyModel({ stages: 3 }) });
}, SYSTEM_START_TIMEOUT_MS * 2);

afterAll(async () => {
  await system?.stop();
});

async function readyBody(): Promise<{ status: number; body: string }> {
  const response = await fetch(`${system.apiUrl}/ready`, { signal: AbortSignal.timeout(5_000) });
  return { status: response.status, body: await response.text() };
}

async function waitFor<T>(probe: () => Promise<T>, accept: (value: T) => boolean, timeoutMs: number): Promise<T> {
  const until = Date.now() + timeoutMs;
  let value = await probe();
  while (!accept(value) && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 100));
    value = await probe();
  }
  return value;
}

it(
  'stopping a model node makes requests fail fast with 503 and /ready name the node; restarting it restores service',
  async () => {
    const request = { text: 'The history of the world', max_new_tokens: 8 };
    const before = await postJson(`${system.apiUrl}/api/model/process`, request);
    expect(before.status).toBe(200);

    await system.stopProcess('node2');

    const started = Date.now();
    const failed = await postJson(`${system.apiUrl}/api/model/process`, request);
    expect(Date.now() - started).toBeLessThan(FAIL_FAST_MS);
    expect(failed.status).toBe(503);
    expect(JSON.stringify(failed.body)).toMatch(/node2|stage 1|unreachable|UNAVAILABLE/);

    const notReady = await waitFor(readyBody, (r) => r.status === 503 && r.body.includes('node2'), HEALTH_NOTICE_MS);
    expect(notReady.status).toBe(503);
    expect(notReady.body).toContain('node2');
    expect(notReady.body).not.toMatch(/node1[^0-9]|node3/);

    // Streaming requests fail fast too.
    const streamStarted = Date.now();
    const streamed = await fetch(`${system.apiUrl}/api/model/generate`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(request),
      signal: AbortSignal.timeout(FAIL_FAST_MS * 2),
    });
    await streamed.text();
    expect(Date.now() - streamStarted).toBeLessThan(FAIL_FAST_MS);
    expect(streamed.status).toBe(503);

    await system.startProcess('node2');
    const ready = await waitFor(readyBody, (r) => r.status === 200, SYSTEM_START_TIMEOUT_MS);
    expect(ready.status).toBe(200);
    const after = await postJson(`${system.apiUrl}/api/model/process`, request);
    expect(after.status).toBe(200);
    expect(after.body.token_ids).toEqual(before.body.token_ids);
  },
  SYSTEM_START_TIMEOUT_MS * 2,
);
