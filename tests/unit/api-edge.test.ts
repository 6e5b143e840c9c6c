import { connect, type Socket } from 'node:net';
import { deflateSync, gzipSync, brotliCompressSync } from 'node:zlib';
import { MAX_JSON_DEPTH } from '../../services/api/json-depth';
import type { RunningServer } from '../../shared/grpc/channel';
import { postJson, startApi, startFakeCoordinator, startFakeTokenizer, testConfig, type RunningApi } from '../support/api-test-support';

/** Real gRPC servers and an HTTP listener on a loaded machine: generous, but bounded. */
const SERVICE_TEST_TIMEOUT_MS = 30_000;
/** Short HTTP timeouts for the slow-client tests (the defaults are 10 s and 30 s). */
const HEADERS_TIMEOUT_MS = 400;
const REQUEST_TIMEOUT_MS = 800;
/** Node checks the timeouts once a second (createApiServer): a slow client is cut within the limit plus that. */
const TIMEOUT_SLACK_MS = 2_500;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const API_KEY = 'edge-key-0c1d';

jest.setTimeout(SERVICE_TEST_TIMEOUT_MS);

/** `{"a":{"a":...{}}}` nested `depth` objects deep. */
function nested(depth: number): string {
  return '{"a":'.repeat(depth - 1) + '{}' + '}'.repeat(depth - 1);
}

interface RawAnswer {
  readonly status: number;
  readonly head: string;
  readonly body: string;
  /** ms from the first byte sent until the server closed the connection. */
  readonly closedAfterMs: number;
}

/** Sends raw bytes (then, optionally, nothing more) and reads until the server closes the connection. */
function rawRequest(url: string, bytes: string | Buffer, options: { keepOpen?: boolean } = {}): Promise<RawAnswer> {
  const { port } = new URL(url);
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const socket: Socket = connect(Number(port), '127.0.0.1', () => {
      socket.write(bytes);
      if (options.keepOpen !== true) socket.end();
    });
    const chunks: Buffer[] = [];
    socket.on('data', (chunk) => chunks.push(chunk));
    socket.on('error', reject);
    socket.on('close', () => {
      const text = Buffer.concat(chunks).toString('latin1');
      const split = text.indexOf('\r\n\r\n');
      resolve({ status: Number(text.slice(9, 12)), head: text.slice(0, split), body: text.slice(split + 4), closedAfterMs: performance.now() - started });
    });
  });
}

describe('the HTTP edge of the api', () => {
  let tokenizer: RunningServer;
  let coordinator: RunningServer;
  let api: RunningApi;
  let gate: (() => Promise<void>) | undefined;

  beforeAll(async () => {
    tokenizer = await startFakeTokenizer();
    ({ server: coordinator } = await startFakeCoordinator({ capacity: 4, beforeToken: () => gate?.() ?? Promise.resolve() }));
    api = await startApi(testConfig(tokenizer.port, coordinator.port, { http_headers_timeout_ms: HEADERS_TIMEOUT_MS, http_request_timeout_ms: REQUEST_TIMEOUT_MS }));
  });

  afterAll(async () => {
    await api.close();
    await Promise.all([tokenizer.shutdown(0), coordinator.shutdown(0)]);
  });

  afterEach(() => {
    gate = undefined;
  });

  test(`metadata nested 5,000 levels deep is a 400 on every JSON route; ${MAX_JSON_DEPTH} levels still pass`, async () => {
    const deep = `{"text":"a","metadata":${nested(5_000)}}`;
    for (const route of ['/api/model/process', '/api/model/generate', '/v1/completions', '/v1/chat/completions']) {
      const response = await fetch(`${api.url}${route}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: deep });
      expect({ route, status: response.status }).toEqual({ route, status: 400 });
      const json = (await response.json()) as { error: { message: string } };
      expect(json.error.message).toBe(`body: nested deeper than ${MAX_JSON_DEPTH} levels`);
    }
    // The body itself is one level: metadata may hold MAX_JSON_DEPTH - 1 more.
    const deepest = `{"text":"ok","max_new_tokens":2,"metadata":${nested(MAX_JSON_DEPTH - 1)}}`;
    const fine = await fetch(`${api.url}/api/model/process`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: deepest });
    expect(fine.status).toBe(200);
    expect(JSON.stringify(((await fine.json()) as { metadata: unknown }).metadata)).toBe(nested(MAX_JSON_DEPTH - 1));
  });

  test('a Content-Encoding other than identity is a 415 naming the one accepted, whether the body is compressed or not', async () => {
    const body = JSON.stringify({ text: 'hello', max_new_tokens: 2 });
    const cases: Array<[string, string | Buffer]> = [
      ['gzip', body],
      ['deflate', body],
      ['br', body],
      ['x-unknown', body],
      ['gzip', gzipSync(body)],
      ['deflate', deflateSync(body)],
      ['br', brotliCompressSync(body)],
      ['gzip, identity', body],
    ];
    for (const [encoding, bytes] of cases) {
      const response = await fetch(`${api.url}/api/model/process`, { method: 'POST', headers: { 'content-type': 'application/json', 'content-encoding': encoding }, body: bytes });
      expect({ encoding, status: response.status, accept: response.headers.get('accept-encoding') }).toEqual({ encoding, status: 415, accept: 'identity' });
      expect(((await response.json()) as { error: { message: string } }).error.message).toMatch(/^content-encoding: .* is not supported/);
    }
    const openAi = await fetch(`${api.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' }, body });
    expect(openAi.status).toBe(415);
    expect(((await openAi.json()) as { error: { code: string; type: string } }).error).toMatchObject({ code: 'unsupported_content_encoding', type: 'invalid_request_error' });
    const identity = await fetch(`${api.url}/api/model/process`, { method: 'POST', headers: { 'content-type': 'application/json', 'content-encoding': 'identity' }, body });
    expect(identity.status).toBe(200);
  });

  test('a client that sends its headers too slowly is answered 408 and cut off within the headers timeout', async () => {
    const answer = await rawRequest(api.url, 'POST /api/model/process HTTP/1.1\r\nHost: x\r\n', { keepOpen: true });
    expect(answer.status).toBe(408);
    expect(JSON.parse(answer.body)).toMatchObject({ error: { code: 'DEADLINE_EXCEEDED' } });
    expect(answer.closedAfterMs).toBeLessThan(HEADERS_TIMEOUT_MS + TIMEOUT_SLACK_MS);
  });

  test('a client that sends its body too slowly is answered 408 and cut off within the request timeout', async () => {
    const head = 'POST /api/model/process HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"text":';
    const answer = await rawRequest(api.url, head, { keepOpen: true });
    expect(answer.status).toBe(408);
    expect(answer.closedAfterMs).toBeLessThan(REQUEST_TIMEOUT_MS + TIMEOUT_SLACK_MS);
  });

  test('a stream may last longer than the request timeout: the timeout covers receiving the request only', async () => {
    gate = () => new Promise((resolve) => setTimeout(resolve, REQUEST_TIMEOUT_MS / 2));
    const started = performance.now();
    const response = await postJson(`${api.url}/api/model/generate`, { text: 'slowstream', max_new_tokens: 8 });
    const text = await response.text();
    expect(performance.now() - started).toBeGreaterThan(REQUEST_TIMEOUT_MS + 1_000);
    expect(text).toContain('event: done');
  });

  test('request ids: a sane one is kept; a long one, one with a tab or a non-ASCII byte is replaced; a newline is a clean 400, never a 5xx', async () => {
    const head = (id: string) => `GET /health HTTP/1.1\r\nHost: x\r\nX-Request-Id: ${id}\r\nConnection: close\r\n\r\n`;
    const idOf = (answer: RawAnswer) => /x-request-id: ([^\r\n]*)/i.exec(answer.head)?.[1];
    const sane = await rawRequest(api.url, head('trace-1.a:b_c'));
    expect([sane.status, idOf(sane)]).toEqual([200, 'trace-1.a:b_c']);
    for (const id of ['x'.repeat(129), 'tab\there', 'caf\u00e9', '../../etc']) {
      const answer = await rawRequest(api.url, Buffer.from(head(id), 'latin1'));
      expect({ id, status: answer.status }).toEqual({ id, status: 200 });
      expect(idOf(answer)).toMatch(UUID);
    }
    for (const bytes of [head('a\nb'), head('a\rb'), `GET /health HTTP/1.1\r\nHost: x\r\nX-Request-Id: a\r\n b\r\n\r\n`]) {
      const answer = await rawRequest(api.url, bytes);
      expect(answer.status).toBe(400);
      const json = JSON.parse(answer.body) as { error: { code: string; request_id: string } };
      expect(json.error.code).toBe('INVALID_ARGUMENT');
      expect(json.error.request_id).toMatch(UUID);
    }
    expect((await fetch(`${api.url}/health`)).status).toBe(200);
  });

  test('headers larger than Node accepts are a JSON 431', async () => {
    const answer = await rawRequest(api.url, `GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${'b'.repeat(20_000)}\r\n\r\n`);
    expect(answer.status).toBe(431);
    expect(JSON.parse(answer.body)).toMatchObject({ error: { code: 'INVALID_ARGUMENT' } });
  });
});

describe('the api with an API key and CORS origins', () => {
  let tokenizer: RunningServer;
  let coordinator: RunningServer;
  let api: RunningApi;

  beforeAll(async () => {
    tokenizer = await startFakeTokenizer();
    ({ server: coordinator } = await startFakeCoordinator({ capacity: 4 }));
    api = await startApi(testConfig(tokenizer.port, coordinator.port, {}, { api_key: API_KEY, cors_origins: ['http://app.example'] }));
  });

  afterAll(async () => {
    await api.close();
    await Promise.all([tokenizer.shutdown(0), coordinator.shutdown(0)]);
  });

  test('probes, metrics, the playground, the docs, their assets and the document need no key', async () => {
    for (const path of ['/health', '/ready', '/metrics', '/', '/docs', '/docs/', '/openapi.json', '/static/playground.js', '/static/playground.css', '/docs/assets/swagger-ui-bundle.js']) {
      const response = await fetch(`${api.url}${path}`);
      expect({ path, status: response.status }).toEqual({ path, status: 200 });
    }
  });

  test('every other route needs Authorization: Bearer <key>: 401 with WWW-Authenticate without it, OpenAI-shaped under /v1', async () => {
    const body = { text: 'key', max_new_tokens: 2 };
    const missing = await postJson(`${api.url}/api/model/process`, body);
    expect(missing.status).toBe(401);
    expect(missing.headers.get('www-authenticate')).toBe('Bearer');
    expect(((await missing.json()) as { error: { code: string; message: string } }).error).toMatchObject({ code: 'UNAUTHENTICATED', message: expect.stringMatching(/^authorization: missing/) });

    // A trailing slash reaches the same route, and needs the key as much.
    expect((await postJson(`${api.url}/api/model/process/`, body)).status).toBe(401);

    const wrong = await postJson(`${api.url}/api/model/process`, body, { headers: { authorization: 'Bearer nope' } });
    expect(wrong.status).toBe(401);
    expect(((await wrong.json()) as { error: { message: string } }).error.message).toBe('authorization: the API key is not valid');

    for (const scheme of ['Bearer', 'bearer']) {
      const right = await postJson(`${api.url}/api/model/process`, body, { headers: { authorization: `${scheme} ${API_KEY}` } });
      expect(right.status).toBe(200);
    }
    const openAi = await fetch(`${api.url}/v1/models`, { headers: { authorization: `Basic ${Buffer.from(`u:${API_KEY}`).toString('base64')}` } });
    expect(openAi.status).toBe(401);
    expect(((await openAi.json()) as { error: unknown }).error).toEqual({ message: 'authorization: missing; send Authorization: Bearer <api key>', type: 'authentication_error', param: null, code: 'invalid_api_key' });
    const unknown = await fetch(`${api.url}/api/model/nope`);
    expect(unknown.status).toBe(401);
  });

  test('an allowed origin gets CORS headers (preflight without the key included); another origin gets none', async () => {
    const preflight = await fetch(`${api.url}/v1/completions`, {
      method: 'OPTIONS',
      headers: { origin: 'http://app.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type' },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-origin')).toBe('http://app.example');
    expect(preflight.headers.get('access-control-allow-headers')).toBe('authorization,content-type');

    const allowed = await fetch(`${api.url}/health`, { headers: { origin: 'http://app.example' } });
    expect(allowed.headers.get('access-control-allow-origin')).toBe('http://app.example');
    expect(allowed.headers.get('access-control-expose-headers')).toBe('X-Request-Id,Retry-After');

    const other = await fetch(`${api.url}/health`, { headers: { origin: 'http://evil.example' } });
    expect(other.headers.get('access-control-allow-origin')).toBeNull();
  });
});

describe('the api without CORS origins', () => {
  test('sends no CORS headers at all', async () => {
    const api = await startApi(testConfig(1, 2));
    try {
      const response = await fetch(`${api.url}/health`, { headers: { origin: 'http://app.example' } });
      expect(response.headers.get('access-control-allow-origin')).toBeNull();
      const preflight = await fetch(`${api.url}/api/model/process`, { method: 'OPTIONS', headers: { origin: 'http://app.example', 'access-control-request-method': 'POST' } });
      expect(preflight.headers.get('access-control-allow-origin')).toBeNull();
    } finally {
      await api.close();
    }
  });
});
