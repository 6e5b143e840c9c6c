import { describeNode } from '../../tools/describe-node';
import { postJson, postSse, type TimedSseEvent } from '../support/http';
import { RunningSystem, SYSTEM_START_TIMEOUT_MS } from '../support/system';
import { tinyModel } from '../support/test-models';

/**
 * A coordinator that hangs (SIGSTOP: its connections stay open, it answers nothing) leaves its
 * sequences' KV caches on every node. Nothing will release them, so the nodes drop them on
 * their idle TTL, measured in seconds (config `limits.kv_idle_ttl_ms`). When the coordinator
 * resumes, its stream must end (finished by a replay, or with an error) and the system serves.
 */
const KV_IDLE_TTL_MS = 2_000;
/** The nodes sweep every TTL/4 (at least 250 ms): dropped within TTL + a sweep, plus a busy machine's slack. */
const EXPIRY_BOUND_MS = KV_IDLE_TTL_MS + 4_000;
const NEW_TOKENS = 120;
const FREEZE_AFTER_TOKENS = 3;
const TEST_TIMEOUT_MS = 120_000;
const PROMPT = 'When the coordinator hangs, its sequences';

let system: RunningSystem;

beforeAll(async () => {
  system = await RunningSystem.start({ modelDir: await tinyModel({ stages: 3 }), limits: { kv_idle_ttl_ms: KV_IDLE_TTL_MS, max_new_tokens: NEW_TOKENS, request_timeout_ms: 60_000 } });
}, SYSTEM_START_TIMEOUT_MS * 2);

afterAll(async () => {
  system?.thawProcess('coordinator');
  await system?.stop();
});

const kvSequences = (): Promise<number[]> => Promise.all(system.config.nodes.map(async (n) => (await describeNode(n.address)).kv_sequences));

it(
  'SIGSTOP of the coordinator mid-stream: every node drops its orphaned KV within seconds (the idle TTL); after SIGCONT the stream ends and the system serves',
  async () => {
    const body = { text: PROMPT, max_new_tokens: NEW_TOKENS };
    const reference = await postJson(`${system.apiUrl}/api/model/process`, body);
    expect(reference.status).toBe(200);

    let frozenAt = 0;
    let tokens = 0;
    let onFrozen: () => void = () => undefined;
    const frozen = new Promise<void>((resolve) => (onFrozen = resolve));
    const onEvent = (event: TimedSseEvent): void => {
      if (event.event !== 'token' || ++tokens !== FREEZE_AFTER_TOKENS) return;
      system.freezeProcess('coordinator');
      frozenAt = performance.now();
      onFrozen();
    };
    const streamed = postSse(`${system.apiUrl}/api/model/generate`, body, { onEvent, signal: AbortSignal.timeout(TEST_TIMEOUT_MS) });
    await frozen;
    try {
      expect((await kvSequences()).some((n) => n > 0)).toBe(true);
      let held = await kvSequences();
      while (held.some((n) => n > 0) && performance.now() - frozenAt < EXPIRY_BOUND_MS) {
        await new Promise((r) => setTimeout(r, 100));
        held = await kvSequences();
      }
      expect(held).toEqual([0, 0, 0]);
      // Not before the TTL: the KV went because it was idle, not because something released it.
      expect(performance.now() - frozenAt).toBeGreaterThanOrEqual(KV_IDLE_TTL_MS * 0.9);
    } finally {
      system.thawProcess('coordinator');
    }

    const outcome = await streamed;
    const streamedTokens = outcome.events.filter((e) => e.event === 'token').map((e) => e.data.token_id as number);
    const ended = outcome.events.at(-1)?.event;
    expect(['done', 'error']).toContain(ended);
    // A replay from the coordinator's history gives the same tokens; an error, a prefix of them.
    if (ended === 'done') expect(streamedTokens).toEqual(reference.body.token_ids);
    else expect(streamedTokens).toEqual((reference.body.token_ids as number[]).slice(0, streamedTokens.length));

    const after = await postJson(`${system.apiUrl}/api/model/process`, body);
    expect(after.status).toBe(200);
    expect(after.body.token_ids).toEqual(reference.body.token_ids);
  },
  TEST_TIMEOUT_MS,
);
