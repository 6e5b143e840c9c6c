import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { MethodDefinition } from '@grpc/proto-loader';
import { protos } from '../../shared/grpc/proto-loader';
import { SystemRunner } from '../../tools/bench/system-runner';
import { freeLoopbackPort } from '../../tools/free-port';
import { postJson } from '../support/http';
import { encodeRequest, rawCall } from '../support/raw-grpc-call';
import { ReflectionClient } from '../support/reflection-client';
import { PROJECT_DIR, SYSTEM_START_TIMEOUT_MS } from '../support/system';
import { writeTestPki, type TestPki } from '../support/test-certificates';
import { tinyModel } from '../support/test-models';

/**
 * The whole system through the real launcher with mutual TLS, a cluster secret and an API key,
 * checked from outside with clients built here from grpc-js alone: what a client without the
 * certificates, without the secret or without the key gets, and that with all three the
 * generation is the plaintext system's, token for token.
 */
const CLUSTER_SECRET = 'test-cluster-secret-6f1e2d3c4b5a';
const WRONG_SECRET = 'wrong-cluster-secret-0000000000';
const API_KEY = 'test-api-key-9a8b7c';
const PROMPT = 'Mutual TLS keeps the pipeline';
const NEW_TOKENS = 12;
/** Every gRPC call of this file has one: a refusal must come fast, a hang fails the test. */
const CALL_DEADLINE_MS = 5_000;
const API_START_TIMEOUT_MS = 30_000;
const TEST_TIMEOUT_MS = 60_000;

let dir: string;
let modelName: string;
let pki: TestPki;
let plaintextTokens: number[];
let system: SystemRunner;

beforeAll(async () => {
  const modelDir = await tinyModel({ stages: 3 });
  modelName = path.basename(modelDir);
  const plaintext = await SystemRunner.start({ modelDir });
  try {
    const answer = await postJson(`${plaintext.apiUrl}/api/model/process`, { text: PROMPT, max_new_tokens: NEW_TOKENS });
    expect(answer.status).toBe(200);
    plaintextTokens = answer.body.token_ids as number[];
  } finally {
    await plaintext.stop();
  }
  dir = await mkdtemp(path.join(os.tmpdir(), 'pipeserve-tls-'));
  pki = await writeTestPki(dir);
  system = await SystemRunner.start({
    modelDir,
    apiKey: API_KEY,
    security: { cluster_secret: CLUSTER_SECRET, tls: { ca_file: pki.caFile, cert_file: pki.service.certFile, key_file: pki.service.keyFile } },
  });
}, SYSTEM_START_TIMEOUT_MS * 3);

afterAll(async () => {
  await system?.stop();
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

const withKey = { 'Content-Type': 'application/json', Authorization: `Bearer ${API_KEY}` };

type AnyMethod = MethodDefinition<object, object, object, object>;

/** Every method of every gRPC process of the system, with the address it is served at. */
function everyMethod(): { process: string; address: string; name: string; method: AnyMethod }[] {
  const { tokenizer, coordinator, node } = protos();
  const services: [string, string, grpc.ServiceDefinition][] = [
    ['tokenizer', system.config.tokenizerAddress, tokenizer.pipeserve.v1.Tokenizer.service],
    ['coordinator', system.config.coordinatorAddress, coordinator.pipeserve.v1.Coordinator.service],
    ...system.config.nodes.map((n): [string, string, grpc.ServiceDefinition] => [n.id, n.address, node.pipeserve.v1.ModelNode.service]),
  ];
  return services.flatMap(([process, address, definition]) => Object.entries(definition).map(([name, method]) => ({ process, address, name, method: method as AnyMethod })));
}

function grpcAddresses(): string[] {
  return [system.config.tokenizerAddress, system.config.coordinatorAddress, ...system.config.nodes.map((n) => n.address)];
}

const read = (file: string): Buffer => readFileSync(file);

/** TLS with the cluster's CA and a certificate it signed: what every service presents. */
function clusterCredentials(): grpc.ChannelCredentials {
  return grpc.credentials.createSsl(read(pki.caFile), read(pki.service.keyFile), read(pki.service.certFile));
}

function bearer(secret: string): grpc.Metadata {
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${secret}`);
  return metadata;
}

async function withClient<T>(address: string, credentials: grpc.ChannelCredentials, use: (client: grpc.Client) => Promise<T>): Promise<T> {
  const client = new grpc.Client(address, credentials);
  try {
    return await use(client);
  } finally {
    client.close();
  }
}

async function healthCode(address: string, credentials: grpc.ChannelCredentials): Promise<{ code: grpc.status; status?: string }> {
  const check = protos().health.grpc.health.v1.Health.service.Check;
  const outcome = await withClient(address, credentials, (client) => rawCall(client, check, [encodeRequest(check, { service: '' })], { deadlineMs: CALL_DEADLINE_MS }));
  return { code: outcome.code, status: outcome.responses[0]?.status };
}

describe('REST with TLS, the cluster secret and an API key', () => {
  it(
    'with the key, /api/model/process and the SSE stream give exactly the plaintext system\'s greedy tokens',
    async () => {
      const answer = await postJson(`${system.apiUrl}/api/model/process`, { text: PROMPT, max_new_tokens: NEW_TOKENS }, { headers: withKey });
      expect(answer.status).toBe(200);
      expect(answer.body.token_ids).toEqual(plaintextTokens);
      const streamed = await system.stream({ text: PROMPT, max_new_tokens: NEW_TOKENS });
      expect({ status: streamed.status, done: streamed.done, error: streamed.error, tokens: streamed.tokens }).toEqual({ status: 200, done: true, error: undefined, tokens: plaintextTokens });
    },
    TEST_TIMEOUT_MS,
  );

  it('without the key or with a wrong one: 401 with WWW-Authenticate: Bearer, OpenAI-shaped under /v1; probes need none', async () => {
    const body = { text: PROMPT, max_new_tokens: 2 };
    const attempts: Record<string, string>[] = [{ 'Content-Type': 'application/json' }, { 'Content-Type': 'application/json', Authorization: 'Bearer not-the-key' }];
    for (const headers of attempts) {
      const rest = await postJson(`${system.apiUrl}/api/model/process`, body, { headers });
      expect({ status: rest.status, challenge: rest.headers.get('www-authenticate'), code: (rest.body.error as { code: string }).code }).toEqual({ status: 401, challenge: 'Bearer', code: 'UNAUTHENTICATED' });
      const openAi = await postJson(`${system.apiUrl}/v1/completions`, { model: modelName, prompt: PROMPT, max_tokens: 2 }, { headers });
      expect({ status: openAi.status, challenge: openAi.headers.get('www-authenticate') }).toEqual({ status: 401, challenge: 'Bearer' });
      expect(openAi.body.error).toMatchObject({ type: 'authentication_error', code: 'invalid_api_key' });
    }
    for (const probe of ['/health', '/ready']) expect({ probe, status: (await fetch(`${system.apiUrl}${probe}`)).status }).toEqual({ probe, status: 200 });
  });
});

describe('gRPC with mutual TLS and the cluster secret', () => {
  it('a plaintext client reaches no service: UNAVAILABLE', async () => {
    for (const address of grpcAddresses()) {
      expect({ address, ...(await healthCode(address, grpc.credentials.createInsecure())) }).toEqual({ address, code: grpc.status.UNAVAILABLE });
    }
  });

  it('a TLS client without a certificate, or with one from another CA, is refused: UNAVAILABLE', async () => {
    const noCertificate = grpc.credentials.createSsl(read(pki.caFile));
    const stranger = grpc.credentials.createSsl(read(pki.caFile), read(pki.stranger.keyFile), read(pki.stranger.certFile));
    for (const address of grpcAddresses()) {
      expect({ address, ...(await healthCode(address, noCertificate)) }).toEqual({ address, code: grpc.status.UNAVAILABLE });
      expect({ address, ...(await healthCode(address, stranger)) }).toEqual({ address, code: grpc.status.UNAVAILABLE });
    }
  });

  it('with the cluster certificate, health and reflection answer without the secret', async () => {
    for (const address of grpcAddresses()) {
      expect({ address, ...(await healthCode(address, clusterCredentials())) }).toEqual({ address, code: grpc.status.OK, status: 'SERVING' });
      const reflection = new ReflectionClient(address, 'v1', CALL_DEADLINE_MS, clusterCredentials());
      try {
        expect(await reflection.listServices()).toContain('grpc.health.v1.Health');
      } finally {
        reflection.close();
      }
    }
  });

  it('with the cluster certificate but no secret or a wrong one, every other RPC of every service is UNAUTHENTICATED', async () => {
    const methods = everyMethod();
    expect(methods.map((m) => `${m.process}.${m.name}`)).toEqual([
      'tokenizer.Encode', 'tokenizer.Decode', 'tokenizer.DecodeStream', 'tokenizer.RenderChat',
      'coordinator.Generate', 'coordinator.Process', 'coordinator.Topology',
      'node1.Connect', 'node1.Forward', 'node1.Describe', 'node2.Connect', 'node2.Forward', 'node2.Describe', 'node3.Connect', 'node3.Forward', 'node3.Describe',
    ]);
    for (const metadata of [new grpc.Metadata(), bearer(WRONG_SECRET), bearer(CLUSTER_SECRET.slice(0, -1))]) {
      for (const { process, address, name, method } of methods) {
        // An empty body is a valid message of every type (all fields default).
        const outcome = await withClient(address, clusterCredentials(), (client) => rawCall(client, method, [Buffer.alloc(0)], { deadlineMs: CALL_DEADLINE_MS, metadata }));
        expect({ rpc: `${process}.${name}`, code: grpc.status[outcome.code], responses: outcome.responses.length }).toEqual({ rpc: `${process}.${name}`, code: 'UNAUTHENTICATED', responses: 0 });
      }
    }
  });

  it(
    'with the certificate and the secret, every service answers, and gRPC Process generates the REST tokens',
    async () => {
      const { tokenizer, coordinator, node } = protos();
      const metadata = bearer(CLUSTER_SECRET);
      const call = <Req extends object, Res, ReqOut, ResOut>(address: string, method: MethodDefinition<Req, Res, ReqOut, ResOut>, request: Req, endAfterResponses?: number) =>
        withClient(address, clusterCredentials(), (client) => rawCall(client, method, [encodeRequest(method, request)], { deadlineMs: CALL_DEADLINE_MS * 4, metadata, endAfterResponses }));

      const encoded = await call(system.config.tokenizerAddress, tokenizer.pipeserve.v1.Tokenizer.service.Encode, { text: PROMPT });
      expect(encoded.code).toBe(grpc.status.OK);
      const promptIds = encoded.responses[0].token_ids;
      const processed = await call(system.config.coordinatorAddress, coordinator.pipeserve.v1.Coordinator.service.Process, { prompt_token_ids: promptIds, parameters: { max_new_tokens: NEW_TOKENS } });
      expect({ code: processed.code, tokens: processed.responses[0]?.token_ids }).toEqual({ code: grpc.status.OK, tokens: plaintextTokens });
      const topology = await call(system.config.coordinatorAddress, coordinator.pipeserve.v1.Coordinator.service.Topology, {});
      expect(topology.responses[0]?.nodes.map((n) => n.serving)).toEqual([true, true, true]);

      for (const { id, address } of system.config.nodes) {
        const described = await call(address, node.pipeserve.v1.ModelNode.service.Describe, {});
        expect({ code: described.code, node: described.responses[0]?.node_id }).toEqual({ code: grpc.status.OK, node: id });
        // A release of nothing is answered on the session: the stream got past the guard.
        const session = await call(address, node.pipeserve.v1.ModelNode.service.Connect, { release: { sequence_ids: ['none-such'] } }, 1);
        expect({ code: session.code, released: session.responses[0]?.released?.sequence_ids }).toEqual({ code: grpc.status.OK, released: [] });
      }
    },
    TEST_TIMEOUT_MS,
  );
});

describe('an api whose cluster secret differs from the other services', () => {
  let api: ChildProcess | undefined;
  let apiUrl: string;
  let output = '';

  beforeAll(async () => {
    const port = await freeLoopbackPort();
    apiUrl = `http://127.0.0.1:${port}`;
    api = spawn(process.execPath, [path.join(PROJECT_DIR, 'dist/services/api/main.js')], {
      cwd: PROJECT_DIR,
      env: { ...process.env, CONFIG_PATH: system.configPath, API_PORT: String(port), CLUSTER_SECRET: WRONG_SECRET },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    api.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    api.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const until = Date.now() + API_START_TIMEOUT_MS;
    while (!(await fetch(`${apiUrl}/health`).then((r) => r.ok, () => false))) {
      if (Date.now() > until || api.exitCode !== null) throw new Error(`the api did not start:\n${output}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }, API_START_TIMEOUT_MS * 2);

  afterAll(async () => {
    if (api === undefined || api.exitCode !== null) return;
    const exited = new Promise((resolve) => api?.once('exit', resolve));
    api.kill('SIGTERM');
    await exited;
  });

  it('answers 500 naming the misconfiguration (not 401: the client\'s key is right), and /ready is 503', async () => {
    const rest = await postJson(`${apiUrl}/api/model/process`, { text: PROMPT, max_new_tokens: 2 }, { headers: withKey });
    expect({ status: rest.status, code: (rest.body.error as { code: string }).code }).toEqual({ status: 500, code: 'INTERNAL' });
    expect((rest.body.error as { message: string }).message).toMatch(/^server misconfiguration: the tokenizer refused an internal call \(.*cluster secret.*\); every service must have the same security\.cluster_secret/);
    const openAi = await postJson(`${apiUrl}/v1/completions`, { model: modelName, prompt: PROMPT, max_tokens: 2 }, { headers: withKey });
    expect({ status: openAi.status, type: (openAi.body.error as { type: string }).type }).toEqual({ status: 500, type: 'server_error' });
    const ready = await fetch(`${apiUrl}/ready`);
    expect(ready.status).toBe(503);
    expect(JSON.stringify(await ready.json())).toMatch(/coordinator topology .*cluster secret/);
  });
});
