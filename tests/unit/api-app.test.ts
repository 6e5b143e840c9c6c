import type { RunningServer } from '../../shared/grpc/channel';
import {
  BAD_BODIES,
  FAKE_CONTEXT_TOKENS,
  FAKE_MAX_PROMPT_TOKENS,
  deferred,
  postJson,
  startApi,
  startFakeCoordinator,
  startFakeTokenizer,
  testConfig,
  type CoordinatorRecord,
  type RunningApi,
} from '../support/api-test-support';
import { eventually } from '../support/eventually';
import { readSse, type SseEvent } from '../support/http';

/** Real gRPC servers and an HTTP listener on a loaded machine: generous, but bounded. */
const SERVICE_TEST_TIMEOUT_MS = 30_000;
const BODY_LIMIT_BYTES = 2048;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

jest.setTimeout(SERVICE_TEST_TIMEOUT_MS);

/** What the fake pipeline answers for an ASCII prompt: its characters reversed, cut to maxNewTokens. */
function reversedText(text: string, maxNewTokens: number): string {
  return [...text].reverse().join('').slice(0, maxNewTokens);
}

describe('api over in-test tokenizer and coordinator', () => {
  let tokenizer: RunningServer;
  let coordinator: RunningServer;
  let record: CoordinatorRecord;
  let api: RunningApi;
  /** When set, each fake generated token waits for it: lets a test hold or pace a generation. */
  let gate: ((index: number, requestId: string) => Promise<void>) | undefined;

  beforeAll(async () => {
    tokenizer = await startFakeTokenizer();
    ({ server: coordinator, record } = await startFakeCoordinator({ capacity: 1, beforeToken: (i, id) => gate?.(i, id) ?? Promise.resolve() }));
    api = await startApi(testConfig(tokenizer.port, coordinator.port, { body_limit_bytes: BODY_LIMIT_BYTES }));
  });

  afterAll(async () => {
    await api.close();
    await Promise.all([tokenizer.shutdown(0), coordinator.shutdown(0)]);
  });

  afterEach(() => {
    gate = undefined;
  });

  test('process answers the generation of the tokenizer ids with counts, timings and the metadata echoed', async () => {
    const text = 'hello pipeline';
    const response = await postJson(`${api.url}/api/model/process`, { text, max_new_tokens: 5, metadata: { user: 'u7', n: [1, 2] } });
    expect(response.status).toBe(200);
    const body = (await response.json()) as Record<string, unknown>;
    const expectedText = reversedText(text, 5);
    expect(body).toMatchObject({
      request_id: response.headers.get('x-request-id'),
      text: expectedText,
      token_ids: [...expectedText].map((c) => c.charCodeAt(0)),
      tokens: { prompt: text.length, generated: 5 },
      finish_reason: 'length',
      metadata: { user: 'u7', n: [1, 2] },
      timings: { queue_ms: 0.5, time_to_first_token_ms: 1.25, nodes: [{ node_id: 'node1', stage: 0, forward_ms: 0.75, steps: 5 }] },
    });
    const timings = body.timings as Record<string, number>;
    expect(timings.tokenize_ms).toBeGreaterThanOrEqual(0);
    expect(timings.total_ms).toBeGreaterThanOrEqual(timings.tokenize_ms);
  });

  test('sampling fields reach the coordinator as given, and unset ones stay absent', async () => {
    const body = { text: 'abc', max_new_tokens: 2, temperature: 0.8, top_k: 40, seed: 7, stop: ['\n'] };
    expect((await postJson(`${api.url}/api/model/process`, body)).status).toBe(200);
    const parameters = record.requests[record.requests.length - 1].parameters;
    expect(parameters).toMatchObject({ max_new_tokens: 2, top_k: 40, seed: 7, stop: ['\n'] });
    expect(parameters?.temperature).toBeCloseTo(0.8, 6);
    expect(parameters?._top_p).toBeUndefined();
    expect(parameters?._repetition_penalty).toBeUndefined();
    expect(parameters?._top_k).toBe('top_k');
  });

  test('every invalid body gets a 400 naming the field, reaches no service, and the app keeps serving', async () => {
    const requestsBefore = record.requests.length;
    for (const [name, body, message] of BAD_BODIES) {
      for (const route of ['process', 'generate']) {
        const response = await postJson(`${api.url}/api/model/${route}`, body);
        const json = (await response.json()) as { error: { code: string; message: string; request_id: string } };
        expect({ name, route, status: response.status, code: json.error.code, starts: json.error.message.startsWith(message) }).toEqual({
          name,
          route,
          status: 400,
          code: 'INVALID_ARGUMENT',
          starts: true,
        });
        expect(json.error.request_id).toBe(response.headers.get('x-request-id'));
      }
    }
    expect(record.requests.length).toBe(requestsBefore);
    const after = await postJson(`${api.url}/api/model/process`, { text: 'still here', max_new_tokens: 4 });
    expect(after.status).toBe(200);
    expect(((await after.json()) as { text: string }).text).toBe(reversedText('still here', 4));
  });

  test('a body that is not JSON, too large, or of another content type is a 400 naming the body', async () => {
    const send = async (body: string, contentType?: string): Promise<{ status: number; message: string }> => {
      const response = await fetch(`${api.url}/api/model/process`, { method: 'POST', headers: contentType ? { 'content-type': contentType } : {}, body });
      const json = (await response.json()) as { error: { message: string } };
      return { status: response.status, message: json.error.message };
    };
    const invalid = await send('{"text": "a",', 'application/json');
    expect(invalid.status).toBe(400);
    expect(invalid.message).toMatch(/^body: invalid JSON: /);

    const oversized = await send(JSON.stringify({ text: 'x'.repeat(BODY_LIMIT_BYTES) }), 'application/json');
    expect(oversized).toEqual({ status: 400, message: `body: larger than ${BODY_LIMIT_BYTES} bytes` });

    const plain = await send('text=hello', 'text/plain');
    expect(plain).toEqual({ status: 400, message: 'content-type: must be application/json, got text/plain' });

    // An empty application/json body parses as an empty object, which lacks the text.
    expect(await send('', 'application/json')).toEqual({ status: 400, message: 'text: must be a non-empty string' });
  });

  test("a prompt the coordinator refuses (INVALID_ARGUMENT) is a 400 carrying the coordinator's message, naming the request's own field", async () => {
    const text = 'p'.repeat(FAKE_MAX_PROMPT_TOKENS + 1);
    for (const route of ['process', 'generate']) {
      const response = await postJson(`${api.url}/api/model/${route}`, { text });
      expect(response.status).toBe(400);
      const json = (await response.json()) as { error: { code: string; message: string } };
      expect(json.error).toMatchObject({
        code: 'INVALID_ARGUMENT',
        message: `text: ${FAKE_MAX_PROMPT_TOKENS + 1} tokens, the model takes at most ${FAKE_MAX_PROMPT_TOKENS}`,
      });
      // The coordinator's parameters.max_new_tokens is this body's max_new_tokens.
      const tooMany = await postJson(`${api.url}/api/model/${route}`, { text: 'pp', max_new_tokens: FAKE_CONTEXT_TOKENS });
      expect(tooMany.status).toBe(400);
      expect(((await tooMany.json()) as { error: { message: string } }).error.message).toBe(`max_new_tokens: must be at most ${FAKE_CONTEXT_TOKENS - 2}, got ${FAKE_CONTEXT_TOKENS}`);
    }
  });

  test('a full coordinator (RESOURCE_EXHAUSTED) is a 429 with Retry-After, and capacity comes back', async () => {
    const hold = deferred();
    const firstTokenReached = deferred();
    gate = (index) => {
      if (index === 0) firstTokenReached.resolve();
      return hold.promise;
    };
    const held = postJson(`${api.url}/api/model/process`, { text: 'first', max_new_tokens: 2 });
    await firstTokenReached.promise;

    for (const route of ['process', 'generate']) {
      const refused = await postJson(`${api.url}/api/model/${route}`, { text: 'second' });
      expect(refused.status).toBe(429);
      expect(refused.headers.get('retry-after')).toBe('1');
      expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('RESOURCE_EXHAUSTED');
    }

    hold.resolve();
    expect((await held).status).toBe(200);
    const again = await postJson(`${api.url}/api/model/process`, { text: 'third', max_new_tokens: 1 });
    expect(again.status).toBe(200);
  });

  test('generate streams one token event at a time, each flushed before the next is generated', async () => {
    const text = 'stream me';
    const received: SseEvent[] = [];
    // Token i is only generated after the client has received token i-1: a buffered stream would never finish.
    gate = async (index) => eventually(() => received.filter((e) => e.event === 'token').length >= index);
    const response = await postJson(`${api.url}/api/model/generate`, { text, max_new_tokens: 6 });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
    for await (const event of readSse(response)) received.push(event);

    const expected = reversedText(text, 6);
    expect(received.map((e) => e.event)).toEqual(['token', 'token', 'token', 'token', 'token', 'token', 'done']);
    expect(received.slice(0, 6).map((e) => e.data)).toEqual([...expected].map((c, index) => ({ index, token_id: c.charCodeAt(0), text: c })));
    expect(received[6].data).toMatchObject({ text: expected, finish_reason: 'length', tokens: { prompt: text.length, generated: 6 } });
  });

  test("the streamed pieces concatenate to the process route's text, and done carries the process route's answer", async () => {
    const body = { text: 'same answer both ways', max_new_tokens: 12, metadata: { k: 'v' } };
    const processed = (await (await postJson(`${api.url}/api/model/process`, body)).json()) as Record<string, unknown>;
    const events: SseEvent[] = [];
    for await (const event of readSse(await postJson(`${api.url}/api/model/generate`, body))) events.push(event);
    const pieces = events.filter((e) => e.event === 'token').map((e) => (e.data as { text: string }).text);
    expect(pieces.join('')).toBe(processed.text);
    const done = events[events.length - 1];
    expect(done.event).toBe('done');
    const { request_id: _a, timings: _b, ...processRest } = processed;
    const { request_id: _c, timings: _d, ...doneRest } = done.data as Record<string, unknown>;
    expect(doneRest).toEqual(processRest);
  });

  test('a client that disconnects mid-stream cancels its coordinator call', async () => {
    const hold = deferred();
    gate = (index) => (index === 0 ? Promise.resolve() : hold.promise);
    const controller = new AbortController();
    const requestId = 'disconnect-test-1';
    const response = await postJson(`${api.url}/api/model/generate`, { text: 'go away' }, { headers: { 'x-request-id': requestId }, signal: controller.signal });
    const events = readSse(response);
    const first = await events.next();
    expect(first.value).toMatchObject({ event: 'token', data: { index: 0 } });
    controller.abort();
    await eventually(() => record.cancelled.includes(requestId));
    hold.resolve();
  });

  test('a client that disconnects from process cancels its coordinator call', async () => {
    const hold = deferred();
    const started = deferred();
    gate = () => {
      started.resolve();
      return hold.promise;
    };
    const controller = new AbortController();
    const requestId = 'disconnect-test-2';
    const pending = postJson(`${api.url}/api/model/process`, { text: 'go away' }, { headers: { 'x-request-id': requestId }, signal: controller.signal }).catch(
      (error: unknown) => error,
    );
    await started.promise;
    controller.abort();
    await pending;
    await eventually(() => record.cancelled.includes(requestId));
    hold.resolve();
  });

  test('a sane X-Request-Id travels to the coordinator and back; an unsafe one is replaced by a UUID', async () => {
    const sane = 'trace-42.a:b_c';
    const response = await postJson(`${api.url}/api/model/process`, { text: 'id' }, { headers: { 'x-request-id': sane } });
    expect(response.headers.get('x-request-id')).toBe(sane);
    expect(((await response.json()) as { request_id: string }).request_id).toBe(sane);
    expect(record.requests[record.requests.length - 1].request_id).toBe(sane);
    expect(record.metadataRequestIds[record.metadataRequestIds.length - 1]).toBe(sane);

    for (const unsafe of ['has space', 'x'.repeat(129), 'semi;colon']) {
      const replaced = await postJson(`${api.url}/api/model/process`, { text: 'id' }, { headers: { 'x-request-id': unsafe } });
      const id = replaced.headers.get('x-request-id') ?? '';
      expect(id).toMatch(UUID);
      expect(((await replaced.json()) as { request_id: string }).request_id).toBe(id);
    }
    const none = await fetch(`${api.url}/health`);
    expect(none.headers.get('x-request-id')).toMatch(UUID);
  });

  test('/health answers ok and an unknown route is a JSON 404', async () => {
    const health = await fetch(`${api.url}/health`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: 'ok' });
    const missing = await fetch(`${api.url}/api/model/nope`);
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as { error: { code: string } }).error.code).toBe('NOT_FOUND');
  });
});

describe('api metrics', () => {
  let tokenizer: RunningServer;
  let coordinator: RunningServer;
  let api: RunningApi;

  beforeAll(async () => {
    tokenizer = await startFakeTokenizer();
    ({ server: coordinator } = await startFakeCoordinator({ capacity: 4 }));
    api = await startApi(testConfig(tokenizer.port, coordinator.port));
  });

  afterAll(async () => {
    await api.close();
    await Promise.all([tokenizer.shutdown(0), coordinator.shutdown(0)]);
  });

  /** The value of one sample in Prometheus text format, found by name and exact label set. */
  function sample(text: string, name: string, labels: Record<string, string>): number {
    for (const line of text.split('\n')) {
      const match = /^([a-z_]+)\{([^}]*)\} (\S+)$/.exec(line);
      if (match === null || match[1] !== name) continue;
      const found = Object.fromEntries([...match[2].matchAll(/([a-z_]+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
      if (Object.entries(labels).every(([k, v]) => found[k] === v)) return Number(match[3]);
    }
    return 0;
  }

  test('requests are counted by route pattern, method and status, and tokens by kind', async () => {
    const prompts = [{ text: 'twelve chars', max_new_tokens: 3 }, { text: 'four', max_new_tokens: 10 }];
    for (const body of prompts) expect((await postJson(`${api.url}/api/model/process`, body)).status).toBe(200);
    expect((await postJson(`${api.url}/api/model/process`, { text: '' })).status).toBe(400);
    for await (const _event of readSse(await postJson(`${api.url}/api/model/generate`, { text: 'abcdef', max_new_tokens: 2 }))) {
      // drain the stream
    }

    const text = await (await fetch(`${api.url}/metrics`)).text();
    expect(sample(text, 'pipeserve_api_http_requests_total', { route: '/api/model/process', method: 'POST', status: '200' })).toBe(2);
    expect(sample(text, 'pipeserve_api_http_requests_total', { route: '/api/model/process', method: 'POST', status: '400' })).toBe(1);
    expect(sample(text, 'pipeserve_api_http_requests_total', { route: '/api/model/generate', method: 'POST', status: '200' })).toBe(1);
    expect(sample(text, 'pipeserve_api_http_request_duration_seconds_count', { route: '/api/model/process', method: 'POST', status: '200' })).toBe(2);
    expect(sample(text, 'pipeserve_api_http_request_duration_seconds_bucket', { route: '/api/model/process', method: 'POST', status: '200', le: '+Inf' })).toBe(2);
    const promptTokens = 'twelve chars'.length + 'four'.length + 'abcdef'.length;
    const generatedTokens = Math.min(3, 12) + Math.min(10, 4) + 2;
    expect(sample(text, 'pipeserve_api_tokens_total', { kind: 'prompt' })).toBe(promptTokens);
    expect(sample(text, 'pipeserve_api_tokens_total', { kind: 'generated' })).toBe(generatedTokens);
    expect(sample(text, 'pipeserve_api_http_requests_total', { service: 'api', route: '/api/model/process', status: '200' })).toBe(2);
  });
});

describe('api when a service is down or slow', () => {
  test('a stopped coordinator is a 503 that names it, answered without waiting for the request deadline', async () => {
    const tokenizer = await startFakeTokenizer();
    const { server: coordinator } = await startFakeCoordinator({ capacity: 1 });
    // The request deadline is far beyond the test's timeout: a 503 in time proves the api does not hang.
    const api = await startApi(testConfig(tokenizer.port, coordinator.port, { request_timeout_ms: 10 * SERVICE_TEST_TIMEOUT_MS }));
    try {
      expect((await postJson(`${api.url}/api/model/process`, { text: 'up', max_new_tokens: 1 })).status).toBe(200);
      await coordinator.shutdown(0);
      for (const route of ['process', 'generate']) {
        const response = await postJson(`${api.url}/api/model/${route}`, { text: 'down' });
        expect(response.status).toBe(503);
        const json = (await response.json()) as { error: { code: string; message: string } };
        expect(json.error.code).toBe('UNAVAILABLE');
        expect(json.error.message).toMatch(/^coordinator unavailable: /);
      }
    } finally {
      await api.close();
      await tokenizer.shutdown(0);
    }
  });

  test('a stopped tokenizer is a 503 that names it', async () => {
    const tokenizer = await startFakeTokenizer();
    const { server: coordinator } = await startFakeCoordinator({ capacity: 1 });
    const api = await startApi(testConfig(tokenizer.port, coordinator.port));
    try {
      await tokenizer.shutdown(0);
      const response = await postJson(`${api.url}/api/model/process`, { text: 'down' });
      expect(response.status).toBe(503);
      expect(((await response.json()) as { error: { message: string } }).error.message).toMatch(/^tokenizer unavailable: /);
    } finally {
      await api.close();
      await coordinator.shutdown(0);
    }
  });

  test('a coordinator that does not answer within request_timeout_ms is a 503 DEADLINE_EXCEEDED, and the call is cancelled', async () => {
    const never = deferred();
    const tokenizer = await startFakeTokenizer();
    const { server: coordinator, record } = await startFakeCoordinator({ capacity: 1, beforeToken: () => never.promise });
    const api = await startApi(testConfig(tokenizer.port, coordinator.port, { request_timeout_ms: 300 }));
    try {
      const response = await postJson(`${api.url}/api/model/process`, { text: 'slow' }, { headers: { 'x-request-id': 'slow-1' } });
      expect(response.status).toBe(503);
      const json = (await response.json()) as { error: { code: string; message: string } };
      expect(json.error.code).toBe('DEADLINE_EXCEEDED');
      expect(json.error.message).toMatch(/^coordinator did not answer before the request deadline/);
      await eventually(() => record.cancelled.includes('slow-1'));
    } finally {
      never.resolve();
      await api.close();
      await Promise.all([tokenizer.shutdown(0), coordinator.shutdown(0)]);
    }
  });
});
