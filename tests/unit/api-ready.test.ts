import type { NodeStatus } from '../../protos/generated/pipeserve/v1/NodeStatus';
import type { RunningServer } from '../../shared/grpc/channel';
import { startApi, startFakeCoordinator, startFakeTokenizer, testConfig } from '../support/api-test-support';

const SERVICE_TEST_TIMEOUT_MS = 30_000;
jest.setTimeout(SERVICE_TEST_TIMEOUT_MS);

const THREE_STAGES: NodeStatus[] = [
  { node_id: 'node1', address: 'localhost:50051', stage: 0, serving: true, detail: '' },
  { node_id: 'node2', address: 'localhost:50052', stage: 1, serving: true, detail: '' },
  { node_id: 'node3', address: 'localhost:50053', stage: 2, serving: true, detail: '' },
];

interface ReadyBody {
  ready: boolean;
  missing?: string[];
  degraded?: string[];
  nodes?: unknown[];
  stages?: number;
}

async function ready(url: string): Promise<{ status: number; body: ReadyBody }> {
  const response = await fetch(`${url}/ready`);
  return { status: response.status, body: (await response.json()) as ReadyBody };
}

describe('GET /ready', () => {
  const started: RunningServer[] = [];
  afterEach(async () => {
    await Promise.all(started.splice(0).map((s) => s.shutdown(0)));
  });

  async function system(topology: readonly NodeStatus[]) {
    const tokenizer = await startFakeTokenizer();
    const { server: coordinator } = await startFakeCoordinator({ capacity: 1, topology });
    started.push(tokenizer, coordinator);
    const config = testConfig(tokenizer.port, coordinator.port);
    return { tokenizer, coordinator, config, api: await startApi(config) };
  }

  test('is 200 with the topology when the tokenizer, the coordinator and every node serve', async () => {
    const { api } = await system(THREE_STAGES);
    try {
      const { status, body } = await ready(api.url);
      expect(status).toBe(200);
      expect(body).toEqual({
        ready: true,
        model_name: 'fake',
        stages: 3,
        nodes: THREE_STAGES.map(({ node_id, stage, address }) => ({ node_id, stage, address, serving: true })),
        degraded: [],
      });
    } finally {
      await api.close();
    }
  });

  test('is 200 and lists a down replica as degraded while its stage has another serving one', async () => {
    const replica = { ...THREE_STAGES[1], node_id: 'node2b', address: 'localhost:50054', serving: false, detail: 'connection refused' };
    const { api } = await system([...THREE_STAGES, replica]);
    try {
      const { status, body } = await ready(api.url);
      expect(status).toBe(200);
      expect(body.degraded).toEqual(['node2b (stage 1) at localhost:50054: connection refused']);
    } finally {
      await api.close();
    }
  });

  test('is 503 naming the node that is not serving, with its stage, address and reason', async () => {
    const topology = THREE_STAGES.map((n) => (n.node_id === 'node2' ? { ...n, serving: false, detail: 'connection refused' } : n));
    const { api } = await system(topology);
    try {
      const { status, body } = await ready(api.url);
      expect(status).toBe(503);
      expect(body).toEqual({ ready: false, missing: ['node2 (stage 1) at localhost:50052: connection refused'] });
    } finally {
      await api.close();
    }
  });

  test('its 503s and /health are counted under their own route labels, which HighErrorRatio leaves out', async () => {
    const topology = THREE_STAGES.map((n) => (n.node_id === 'node2' ? { ...n, serving: false, detail: 'connection refused' } : n));
    const { api } = await system(topology);
    try {
      for (let i = 0; i < 3; i++) expect((await ready(api.url)).status).toBe(503);
      expect((await fetch(`${api.url}/health`)).status).toBe(200);
      const text = await (await fetch(`${api.url}/metrics`)).text();
      const counted = text.split('\n').filter((line) => line.startsWith('pipeserve_api_http_requests_total{'));
      expect(counted).toEqual(
        expect.arrayContaining([
          expect.stringMatching(/^pipeserve_api_http_requests_total\{route="\/ready",method="GET",status="503",service="api"\} 3$/),
          expect.stringMatching(/^pipeserve_api_http_requests_total\{route="\/health",method="GET",status="200",service="api"\} 1$/),
        ]),
      );
    } finally {
      await api.close();
    }
  });

  test('is 503 naming a stage the coordinator has no node for', async () => {
    const { api } = await system([THREE_STAGES[0], THREE_STAGES[2]]);
    try {
      const { status, body } = await ready(api.url);
      expect(status).toBe(503);
      expect(body.missing).toEqual(['stage 1: the coordinator knows no node for it']);
    } finally {
      await api.close();
    }
  });

  test('is 503 naming the tokenizer and its address when it is down', async () => {
    const { tokenizer, config, api } = await system(THREE_STAGES);
    try {
      expect((await ready(api.url)).status).toBe(200);
      await tokenizer.shutdown(0);
      const down = await ready(api.url);
      expect(down.status).toBe(503);
      expect(down.body.missing).toHaveLength(1);
      expect(down.body.missing?.[0]).toMatch(new RegExp(`^tokenizer at ${config.tokenizer.address.replace(/\./g, '\\.')}: `));
    } finally {
      await api.close();
    }
  });

  test('is 503 naming the coordinator when it is down, and /health still answers', async () => {
    const { coordinator, config, api } = await system(THREE_STAGES);
    try {
      await coordinator.shutdown(0);
      const down = await ready(api.url);
      expect(down.status).toBe(503);
      expect(down.body.missing).toHaveLength(1);
      expect(down.body.missing?.[0].startsWith(`coordinator at ${config.coordinator.address}: `)).toBe(true);
      expect((await fetch(`${api.url}/health`)).status).toBe(200);
    } finally {
      await api.close();
    }
  });
});
