import { deferred, postJson, startApi, startFakeCoordinator, startFakeTokenizer, testConfig } from '../support/api-test-support';
import { eventually } from '../support/eventually';

/** Real gRPC servers and an HTTP listener on a loaded machine: generous, but bounded. */
const SERVICE_TEST_TIMEOUT_MS = 30_000;
/** Short, so the coordinator's graceful shutdown gives up on the held call and force-closes it. */
const SHUTDOWN_GRACE_MS = 100;

jest.setTimeout(SERVICE_TEST_TIMEOUT_MS);

describe('a coordinator that shuts down during a generation', () => {
  test.each(['process', 'generate'])('makes %s answer 503 UNAVAILABLE, not a 499 client cancel', async (route) => {
    const never = deferred();
    const tokenizer = await startFakeTokenizer();
    const { server: coordinator, record } = await startFakeCoordinator({ capacity: 1, beforeToken: () => never.promise });
    const api = await startApi(testConfig(tokenizer.port, coordinator.port));
    try {
      const requestId = `shutdown-${route}`;
      const pending = postJson(`${api.url}/api/model/${route}`, { text: 'held' }, { headers: { 'x-request-id': requestId } });
      await eventually(() => record.requests.some((request) => request.request_id === requestId));
      await coordinator.shutdown(SHUTDOWN_GRACE_MS);
      const response = await pending;
      const json = (await response.json()) as { error: { code: string; message: string } };
      expect(response.status).toBe(503);
      expect(json.error.code).toBe('UNAVAILABLE');
      expect(json.error.message).toMatch(/^coordinator unavailable: the coordinator closed the call/);
    } finally {
      never.resolve();
      await api.close();
      await tokenizer.shutdown(0);
    }
  });
});
