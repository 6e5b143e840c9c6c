import { Counter, Histogram, type Registry } from 'prom-client';
import { REQUEST_SECONDS_BUCKETS } from '../../shared/metrics';

/** The api's own metrics, registered in the process registry (`createMetricsRegistry('api')`). */
export class ApiMetrics {
  private readonly requests: Counter<'route' | 'method' | 'status'>;
  private readonly duration: Histogram<'route' | 'method' | 'status'>;
  private readonly tokens: Counter<'kind'>;

  constructor(registry: Registry) {
    this.requests = new Counter({
      name: 'pipeserve_api_http_requests_total',
      help: 'HTTP requests answered, by route pattern, method and status',
      labelNames: ['route', 'method', 'status'],
      registers: [registry],
    });
    this.duration = new Histogram({
      name: 'pipeserve_api_http_request_duration_seconds',
      help: 'Time from a request arriving to its answer ending (a stream: its last event)',
      labelNames: ['route', 'method', 'status'],
      buckets: REQUEST_SECONDS_BUCKETS,
      registers: [registry],
    });
    this.tokens = new Counter({
      name: 'pipeserve_api_tokens_total',
      help: 'Tokens of answered requests: prompt tokens read, generated tokens delivered',
      labelNames: ['kind'],
      registers: [registry],
    });
  }

  /** `route` is the route pattern (or "unmatched"), never the raw URL: labels must stay few. */
  observeRequest(route: string, method: string, statusCode: number, seconds: number): void {
    const labels = { route, method, status: String(statusCode) };
    this.requests.inc(labels);
    this.duration.observe(labels, seconds);
  }

  countTokens(kind: 'prompt' | 'generated', count: number): void {
    if (count > 0) this.tokens.inc({ kind }, count);
  }
}
