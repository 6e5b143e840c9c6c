import OpenAI from 'openai';
import type { RunningServer } from '../../shared/grpc/channel';
import {
  FAKE_CONTEXT_TOKENS,
  FAKE_LOGPROB,
  FAKE_MAX_PROMPT_TOKENS,
  deferred,
  fakeChatText,
  postJson,
  startApi,
  startFakeCoordinator,
  startFakeTokenizer,
  testConfig,
  type CoordinatorRecord,
  type RunningApi,
} from '../support/api-test-support';
import { eventually } from '../support/eventually';

/** Real gRPC servers and an HTTP listener on a loaded machine: generous, but bounded. */
const SERVICE_TEST_TIMEOUT_MS = 30_000;
const MODEL = 'fake';

jest.setTimeout(SERVICE_TEST_TIMEOUT_MS);

/** What the fake pipeline answers for an ASCII prompt: its characters reversed, cut to maxNewTokens. */
function reversed(text: string, maxNewTokens: number): string {
  return [...text].reverse().join('').slice(0, maxNewTokens);
}

interface OpenAiErrorJson {
  error: { message: string; type: string; param: string | null; code: string | null };
}

describe('OpenAI routes over in-test tokenizer and coordinator', () => {
  let tokenizer: RunningServer;
  let coordinator: RunningServer;
  let record: CoordinatorRecord;
  let api: RunningApi;
  let client: OpenAI;
  let gate: ((index: number, requestId: string) => Promise<void>) | undefined;

  beforeAll(async () => {
    tokenizer = await startFakeTokenizer();
    ({ server: coordinator, record } = await startFakeCoordinator({ capacity: 2, beforeToken: (i, id) => gate?.(i, id) ?? Promise.resolve() }));
    api = await startApi(testConfig(tokenizer.port, coordinator.port));
    client = new OpenAI({ baseURL: `${api.url}/v1`, apiKey: 'none', maxRetries: 0 });
  });

  afterAll(async () => {
    await api.close();
    await Promise.all([tokenizer.shutdown(0), coordinator.shutdown(0)]);
  });

  afterEach(() => {
    gate = undefined;
  });

  const lastRequests = (count: number) => record.requests.slice(-count);

  test("completion logprobs name each alternative by the tokenizer's text of it, best first", async () => {
    const prompt = 'abc';
    const completion = await client.completions.create({ model: MODEL, prompt, max_tokens: 3, logprobs: 3 });
    expect(completion.choices[0].text).toBe('cba');
    expect(completion.choices[0].logprobs).toEqual({
      tokens: ['c', 'b', 'a'],
      token_logprobs: [FAKE_LOGPROB, FAKE_LOGPROB, FAKE_LOGPROB],
      // The fake's alternatives of byte b are b, b+1, b+2, one nat apart.
      top_logprobs: ['c', 'b', 'a'].map((c) => ({ [c]: -0.5, [String.fromCharCode(c.charCodeAt(0) + 1)]: -1.5, [String.fromCharCode(c.charCodeAt(0) + 2)]: -2.5 })),
      text_offset: [0, 1, 2],
    });
    expect(lastRequests(1)[0].parameters?.top_logprobs).toBe(3);
  });

  test('chat logprobs carry the token, its bytes and the alternatives; the prompt is the rendered chat', async () => {
    const messages = [{ role: 'user' as const, content: 'hi' }];
    const chat = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 2, logprobs: true, top_logprobs: 2 });
    const prompt = fakeChatText(messages, true);
    expect(lastRequests(1)[0].prompt_token_ids).toEqual([...Buffer.from(prompt)]);
    expect(chat.choices[0].message.content).toBe(reversed(prompt, 2));
    const first = chat.choices[0].logprobs?.content?.[0];
    const firstText = reversed(prompt, 1);
    expect(first).toEqual({
      token: firstText,
      logprob: FAKE_LOGPROB,
      bytes: [...Buffer.from(firstText)],
      top_logprobs: [
        { token: firstText, logprob: -0.5, bytes: [...Buffer.from(firstText)] },
        { token: String.fromCharCode(firstText.charCodeAt(0) + 1), logprob: -1.5, bytes: [firstText.charCodeAt(0) + 1] },
      ],
    });
  });

  test('sampling fields, priority and derived seeds reach the coordinator; OpenAI defaults fill the rest', async () => {
    const completion = await client.completions.create(
      { model: MODEL, prompt: 'xyz', n: 2, seed: 4_294_967_295, top_k: 5, stop: 'q', priority: 'batch' } as OpenAI.Completions.CompletionCreateParamsNonStreaming,
      { headers: { 'X-Request-Id': 'openai-params-1' } },
    );
    expect(completion.id).toBe('cmpl-openai-params-1');
    const [first, second] = lastRequests(2).sort((a, b) => a.request_id.localeCompare(b.request_id));
    expect([first.request_id, second.request_id]).toEqual(['openai-params-1.0', 'openai-params-1.1']);
    // seed + i wraps around 2^32.
    expect([first.parameters?.seed, second.parameters?.seed]).toEqual([4_294_967_295, 0]);
    for (const request of [first, second]) {
      expect(request.priority).toBe('batch');
      expect(request.parameters).toMatchObject({ max_new_tokens: 16, temperature: 1, top_k: 5, stop: ['q'], top_logprobs: 0 });
      expect(request.parameters?._top_p).toBeUndefined();
    }
    const unseeded = await client.completions.create({ model: MODEL, prompt: 'xyz', n: 2 });
    expect(unseeded.choices).toHaveLength(2);
    const seeds = lastRequests(2).map((r) => r.parameters?.seed);
    expect(seeds[0]).not.toBe(seeds[1]);
    expect(lastRequests(1)[0].priority).toBe('interactive');
  });

  test('a choice the coordinator refuses fails the whole request with a 429 in OpenAI shape, and cancels the admitted ones', async () => {
    const hold = deferred();
    gate = () => hold.promise;
    try {
      const response = await postJson(`${api.url}/v1/completions`, { model: MODEL, prompt: 'full', n: 3, max_tokens: 2 }, { headers: { 'x-request-id': 'openai-full-1' } });
      expect(response.status).toBe(429);
      expect(response.headers.get('retry-after')).toBe('1');
      const body = (await response.json()) as OpenAiErrorJson;
      expect(body.error).toMatchObject({ type: 'rate_limit_error', code: 'rate_limit_exceeded', param: null });
      await eventually(() => ['openai-full-1.0', 'openai-full-1.1'].every((id) => record.cancelled.includes(id)));
    } finally {
      hold.resolve();
    }
  });

  test('a client that leaves a stream cancels every choice', async () => {
    const hold = deferred();
    gate = (index) => (index === 0 ? Promise.resolve() : hold.promise);
    const controller = new AbortController();
    try {
      const stream = await client.completions.create(
        { model: MODEL, prompt: 'leave', n: 2, max_tokens: 4, stream: true },
        { headers: { 'X-Request-Id': 'openai-leave-1' }, signal: controller.signal },
      );
      const iterator = stream[Symbol.asyncIterator]();
      expect((await iterator.next()).value?.choices[0].text).toBe('e');
      controller.abort();
      await eventually(() => ['openai-leave-1.0', 'openai-leave-1.1'].every((id) => record.cancelled.includes(id)));
    } finally {
      hold.resolve();
    }
  });

  test.each<[string, string, Record<string, unknown>, string, string]>([
    ['tokens out of range', '/v1/completions', { model: MODEL, prompt: 'a', max_tokens: 513 }, 'max_tokens', 'max_tokens: must be an integer between 1 and 512, got 513'],
    ['temperature above 2', '/v1/completions', { model: MODEL, prompt: 'a', temperature: 2.5 }, 'temperature', 'temperature: must be a number between 0 and 2 (0 = greedy), got 2.5'],
    ['an empty prompt', '/v1/completions', { model: MODEL, prompt: '' }, 'prompt', 'prompt: must be a non-empty string or an array of 1 to 16 non-empty strings'],
    ['token-id prompts', '/v1/completions', { model: MODEL, prompt: [1, 2] }, 'prompt', 'prompt: must be a non-empty string or an array'],
    ['too many choices', '/v1/completions', { model: MODEL, prompt: ['a', 'b', 'c'], n: 6 }, 'n', 'n: 3 prompts × n = 6 is more than 16 choices'],
    ['an empty stop string', '/v1/completions', { model: MODEL, prompt: 'a', stop: ['x', ''] }, 'stop[1]', 'stop[1]: must be a non-empty string or an array of at most 4 non-empty strings'],
    ['logprobs above 5', '/v1/completions', { model: MODEL, prompt: 'a', logprobs: 6 }, 'logprobs', 'logprobs: must be an integer between 0 and 5'],
    ['an unsupported field', '/v1/completions', { model: MODEL, prompt: 'a', echo: true }, 'echo', 'unknown field: echo'],
    ['a nested unknown field', '/v1/completions', { model: MODEL, prompt: 'a', stream_options: { include_usage: true, x: 1 } }, 'stream_options.x', 'unknown field: stream_options.x'],
    ['no model', '/v1/chat/completions', { messages: [{ role: 'user', content: 'a' }] }, 'model', 'model: must be a string'],
    ['no messages', '/v1/chat/completions', { model: MODEL, messages: [] }, 'messages', 'messages: must hold at least one message'],
    ['top_logprobs without logprobs', '/v1/chat/completions', { model: MODEL, messages: [{ role: 'user', content: 'a' }], top_logprobs: 2 }, 'top_logprobs', 'top_logprobs: needs logprobs: true'],
    ['a content part of another type', '/v1/chat/completions', { model: MODEL, messages: [{ role: 'user', content: [{ type: 'image_url', image_url: {} }] }] }, 'messages[0].content', 'messages[0].content: must be a string or an array'],
  ])('%s is a 400 in OpenAI shape naming the field', async (_name, route, body, param, message) => {
    const before = record.requests.length;
    const response = await postJson(`${api.url}${route}`, body);
    expect(response.status).toBe(400);
    const json = (await response.json()) as OpenAiErrorJson;
    expect(json.error).toMatchObject({ type: 'invalid_request_error', param, code: 'invalid_value' });
    expect(json.error.message.startsWith(message)).toBe(true);
    expect(record.requests.length).toBe(before);
  });

  test('another model is a 404 model_not_found; a body that is not JSON and an unknown /v1 route are OpenAI-shaped too', async () => {
    const wrongModel = await postJson(`${api.url}/v1/completions`, { model: 'gpt-4', prompt: 'a' });
    expect(wrongModel.status).toBe(404);
    expect(((await wrongModel.json()) as OpenAiErrorJson).error).toMatchObject({ type: 'not_found_error', code: 'model_not_found', param: 'model' });

    const notJson = await fetch(`${api.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"model":' });
    expect(notJson.status).toBe(400);
    expect(((await notJson.json()) as OpenAiErrorJson).error).toMatchObject({ type: 'invalid_request_error', param: null, code: 'invalid_argument', message: expect.stringMatching(/^body: invalid JSON/) });

    // The coordinator's refusals name the OpenAI body's fields (prompt_token_ids and parameters.max_new_tokens are the coordinator's).
    const longPrompt = await postJson(`${api.url}/v1/completions`, { model: MODEL, prompt: 'p'.repeat(FAKE_MAX_PROMPT_TOKENS + 1) });
    expect(longPrompt.status).toBe(400);
    expect(((await longPrompt.json()) as OpenAiErrorJson).error).toMatchObject({ param: 'prompt', code: 'invalid_value', message: expect.stringMatching(/^prompt: /) });
    for (const [route, body, param] of [
      ['/v1/completions', { model: MODEL, prompt: 'pp', max_tokens: FAKE_CONTEXT_TOKENS }, 'max_tokens'],
      ['/v1/chat/completions', { model: MODEL, messages: [{ role: 'user', content: 'a' }], max_tokens: FAKE_CONTEXT_TOKENS }, 'max_tokens'],
      ['/v1/chat/completions', { model: MODEL, messages: [{ role: 'user', content: 'a' }], max_completion_tokens: FAKE_CONTEXT_TOKENS }, 'max_completion_tokens'],
    ] as const) {
      const tooMany = await postJson(`${api.url}${route}`, body);
      expect(tooMany.status).toBe(400);
      expect(((await tooMany.json()) as OpenAiErrorJson).error).toMatchObject({ param, code: 'invalid_value', message: expect.stringMatching(new RegExp(`^${param}: must be at most \\d+, got ${FAKE_CONTEXT_TOKENS}$`)) });
    }

    for (const route of ['/v1/completions', '/v1/chat/completions']) {
      const notObject = await fetch(`${api.url}${route}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: 'null' });
      expect(notObject.status).toBe(400);
      expect(((await notObject.json()) as OpenAiErrorJson).error).toMatchObject({ type: 'invalid_request_error', message: 'body: must be a JSON object' });
    }

    const unknown = await fetch(`${api.url}/v1/embeddings`, { method: 'POST' });
    expect(unknown.status).toBe(404);
    expect(((await unknown.json()) as OpenAiErrorJson).error).toMatchObject({ type: 'not_found_error', code: 'not_found' });
  });

  test('a stream the coordinator breaks after its first chunk ends with an error chunk the client raises', async () => {
    const ownTokenizer = await startFakeTokenizer();
    const firstSent = deferred();
    const hold = deferred();
    const { server: ownCoordinator } = await startFakeCoordinator({
      capacity: 1,
      beforeToken: (index) => {
        if (index === 1) firstSent.resolve();
        return index === 0 ? Promise.resolve() : hold.promise;
      },
    });
    const ownApi = await startApi(testConfig(ownTokenizer.port, ownCoordinator.port));
    try {
      const ownClient = new OpenAI({ baseURL: `${ownApi.url}/v1`, apiKey: 'none', maxRetries: 0 });
      const stream = await ownClient.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'break' }], max_tokens: 4, stream: true });
      const received: string[] = [];
      const consumed = (async () => {
        for await (const chunk of stream) received.push(chunk.choices[0]?.delta.content ?? '');
      })();
      await firstSent.promise;
      await ownCoordinator.shutdown(0);
      const error = await consumed.catch((e: unknown) => e);
      expect(error).toBeInstanceOf(OpenAI.APIError);
      expect((error as Error).message).toMatch(/coordinator/);
      expect(received.length).toBeGreaterThanOrEqual(1);
    } finally {
      hold.resolve();
      await ownApi.close();
      await ownTokenizer.shutdown(0);
    }
  });
});
