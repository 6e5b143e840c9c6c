import { readFileSync } from 'node:fs';
import path from 'node:path';

/**
 * `config.json`: the model and the topology. Parsed once at a service's start into `AppConfig`
 * (camelCase, validated); environment variables override it for containers (see ENV_OVERRIDES).
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

export function parseConfig(json: unknown, options: { baseDir: string; env?: Env }): AppConfig {
  const env = options.env ?? {};
  const root = asObject(json, '(root)');
  const nodesJson = root.nodes;
  if (!Array.isArray(nodesJson) || nodesJson.length === 0) throw new ConfigError('nodes', 'must be a non-empty array');
  const nodeAddressOverrides = parseNodeAddresses(env.NODE_ADDRESSES);
  const runtime = asObject(root.runtime ?? {}, 'runtime');
  const threadsOverride = env.INTRA_OP_THREADS === undefined ? undefined : int(env.INTRA_OP_THREADS, 'INTRA_OP_THREADS', 0);
  const defaultThreads = threadsOverride ?? int(runtime.intra_op_threads ?? DEFAULT_INTRA_OP_THREADS, 'runtime.intra_op_threads', 0);

  const nodes = nodesJson.map((entry, i): NodeEntry => {
    const key = `nodes[${i}]`;
    const node = asObject(entry, key);
    const id = str(node.id, `${key}.id`);
    if (!/^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/.test(id)) {
      throw new ConfigError(`${key}.id`, `"${id}" must be lowercase letters, digits and dashes`);
    }
    const discovery = node.discovery ?? 'static';
    if (discovery !== 'static' && discovery !== 'dns') throw new ConfigError(`${key}.discovery`, `must be "static" or "dns", got ${JSON.stringify(discovery)}`);
    return {
      id,
      address: address(nodeAddressOverrides.get(id) ?? node.address, `${key}.address`),
      modelPart: int(node.model_part, `${key}.model_part`, 0),
      metricsPort: port(node.metrics_port, `${key}.metrics_port`),
      discovery,
      ...(node.bind_address === undefined ? {} : { bindAddress: address(node.bind_address, `${key}.bind_address`) }),
      intraOpThreads: threadsOverride ?? (node.intra_op_threads === undefined ? defaultThreads : int(node.intra_op_threads, `${key}.intra_op_threads`, 0)),
    };
  });
  checkUnique(nodes.map((n) => n.id), 'nodes[].id');
  for (const id of nodeAddressOverrides.keys()) {
    if (!nodes.some((n) => n.id === id)) throw new ConfigError('NODE_ADDRESSES', `names unknown node "${id}"`);
  }
  const parts = new Set(nodes.map((n) => n.modelPart));
  for (let part = 0; part < parts.size; part++) {
    if (!parts.has(part)) {
      throw new ConfigError('nodes[].model_part', `stages must be numbered 0..${parts.size - 1}; stage ${part} has no node`);
    }
  }

  const api = asObject(root.api ?? {}, 'api');
  const tokenizer = asObject(root.tokenizer, 'tokenizer');
  const coordinator = asObject(root.coordinator, 'coordinator');
  const limits = asObject(root.limits ?? {}, 'limits');
  const resilience = asObject(root.resilience ?? {}, 'resilience');
  const security = asObject(root.security ?? {}, 'security');
  const tls = asObject(security.tls ?? {}, 'security.tls');
  const tlsFiles = {
    caFile: env.TLS_CA_FILE ?? tls.ca_file,
    certFile: env.TLS_CERT_FILE ?? tls.cert_file,
    keyFile: env.TLS_KEY_FILE ?? tls.key_file,
  };
  const tlsGiven = Object.values(tlsFiles).filter((v) => v !== undefined).length;
  if (tlsGiven !== 0 && tlsGiven !== 3) throw new ConfigError('security.tls', 'needs ca_file, cert_file and key_file together (or none of them)');
  const clusterSecret = env.CLUSTER_SECRET ?? security.cluster_secret;
  if (clusterSecret !== undefined && (typeof clusterSecret !== 'string' || clusterSecret.length < 16 || /[^\x21-\x7e]/.test(clusterSecret))) {
    throw new ConfigError('security.cluster_secret', 'must be at least 16 printable characters without spaces');
  }
  const modelDir = str(env.MODEL_DIR ?? root.model_dir, 'model_dir');

  return {
    modelName: str(root.model_name, 'model_name'),
    modelDir: path.resolve(options.baseDir, modelDir),
    api: {
      port: port(env.API_PORT ?? api.port ?? 8000, 'api.port'),
      host: str(env.API_HOST ?? api.host ?? '0.0.0.0', 'api.host'),
      ...optionalEntry('apiKey', optionalStr(env.API_KEY ?? api.api_key, 'api.api_key')),
      corsOrigins: corsOrigins(api.cors_origins ?? []),
    },
    tokenizer: {
      address: address(env.TOKENIZER_ADDRESS ?? tokenizer.address, 'tokenizer.address'),
      metricsPort: port(tokenizer.metrics_port, 'tokenizer.metrics_port'),
    },
    coordinator: {
      address: address(env.COORDINATOR_ADDRESS ?? coordinator.address, 'coordinator.address'),
      metricsPort: port(coordinator.metrics_port, 'coordinator.metrics_port'),
    },
    nodes,
    limits: {
      maxNewTokens: int(limits.max_new_tokens ?? DEFAULT_LIMITS.maxNewTokens, 'limits.max_new_tokens', 1),
      maxPromptTokens: int(limits.max_prompt_tokens ?? DEFAULT_LIMITS.maxPromptTokens, 'limits.max_prompt_tokens', 1),
      maxBatchSize: int(limits.max_batch_size ?? DEFAULT_LIMITS.maxBatchSize, 'limits.max_batch_size', 1),
      maxBatchTokens: int(limits.max_batch_tokens ?? DEFAULT_LIMITS.maxBatchTokens, 'limits.max_batch_tokens', 1),
      maxQueuedRequests: int(limits.max_queued_requests ?? DEFAULT_LIMITS.maxQueuedRequests, 'limits.max_queued_requests', 1),
      requestTimeoutMs: int(env.REQUEST_TIMEOUT_MS ?? limits.request_timeout_ms ?? DEFAULT_LIMITS.requestTimeoutMs, 'limits.request_timeout_ms', 1),
      kvBudgetBytes: int(env.KV_BUDGET_BYTES ?? limits.kv_budget_bytes ?? DEFAULT_LIMITS.kvBudgetBytes, 'limits.kv_budget_bytes', 1),
      kvIdleTtlMs: int(limits.kv_idle_ttl_ms ?? DEFAULT_LIMITS.kvIdleTtlMs, 'limits.kv_idle_ttl_ms', 1),
      bodyLimitBytes: int(limits.body_limit_bytes ?? DEFAULT_LIMITS.bodyLimitBytes, 'limits.body_limit_bytes', 1),
      httpHeadersTimeoutMs: int(limits.http_headers_timeout_ms ?? DEFAULT_LIMITS.httpHeadersTimeoutMs, 'limits.http_headers_timeout_ms', 1),
      httpRequestTimeoutMs: int(limits.http_request_timeout_ms ?? DEFAULT_LIMITS.httpRequestTimeoutMs, 'limits.http_request_timeout_ms', 1),
      maxMessageBytes: int(limits.max_message_bytes ?? DEFAULT_LIMITS.maxMessageBytes, 'limits.max_message_bytes', 64 * 1024),
      stepTimeoutMaxMs: int(limits.step_timeout_max_ms ?? DEFAULT_LIMITS.stepTimeoutMaxMs, 'limits.step_timeout_max_ms', 100),
      microBatches: int(limits.micro_batches ?? DEFAULT_LIMITS.microBatches, 'limits.micro_batches', 0),
    },
    resilience: {
      breakerFailureThreshold: int(resilience.breaker_failure_threshold ?? DEFAULT_RESILIENCE.breakerFailureThreshold, 'resilience.breaker_failure_threshold', 1),
      breakerOpenMs: int(resilience.breaker_open_ms ?? DEFAULT_RESILIENCE.breakerOpenMs, 'resilience.breaker_open_ms', 1),
      breakerSuccessThreshold: int(resilience.breaker_success_threshold ?? DEFAULT_RESILIENCE.breakerSuccessThreshold, 'resilience.breaker_success_threshold', 1),
      healthIntervalMs: int(resilience.health_interval_ms ?? DEFAULT_RESILIENCE.healthIntervalMs, 'resilience.health_interval_ms', 10),
      healthTimeoutMs: int(resilience.health_timeout_ms ?? DEFAULT_RESILIENCE.healthTimeoutMs, 'resilience.health_timeout_ms', 10),
      healthFailuresToDown: int(resilience.health_failures_to_down ?? DEFAULT_RESILIENCE.healthFailuresToDown, 'resilience.health_failures_to_down', 1),
    },
    security: {
      clusterSecret: clusterSecret as string | undefined,
      tls:
        tlsGiven === 3
          ? {
              caFile: path.resolve(options.baseDir, str(tlsFiles.caFile, 'security.tls.ca_file')),
              certFile: path.resolve(options.baseDir, str(tlsFiles.certFile, 'security.tls.cert_file')),
              keyFile: path.resolve(options.baseDir, str(tlsFiles.keyFile, 'security.tls.key_file')),
            }
          : undefined,
    },
    logLevel: logLevel(env.LOG_LEVEL ?? root.log_level ?? 'info'),
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

function asObject(value: unknown, key: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ConfigError(key, 'must be an object');
  return value as Record<string, unknown>;
}

function str(value: unknown, key: string): string {
  if (typeof value !== 'string' || value.trim() === '') throw new ConfigError(key, 'must be a non-empty string');
  return value;
}

/** Absent or empty stays absent: an empty API_KEY means no key, not an empty one. */
function optionalStr(value: unknown, key: string): string | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  return str(value, key);
}

function optionalEntry<K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: V };
}

function corsOrigins(value: unknown): readonly string[] {
  const list = typeof value === 'string' ? [value] : value;
  if (!Array.isArray(list) || !list.every((o) => typeof o === 'string' && (o === '*' || /^https?:\/\/[^/\s]+$/.test(o)))) {
    throw new ConfigError('api.cors_origins', `must be "*" or a list of origins such as "https://app.example.com" (scheme and host, no path), got ${JSON.stringify(value)}`);
  }
  return list as string[];
}

function int(value: unknown, key: string, min: number): number {
  const n = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < min) {
    throw new ConfigError(key, `must be an integer >= ${min}, got ${JSON.stringify(value)}`);
  }
  return n;
}

function port(value: unknown, key: string): number {
  const n = int(value, key, 1);
  if (n > 65535) throw new ConfigError(key, `must be a port number (1-65535), got ${n}`);
  return n;
}

function address(value: unknown, key: string): string {
  const text = str(value, key);
  const colon = text.lastIndexOf(':');
  if (colon <= 0) throw new ConfigError(key, `"${text}" must be host:port`);
  port(text.slice(colon + 1), key);
  return text;
}

function logLevel(value: unknown): string {
  const levels = ['error', 'warn', 'info', 'http', 'verbose', 'debug', 'silly'];
  if (typeof value !== 'string' || !levels.includes(value)) {
    throw new ConfigError('log_level', `must be one of ${levels.join(', ')}, got ${JSON.stringify(value)}`);
  }
  return value;
}

function checkUnique(values: readonly string[], key: string): void {
  const seen = new Set<string>();
  for (const v of values) {
    if (seen.has(v)) throw new ConfigError(key, `"${v}" appears twice`);
    seen.add(v);
  }
}
