import { request as httpRequest } from 'node:http';
import type { RunningServer } from '../../shared/grpc/channel';
import {
  deferred,
  postJson,
  startApi,
  startFakeCoordinator,
  startFakeTokenizer,
  testConfig,
  type CoordinatorRecord,
} from '../support/api-test-support';
import { readSse } from '../support/http';

/** Real gRPC servers and an HTTP listener on a loaded machine: generous, but bounded. */
const SERVICE_TEST_TIMEOUT_MS = 30_000;
const POLL_MS = 10;

jest.setTimeout(SERVICE_TEST_TIMEOUT_MS);

/** Prompts whose Encode the fake tokenizer holds until the test lets it go. */
const HELD_PREFIX = 'held:';

describe('a client that hangs up while its prompt is being encoded', () => {
  let tokenizer: RunningServer;
  let coordinator: RunningServer;
  let record: CoordinatorRecord;
  let encodeReached = deferred();
  let releaseEncode = deferred();

  beforeAll(async () => {
    tokenizer = await startFakeTokenizer({
      beforeEncode: (text) => {
        if (!text.startsWith(HELD_PREFIX)) return Promise.resolve();
        encodeReached.resolve();
        return releaseEncode.promise;
      },
    });
    ({ server: coordinator, record } = await startFakeCoordinator({ capacity: 4 }));
  });

  afterAll(async () => {
    releaseEncode.resolve();
    await Promise.all([tokenizer.shutdown(0), coordinator.shutdown(0)]);
  });

  beforeEach(() => {
    encodeReached = deferred();
    releaseEncode = deferred();
  });

  test.each(['process', 'generate'])('on %s never starts a generation at the coordinator', async (route) => {
    // A fresh api per route: its open connections are this test's alone.
    const api = await startApi(testConfig(tokenizer.port, coordinator.port));
    try {
      const requestId = `early-leave-${route}`;
      // node:http rather than fetch: destroying the request closes its socket at once (fetch may keep it).
      const body = JSON.stringify({ text: `${HELD_PREFIX}${route}` });
      const client = httpRequest(`${api.url}/api/model/${route}`, {
        method: 'POST',
        agent: false,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-request-id': requestId },
      });
      client.on('error', () => undefined);
      client.end(body);
      await encodeReached.promise;
      client.destroy();
      while ((await api.openConnections()) > 0) await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      releaseEncode.resolve();

      // Encode answers and coordinator calls travel in order on one connection each: once a later
      // request of the same route has been generated, a call the abandoned one made has arrived first.
      const laterId = `${requestId}-later`;
      const later = await postJson(`${api.url}/api/model/${route}`, { text: 'after', max_new_tokens: 1 }, { headers: { 'x-request-id': laterId } });
      expect(later.status).toBe(200);
      if (route === 'generate') {
        for await (const _event of readSse(later)) {
          // drain the stream
        }
      } else {
        await later.json();
      }
      const seen = record.requests.map((request) => request.request_id);
      expect(seen).toContain(laterId);
      expect(seen).not.toContain(requestId);
    } finally {
      await api.close();
    }
  });
});
