import { readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';

/**
 * `config.json`: the model and the topology. Parsed once at a service's start into `AppConfig`
 * (camelCase, validated) by one zod schema (CONFIG_SCHEMA below: types, defaults, limits and
 * messages in one declaration; unknown keys are refused, so a typo is not silently ignored);
 * environment variables override it for containers (see ENV_OVERRIDES).
 */
export interface NodeEntry {
  readonly id: string;
  /** host:port the node's gRPC server is reached at (and listens on, by port). */
  readonly address: string;
  /** Stage index this node serves (`model_part` in config.json). */
  readonly modelPart: number;
  readonly metricsPort: number;
  /**
   * 'static' (default): one replica at `address`. 'dns': every address the host of `address`
   * resolves to is a replica at that port (a Kubernetes headless Service), named `<id>@<ip>`.
   */
  readonly discovery: 'static' | 'dns';
  /** Where the node listens, when that differs from where others reach it (a proxy in between); default `address`. */
  readonly bindAddress?: string;
  /**
   * onnxruntime's intra-op threads for this stage (`intra_op_threads`, else `runtime.intra_op_threads`);
   * 0 lets onnxruntime use every core.
   */
  readonly intraOpThreads: number;
}

export interface ServiceEntry {
  readonly address: string;
  readonly metricsPort: number;
}

export interface Limits {
  readonly maxNewTokens: number;
  readonly maxPromptTokens: number;
  readonly maxBatchSize: number;
  readonly maxBatchTokens: number;
  readonly maxQueuedRequests: number;
  readonly requestTimeoutMs: number;
  readonly kvBudgetBytes: number;
  readonly kvIdleTtlMs: number;
  readonly bodyLimitBytes: number;
  /** The api's HTTP server: time a client has to send its request headers. */
  readonly httpHeadersTimeoutMs: number;
  /** The api's HTTP server: time a client has to send its whole request, headers and body. */
  readonly httpRequestTimeoutMs: number;
  /** Largest gRPC message any service sends or accepts. */
  readonly maxMessageBytes: number;
  /**
   * HTTP/2 receive window of every gRPC client and server, per stream and per connection: how
   * much a sender may have in flight before it waits for a WINDOW_UPDATE. HTTP/2's default of
   * 64 KiB lets a link carry 64 KiB per round trip, which on a network with latency holds a step
   * of many rows back for several round trips per hop.
   */
  readonly flowControlWindowBytes: number;
  /** A step that has not come back after this long marks its route suspect (hung replica); the measured step time sets it lower. */
  readonly stepTimeoutMaxMs: number;
  /** Micro-batches in flight per route; 0 = one per stage. */
  readonly microBatches: number;
}

/** Per-replica circuit breaker and health checking (the coordinator's view of the nodes). */
export interface ResilienceConfig {
  /** Consecutive failures that open a replica's breaker. */
  readonly breakerFailureThreshold: number;
  /** How long an open breaker keeps traffic away before one probe is let through. */
  readonly breakerOpenMs: number;
  /** Successful probes that close a half-open breaker. */
  readonly breakerSuccessThreshold: number;
  readonly healthIntervalMs: number;
  readonly healthTimeoutMs: number;
  /** Consecutive failed health checks before a replica counts as down (one slow answer on a busy host is not a death). */
  readonly healthFailuresToDown: number;
}

/** Transport security of the gRPC channels and the REST API. */
export interface SecurityConfig {
  /** Shared secret every internal gRPC call carries (`authorization: Bearer …`); undefined = none. */
  readonly clusterSecret: string | undefined;
  /** PEM files: with all three, every gRPC server and client uses mutual TLS. */
  readonly tls: { readonly caFile: string; readonly certFile: string; readonly keyFile: string } | undefined;
}

export interface ApiEntry {
  readonly port: number;
  readonly host: string;
  /** When set, every route but health, readiness, metrics, the playground and the docs needs `Authorization: Bearer <key>`. */
  readonly apiKey?: string;
  /** Origins browsers may call the api from (CORS); `["*"]` allows any; empty (the default) sends no CORS headers. */
  readonly corsOrigins: readonly string[];
}

export interface AppConfig {
  readonly modelName: string;
  /** Absolute path of the compiled model folder (manifest.json + stages). */
  readonly modelDir: string;
  readonly api: ApiEntry;
  readonly tokenizer: ServiceEntry;
  readonly coordinator: ServiceEntry;
  readonly nodes: readonly NodeEntry[];
  readonly limits: Limits;
  readonly resilience: ResilienceConfig;
  readonly security: SecurityConfig;
  readonly logLevel: string;
}

export class ConfigError extends Error {
  constructor(key: string, problem: string) {
    super(`config ${key}: ${problem}`);
    this.name = 'ConfigError';
  }
}

/** Environment variables that override config.json, for containers and tests. */
export const ENV_OVERRIDES = {
  CONFIG_PATH: 'path of config.json (default: ./config.json)',
  MODEL_DIR: 'model_dir',
  API_PORT: 'api.port',
  API_HOST: 'api.host',
  API_KEY: 'api.api_key',
  TOKENIZER_ADDRESS: 'tokenizer.address',
  COORDINATOR_ADDRESS: 'coordinator.address',
  NODE_ADDRESSES: 'nodes[].address, as "node1=host:port,node2=host:port"',
  KV_BUDGET_BYTES: 'limits.kv_budget_bytes',
  CLUSTER_SECRET: 'security.cluster_secret',
  TLS_CA_FILE: 'security.tls.ca_file',
  TLS_CERT_FILE: 'security.tls.cert_file',
  TLS_KEY_FILE: 'security.tls.key_file',
  REQUEST_TIMEOUT_MS: 'limits.request_timeout_ms',
  INTRA_OP_THREADS: 'runtime.intra_op_threads (and every nodes[].intra_op_threads)',
  LOG_LEVEL: 'log_level',
} as const;

/** HTTP/2's initial window (RFC 9113 §6.9.2), which a receive window may not be set below here. */
export const HTTP2_DEFAULT_WINDOW_BYTES = 65_535;
/** The largest window HTTP/2 allows (2^31 - 1). */
export const HTTP2_MAX_WINDOW_BYTES = 2 ** 31 - 1;

export const DEFAULT_LIMITS: Limits = {
  maxNewTokens: 512,
  maxPromptTokens: 1024,
  maxBatchSize: 32,
  maxBatchTokens: 4096,
  maxQueuedRequests: 256,
  requestTimeoutMs: 120_000,
  kvBudgetBytes: 2 * 1024 ** 3,
  kvIdleTtlMs: 30_000,
  bodyLimitBytes: 64 * 1024,
  httpHeadersTimeoutMs: 10_000,
  httpRequestTimeoutMs: 30_000,
  maxMessageBytes: 16 * 1024 * 1024,
  flowControlWindowBytes: 16 * 1024 * 1024,
  stepTimeoutMaxMs: 2_000,
  microBatches: 0,
};

/**
 * One onnxruntime thread per stage. Stages run side by side (micro-batches of different
 * sequences are in different stages at once), so a node's own thread pool would only compete with
 * the other nodes for the same cores; measured on 2 cores in tools/bench.ts.
 */
export const DEFAULT_INTRA_OP_THREADS = 1;

export const DEFAULT_RESILIENCE: ResilienceConfig = {
  breakerFailureThreshold: 3,
  breakerOpenMs: 2_000,
  breakerSuccessThreshold: 2,
  healthIntervalMs: 500,
  healthTimeoutMs: 1_000,
  healthFailuresToDown: 2,
};

type Env = Readonly<Record<string, string | undefined>>;

const LOG_LEVELS = ['error', 'warn', 'info', 'http', 'verbose', 'debug', 'silly'] as const;
const NODE_ID = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;
const ORIGIN = /^https?:\/\/[^/\s]+$/;
const SECRET_MIN_LENGTH = 16;

// ---- the pieces every key is made of, each with the message a user sees ----

/** A number in JSON, or a numeric string (environment variables are strings). */
function int(min: number, max = Number.MAX_SAFE_INTEGER, problem = `must be an integer >= ${min}`) {
  const error = (issue: { input?: unknown }): string => `${problem}, got ${JSON.stringify(issue.input)}`;
  return z.preprocess(
    (value) => (typeof value === 'string' && value.trim() !== '' && Number.isFinite(Number(value)) ? Number(value) : value),
    z.number({ error }).int({ error }).min(min, { error }).max(max, { error }),
  );
}

const port = () => int(1, 65535, 'must be a port number (1-65535)');

const nonEmpty = () => z.string({ error: 'must be a non-empty string' }).refine((v) => v.trim() !== '', 'must be a non-empty string');

/** Absent, null or empty is no value: an empty API_KEY means no key, not an empty one. */
const optionalNonEmpty = () => z.preprocess((value) => (value === '' || value === null ? undefined : value), nonEmpty().optional());

const hostPort = () =>
  nonEmpty().refine(
    (text) => {
      const colon = text.lastIndexOf(':');
      const portText = text.slice(colon + 1);
      return colon > 0 && /^\d+$/.test(portText) && Number(portText) >= 1 && Number(portText) <= 65535;
    },
    { error: (issue) => `${JSON.stringify(issue.input)} must be host:port (port 1-65535)` },
  );

/**
 * An object with exactly these keys; anything else is a type error named "must be an object".
 * A key set to null counts as absent (its default applies), as templated configs write them.
 */
function section<T extends z.ZodRawShape>(shape: T) {
  return z.preprocess(
    (value) => (isPlainObject(value) ? Object.fromEntries(Object.entries(value).filter(([, v]) => v !== null)) : value),
    z.strictObject(shape, { error: (issue) => (issue.code === 'invalid_type' ? 'must be an object' : undefined) }),
  );
}

const corsOrigins = () => {
  const error = (issue: { input?: unknown }): string => `must be "*" or a list of origins such as "https://app.example.com" (scheme and host, no path), got ${JSON.stringify(issue.input)}`;
  return z.preprocess(
    (value) => (typeof value === 'string' ? [value] : value),
    z.array(z.string({ error }).refine((o) => o === '*' || ORIGIN.test(o), { error }), { error }),
  );
};

const clusterSecret = () => {
  const error = `must be at least ${SECRET_MIN_LENGTH} printable characters without spaces`;
  return z.string({ error }).refine((secret) => secret.length >= SECRET_MIN_LENGTH && /^[\x21-\x7e]+$/.test(secret), { error });
};

/** config.json as written (snake_case keys), with the defaults of every optional key. */
const CONFIG_SCHEMA = section({
  model_name: nonEmpty(),
  model_dir: nonEmpty(),
  log_level: z.enum(LOG_LEVELS, { error: (issue) => `must be one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(issue.input)}` }).default('info'),
  api: section({
    port: port().default(8000),
    host: nonEmpty().default('0.0.0.0'),
    api_key: optionalNonEmpty(),
    cors_origins: corsOrigins().default([]),
  }).prefault({}),
  tokenizer: section({ address: hostPort(), metrics_port: port() }),
  coordinator: section({ address: hostPort(), metrics_port: port() }),
  nodes: z
    .array(
      section({
        id: nonEmpty().regex(NODE_ID, { error: (issue) => `${JSON.stringify(issue.input)} must be lowercase letters, digits and dashes` }),
        address: hostPort(),
        model_part: int(0),
        metrics_port: port(),
        discovery: z.enum(['static', 'dns'], { error: (issue) => `must be "static" or "dns", got ${JSON.stringify(issue.input)}` }).default('static'),
        bind_address: hostPort().optional(),
        intra_op_threads: int(0).optional(),
      }),
      { error: 'must be a non-empty array' },
    )
    .min(1, { error: 'must be a non-empty array' }),
  runtime: section({ intra_op_threads: int(0).default(DEFAULT_INTRA_OP_THREADS) }).prefault({}),
  limits: section({
    max_new_tokens: int(1).default(DEFAULT_LIMITS.maxNewTokens),
    max_prompt_tokens: int(1).default(DEFAULT_LIMITS.maxPromptTokens),
    max_batch_size: int(1).default(DEFAULT_LIMITS.maxBatchSize),
    max_batch_tokens: int(1).default(DEFAULT_LIMITS.maxBatchTokens),
    max_queued_requests: int(1).default(DEFAULT_LIMITS.maxQueuedRequests),
    request_timeout_ms: int(1).default(DEFAULT_LIMITS.requestTimeoutMs),
    kv_budget_bytes: int(1).default(DEFAULT_LIMITS.kvBudgetBytes),
    kv_idle_ttl_ms: int(1).default(DEFAULT_LIMITS.kvIdleTtlMs),
    body_limit_bytes: int(1).default(DEFAULT_LIMITS.bodyLimitBytes),
    http_headers_timeout_ms: int(1).default(DEFAULT_LIMITS.httpHeadersTimeoutMs),
    http_request_timeout_ms: int(1).default(DEFAULT_LIMITS.httpRequestTimeoutMs),
    max_message_bytes: int(64 * 1024).default(DEFAULT_LIMITS.maxMessageBytes),
    flow_control_window_bytes: int(HTTP2_DEFAULT_WINDOW_BYTES, HTTP2_MAX_WINDOW_BYTES, `must be an integer from ${HTTP2_DEFAULT_WINDOW_BYTES} to ${HTTP2_MAX_WINDOW_BYTES} (HTTP/2's window limits)`).default(
      DEFAULT_LIMITS.flowControlWindowBytes,
    ),
    step_timeout_max_ms: int(100).default(DEFAULT_LIMITS.stepTimeoutMaxMs),
    micro_batches: int(0).default(DEFAULT_LIMITS.microBatches),
  }).prefault({}),
  resilience: section({
    breaker_failure_threshold: int(1).default(DEFAULT_RESILIENCE.breakerFailureThreshold),
    breaker_open_ms: int(1).default(DEFAULT_RESILIENCE.breakerOpenMs),
    breaker_success_threshold: int(1).default(DEFAULT_RESILIENCE.breakerSuccessThreshold),
    health_interval_ms: int(10).default(DEFAULT_RESILIENCE.healthIntervalMs),
    health_timeout_ms: int(10).default(DEFAULT_RESILIENCE.healthTimeoutMs),
    health_failures_to_down: int(1).default(DEFAULT_RESILIENCE.healthFailuresToDown),
  }).prefault({}),
  security: section({
    cluster_secret: clusterSecret().optional(),
    tls: section({ ca_file: nonEmpty().optional(), cert_file: nonEmpty().optional(), key_file: nonEmpty().optional() }).prefault({}),
  }).prefault({}),
}).superRefine((config, ctx) => {
  const ids = new Set<string>();
  for (const node of config.nodes) {
    if (ids.has(node.id)) ctx.addIssue({ code: 'custom', path: ['nodes[]', 'id'], message: `${JSON.stringify(node.id)} appears twice` });
    ids.add(node.id);
  }
  const parts = new Set(config.nodes.map((n) => n.model_part));
  // A model_part that is itself wrong is reported as such; the numbering is checked once they are all stage indices.
  const indices = [...parts].every((part) => Number.isSafeInteger(part) && part >= 0);
  for (let part = 0; indices && part < parts.size; part++) {
    if (!parts.has(part)) {
      ctx.addIssue({ code: 'custom', path: ['nodes[]', 'model_part'], message: `stages must be numbered 0..${parts.size - 1}; stage ${part} has no node` });
      break;
    }
  }
  const tlsGiven = Object.values(config.security.tls).filter((v) => v !== undefined).length;
  if (tlsGiven !== 0 && tlsGiven !== 3) ctx.addIssue({ code: 'custom', path: ['security', 'tls'], message: 'needs ca_file, cert_file and key_file together (or none of them)' });
});

export type RawConfig = z.output<typeof CONFIG_SCHEMA>;

export function loadConfig(env: Env = process.env): AppConfig {
  const file = path.resolve(env.CONFIG_PATH ?? 'config.json');
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError(file, `cannot read: ${(error as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(file, `is not valid JSON: ${(error as Error).message}`);
  }
  return parseConfig(json, { baseDir: path.dirname(file), env });
}

/**
 * config.json's content, with the environment's overrides applied, as an AppConfig; a
 * ConfigError names every key that is wrong (and the variable, when one set it).
 */
export function parseConfig(json: unknown, options: { baseDir: string; env?: Env }): AppConfig {
  const { document, setBy } = withEnvOverrides(json, options.env ?? {});
  const parsed = CONFIG_SCHEMA.safeParse(document);
  if (!parsed.success) throw configErrorOf(parsed.error, setBy);
  return toAppConfig(parsed.data, options.baseDir);
}

/** The first problem names its key in the message (`config <key>: <problem>`); further ones follow, one per line. */
function configErrorOf(error: z.ZodError, setBy: ReadonlyMap<string, string>): ConfigError {
  const seen = new Set<string>();
  const problems = error.issues.flatMap((issue) => {
    const key = keyOf(issue.path);
    if (issue.code === 'unrecognized_keys') return issue.keys.map((k) => [key === '(root)' ? k : `${key}.${k}`, 'is not a known key (a typo?)'] as const);
    const variable = setBy.get(key);
    // Two checks of one value (an integer and its maximum, say) may both fail with one message: say it once.
    if (seen.has(`${key}\n${issue.message}`)) return [];
    seen.add(`${key}\n${issue.message}`);
    return [[key, variable === undefined ? issue.message : `${issue.message} (set by ${variable})`] as const];
  });
  const [[key, problem], ...more] = problems;
  return new ConfigError(key, [problem, ...more.map(([k, p]) => `config ${k}: ${p}`)].join('\n'));
}

/** ['nodes', 1, 'address'] → "nodes[1].address". */
function keyOf(pathParts: readonly PropertyKey[]): string {
  if (pathParts.length === 0) return '(root)';
  return pathParts.map((part, i) => (typeof part === 'number' ? `[${part}]` : i === 0 ? String(part) : `.${String(part)}`)).join('');
}

/** Each variable of ENV_OVERRIDES that sets one key, and that key's path. */
const ENV_KEYS: ReadonlyArray<readonly [keyof typeof ENV_OVERRIDES, readonly string[]]> = [
  ['MODEL_DIR', ['model_dir']],
  ['API_PORT', ['api', 'port']],
  ['API_HOST', ['api', 'host']],
  ['API_KEY', ['api', 'api_key']],
  ['TOKENIZER_ADDRESS', ['tokenizer', 'address']],
  ['COORDINATOR_ADDRESS', ['coordinator', 'address']],
  ['KV_BUDGET_BYTES', ['limits', 'kv_budget_bytes']],
  ['CLUSTER_SECRET', ['security', 'cluster_secret']],
  ['TLS_CA_FILE', ['security', 'tls', 'ca_file']],
  ['TLS_CERT_FILE', ['security', 'tls', 'cert_file']],
  ['TLS_KEY_FILE', ['security', 'tls', 'key_file']],
  ['REQUEST_TIMEOUT_MS', ['limits', 'request_timeout_ms']],
  ['LOG_LEVEL', ['log_level']],
];

/**
 * A copy of the document with the environment's values written in (the input is not
 * changed), and which variable set which key, so that an error can name it. Where a section is
 * not an object the variable is not applied: the schema then reports the section.
 */
function withEnvOverrides(json: unknown, env: Env): { document: unknown; setBy: Map<string, string> } {
  const setBy = new Map<string, string>();
  if (!isPlainObject(json)) return { document: json, setBy };
  const document = structuredClone(json);
  const set = (keyPath: readonly (string | number)[], value: unknown, variable: string): void => {
    let target: Record<string | number, unknown> = document;
    for (const part of keyPath.slice(0, -1)) {
      target[part] ??= {};
      const next = target[part];
      if (typeof next !== 'object' || next === null) return;
      target = next as Record<string | number, unknown>;
    }
    target[keyPath[keyPath.length - 1]] = value;
    setBy.set(keyOf(keyPath), variable);
  };
  for (const [variable, keyPath] of ENV_KEYS) {
    const value = env[variable];
    if (value !== undefined) set(keyPath, value, variable);
  }
  const nodes = Array.isArray(document.nodes) ? (document.nodes as unknown[]) : [];
  for (const [id, nodeAddress] of parseNodeAddresses(env.NODE_ADDRESSES)) {
    const index = nodes.findIndex((n) => isPlainObject(n) && n.id === id);
    if (index < 0) throw new ConfigError('NODE_ADDRESSES', `names unknown node "${id}"`);
    set(['nodes', index, 'address'], nodeAddress, 'NODE_ADDRESSES');
  }
  const threads = env.INTRA_OP_THREADS;
  if (threads !== undefined) {
    set(['runtime', 'intra_op_threads'], threads, 'INTRA_OP_THREADS');
    nodes.forEach((n, i) => {
      if (isPlainObject(n)) set(['nodes', i, 'intra_op_threads'], threads, 'INTRA_OP_THREADS');
    });
  }
  return { document, setBy };
}

function toAppConfig(raw: RawConfig, baseDir: string): AppConfig {
  const { limits: l, resilience: r, security, runtime } = raw;
  const tls = security.tls;
  return {
    modelName: raw.model_name,
    modelDir: path.resolve(baseDir, raw.model_dir),
    api: { port: raw.api.port, host: raw.api.host, ...(raw.api.api_key === undefined ? {} : { apiKey: raw.api.api_key }), corsOrigins: raw.api.cors_origins },
    tokenizer: { address: raw.tokenizer.address, metricsPort: raw.tokenizer.metrics_port },
    coordinator: { address: raw.coordinator.address, metricsPort: raw.coordinator.metrics_port },
    nodes: raw.nodes.map((node) => ({
      id: node.id,
      address: node.address,
      modelPart: node.model_part,
      metricsPort: node.metrics_port,
      discovery: node.discovery,
      ...(node.bind_address === undefined ? {} : { bindAddress: node.bind_address }),
      intraOpThreads: node.intra_op_threads ?? runtime.intra_op_threads,
    })),
    limits: {
      maxNewTokens: l.max_new_tokens,
      maxPromptTokens: l.max_prompt_tokens,
      maxBatchSize: l.max_batch_size,
      maxBatchTokens: l.max_batch_tokens,
      maxQueuedRequests: l.max_queued_requests,
      requestTimeoutMs: l.request_timeout_ms,
      kvBudgetBytes: l.kv_budget_bytes,
      kvIdleTtlMs: l.kv_idle_ttl_ms,
      bodyLimitBytes: l.body_limit_bytes,
      httpHeadersTimeoutMs: l.http_headers_timeout_ms,
      httpRequestTimeoutMs: l.http_request_timeout_ms,
      maxMessageBytes: l.max_message_bytes,
      flowControlWindowBytes: l.flow_control_window_bytes,
      stepTimeoutMaxMs: l.step_timeout_max_ms,
      microBatches: l.micro_batches,
    },
    resilience: {
      breakerFailureThreshold: r.breaker_failure_threshold,
      breakerOpenMs: r.breaker_open_ms,
      breakerSuccessThreshold: r.breaker_success_threshold,
      healthIntervalMs: r.health_interval_ms,
      healthTimeoutMs: r.health_timeout_ms,
      healthFailuresToDown: r.health_failures_to_down,
    },
    security: {
      clusterSecret: security.cluster_secret,
      tls:
        tls.ca_file !== undefined && tls.cert_file !== undefined && tls.key_file !== undefined
          ? { caFile: path.resolve(baseDir, tls.ca_file), certFile: path.resolve(baseDir, tls.cert_file), keyFile: path.resolve(baseDir, tls.key_file) }
          : undefined,
    },
    logLevel: raw.log_level,
  };
}

/** The stage count of a topology: one more than the highest model_part. */
export function stageCount(config: AppConfig): number {
  return Math.max(...config.nodes.map((n) => n.modelPart)) + 1;
}

export function portOf(hostPort: string): number {
  return Number(hostPort.slice(hostPort.lastIndexOf(':') + 1));
}

function parseNodeAddresses(value: string | undefined): Map<string, string> {
  const result = new Map<string, string>();
  if (value === undefined || value.trim() === '') return result;
  for (const pair of value.split(',')) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new ConfigError('NODE_ADDRESSES', `"${pair}" is not id=host:port`);
    result.set(pair.slice(0, eq).trim(), pair.slice(eq + 1).trim());
  }
  return result;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
