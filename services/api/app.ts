import { status } from '@grpc/grpc-js';
import cors from 'cors';
import express, { type Express } from 'express';
import type { Registry } from 'prom-client';
import type { HealthClient } from '../../protos/generated/grpc/health/v1/Health';
import type { CoordinatorClient } from '../../protos/generated/pipeserve/v1/Coordinator';
import type { TokenizerClient } from '../../protos/generated/pipeserve/v1/Tokenizer';
import type { AppConfig } from '../../shared/config';
import { ServiceError } from '../../shared/errors';
import type { Logger } from '../../shared/logger';
import { apiKeyAuth } from './api-key-auth';
import { ApiMetrics } from './api-metrics';
import { generateRoute } from './generate-route';
import { GenerationClient } from './generation-client';
import { bodyErrorHandler, jsonBody } from './json-body';
import { chatCompletionsRoute } from './openai/chat-completions-route';
import { completionsRoute } from './openai/completions-route';
import { modelsRoutes } from './openai/models-routes';
import { openApiDocument } from './openapi';
import { processRoute } from './process-route';
import { checkReadiness } from './readiness';
import { contextOf, requestContext } from './request-context';
import { openAiSchemas } from './schemas/openai-schemas';
import { sendError } from './send-error';
import { mountStaticPages } from './static-pages';

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

/** Headers a browser page on another origin may read from our answers. */
const EXPOSED_HEADERS = ['X-Request-Id', 'Retry-After'];

/** The api as an express app; opening a port is the caller's business (main.ts with createApiServer, or a test). */
export function createApiApp(deps: ApiDeps): Express {
  const { config, registry } = deps;
  const metrics = new ApiMetrics(registry);
  const generation = new GenerationClient(deps.tokenizer, deps.coordinator);
  const routeDeps = { generation, limits: config.limits, metrics };
  const openAiDeps = { ...routeDeps, modelName: config.modelName };
  const openAi = openAiSchemas(config.limits, config.modelName);
  const models = modelsRoutes(config.modelName, Math.floor(Date.now() / 1000));
  const body = jsonBody(config.limits.bodyLimitBytes);
  const openapi = openApiDocument({ limits: config.limits, modelName: config.modelName, apiKeyRequired: config.api.apiKey !== undefined });
  const readinessTargets = {
    tokenizer: { address: config.tokenizer.address, health: deps.healthClients.tokenizer },
    coordinator: { address: config.coordinator.address, health: deps.healthClients.coordinator, client: deps.coordinator },
  };

  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');
  app.use(requestContext(deps.logger, metrics));
  if (config.api.corsOrigins.length > 0) {
    const origin = config.api.corsOrigins.includes('*') ? '*' : [...config.api.corsOrigins];
    // Before the key check: a browser's preflight never carries the Authorization header.
    app.use(cors({ origin, exposedHeaders: EXPOSED_HEADERS, maxAge: 600 }));
  }
  if (config.api.apiKey !== undefined) app.use(apiKeyAuth(config.api.apiKey));

  app.post('/api/model/process', ...body, processRoute(routeDeps));
  app.post('/api/model/generate', ...body, generateRoute(routeDeps, 'body'));
  app.get('/api/model/generate', generateRoute(routeDeps, 'query'));
  app.post('/v1/completions', ...body, completionsRoute(openAiDeps, openAi));
  app.post('/v1/chat/completions', ...body, chatCompletionsRoute(openAiDeps, openAi));
  app.get('/v1/models', models.list);
  app.get('/v1/models/:model', models.retrieve);
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
  mountStaticPages(app);

  app.use((req, res) => {
    sendError(res, new ServiceError(status.NOT_FOUND, `no route ${req.method} ${req.path.slice(0, 200)}; see GET /openapi.json`), contextOf(req));
  });
  app.use(bodyErrorHandler(config.limits.bodyLimitBytes));
  return app;
}
