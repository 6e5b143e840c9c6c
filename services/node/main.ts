import { loadConfig, type AppConfig, type NodeEntry } from '../../shared/config';
import { UsageError } from '../../shared/errors';
import { bindAddressFor, bindHostFor, startServer, useTransport } from '../../shared/grpc/channel';
import { protos } from '../../shared/grpc/proto-loader';
import { createLogger } from '../../shared/logger';
import { createMetricsRegistry, startMetricsServer } from '../../shared/metrics';
import { NodeDirectory } from '../../shared/node-directory';
import { onShutdownSignal } from '../../shared/shutdown';
import { ModelNodeService } from './model-node-service';
import { StageWorker } from './stage-worker';

/** `--node-id ID` (or NODE_ID): which config.json node this process is. */
function nodeOf(config: AppConfig, argv: readonly string[], env: NodeJS.ProcessEnv): NodeEntry {
  const flag = argv.indexOf('--node-id');
  const id = flag >= 0 ? argv[flag + 1] : env.NODE_ID;
  if (id === undefined || id === '') throw new UsageError('--node-id: missing (or set NODE_ID); config nodes are ' + config.nodes.map((n) => n.id).join(', '));
  const node = config.nodes.find((n) => n.id === id);
  if (node === undefined) throw new UsageError(`--node-id: "${id}" is not in config nodes (${config.nodes.map((n) => n.id).join(', ')})`);
  return node;
}

/** A static entry is its own replica; a DNS-discovered one is named after the pod's address (POD_IP). */
function replicaIdOf(node: NodeEntry, env: NodeJS.ProcessEnv): string {
  if (node.discovery === 'static') return node.id;
  if (env.POD_IP === undefined || env.POD_IP === '') throw new UsageError(`nodes entry ${node.id} uses DNS discovery: set POD_IP to this replica's address`);
  return `${node.id}@${env.POD_IP}`;
}

async function main(): Promise<void> {
  const config = loadConfig();
  useTransport(config);
  const node = nodeOf(config, process.argv.slice(2), process.env);
  const replicaId = replicaIdOf(node, process.env);
  const labels = { node_id: replicaId, stage: String(node.modelPart) };
  const logger = createLogger('node', config.logLevel, labels);
  const loadStarted = performance.now();
  const runtime = await StageWorker.load({ modelDir: config.modelDir, stageIndex: node.modelPart, kvBudgetBytes: config.limits.kvBudgetBytes, intraOpThreads: node.intraOpThreads });
  const loadSeconds = (performance.now() - loadStarted) / 1000;
  const registry = createMetricsRegistry('node', labels);
  const directory = new NodeDirectory(config.nodes);
  await directory.start();
  const service = new ModelNodeService(runtime, { nodeId: replicaId, kvBudgetBytes: config.limits.kvBudgetBytes, kvIdleTtlMs: config.limits.kvIdleTtlMs, loadSeconds }, directory, registry, logger);
  const server = await startServer(bindAddressFor(node.bindAddress ?? node.address), [
    { name: 'pipeserve.v1.ModelNode', definition: protos().node.pipeserve.v1.ModelNode.service, implementation: service.handlers() },
  ]);
  const metricsServer = await startMetricsServer(registry, node.metricsPort, bindHostFor(node.bindAddress ?? node.address));
  const { stage } = runtime;
  logger.info('node serving', { port: server.port, metrics_port: node.metricsPort, layers: `${stage.layerStart}-${stage.layerEnd}`, stages: runtime.manifest.stages.length, weights: stage.weights.format, load_ms: Math.round(loadSeconds * 1000) });
  onShutdownSignal(logger, async () => {
    await server.shutdown();
    service.close();
    directory.stop();
    metricsServer.close();
    await runtime.close();
  });
}

main().catch((error: unknown) => {
  process.stderr.write(`node: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(error instanceof UsageError ? 2 : 1);
});
