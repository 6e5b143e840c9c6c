import { hostname } from 'node:os';
import * as grpc from '@grpc/grpc-js';
import { loadConfig, stageCount } from '../../shared/config';
import { ServiceError, UsageError } from '../../shared/errors';
import { bindAddressFor, bindHostFor, startServer, useTransport } from '../../shared/grpc/channel';
import { protos } from '../../shared/grpc/proto-loader';
import { createLogger } from '../../shared/logger';
import { createMetricsRegistry, startMetricsServer } from '../../shared/metrics';
import { readManifest } from '../../shared/model/manifest';
import { NodeDirectory } from '../../shared/node-directory';
import { onShutdownSignal } from '../../shared/shutdown';
import { TextTokenizer } from '../tokenizer/text-tokenizer';
import { CoordinatorMetrics } from './coordinator-metrics';
import { createCoordinatorHandlers } from './coordinator-service';
import { ReplicaHealth } from './replica-health';
import { Scheduler } from './scheduler';

/** Opens and releases are bookkeeping on the nodes: a node that takes longer is in trouble. */
const OPEN_TIMEOUT_MS = 2_000;
const RELEASE_TIMEOUT_MS = 5_000;
/** Detection (≤ a step deadline) plus this window stays within the 3 s a stream may stall before it fails. */
const RECOVERY_WINDOW_MS = 2_500;

async function main(): Promise<void> {
  const config = loadConfig();
  useTransport(config);
  const logger = createLogger('coordinator', config.logLevel);
  const manifest = await readManifest(config.modelDir);
  const stages = stageCount(config);
  if (stages !== manifest.stages.length) {
    throw new UsageError(
      `config nodes cover ${stages} stages but the model in ${config.modelDir} has ${manifest.stages.length}: ` +
        `give nodes[] model_part values 0 … ${manifest.stages.length - 1}, or compile the model with --stages ${stages}`,
    );
  }
  // The tokenizer service owns encoding; decoding the stream's text happens here, from the same files.
  const decoder = await TextTokenizer.load(config.modelDir);
  const registry = createMetricsRegistry('coordinator');
  const metrics = new CoordinatorMetrics(registry);
  const directory = new NodeDirectory(config.nodes);
  await directory.start();
  let scheduler: Scheduler | undefined;
  const health = new ReplicaHealth(directory, config.resilience, logger, (state) => {
    metrics.nodeUp.set({ node_id: state.replica.id, stage: String(state.replica.stage) }, state.serving ? 1 : 0);
    if (!state.serving && state.checked) scheduler?.replicaLost(state.replica.id, new ServiceError(grpc.status.UNAVAILABLE, state.detail));
  });
  for (const replica of directory.replicas()) metrics.nodeUp.set({ node_id: replica.id, stage: String(replica.stage) }, 0);
  const { limits } = config;
  const lanesPerRoute = limits.microBatches > 0 ? limits.microBatches : stages;
  // A prefill chunk must fit in one message: tokens × hidden × 4 bytes, with room for the rest.
  const tokensPerMessage = Math.floor((limits.maxMessageBytes - 64 * 1024) / (manifest.shape.hiddenSize * 4));
  scheduler = new Scheduler(
    manifest.shape,
    directory,
    health,
    `${hostname()}-${process.pid}`,
    {
      stages,
      lanesPerRoute,
      step: { maxRows: limits.maxBatchSize, maxTokens: Math.min(limits.maxBatchTokens, tokensPerMessage) },
      maxQueuedRequests: limits.maxQueuedRequests,
      maxRunningSequences: limits.maxBatchSize * lanesPerRoute,
      stepTimeoutMaxMs: limits.stepTimeoutMaxMs,
      openTimeoutMs: OPEN_TIMEOUT_MS,
      releaseTimeoutMs: RELEASE_TIMEOUT_MS,
      recoveryWindowMs: RECOVERY_WINDOW_MS,
    },
    metrics,
    logger,
  );
  const handlers = createCoordinatorHandlers({
    scheduler,
    health,
    decoder,
    model: { name: config.modelName, shape: manifest.shape, stages },
    limits,
    metrics,
    logger,
  });
  const server = await startServer(bindAddressFor(config.coordinator.address), [
    { name: 'pipeserve.v1.Coordinator', definition: protos().coordinator.pipeserve.v1.Coordinator.service, implementation: handlers },
  ]);
  health.start();
  const metricsServer = await startMetricsServer(registry, config.coordinator.metricsPort, bindHostFor(config.coordinator.address));
  logger.info('coordinator serving', { port: server.port, metrics_port: config.coordinator.metricsPort, stages, replicas: directory.replicas().length, lanes_per_route: lanesPerRoute });
  onShutdownSignal(logger, async () => {
    // Refuse new calls first, then fail the running ones with UNAVAILABLE ('the coordinator is
    // shutting down', retryable): waiting for them instead would end in the grace period's forced
    // close, which their clients see as a CANCELLED indistinguishable from their own.
    const stopped = server.shutdown();
    scheduler?.close();
    await stopped;
    health.stop();
    directory.stop();
    metricsServer.close();
  });
}

main().catch((error: unknown) => {
  process.stderr.write(`coordinator: ${error instanceof Error ? error.message : String(error)}\n`);
  // 2: a configuration that cannot work (the launcher stops everything rather than restart it).
  process.exit(error instanceof UsageError ? 2 : 1);
});
