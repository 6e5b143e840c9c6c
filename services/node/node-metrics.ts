import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { STEP_SECONDS_BUCKETS } from '../../shared/metrics';
import type { ModelManifest, StageManifest } from '../../shared/model/manifest';

const BATCH_SIZE_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128];

/** Metrics of one model node (labels service, node_id and stage come from the registry). */
export class NodeMetrics {
  readonly forwardSeconds: Histogram;
  readonly batchSize: Histogram;
  readonly sentBytes: Counter;
  readonly kvSequences: Gauge;
  readonly kvBytes: Gauge;
  readonly kvBudgetBytes: Gauge;
  readonly hiddenCacheBytes: Gauge;
  readonly sessionsRefused: Counter;
  readonly stepErrors: Counter<'code'>;
  readonly loadSeconds: Gauge;
  private readonly modelInfo: Gauge<'model_name' | 'architecture' | 'weights' | 'layers' | 'stages'>;

  constructor(registry: Registry) {
    const registers = [registry];
    this.forwardSeconds = new Histogram({ name: 'pipeserve_stage_forward_seconds', help: 'Time of one forward pass of this stage', buckets: STEP_SECONDS_BUCKETS, registers });
    this.batchSize = new Histogram({ name: 'pipeserve_stage_batch_size', help: 'Sequences in one step', buckets: BATCH_SIZE_BUCKETS, registers });
    this.sentBytes = new Counter({ name: 'pipeserve_stage_sent_bytes_total', help: 'Activation bytes sent to the next hop', registers });
    this.kvSequences = new Gauge({ name: 'pipeserve_stage_kv_cache_sequences', help: 'Sequences holding KV cache in this stage', registers });
    this.kvBytes = new Gauge({ name: 'pipeserve_stage_kv_cache_bytes', help: 'Bytes of KV cache held by this stage', registers });
    this.hiddenCacheBytes = new Gauge({ name: 'pipeserve_stage_hidden_cache_bytes', help: 'Bytes of the hidden states this stage keeps of what it passed on, for a partial replay of the next stage (0 on the last stage)', registers });
    this.kvBudgetBytes = new Gauge({ name: 'pipeserve_stage_kv_cache_budget_bytes', help: 'KV cache budget of this stage', registers });
    this.sessionsRefused = new Counter({ name: 'pipeserve_stage_sessions_refused_total', help: 'Sequences refused because the KV budget was full', registers });
    this.stepErrors = new Counter({ name: 'pipeserve_stage_step_errors_total', help: 'Steps that failed in this stage, by gRPC status', labelNames: ['code'], registers });
    this.loadSeconds = new Gauge({
      name: 'pipeserve_stage_load_seconds',
      help: "Seconds this replica took to load its stage, from starting the stage's worker to its onnxruntime session ready (weights read, graph optimized)",
      registers,
    });
    this.modelInfo = new Gauge({
      name: 'pipeserve_stage_model_info',
      help: "Always 1: the compiled model this stage serves, from its manifest (layers: this stage's first-last layer)",
      labelNames: ['model_name', 'architecture', 'weights', 'layers', 'stages'],
      registers,
    });
  }

  /** Publishes the model and this stage's part of it as the labels of pipeserve_stage_model_info. */
  describeModel(manifest: ModelManifest, stage: StageManifest): void {
    this.modelInfo.set(
      {
        model_name: manifest.modelName,
        architecture: manifest.architecture,
        weights: stage.weights.format,
        layers: `${stage.layerStart}-${stage.layerEnd - 1}`,
        stages: String(manifest.stages.length),
      },
      1,
    );
  }
}
