import { loadConfig, type AppConfig, type NodeEntry } from '../../shared/config';
import { UsageError } from '../../shared/errors';
import { bindAddressFor, startServer } from '../../shared/grpc/channel';
import { protos } from '../../shared/grpc/proto-loader';
import { createLogger } from '../../shared/logger';
import { createMetricsRegistry, startMetricsServer } from '../../shared/metrics';
import { onShutdownSignal } from '../../shared/shutdown';
import { ModelNodeService } from './model-node-service';
import { StageRuntime } from './stage-runtime';

/** `--node-id ID` (or NODE_ID): which config.json node this process is. */
function nodeOf(config: AppConfig, argv: readonly string[], env: NodeJS.ProcessEnv): NodeEntry {
  const flag = argv.indexOf('--node-id');
  const id = flag >= 0 ? argv[flag + 1] : env.NODE_ID;
  if (id === undefined || id === '') throw new UsageError('--node-id: missing (or set NODE_ID); config nodes are ' + config.nodes.map((n) => n.id).join(', '));
  const node = config.nodes.find((n) => n.id === id);
  if (node === undefined) throw new UsageError(`--node-id: "${id}" is not in config nodes (${config.nodes.map((n) => n.id).join(', ')})`);
  return node;
}

async function main(): Promise<void> {
  const config = loadConfig();
  const node = nodeOf(config, process.argv.slice(2), process.env);
  const labels = { node_id: node.id, stage: String(node.modelPart) };
  const logger = createLogger('node', config.logLevel, labels);
  const runtime = await StageRuntime.load(config.modelDir, node.modelPart, { kvBudgetBytes: config.limits.kvBudgetBytes, allowSpinning: false });
  const registry = createMetricsRegistry('node', labels);
  const service = new ModelNodeService(runtime, { nodeId: node.id, kvBudgetBytes: config.limits.kvBudgetBytes, kvIdleTtlMs: config.limits.kvIdleTtlMs }, registry, logger);
  const server = await startServer(bindAddressFor(node.address), [
    { name: 'pipeserve.v1.ModelNode', definition: protos().node.pipeserve.v1.ModelNode.service, implementation: service.handlers() },
  ]);
  const metricsServer = await startMetricsServer(registry, node.metricsPort);
  const { stage } = runtime;
  logger.info('node serving', { port: server.port, metrics_port: node.metricsPort, layers: `${stage.layerStart}-${stage.layerEnd}`, stages: runtime.manifest.stages.length });
  onShutdownSignal(logger, async () => {
    await server.shutdown();
    service.close();
    metricsServer.close();
    await runtime.close();
  });
}

main().catch((error: unknown) => {
  process.stderr.write(`node: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(error instanceof UsageError ? 2 : 1);
});
