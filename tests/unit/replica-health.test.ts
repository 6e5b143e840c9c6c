import { ReplicaHealth } from '../../services/coordinator/replica-health';
import { Router } from '../../services/coordinator/router';
import type { NodeEntry } from '../../shared/config';
import { startServer, type RunningServer } from '../../shared/grpc/channel';
import { createLogger } from '../../shared/logger';
import { NodeDirectory } from '../../shared/node-directory';
import { freeLoopbackPort } from '../../tools/free-port';
import { FakeDns } from '../support/fake-dns';

const REFRESH_MS = 20;
const WAIT_MS = 10_000;
const NODE2_HOST = 'node2.model-inference.svc.cluster.local';
const RESILIENCE = { breakerFailureThreshold: 3, breakerOpenMs: 2_000, breakerSuccessThreshold: 2, healthIntervalMs: 20, healthTimeoutMs: 1_000, healthFailuresToDown: 1 };

async function until(condition: () => boolean, what: string): Promise<void> {
  const end = Date.now() + WAIT_MS;
  while (!condition()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe('ReplicaHealth and Router over a directory that discovers stage replicas by DNS', () => {
  const dns = new FakeDns();
  const servers: RunningServer[] = [];
  let directory: NodeDirectory;
  let health: ReplicaHealth;
  let router: Router;
  let stage2Port: number;
  const changes: string[] = [];

  /** A replica's gRPC server as the coordinator sees it: grpc.health.v1 answering SERVING. */
  async function serve(host: string, port: number): Promise<void> {
    servers.push(await startServer(`${host}:${port}`, []));
  }

  beforeAll(async () => {
    const stage1Port = await freeLoopbackPort();
    stage2Port = await freeLoopbackPort();
    const entries: NodeEntry[] = [
      { id: 'node1', address: `127.0.0.1:${stage1Port}`, modelPart: 0, metricsPort: 9201, discovery: 'static', intraOpThreads: 1 },
      { id: 'node2', address: `${NODE2_HOST}:${stage2Port}`, modelPart: 1, metricsPort: 9202, discovery: 'dns', intraOpThreads: 1 },
    ];
    await serve('127.0.0.1', stage1Port);
    await serve('127.0.0.1', stage2Port);
    dns.answer(NODE2_HOST, ['127.0.0.1']);
    directory = new NodeDirectory(entries, dns.lookup, REFRESH_MS);
    await directory.start();
    health = new ReplicaHealth(directory, RESILIENCE, createLogger('test', 'error'), (state) => changes.push(`${state.replica.id} ${state.serving ? 'serving' : 'down'}: ${state.detail}`));
    health.start();
    // The first replica carries sequences already: the router prefers any other usable one.
    router = new Router(directory, health, 2, (replicaId) => (replicaId === 'node2@127.0.0.1' ? 1 : 0));
  });

  afterAll(() => {
    health?.stop();
    directory?.stop();
    for (const server of servers) server.server.forceShutdown();
  });

  test('a replica of a scaled stage is health-checked and routed to once its address resolves, and dropped once it no longer does', async () => {
    await until(() => health.serving('node1') && health.serving('node2@127.0.0.1'), 'the configured replicas to serve');
    expect(router.pick().map((r) => r.id)).toEqual(['node1', 'node2@127.0.0.1']);
    expect(health.routable('node2@127.0.0.2')).toBe(false);

    // kubectl scale: a second pod comes up and the headless Service's name resolves to it too.
    await serve('127.0.0.2', stage2Port);
    dns.answer(NODE2_HOST, ['127.0.0.1', '127.0.0.2']);
    await until(() => health.serving('node2@127.0.0.2'), 'the discovered replica to serve');
    expect(health.state('node2@127.0.0.2')?.replica).toEqual({ id: 'node2@127.0.0.2', address: `127.0.0.2:${stage2Port}`, stage: 1, entryId: 'node2', metricsPort: 9202 });
    expect(router.pick().map((r) => r.id)).toEqual(['node1', 'node2@127.0.0.2']);
    expect(changes).toContain('node2@127.0.0.2 serving: health status SERVING');

    // Scaled back down: the pod's address leaves the name, so it leaves the routes.
    dns.answer(NODE2_HOST, ['127.0.0.1']);
    await dns.refreshed(NODE2_HOST);
    expect(health.state('node2@127.0.0.2')).toBeUndefined();
    expect(changes).toContain('node2@127.0.0.2 down: no longer discovered');
    expect(router.pick().map((r) => r.id)).toEqual(['node1', 'node2@127.0.0.1']);
  });
});
