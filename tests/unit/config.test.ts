import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseConfig, stageCount } from '../../shared/config';

const ROOT = path.resolve(__dirname, '../..');
const shipped = (): Record<string, unknown> => JSON.parse(readFileSync(path.join(ROOT, 'config.json'), 'utf8')) as Record<string, unknown>;

describe('config.json', () => {
  it('the shipped config.json parses into three stages on loopback', () => {
    const config = parseConfig(shipped(), { baseDir: ROOT });
    expect(stageCount(config)).toBe(3);
    expect(config.nodes.map((n) => n.address)).toEqual(['localhost:50051', 'localhost:50052', 'localhost:50053']);
    expect(config.modelDir).toBe(path.join(ROOT, 'models/default'));
    expect(config.limits.maxNewTokens).toBe(512);
  });

  it('environment variables override addresses, ports and the model folder', () => {
    const config = parseConfig(shipped(), {
      baseDir: ROOT,
      env: { MODEL_DIR: '/models/x', API_PORT: '9000', TOKENIZER_ADDRESS: 'tok:1', COORDINATOR_ADDRESS: 'coord:2', NODE_ADDRESSES: 'node2=n2:7,node3=n3:8', KV_BUDGET_BYTES: '1024' },
    });
    expect(config.modelDir).toBe('/models/x');
    expect(config.api.port).toBe(9000);
    expect(config.tokenizer.address).toBe('tok:1');
    expect(config.coordinator.address).toBe('coord:2');
    expect(config.nodes.map((n) => n.address)).toEqual(['localhost:50051', 'n2:7', 'n3:8']);
    expect(config.limits.kvBudgetBytes).toBe(1024);
  });

  it.each([
    [(c: Record<string, unknown>) => delete c.model_name, /config model_name: must be a non-empty string/],
    [(c: Record<string, unknown>) => (c.nodes = []), /config nodes: must be a non-empty array/],
    [(c: Record<string, unknown>) => ((c.nodes as { address: string }[])[1].address = 'nohost'), /config nodes\[1\]\.address: "nohost" must be host:port/],
    [(c: Record<string, unknown>) => ((c.nodes as { model_part: number }[])[2].model_part = 5), /config nodes\[\]\.model_part: stages must be numbered 0..2; stage 2 has no node/],
    [(c: Record<string, unknown>) => ((c.nodes as { id: string }[])[1].id = 'node1'), /config nodes\[\]\.id: "node1" appears twice/],
    [(c: Record<string, unknown>) => ((c.api as { port: number }).port = 70000), /config api\.port: must be a port number/],
    [(c: Record<string, unknown>) => ((c.limits as Record<string, unknown>).max_new_tokens = 0), /config limits\.max_new_tokens: must be an integer >= 1/],
    [(c: Record<string, unknown>) => (c.log_level = 'loud'), /config log_level: must be one of/],
    [(c: Record<string, unknown>) => ((c.api as Record<string, unknown>).cors_origins = ['https://a.example/path']), /config api\.cors_origins\[0\]: must be "\*" or a list of origins/],
    [(c: Record<string, unknown>) => ((c.api as Record<string, unknown>).api_key = 5), /config api\.api_key: must be a non-empty string/],
    [(c: Record<string, unknown>) => ((c.limits as Record<string, unknown>).http_headers_timeout_ms = 0), /config limits\.http_headers_timeout_ms: must be an integer >= 1/],
    [(c: Record<string, unknown>) => ((c.limits as Record<string, unknown>).flow_control_window_bytes = 1024), /config limits\.flow_control_window_bytes: must be an integer from 65535 to 2147483647/],
    [(c: Record<string, unknown>) => ((c.limits as Record<string, unknown>).flow_control_window_bytes = 2 ** 31), /config limits\.flow_control_window_bytes: must be an integer from 65535 to 2147483647/],
  ])('an invalid config is rejected with a message naming the key (%#)', (mutate, message) => {
    const json = shipped();
    mutate(json);
    expect(() => parseConfig(json, { baseDir: ROOT })).toThrow(message);
  });

  it('the api key comes from api.api_key or API_KEY (an empty API_KEY is no key); CORS origins and HTTP timeouts from their keys', () => {
    const plain = parseConfig(shipped(), { baseDir: ROOT });
    expect(plain.api.apiKey).toBeUndefined();
    expect(plain.api.corsOrigins).toEqual([]);
    expect([plain.limits.httpHeadersTimeoutMs, plain.limits.httpRequestTimeoutMs]).toEqual([10_000, 30_000]);

    const json = shipped();
    Object.assign(json.api as Record<string, unknown>, { api_key: 'from-file', cors_origins: ['http://localhost:5173', 'https://app.example.com'] });
    Object.assign(json.limits as Record<string, unknown>, { http_headers_timeout_ms: 2_000, http_request_timeout_ms: 5_000 });
    const configured = parseConfig(json, { baseDir: ROOT });
    expect(configured.api).toMatchObject({ apiKey: 'from-file', corsOrigins: ['http://localhost:5173', 'https://app.example.com'] });
    expect([configured.limits.httpHeadersTimeoutMs, configured.limits.httpRequestTimeoutMs]).toEqual([2_000, 5_000]);
    expect(parseConfig(json, { baseDir: ROOT, env: { API_KEY: 'from-env' } }).api.apiKey).toBe('from-env');
    expect(parseConfig(shipped(), { baseDir: ROOT, env: { API_KEY: '' } }).api.apiKey).toBeUndefined();
    expect(parseConfig({ ...shipped(), api: { cors_origins: '*' } }, { baseDir: ROOT }).api.corsOrigins).toEqual(['*']);
  });

  it('onnxruntime threads per node: nodes[].intra_op_threads, else runtime.intra_op_threads, else one; INTRA_OP_THREADS overrides both', () => {
    // The shipped config runs every stage on one machine, taking turns on all its cores.
    expect(parseConfig(shipped(), { baseDir: ROOT }).nodes.map((n) => n.intraOpThreads)).toEqual([0, 0, 0]);
    const unset = shipped();
    delete unset.runtime;
    expect(parseConfig(unset, { baseDir: ROOT }).nodes.map((n) => n.intraOpThreads)).toEqual([1, 1, 1]);
    const json = shipped();
    json.runtime = { intra_op_threads: 2 };
    (json.nodes as Record<string, unknown>[])[2].intra_op_threads = 0;
    expect(parseConfig(json, { baseDir: ROOT }).nodes.map((n) => n.intraOpThreads)).toEqual([2, 2, 0]);
    expect(parseConfig(json, { baseDir: ROOT, env: { INTRA_OP_THREADS: '3' } }).nodes.map((n) => n.intraOpThreads)).toEqual([3, 3, 3]);
    (json.nodes as Record<string, unknown>[])[1].intra_op_threads = -1;
    expect(() => parseConfig(json, { baseDir: ROOT })).toThrow(/config nodes\[1\]\.intra_op_threads: must be an integer >= 0/);
    expect(() => parseConfig(shipped(), { baseDir: ROOT, env: { INTRA_OP_THREADS: 'many' } })).toThrow(/config runtime\.intra_op_threads: must be an integer >= 0, got "many" \(set by INTRA_OP_THREADS\)/);
  });

  it('an unknown key is refused by name, every problem is reported, and the document is not changed', () => {
    const json = shipped();
    (json.limits as Record<string, unknown>).max_new_token = 8;
    (json.api as Record<string, unknown>).port = 'eighty';
    const before = structuredClone(json);
    let message = '';
    try {
      parseConfig(json, { baseDir: ROOT, env: { API_PORT: '1' } });
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toBe('config limits.max_new_token: is not a known key (a typo?)');
    expect(() => parseConfig(json, { baseDir: ROOT })).toThrow(/^config api\.port: must be a port number \(1-65535\), got "eighty"\nconfig limits\.max_new_token: is not a known key/);
    expect(json).toEqual(before);
    expect(() => parseConfig({ ...shipped(), extra: true }, { baseDir: ROOT })).toThrow(/^config extra: is not a known key/);
    expect(() => parseConfig('nodes', { baseDir: ROOT })).toThrow(/^config \(root\): must be an object$/);
  });

  it('a key set to null takes its default, as templated configs write them; one wrong value is reported once', () => {
    const json = { ...shipped(), api: null, limits: { max_new_tokens: null, micro_batches: 2 }, log_level: null, security: { tls: null } };
    const config = parseConfig(json, { baseDir: ROOT });
    expect(config.api).toMatchObject({ port: 8000, host: '0.0.0.0', corsOrigins: [] });
    expect(config.limits).toMatchObject({ maxNewTokens: 512, microBatches: 2 });
    expect([config.logLevel, config.security.tls]).toEqual(['info', undefined]);
    expect(() => parseConfig(shipped(), { baseDir: ROOT, env: { CLUSTER_SECRET: '' } })).toThrow(/^config security\.cluster_secret: must be at least 16 printable characters without spaces \(set by CLUSTER_SECRET\)$/);
    const negative = shipped();
    (negative.nodes as { model_part: number }[])[2].model_part = -1;
    expect(() => parseConfig(negative, { baseDir: ROOT })).toThrow(/^config nodes\[2\]\.model_part: must be an integer >= 0, got -1$/);
    expect(() => parseConfig({ ...shipped(), limits: { kv_budget_bytes: 2 ** 60 } }, { baseDir: ROOT })).toThrow(/^config limits\.kv_budget_bytes: must be an integer >= 1, got 1152921504606847000$/);
  });

  it('a bad value from an environment variable names the key and the variable', () => {
    expect(() => parseConfig(shipped(), { baseDir: ROOT, env: { API_PORT: '0' } })).toThrow(/^config api\.port: must be a port number \(1-65535\), got 0 \(set by API_PORT\)$/);
    expect(() => parseConfig(shipped(), { baseDir: ROOT, env: { NODE_ADDRESSES: 'node2=nohost' } })).toThrow(/^config nodes\[1\]\.address: "nohost" must be host:port \(port 1-65535\) \(set by NODE_ADDRESSES\)$/);
    expect(() => parseConfig(shipped(), { baseDir: ROOT, env: { LOG_LEVEL: 'loud' } })).toThrow(/^config log_level: must be one of error, warn, info, http, verbose, debug, silly, got "loud" \(set by LOG_LEVEL\)$/);
  });

  it('NODE_ADDRESSES naming an unknown node is rejected', () => {
    expect(() => parseConfig(shipped(), { baseDir: ROOT, env: { NODE_ADDRESSES: 'node9=x:1' } })).toThrow(/NODE_ADDRESSES: names unknown node "node9"/);
  });
});
