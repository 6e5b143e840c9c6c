import { loadConfig } from '../../shared/config';
import { createClient, useTransport } from '../../shared/grpc/channel';
import { protos } from '../../shared/grpc/proto-loader';
import { createLogger } from '../../shared/logger';
import { createMetricsRegistry } from '../../shared/metrics';
import { PARENT_PID_ENV, watchProcess } from '../../shared/shutdown';
import { createApiServer } from './api-server';
import { createApiApp } from './app';

/** Open streams get this long to finish after SIGTERM before their connections are cut. */
const SHUTDOWN_GRACE_MS = 10_000;

function main(): void {
  const config = loadConfig();
  useTransport(config);
  const logger = createLogger('api', config.logLevel);
  const { tokenizer, coordinator, health } = protos();
  const tokenizerClient = createClient(tokenizer.pipeserve.v1.Tokenizer, config.tokenizer.address);
  const coordinatorClient = createClient(coordinator.pipeserve.v1.Coordinator, config.coordinator.address);
  const healthClients = {
    tokenizer: createClient(health.grpc.health.v1.Health, config.tokenizer.address),
    coordinator: createClient(health.grpc.health.v1.Health, config.coordinator.address),
  };
  const app = createApiApp({
    tokenizer: tokenizerClient,
    coordinator: coordinatorClient,
    healthClients,
    config,
    logger,
    registry: createMetricsRegistry('api'),
  });

  const server = createApiServer(app, config.limits);
  server.once('error', (error) => {
    logger.error('cannot listen', { host: config.api.host, port: config.api.port, error: error.message });
    process.exit(1);
  });
  server.listen(config.api.port, config.api.host, () => {
    logger.info('api listening', {
      url: `http://${config.api.host}:${config.api.port}`,
      tokenizer: config.tokenizer.address,
      coordinator: config.coordinator.address,
      api_key: config.api.apiKey === undefined ? 'none' : 'required',
      cors_origins: config.api.corsOrigins,
    });
  });

  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    logger.info('stopping', { signal });
    const force = setTimeout(() => server.closeAllConnections(), SHUTDOWN_GRACE_MS);
    force.unref();
    server.closeIdleConnections();
    server.close(() => {
      clearTimeout(force);
      for (const client of [tokenizerClient, coordinatorClient, healthClients.tokenizer, healthClients.coordinator]) client.close();
      logger.info('stopped');
      process.exit(0);
    });
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  // Nothing outlives the launcher that started it, even a SIGKILLed one.
  watchProcess(Number(process.env[PARENT_PID_ENV]), () => stop('launcher gone'));
}

try {
  main();
} catch (error) {
  // A bad config.json or environment: one line, not a stack trace.
  process.stderr.write(`api: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
}
