import { loadConfig, stageCount } from '../../shared/config';
import { bindAddressFor, createClient, startServer } from '../../shared/grpc/channel';
import { protos } from '../../shared/grpc/proto-loader';
import { createLogger } from '../../shared/logger';
import { createMetricsRegistry, startMetricsServer } from '../../shared/metrics';
import { readManifest } from '../../shared/model/manifest';
import { onShutdownSignal } from '../../shared/shutdown';
import { CoordinatorMetrics } from './coordinator-metrics';
import { createCoordinatorHandlers } from './coordinator-service';
import { NodeHealth } from './node-health';
import { Scheduler } from './scheduler';

async function main(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger('coordinator', config.logLevel);
  const manifest = await readManifest(config.modelDir);
  const stages = stageCount(config);
  if (stages !== manifest.stages.length) {
    throw new Error(`config nodes cover ${stages} stages but the model in ${config.modelDir} has ${manifest.stages.length}`);
  }
  const registry = createMetricsRegistry('coordinator');
  const metrics = new CoordinatorMetrics(registry);
  const health = new NodeHealth(config.nodes, logger, (state) => metrics.nodeUp.set({ node_id: state.node.id, stage: String(state.node.modelPart) }, state.serving ? 1 : 0));
  for (const node of config.nodes) metrics.nodeUp.set({ node_id: node.id, stage: String(node.modelPart) }, 0);
  const { limits } = config;
  const scheduler = new Scheduler(
    config.nodes,
    health,
    {
      stages,
      maxBatchSize: limits.maxBatchSize,
      maxBatchTokens: limits.maxBatchTokens,
      maxQueuedRequests: limits.maxQueuedRequests,
      maxRunningSequences: limits.maxBatchSize * stages,
      eosTokenId: manifest.config.eosTokenId,
      nPositions: manifest.config.nPositions,
    },
    metrics,
    logger,
  );
  const tokenizer = createClient(protos().tokenizer.pipeserve.v1.Tokenizer, config.tokenizer.address);
  const handlers = createCoordinatorHandlers({
    scheduler,
    health,
    tokenizer,
    model: { name: config.modelName, config: manifest.config, stages },
    limits,
    logger,
  });
  const server = await startServer(bindAddressFor(config.coordinator.address), [
    { name: 'pipeserve.v1.Coordinator', definition: protos().coordinator.pipeserve.v1.Coordinator.service, implementation: handlers },
  ]);
  health.start();
  const metricsServer = await startMetricsServer(registry, config.coordinator.metricsPort);
  logger.info('coordinator serving', { port: server.port, metrics_port: config.coordinator.metricsPort, stages, nodes: config.nodes.length });
  onShutdownSignal(logger, async () => {
    // Refuse new calls first, then fail the running ones with UNAVAILABLE ('the coordinator is
    // shutting down', retryable): waiting for them instead would end in the grace period's forced
    // close, which their clients see as a CANCELLED indistinguishable from their own.
    const stopped = server.shutdown();
    scheduler.close();
    await stopped;
    health.stop();
    tokenizer.close();
    metricsServer.close();
  });
}

main().catch((error: unknown) => {
  process.stderr.write(`coordinator: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
