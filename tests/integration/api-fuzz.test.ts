import { postJson } from '../support/http';
import { RunningSystem, SYSTEM_START_TIMEOUT_MS } from '../support/system';
import { tinyModel } from '../support/test-models';

/**
 * Thousands of malformed REST requests against the real processes: every one must get a typed
 * 4xx (JSON in the route's error shape), and the system must serve as before afterwards.
 */
const CASES = 3_000;
const CONCURRENCY = 16;
const FUZZ_SEED = 20_251;
const FUZZ_TIMEOUT_MS = 180_000;
const MODEL = 'tiny-test';
/** The api's default body limit (limits.body_limit_bytes). */
const BODY_LIMIT_BYTES = 64 * 1024;

const PROCESS_ROUTES = ['/api/model/process', '/api/model/generate'];
const OPENAI_ROUTES = ['/v1/completions', '/v1/chat/completions'];

let system: RunningSystem;

beforeAll(async () => {
  system = await RunningSystem.start({ modelDir: await tinyModel({ stages: 2 }) });
}, SYSTEM_START_TIMEOUT_MS * 2);

afterAll(async () => {
  await system?.stop();
});

/** mulberry32: a small seeded generator, so that a failing case can be replayed. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface FuzzCase {
  readonly kind: string;
  readonly method: string;
  readonly route: string;
  readonly headers: Record<string, string>;
  readonly body?: string | Buffer;
}

/** A valid body of each route, which the generators below break in one known way each. */
function validBody(route: string): Record<string, unknown> {
  if (route === '/v1/completions') return { model: MODEL, prompt: 'Hello', max_tokens: 2 };
  if (route === '/v1/chat/completions') return { model: MODEL, messages: [{ role: 'user', content: 'Hello' }], max_tokens: 2 };
  return { text: 'Hello', max_new_tokens: 2 };
}

/** Values that no field of its kind accepts, written as JSON text (1e400 stays a literal: JSON.parse makes it Infinity). */
const BAD_INTEGERS = ['1.5', '-1', '1e308', '1e400', '-1e400', '"4"', 'true', '[]', '{}', '"NaN"', '9007199254740993.5', '4294967296'];
const BAD_NUMBERS = ['-0.000001', '-1e308', '1e400', '"hot"', 'true', '{}', '[1]', '""'];
const BAD_FIELDS: Record<string, Record<string, readonly string[]>> = {
  process: {
    text: ['""', '5', 'null', '[]', '{}', 'true'],
    max_new_tokens: [...BAD_INTEGERS, '0', '513', 'null'],
    temperature: [...BAD_NUMBERS, 'null'],
    top_k: [...BAD_INTEGERS, 'null'],
    top_p: ['0', '1.0001', ...BAD_NUMBERS, 'null'],
    repetition_penalty: ['0', ...BAD_NUMBERS, 'null'],
    seed: [...BAD_INTEGERS, 'null'],
    stop: ['"x"', '[""]', '["a","b","c","d","e"]', '[1]', '{}', 'null'],
    metadata: ['[]', '"m"', '1', 'null', 'true'],
    priority: ['"urgent"', '1', '[]', 'null', '""'],
  },
  openai: {
    model: ['5', '[]', '{}', 'true', '"other-model"'],
    max_tokens: [...BAD_INTEGERS, '0', '129'],
    temperature: ['2.01', ...BAD_NUMBERS],
    top_p: ['0', '1.5', ...BAD_NUMBERS],
    n: ['0', '17', ...BAD_INTEGERS],
    seed: BAD_INTEGERS,
    stop: ['""', '[""]', '["a","b","c","d","e"]', '[]', '5', '{}'],
    stream: ['"yes"', '1', '[]', '{}'],
    stream_options: ['"x"', '[]', '{"include_usage":"yes"}', '{"other":1}'],
    user: ['5', '[]', `"${'u'.repeat(300)}"`],
    priority: ['"urgent"', '1'],
    unknown_field: ['1', '"x"', 'null'],
  },
};

function generator(next: () => number) {
  const int = (n: number) => Math.floor(next() * n);
  const pick = <T>(items: readonly T[]): T => items[int(items.length)];
  const json = { 'content-type': 'application/json' };
  const bodyRoutes = [...PROCESS_ROUTES, ...OPENAI_ROUTES];

  const randomJson = (depth: number): unknown => {
    const roll = int(depth > 3 ? 4 : 7);
    if (roll === 0) return next() * 1e6 - 5e5;
    if (roll === 1) return String.fromCharCode(...Array.from({ length: int(12) }, () => 32 + int(90)));
    if (roll === 2) return next() < 0.5;
    if (roll === 3) return null;
    if (roll === 4) return Array.from({ length: int(4) }, () => randomJson(depth + 1));
    return Object.fromEntries(Array.from({ length: 1 + int(4) }, () => [`x_${int(1000)}`, randomJson(depth + 1)]));
  };
  const nest = (depth: number, inner: string) => '['.repeat(depth) + inner + ']'.repeat(depth);
  const withField = (route: string, field: string, text: string) => {
    const body = JSON.stringify({ ...validBody(route), [field]: '__FIELD__' });
    return body.replace('"__FIELD__"', text);
  };

  const kinds: Array<() => FuzzCase> = [
    // A random JSON value that is not an object, or an object of unknown fields only.
    () => {
      const route = pick(bodyRoutes);
      const value = randomJson(0);
      const broken = typeof value === 'object' && value !== null && !Array.isArray(value) ? value : [value];
      return { kind: 'random json', method: 'POST', route, headers: json, body: JSON.stringify(broken) };
    },
    // One field of a valid body with a value that field never accepts.
    () => {
      const route = pick(bodyRoutes);
      const fields = BAD_FIELDS[PROCESS_ROUTES.includes(route) ? 'process' : 'openai'];
      const field = pick(Object.keys(fields));
      return { kind: `field ${field}`, method: 'POST', route, headers: json, body: withField(route, field, pick(fields[field])) };
    },
    // Nesting deeper than the limit, in the field each route echoes or ignores.
    () => {
      const route = pick(bodyRoutes);
      const depth = 40 + int(5_000);
      const field = PROCESS_ROUTES.includes(route) ? 'metadata' : 'user';
      const deep = field === 'metadata' ? `{"a":${nest(depth, '1')}}` : nest(depth, '"u"');
      return { kind: 'deep nesting', method: 'POST', route, headers: json, body: withField(route, field, deep) };
    },
    // A valid body under a Content-Encoding other than identity.
    () => {
      const route = pick(bodyRoutes);
      const encoding = pick(['gzip', 'deflate', 'br', 'compress', 'zstd', 'x-gzip', `x-${int(100)}`, 'gzip, br']);
      return { kind: `encoding ${encoding}`, method: 'POST', route, headers: { ...json, 'content-encoding': encoding }, body: JSON.stringify(validBody(route)) };
    },
    // Bytes that are not JSON at all (the first one never starts a JSON text).
    () => {
      const route = pick(bodyRoutes);
      const bytes = Buffer.from(Array.from({ length: 1 + int(300) }, () => int(256)));
      bytes[0] = pick([0x00, 0x7d, 0x5d, 0x3a, 0xff, 0x2c]);
      return { kind: 'garbage bytes', method: 'POST', route, headers: json, body: bytes };
    },
    // A valid body cut short.
    () => {
      const route = pick(bodyRoutes);
      const body = JSON.stringify({ ...validBody(route), ...(PROCESS_ROUTES.includes(route) ? { metadata: { k: 'v'.repeat(int(50)) } } : {}) });
      return { kind: 'truncated', method: 'POST', route, headers: json, body: body.slice(0, 1 + int(body.length - 1)) };
    },
    // A valid body under another media type, or a charset body-parser cannot read.
    () => {
      const route = pick(bodyRoutes);
      const type = pick(['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/xml', 'application/json; charset=latin1', 'application/json; charset=utf-16']);
      return { kind: `content-type ${type}`, method: 'POST', route, headers: { 'content-type': type }, body: JSON.stringify(validBody(route)) };
    },
    // A body over the size limit.
    () => {
      const route = pick(bodyRoutes);
      return { kind: 'too large', method: 'POST', route, headers: json, body: withField(route, PROCESS_ROUTES.includes(route) ? 'text' : 'prompt', `"${'x'.repeat(BODY_LIMIT_BYTES + int(10_000))}"`) };
    },
    // Query strings the GET stream never accepts.
    () => {
      const query = pick(['', 'text=', 'text=a&max_new_tokens=zero', 'text=a&temperature=-1', 'text=a&seed=1e400', 'text=a&metadata=%7B%7D', 'text=a&top_p=2', 'text=a&x=1', 'text=a&stop=']);
      return { kind: 'query malformed', method: 'GET', route: `/api/model/generate?${query}`, headers: {} };
    },
    // A method or path that has no route.
    () => ({ kind: 'no route', method: pick(['PUT', 'DELETE', 'PATCH']), route: pick([...bodyRoutes, `/v1/${int(100)}`, '/api/model']), headers: json, body: '{}' }),
  ];
  return () => pick(kinds)();
}

interface Outcome {
  readonly fuzz: FuzzCase;
  readonly status: number;
  readonly typed: boolean;
  readonly detail: string;
}

async function send(fuzz: FuzzCase): Promise<Outcome> {
  const response = await fetch(`${system.apiUrl}${fuzz.route}`, { method: fuzz.method, headers: fuzz.headers, body: fuzz.body, signal: AbortSignal.timeout(30_000) });
  const text = await response.text();
  let typed = false;
  try {
    const { error } = JSON.parse(text) as { error?: Record<string, unknown> };
    // The api's own shape outside /v1, OpenAI's under it: a message, and a machine-readable class.
    typed = fuzz.route.startsWith('/v1/')
      ? typeof error?.message === 'string' && typeof error.type === 'string' && 'param' in error && 'code' in error
      : typeof error?.message === 'string' && typeof error.code === 'string' && typeof error.request_id === 'string';
  } catch {
    typed = false;
  }
  return { fuzz, status: response.status, typed, detail: text.slice(0, 200) };
}

test(
  `${CASES} malformed REST requests each get a typed 4xx, and the system serves as before`,
  async () => {
    const nextCase = generator(random(FUZZ_SEED));
    const cases = Array.from({ length: CASES }, () => nextCase());
    const outcomes: Outcome[] = [];
    let cursor = 0;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (cursor < cases.length) outcomes.push(await send(cases[cursor++]));
      }),
    );
    expect(outcomes).toHaveLength(CASES);
    const wrong = outcomes.filter((o) => o.status < 400 || o.status > 499 || !o.typed);
    expect(wrong.slice(0, 10).map((o) => ({ kind: o.fuzz.kind, route: o.fuzz.route.slice(0, 60), status: o.status, detail: o.detail }))).toEqual([]);
    // Every generator ran, so each kind of malformation was tried.
    expect(new Set(outcomes.map((o) => o.fuzz.kind.split(' ')[0])).size).toBeGreaterThanOrEqual(10);
    expect(new Set(outcomes.map((o) => o.status))).toEqual(new Set([400, 404, 415]));

    expect((await fetch(`${system.apiUrl}/ready`)).status).toBe(200);
    const after = await postJson(`${system.apiUrl}/api/model/process`, { text: 'Still serving', max_new_tokens: 4 });
    expect(after.status).toBe(200);
    expect(after.body.tokens).toEqual({ prompt: expect.any(Number), generated: 4 });
    // Nothing the fuzz sent was the api's own failure.
    expect(system.logs('api').split('\n').filter((line) => line.includes('"level":"error"'))).toEqual([]);
  },
  FUZZ_TIMEOUT_MS,
);
