import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Express } from 'express';
import { createApiApp } from '../../services/api/app';
import { openApiDocument } from '../../services/api/openapi';
import { parseProcessRequest } from '../../services/api/process-request';
import { createClient } from '../../shared/grpc/channel';
import { protos } from '../../shared/grpc/proto-loader';
import { createLogger } from '../../shared/logger';
import { createMetricsRegistry } from '../../shared/metrics';
import { startApi, testConfig } from '../support/api-test-support';

const run = promisify(execFile);
const ROOT = path.resolve(__dirname, '../..');
/** Redocly starts a Node process and lints a few thousand lines: seconds, on a loaded machine more. */
const LINT_TIMEOUT_MS = 60_000;
/** The operations that have no 4XX answer of their own (nothing about their request can be wrong). */
const PUBLIC_GETS = ['/health', '/ready', '/metrics', '/openapi.json', '/', '/docs'];
/** Without an API key, listing the models cannot fail either. */
const no4xxOperations = (apiKeyRequired: boolean): string[] =>
  [...PUBLIC_GETS, ...(apiKeyRequired ? [] : ['/v1/models'])].map((p) => `#/paths/${p.replace(/~/g, '~0').replace(/\//g, '~1')}/get/responses`);

interface LintProblem {
  readonly ruleId: string;
  readonly severity: string;
  readonly message: string;
  readonly location: ReadonlyArray<{ readonly pointer: string }>;
}

/** `redocly lint` (its recommended rules) of a document, as its JSON report. */
async function redoclyLint(document: unknown): Promise<{ totals: { errors: number; warnings: number }; problems: LintProblem[] }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'openapi-lint-'));
  try {
    const file = path.join(dir, 'openapi.json');
    await writeFile(file, JSON.stringify(document));
    // Exit code 1 means errors were found: the report is on stdout either way.
    const { stdout } = await run(path.join(ROOT, 'node_modules/.bin/redocly'), ['lint', '--format=json', file], {
      cwd: dir,
      env: { ...process.env, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true' },
    }).catch((error: { stdout?: string }) => ({ stdout: error.stdout ?? '' }));
    return JSON.parse(stdout) as { totals: { errors: number; warnings: number }; problems: LintProblem[] };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const HTTP_METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];

/** The routes express actually serves, read from its router (not from the document under test). */
function servedRoutes(app: Express): Array<{ path: string; method: string }> {
  const stack = (app.router as unknown as { stack: Array<{ route?: { path: string; methods: Record<string, boolean> } }> }).stack;
  return stack.flatMap((layer) => (layer.route ? Object.keys(layer.route.methods).map((method) => ({ path: layer.route!.path, method })) : []));
}

function refsIn(value: unknown): string[] {
  if (Array.isArray(value)) return value.flatMap(refsIn);
  if (typeof value !== 'object' || value === null) return [];
  return Object.entries(value).flatMap(([key, v]) => (key === '$ref' && typeof v === 'string' ? [v] : refsIn(v)));
}

function resolve(document: Record<string, unknown>, ref: string): unknown {
  if (!ref.startsWith('#/')) return undefined;
  return ref
    .slice(2)
    .split('/')
    .reduce<unknown>((node, key) => (typeof node === 'object' && node !== null ? (node as Record<string, unknown>)[key] : undefined), document);
}

describe('OpenAPI description', () => {
  const config = testConfig(1, 2);
  const document = openApiDocument({ limits: config.limits, modelName: config.modelName, apiKeyRequired: false }) as {
    openapi: string;
    info: { title: unknown; version: unknown };
    paths: Record<string, Record<string, { operationId?: string; responses?: Record<string, unknown> }>>;
    components: { schemas: Record<string, { properties?: Record<string, { maximum?: number }> }> };
  };

  test.each([false, true])(
    'passes `redocly lint` with no errors, and no warnings but a missing 4XX where nothing can be wrong (API key: %s)',
    async (apiKeyRequired) => {
      const report = await redoclyLint(openApiDocument({ limits: config.limits, modelName: config.modelName, apiKeyRequired }));
      expect(report.problems.filter((p) => p.severity === 'error')).toEqual([]);
      expect(report.totals.errors).toBe(0);
      const otherWarnings = report.problems.filter((p) => !(p.ruleId === 'operation-4xx-response' && no4xxOperations(apiKeyRequired).includes(p.location[0]?.pointer)));
      expect(otherWarnings).toEqual([]);
    },
    LINT_TIMEOUT_MS,
  );

  test('every operation has a summary, a documented 2XX and an example for each of its bodies', () => {
    const full = document as unknown as {
      paths: Record<string, Record<string, { summary?: string; requestBody?: { content: Record<string, { example?: unknown; schema?: { $ref?: string } }> }; responses: Record<string, { content?: Record<string, { example?: unknown; schema?: { $ref?: string } }> }> }>>;
      components: { schemas: Record<string, { example?: unknown }> };
    };
    const hasExample = (media: { example?: unknown; schema?: { $ref?: string } }): boolean =>
      media.example !== undefined || (media.schema?.$ref !== undefined && full.components.schemas[media.schema.$ref.split('/').pop() ?? '']?.example !== undefined);
    for (const [route, item] of Object.entries(full.paths)) {
      for (const [method, operation] of Object.entries(item)) {
        const where = `${method} ${route}`;
        expect({ where, summary: typeof operation.summary }).toEqual({ where, summary: 'string' });
        const bodies = [...Object.values(operation.requestBody?.content ?? {}), ...Object.values(operation.responses).flatMap((r) => Object.values(r.content ?? {}))];
        for (const media of bodies) expect({ where, example: hasExample(media) }).toEqual({ where, example: true });
      }
    }
  });

  test('with an API key, the generation and OpenAI operations require bearer auth and the probes, pages and docs do not', () => {
    const secured = openApiDocument({ limits: config.limits, modelName: config.modelName, apiKeyRequired: true }) as { paths: Record<string, Record<string, { security?: unknown[] }>> };
    const needsKey = Object.entries(secured.paths).flatMap(([route, item]) => Object.entries(item).filter(([, op]) => (op.security ?? []).length > 0).map(([method]) => `${method} ${route}`));
    expect(needsKey.sort()).toEqual(
      ['post /api/model/process', 'post /api/model/generate', 'get /api/model/generate', 'post /v1/completions', 'post /v1/chat/completions', 'get /v1/models', 'get /v1/models/{model}'].sort(),
    );
    const open = openApiDocument({ limits: config.limits, modelName: config.modelName, apiKeyRequired: false }) as { paths: Record<string, Record<string, { security?: unknown[] }>> };
    expect(Object.values(open.paths).flatMap((item) => Object.values(item)).every((op) => (op.security ?? []).length === 0)).toBe(true);
  });

  test('has the OpenAPI 3.1 shape: version, info, paths of operations with responses', () => {
    expect(document.openapi).toMatch(/^3\.1\.\d+$/);
    expect((document as unknown as { servers: Array<{ url: string }> }).servers).toEqual([expect.objectContaining({ url: '/' })]);
    expect(typeof document.info.title).toBe('string');
    expect(typeof document.info.version).toBe('string');
    const operationIds = new Set<string>();
    for (const [path, item] of Object.entries(document.paths)) {
      expect(path.startsWith('/')).toBe(true);
      for (const [method, operation] of Object.entries(item)) {
        expect(HTTP_METHODS).toContain(method);
        expect(Object.keys(operation.responses ?? {}).some((code) => /^2\d\d$/.test(code))).toBe(true);
        expect(operationIds.has(operation.operationId ?? '')).toBe(false);
        operationIds.add(operation.operationId ?? '');
      }
    }
  });

  test('every $ref points at a schema the document defines', () => {
    const refs = refsIn(document);
    expect(refs.length).toBeGreaterThan(0);
    for (const ref of refs) expect({ ref, resolved: resolve(document, ref) !== undefined }).toEqual({ ref, resolved: true });
  });

  test('lists every route the app serves, with its method', () => {
    const { tokenizer, coordinator, health } = protos();
    const logger = createLogger('api', 'error');
    logger.silent = true;
    const app = createApiApp({
      tokenizer: createClient(tokenizer.pipeserve.v1.Tokenizer, config.tokenizer.address),
      coordinator: createClient(coordinator.pipeserve.v1.Coordinator, config.coordinator.address),
      healthClients: {
        tokenizer: createClient(health.grpc.health.v1.Health, config.tokenizer.address),
        coordinator: createClient(health.grpc.health.v1.Health, config.coordinator.address),
      },
      config,
      logger,
      registry: createMetricsRegistry('api'),
    });
    // express writes a path parameter as :name, OpenAPI as {name}.
    const routes = servedRoutes(app).map((r) => ({ ...r, path: r.path.replace(/:(\w+)/g, '{$1}') }));
    expect(routes.length).toBe(13);
    for (const { path, method } of routes) expect({ path, method, documented: document.paths[path]?.[method] !== undefined }).toEqual({ path, method, documented: true });
    const documented = Object.entries(document.paths).flatMap(([path, item]) => Object.keys(item).map((method) => `${method} ${path}`));
    expect(documented.sort()).toEqual(routes.map((r) => `${r.method} ${r.path}`).sort());
  });

  test('the request schema states the limits the parser enforces', () => {
    const request = document.components.schemas.ProcessRequest.properties ?? {};
    expect(request.max_new_tokens.maximum).toBe(config.limits.maxNewTokens);
    expect(() => parseProcessRequest({ text: 'a', max_new_tokens: request.max_new_tokens.maximum }, config.limits)).not.toThrow();
    expect(() => parseProcessRequest({ text: 'a', max_new_tokens: (request.max_new_tokens.maximum ?? 0) + 1 }, config.limits)).toThrow();
    // Every documented field is one the parser knows (a null value is rejected by the field, not as unknown).
    for (const field of Object.keys(request)) {
      let message = '';
      try {
        parseProcessRequest({ text: 'a', [field]: null }, config.limits);
      } catch (error) {
        message = (error as Error).message;
      }
      expect({ field, message: message.startsWith(`${field}: `) }).toEqual({ field, message: true });
    }
    expect(() => parseProcessRequest({ text: 'a', not_documented: 1 }, config.limits)).toThrow('unknown field: not_documented');
  });

  test('GET /openapi.json serves the document', async () => {
    const api = await startApi(testConfig(1, 2));
    try {
      const response = await fetch(`${api.url}/openapi.json`);
      expect(response.status).toBe(200);
      expect(await response.json()).toEqual(JSON.parse(JSON.stringify(document)));
    } finally {
      await api.close();
    }
  });
});

