import http from 'node:http';
import { collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import { restartsOfThisProcess } from './shutdown';

/**
 * Every metric name starts with it (`pipeserve_<service>_…`, `pipeserve_process_…`): bare
 * `node_…`, `process_…` or `nodejs_…` names clash with node_exporter's and other Node.js
 * applications' in a shared Prometheus.
 */
export const METRIC_PREFIX = 'pipeserve_';

/**
 * The one metrics registry factory. Every metric of a process carries `service` (and a node's
 * `node_id` and `stage`) as default labels, and prom-client's process metrics are collected
 * under METRIC_PREFIX.
 */
export function createMetricsRegistry(service: string, labels: Record<string, string> = {}): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ service, ...labels });
  collectDefaultMetrics({ register: registry, prefix: METRIC_PREFIX });
  // Counted by the launcher, which restarts a service that died: a rising value is a crash loop.
  new Gauge({ name: 'pipeserve_service_restarts', help: 'Times the launcher has restarted this service', registers: [registry] }).set(restartsOfThisProcess());
  return registry;
}

/** Buckets (seconds) for per-step work: a tiny model's step takes ~1 ms, GPT-2 small's prefill a second or more. */
export const STEP_SECONDS_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];
/** Buckets (seconds) for whole requests. */
export const REQUEST_SECONDS_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

/** A small HTTP server answering GET /metrics, for the gRPC services. */
export function startMetricsServer(registry: Registry, port: number, host = '0.0.0.0'): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/metrics') {
      registry
        .metrics()
        .then((body) => {
          res.writeHead(200, { 'Content-Type': registry.contentType });
          res.end(body);
        })
        .catch((error: unknown) => {
          res.writeHead(500, { 'Content-Type': 'text/plain' });
          res.end(String(error));
        });
      return;
    }
    res.writeHead(404, { 'Content-Type': 'text/plain' });
    res.end('not found: GET /metrics\n');
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}
