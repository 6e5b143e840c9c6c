import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { REQUEST_SECONDS_BUCKETS, STEP_SECONDS_BUCKETS } from '../../shared/metrics';

const TOKEN_LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

export class CoordinatorMetrics {
  readonly queueDepth: Gauge;
  readonly runningSequences: Gauge;
  readonly timeToFirstToken: Histogram;
  readonly interTokenLatency: Histogram;
  readonly requestDuration: Histogram;
  readonly generatedTokens: Counter;
  readonly requestsFinished: Counter<'finish_reason'>;
  readonly nodeUp: Gauge<'node_id' | 'stage'>;
  readonly nodeStepSeconds: Histogram<'node_id' | 'stage'>;
  readonly stepsInFlight: Gauge;

  constructor(registry: Registry) {
    const registers = [registry];
    this.queueDepth = new Gauge({ name: 'coordinator_queue_depth', help: 'Requests waiting for admission', registers });
    this.runningSequences = new Gauge({ name: 'coordinator_running_sequences', help: 'Sequences being generated', registers });
    this.timeToFirstToken = new Histogram({ name: 'coordinator_time_to_first_token_seconds', help: 'From arrival to the first generated token', buckets: TOKEN_LATENCY_BUCKETS, registers });
    this.interTokenLatency = new Histogram({ name: 'coordinator_inter_token_latency_seconds', help: 'Between consecutive tokens of one sequence', buckets: TOKEN_LATENCY_BUCKETS, registers });
    this.requestDuration = new Histogram({ name: 'coordinator_request_duration_seconds', help: 'From arrival to the last token', buckets: REQUEST_SECONDS_BUCKETS, registers });
    this.generatedTokens = new Counter({ name: 'coordinator_generated_tokens_total', help: 'Tokens generated', registers });
    this.requestsFinished = new Counter({ name: 'coordinator_requests_finished_total', help: 'Finished requests by reason', labelNames: ['finish_reason'], registers });
    this.nodeUp = new Gauge({ name: 'coordinator_node_up', help: '1 when the node answers its health check as SERVING', labelNames: ['node_id', 'stage'], registers });
    this.nodeStepSeconds = new Histogram({ name: 'coordinator_node_step_seconds', help: 'Forward time of one step in each node, as the node reports it', labelNames: ['node_id', 'stage'], buckets: STEP_SECONDS_BUCKETS, registers });
    this.stepsInFlight = new Gauge({ name: 'coordinator_steps_in_flight', help: 'Micro-batches travelling through the pipeline', registers });
  }
}
