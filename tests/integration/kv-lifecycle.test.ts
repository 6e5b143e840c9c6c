import { postJson, postSse } from '../support/http';
import { RunningSystem, SYSTEM_START_TIMEOUT_MS } from '../support/system';
import { tinyModel } from '../support/test-models';

/**
 * The tiny model split in 3 holds 2 layers per node: 2 × (key + value) × 64 floats × 4 bytes =
 * 1 KiB per cached token, and a new sequence reserves room for its prompt plus max_new_tokens
 * (at least 16 tokens). 160 KiB per node fits a 124-token sequence and refuses a ~60-token prompt with 170 new tokens.
 */
const KV_BUDGET_BYTES = 160 * 1024;
const RELEASE_WAIT_MS = 10_000;
const REQUEST_TIMEOUT_MS = 60_000;

let system: RunningSystem;

beforeAll(async () => {
  system = await RunningSystem.start({ modelDir: await tinyModel({ stages: 3 }), limits: { max_new_tokens: 250 }, env: { KV_BUDGET_BYTES: String(KV_BUDGET_BYTES) } });
}, SYSTEM_START_TIMEOUT_MS * 2);

afterAll(async () => {
  await system?.stop();
});

/** pipeserve_stage_kv_cache_sequences of every node, read from their /metrics endpoints. */
async function kvSequences(): Promise<number[]> {
  return Promise.all(
    system.config.metricsTargets.nodes.map(async (target) => {
      const text = await (await fetch(`http://${target}/metrics`)).text();
      const line = text.split('\n').find((l) => l.startsWith('pipeserve_stage_kv_cache_sequences{'));
      if (line === undefined) throw new Error(`no pipeserve_stage_kv_cache_sequences at ${target}`);
      return Number(line.slice(line.lastIndexOf(' ') + 1));
    }),
  );
}

async function waitForKv(expected: number): Promise<number[]> {
  const until = Date.now() + RELEASE_WAIT_MS;
  let counts = await kvSequences();
  while (counts.some((c) => c !== expected) && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 100));
    counts = await kvSequences();
  }
  return counts;
}

it(
  'a finished request leaves no KV cache in any stage',
  async () => {
    const answer = await postJson(`${system.apiUrl}/api/model/process`, { text: 'Hello there', max_new_tokens: 6 });
    expect(answer.status).toBe(200);
    expect(await waitForKv(0)).toEqual([0, 0, 0]);
  },
  REQUEST_TIMEOUT_MS,
);

it(
  'a client that goes away mid-stream frees its KV cache in every stage',
  async () => {
    const controller = new AbortController();
    let sawToken = false;
    const streaming = postSse(
      `${system.apiUrl}/api/model/generate`,
      { text: 'Once upon a time', max_new_tokens: 120 },
      {
        signal: controller.signal,
        onEvent: (event) => {
          if (event.event === 'token' && !sawToken) {
            sawToken = true;
            controller.abort();
          }
        },
      },
    );
    await expect(streaming).rejects.toThrow();
    expect(sawToken).toBe(true);
    expect(await waitForKv(0)).toEqual([0, 0, 0]);
  },
  REQUEST_TIMEOUT_MS,
);

it(
  'a node refuses a sequence whose prompt + max_new_tokens do not fit its KV budget with RESOURCE_EXHAUSTED (429), and keeps serving',
  async () => {
    const longPrompt = Array.from({ length: 30 }, (_, i) => `w${i}`).join(' ');
    const refused = await postJson(`${system.apiUrl}/api/model/process`, { text: longPrompt, max_new_tokens: 170 });
    expect(refused.status).toBe(429);
    expect(refused.headers.get('retry-after')).not.toBeNull();
    expect(JSON.stringify(refused.body)).toMatch(/KV cache budget exhausted/);
    expect(await waitForKv(0)).toEqual([0, 0, 0]);

    const served = await postJson(`${system.apiUrl}/api/model/process`, { text: 'Hello there', max_new_tokens: 6 });
    expect(served.status).toBe(200);
  },
  REQUEST_TIMEOUT_MS,
);
