import { describeNode } from '../../tools/describe-node';
import { SystemRunner } from '../../tools/bench/system-runner';
import { postJson } from '../support/http';
import { SYSTEM_START_TIMEOUT_MS } from '../support/system';
import { tinyModel } from '../support/test-models';

/**
 * The coordinator owns every sequence; when its process dies, what it owned must not outlive
 * it. With an idle TTL far longer than the test, the nodes can only have freed the KV because
 * the coordinator's sessions broke; the launcher then brings the coordinator back.
 */
const KV_IDLE_TTL_MS = 600_000;
const NEW_TOKENS = 120;
const KILL_AFTER_TOKENS = 3;
/** Nodes free a broken session's KV at once; this bounds "at once" on a busy machine, far below the TTL. */
const RELEASE_WAIT_MS = 10_000;
/** The launcher restarts a dead service after 250 ms, then it must load and reconnect. */
const RECOVERY_WAIT_MS = 30_000;
const TEST_TIMEOUT_MS = 90_000;
const PROMPT = 'When the coordinator dies, its sequences';

let system: SystemRunner;

beforeAll(async () => {
  system = await SystemRunner.start({ modelDir: await tinyModel({ stages: 3 }), limits: { kv_idle_ttl_ms: KV_IDLE_TTL_MS, max_new_tokens: NEW_TOKENS } });
}, SYSTEM_START_TIMEOUT_MS * 2);

afterAll(async () => {
  await system?.stop();
});

async function eventually<T>(read: () => Promise<T>, done: (value: T) => boolean, timeoutMs: number): Promise<T> {
  const until = Date.now() + timeoutMs;
  let value = await read();
  while (!done(value) && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 100));
    value = await read();
  }
  return value;
}

it(
  'SIGKILL of the coordinator mid-stream: the stream ends with an error event, every node frees its KV at once, the launcher restarts it, and the same request then gives the same tokens',
  async () => {
    const body = { text: PROMPT, max_new_tokens: NEW_TOKENS };
    const reference = await postJson(`${system.apiUrl}/api/model/process`, body);
    expect(reference.status).toBe(200);
    const victim = system.services().get('coordinator');

    const streamed = await system.stream(body, {
      onToken: (index) => {
        if (index + 1 === KILL_AFTER_TOKENS) system.signal('coordinator', 'SIGKILL');
      },
    });
    expect({ status: streamed.status, done: streamed.done }).toEqual({ status: 200, done: false });
    expect(streamed.tokens.length).toBeLessThan(NEW_TOKENS);
    expect(streamed.error).toMatch(/UNAVAILABLE/);

    const kvSequences = (): Promise<number[]> => Promise.all(system.config.nodes.map(async (n) => (await describeNode(n.address)).kv_sequences));
    expect(await eventually(kvSequences, (held) => held.every((n) => n === 0), RELEASE_WAIT_MS)).toEqual([0, 0, 0]);

    const ready = await eventually(() => fetch(`${system.apiUrl}/ready`).then((r) => r.status, () => 0), (status) => status === 200, RECOVERY_WAIT_MS);
    expect(ready).toBe(200);
    expect(system.services().get('coordinator')).not.toBe(victim);
    expect(system.log()).toMatch(/coordinator was killed by SIGKILL; restarting it/);
    const again = await postJson(`${system.apiUrl}/api/model/process`, body);
    expect({ status: again.status, tokens: again.body.token_ids }).toEqual({ status: 200, tokens: reference.body.token_ids });
  },
  TEST_TIMEOUT_MS,
);
