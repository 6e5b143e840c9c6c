import { status } from '@grpc/grpc-js';
import express, { type ErrorRequestHandler, type Express, type RequestHandler } from 'express';
import type { Registry } from 'prom-client';
import type { HealthClient } from '../../protos/generated/grpc/health/v1/Health';
import type { CoordinatorClient } from '../../protos/generated/pipeserve/v1/Coordinator';
import type { TokenizerClient } from '../../protos/generated/pipeserve/v1/Tokenizer';
import type { AppConfig } from '../../shared/config';
import { ServiceError } from '../../shared/errors';
import type { Logger } from '../../shared/logger';
import { ApiMetrics } from './api-metrics';
import { generateRoute } from './generate-route';
import { GenerationClient } from './generation-client';
import { openApiDocument } from './openapi';
import { processRoute } from './process-route';
import { checkReadiness } from './readiness';
import { contextOf, requestContext } from './request-context';
import { sendError } from './send-error';

export interface ApiDeps {
  readonly tokenizer: TokenizerClient;
  readonly coordinator: CoordinatorClient;
  /** grpc.health.v1 clients of the tokenizer and the coordinator, for /ready. */
  readonly healthClients: { readonly tokenizer: HealthClient; readonly coordinator: HealthClient };
  readonly config: AppConfig;
  readonly logger: Logger;
  /** The process registry (`createMetricsRegistry('api')`); the api's metrics are added to it. */
  readonly registry: Registry;
}

/** The api as an express app; opening a port is the caller's business (main.ts, or a test). */
export function createApiApp(deps: ApiDeps): Express {
  const { config, registry } = deps;
  const metrics = new ApiMetrics(registry);
  const routeDeps = { generation: new GenerationClient(deps.tokenizer, deps.coordinator), limits: config.limits, metrics };
  const jsonBody = [requireJsonContentType, express.json({ limit: config.limits.bodyLimitBytes, type: 'application/json' })];
  const openapi = openApiDocument(config.limits);
  const readinessTargets = {
    tokenizer: { address: config.tokenizer.address, health: deps.healthClients.tokenizer },
    coordinator: { address: config.coordinator.address, health: deps.healthClients.coordinator, client: deps.coordinator },
  };

  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');
  app.use(requestContext(deps.logger, metrics));

  app.post('/api/model/process', ...jsonBody, processRoute(routeDeps));
  app.post('/api/model/generate', ...jsonBody, generateRoute(routeDeps));
  app.get('/health', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/ready', async (_req, res) => {
    const readiness = await checkReadiness(readinessTargets);
    res.status(readiness.ready ? 200 : 503).json(readiness);
  });
  app.get('/metrics', async (_req, res) => {
    res.type(registry.contentType).send(await registry.metrics());
  });
  app.get('/openapi.json', (_req, res) => {
    res.json(openapi);
  });

  app.use((req, res) => {
    sendError(res, new ServiceError(status.NOT_FOUND, `no route ${req.method} ${req.path}; see GET /openapi.json`), contextOf(req));
  });
  app.use(bodyErrorHandler(config.limits.bodyLimitBytes));
  return app;
}

const requireJsonContentType: RequestHandler = (req, res, next) => {
  const matched = req.is('application/json');
  if (matched === 'application/json') {
    next();
    return;
  }
  // req.is answers null when the request has no body at all.
  const error =
    matched === null
      ? ServiceError.invalidArgument('body', 'missing; send a JSON object as application/json')
      : ServiceError.invalidArgument('content-type', `must be application/json, got ${req.get('content-type') ?? 'none'}`);
  sendError(res, error, contextOf(req));
};

/** Turns body-parser's errors into 400s that name the body; anything else is ours (500). */
function bodyErrorHandler(bodyLimitBytes: number): ErrorRequestHandler {
  return (error: unknown, req, res, _next) => {
    const type = typeof error === 'object' && error !== null ? (error as { type?: unknown }).type : undefined;
    const message = error instanceof Error ? error.message : String(error);
    let serviceError: ServiceError;
    if (type === 'entity.too.large') serviceError = ServiceError.invalidArgument('body', `larger than ${bodyLimitBytes} bytes`);
    else if (type === 'entity.parse.failed') serviceError = ServiceError.invalidArgument('body', `invalid JSON: ${message}`);
    else if (typeof type === 'string') serviceError = ServiceError.invalidArgument('body', message);
    else serviceError = ServiceError.from(error);
    sendError(res, serviceError, contextOf(req));
  };
}
