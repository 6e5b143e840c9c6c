import { Registry } from 'prom-client';
import type { NodeEntry } from '../../shared/config';
import { startServer, type RunningServer } from '../../shared/grpc/channel';
import { protos } from '../../shared/grpc/proto-loader';
import { createLogger, type Logger } from '../../shared/logger';
import { NodeDirectory } from '../../shared/node-directory';
import { ModelNodeService } from '../../services/node/model-node-service';
import { StageRuntime } from '../../services/node/stage-runtime';
import { freeLoopbackPort } from '../../tools/free-port';

export interface InProcessNode {
  readonly entry: NodeEntry;
  readonly runtime: StageRuntime;
  readonly service: ModelNodeService;
  /** The node's metrics, as its /metrics would serve them. */
  readonly registry: Registry;
  server: RunningServer | undefined;
}

export const TEST_LOGGER: Logger = createLogger('test', 'error');

/**
 * Model nodes of a compiled model served in this process: real StageRuntimes, real
 * ModelNodeServices, real gRPC servers on loopback ports; one replica per stage unless
 * `replicas` says otherwise (ids node1, node2a, node2b, …, as the loopback configs name them).
 * For tests of the node service and the scheduler without spawning processes.
 */
export class InProcessNodes {
  private constructor(
    readonly nodes: readonly InProcessNode[],
    readonly directory: NodeDirectory,
  ) {}

  static async start(modelDir: string, stages: number, options: { replicas?: readonly number[]; kvBudgetBytes?: number; kvIdleTtlMs?: number } = {}): Promise<InProcessNodes> {
    const entries: NodeEntry[] = [];
    for (let stage = 0; stage < stages; stage++) {
      const count = options.replicas?.[stage] ?? 1;
      for (let r = 0; r < count; r++) {
        const id = count === 1 ? `node${stage + 1}` : `node${stage + 1}${String.fromCharCode(97 + r)}`;
        entries.push({ id, address: `127.0.0.1:${await freeLoopbackPort()}`, modelPart: stage, metricsPort: 1, discovery: 'static', intraOpThreads: 1 });
      }
    }
    const directory = new NodeDirectory(entries);
    await directory.start();
    const nodes: InProcessNode[] = [];
    for (const entry of entries) {
      const runtime = await StageRuntime.load(modelDir, entry.modelPart, { kvBudgetBytes: options.kvBudgetBytes ?? 64 << 20 });
      const registry = new Registry();
      const service = new ModelNodeService(runtime, { nodeId: entry.id, kvBudgetBytes: options.kvBudgetBytes ?? 64 << 20, kvIdleTtlMs: options.kvIdleTtlMs ?? 60_000 }, directory, registry, TEST_LOGGER);
      const node: InProcessNode = { entry, runtime, service, registry, server: undefined };
      await InProcessNodes.serve(node);
      nodes.push(node);
    }
    return new InProcessNodes(nodes, directory);
  }

  node(id: string): InProcessNode {
    const node = this.nodes.find((n) => n.entry.id === id);
    if (node === undefined) throw new Error(`no node ${id}`);
    return node;
  }

  /** Stops a node's server at once (its calls break), as a crash looks from outside. */
  async crash(id: string): Promise<void> {
    const node = this.node(id);
    node.server?.server.forceShutdown();
    node.server = undefined;
  }

  /** Serves a crashed node again on its address (its service and runtime kept what they held, as a process would not). */
  async restart(id: string): Promise<void> {
    const node = this.node(id);
    if (node.server === undefined) await InProcessNodes.serve(node);
  }

  async stop(): Promise<void> {
    for (const node of this.nodes) {
      node.server?.server.forceShutdown();
      node.service.close();
      await node.runtime.close();
    }
    this.directory.stop();
  }

  private static async serve(node: InProcessNode): Promise<void> {
    node.server = await startServer(node.entry.address, [
      { name: 'pipeserve.v1.ModelNode', definition: protos().node.pipeserve.v1.ModelNode.service, implementation: node.service.handlers() },
    ]);
  }
}
