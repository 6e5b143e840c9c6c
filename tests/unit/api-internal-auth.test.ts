import * as grpc from '@grpc/grpc-js';
import type { CoordinatorHandlers } from '../../protos/generated/pipeserve/v1/Coordinator';
import type { TokenizerHandlers } from '../../protos/generated/pipeserve/v1/Tokenizer';
import { startServer, type RunningServer } from '../../shared/grpc/channel';
import { protos } from '../../shared/grpc/proto-loader';
import { fakeCoordinatorHandlers, fakeTokenizerHandlers, postJson, startApi, startFakeCoordinator, startFakeTokenizer, testConfig, type RunningApi } from '../support/api-test-support';

/**
 * A tokenizer or coordinator that refuses the api's own calls (UNAUTHENTICATED: the api has
 * another cluster secret) is the server's misconfiguration, not the client's wrong key: the
 * client gets 500 with a message saying so, never 401.
 */
const SERVICE_TEST_TIMEOUT_MS = 30_000;
const REFUSAL = { code: grpc.status.UNAUTHENTICATED, details: '/pipeserve.v1.Tokenizer/Encode: the call does not carry the cluster secret' };
const MISCONFIGURATION = /^server misconfiguration: the (tokenizer|coordinator) refused an internal call \(.+\); every service must have the same security\.cluster_secret \(CLUSTER_SECRET\)$/;

jest.setTimeout(SERVICE_TEST_TIMEOUT_MS);

interface ErrorAnswer {
  readonly status: number;
  readonly body: { error: { code?: string; type?: string; message: string } };
}

async function post(url: string, body: unknown): Promise<ErrorAnswer> {
  const response = await postJson(url, body);
  return { status: response.status, body: (await response.json()) as ErrorAnswer['body'] };
}

describe('the tokenizer refuses the api (another cluster secret)', () => {
  let tokenizer: RunningServer;
  let coordinator: RunningServer;
  let api: RunningApi;

  beforeAll(async () => {
    const handlers: TokenizerHandlers = { ...fakeTokenizerHandlers(), Encode: (_call, callback) => callback(REFUSAL), RenderChat: (_call, callback) => callback(REFUSAL) };
    tokenizer = await startServer('127.0.0.1:0', [{ name: 'pipeserve.v1.Tokenizer', definition: protos().tokenizer.pipeserve.v1.Tokenizer.service, implementation: handlers }]);
    ({ server: coordinator } = await startFakeCoordinator({ capacity: 4 }));
    api = await startApi(testConfig(tokenizer.port, coordinator.port));
  });

  afterAll(async () => {
    await api.close();
    await Promise.all([tokenizer.shutdown(0), coordinator.shutdown(0)]);
  });

  it('REST and SSE answer 500 INTERNAL naming the misconfiguration', async () => {
    for (const route of ['/api/model/process', '/api/model/generate']) {
      const answer = await post(`${api.url}${route}`, { text: 'hello', max_new_tokens: 2 });
      expect({ route, status: answer.status, code: answer.body.error.code }).toEqual({ route, status: 500, code: 'INTERNAL' });
      expect(answer.body.error.message).toMatch(MISCONFIGURATION);
      expect(answer.body.error.message).toContain('the tokenizer refused');
    }
  });

  it('the OpenAI routes answer 500 server_error, not 401 authentication_error', async () => {
    const completion = await post(`${api.url}/v1/completions`, { model: 'fake', prompt: 'hello', max_tokens: 2 });
    const chat = await post(`${api.url}/v1/chat/completions`, { model: 'fake', messages: [{ role: 'user', content: 'hello' }], max_tokens: 2 });
    for (const answer of [completion, chat]) {
      expect({ status: answer.status, type: answer.body.error.type }).toEqual({ status: 500, type: 'server_error' });
      expect(answer.body.error.message).toMatch(MISCONFIGURATION);
    }
  });
});

describe('the coordinator refuses the api (another cluster secret)', () => {
  let tokenizer: RunningServer;
  let coordinator: RunningServer;
  let api: RunningApi;

  beforeAll(async () => {
    tokenizer = await startFakeTokenizer();
    const handlers: CoordinatorHandlers = {
      ...fakeCoordinatorHandlers({ capacity: 4 }, { requests: [], metadataRequestIds: [], cancelled: [] }),
      Process: (_call, callback) => callback({ code: grpc.status.UNAUTHENTICATED, details: 'the call does not carry the cluster secret' }),
      Generate: (call) => call.emit('error', { code: grpc.status.PERMISSION_DENIED, details: 'not a member of this cluster' }),
    };
    coordinator = await startServer('127.0.0.1:0', [{ name: 'pipeserve.v1.Coordinator', definition: protos().coordinator.pipeserve.v1.Coordinator.service, implementation: handlers }]);
    api = await startApi(testConfig(tokenizer.port, coordinator.port));
  });

  afterAll(async () => {
    await api.close();
    await Promise.all([tokenizer.shutdown(0), coordinator.shutdown(0)]);
  });

  it('UNAUTHENTICATED from Process and PERMISSION_DENIED from Generate both answer 500 naming the coordinator', async () => {
    for (const route of ['/api/model/process', '/api/model/generate']) {
      const answer = await post(`${api.url}${route}`, { text: 'hello', max_new_tokens: 2 });
      expect({ route, status: answer.status, code: answer.body.error.code }).toEqual({ route, status: 500, code: 'INTERNAL' });
      expect(answer.body.error.message).toMatch(MISCONFIGURATION);
      expect(answer.body.error.message).toContain('the coordinator refused');
    }
  });
});
