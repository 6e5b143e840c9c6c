import * as grpc from '@grpc/grpc-js';
import type { Registry } from 'prom-client';
import type { DescribeRequest__Output } from '../../protos/generated/pipeserve/v1/DescribeRequest';
import type { DescribeResponse } from '../../protos/generated/pipeserve/v1/DescribeResponse';
import type { ModelNodeHandlers } from '../../protos/generated/pipeserve/v1/ModelNode';
import type { SampledToken } from '../../protos/generated/pipeserve/v1/SampledToken';
import type { SequenceStep__Output } from '../../protos/generated/pipeserve/v1/SequenceStep';
import type { StepMessage__Output } from '../../protos/generated/pipeserve/v1/StepMessage';
import type { StepResult, StepResult__Output } from '../../protos/generated/pipeserve/v1/StepResult';
import { ServiceError } from '../../shared/errors';
import type { Logger } from '../../shared/logger';
import { PipelineLinks } from '../../shared/pipeline-link';
import { decodeTensor, encodeTensor } from '../../shared/tensor-codec';
import { float32Tensor } from '../../shared/tensor';
import { NodeMetrics } from './node-metrics';
import { parseGenerationConfig } from '../../shared/generation-config';
import { createSampler, type Sampler } from './sampling/sampler';
import type { StageRuntime, StepRow } from './stage-runtime';

export interface ModelNodeOptions {
  readonly nodeId: string;
  readonly kvBudgetBytes: number;
  readonly kvIdleTtlMs: number;
}

type Reply = (result: StepResult) => void;

/**
 * The model-node service: one stage replica. Steps arrive on `Pipeline` streams (from the
 * coordinator or the previous stage), run through the stage runtime one at a time, and go on
 * to the next hop named by the step's route; the last stage samples, and results travel back
 * up the streams they came down. A stage does not wait for its step's result before running
 * the next step, so several micro-batches can be in flight along the pipeline.
 */
export class ModelNodeService {
  private readonly links: PipelineLinks;
  /** Last stage only: each live sequence's tokens so far (for the repetition penalty) and its sampler, made once. */
  private readonly sampling = new Map<string, { readonly history: number[]; sampler?: Sampler }>();
  private readonly metrics: NodeMetrics;
  private readonly idleTimer: NodeJS.Timeout;

  constructor(
    private readonly runtime: StageRuntime,
    private readonly options: ModelNodeOptions,
    registry: Registry,
    private readonly logger: Logger,
  ) {
    this.metrics = new NodeMetrics(registry);
    this.links = new PipelineLinks(logger);
    this.metrics.kvBudgetBytes.set(options.kvBudgetBytes);
    this.idleTimer = setInterval(() => this.dropIdleSequences(), Math.max(1_000, Math.floor(options.kvIdleTtlMs / 4)));
    this.idleTimer.unref();
  }

  get stageIndex(): number {
    return this.runtime.stage.index;
  }

  handlers(): ModelNodeHandlers {
    return {
      Pipeline: (call) => this.serveStream(call),
      Describe: (call: grpc.ServerUnaryCall<DescribeRequest__Output, DescribeResponse>, callback: grpc.sendUnaryData<DescribeResponse>) => {
        const { stage, manifest } = this.runtime;
        callback(null, {
          node_id: this.options.nodeId,
          model_name: manifest.modelName,
          stage: stage.index,
          stages: manifest.stages.length,
          layer_start: stage.layerStart,
          layer_end: stage.layerEnd,
          kv_sequences: this.runtime.sequenceCount,
          kv_bytes: this.runtime.kvBytes,
          kv_budget_bytes: this.options.kvBudgetBytes,
        });
      },
    };
  }

  close(): void {
    clearInterval(this.idleTimer);
    this.links.closeAll();
  }

  private serveStream(call: grpc.ServerDuplexStream<StepMessage__Output, StepResult>): void {
    const reply: Reply = (result) => {
      if (!call.cancelled && call.writable) call.write(result);
    };
    call.on('data', (message: StepMessage__Output) => this.accept(message, reply));
    call.on('end', () => call.end());
    call.on('error', (error) => this.logger.debug('upstream stream closed', { error: String(error) }));
  }

  private accept(message: StepMessage__Output, reply: Reply): void {
    if (message.sequences.length === 0) {
      // A release travels along the whole route and expects no result. It waits for the steps
      // that arrived before it, here and (by being forwarded after them) in every later stage.
      const released = Promise.all(message.release_sequence_ids.map((id) => this.release(id)));
      if (message.release_sequence_ids.length > 0 && message.route.length > 1) {
        const next = message.route[1].address;
        void released.then(() => this.links.to(next).sendOneWay({ route: message.route.slice(1), release_sequence_ids: message.release_sequence_ids, request_id: message.request_id }));
      }
      return;
    }
    for (const id of message.release_sequence_ids) void this.release(id);
    this.runStep(message, reply).catch((error: unknown) => {
      const serviceError = ServiceError.from(error);
      this.metrics.stepErrors.inc({ code: grpc.status[serviceError.code] });
      if (serviceError.code === grpc.status.RESOURCE_EXHAUSTED) this.metrics.sessionsRefused.inc(message.sequences.filter((s) => s.past_length === 0).length);
      this.logger.warn('step failed', { request_id: message.request_id, step_id: message.step_id, code: grpc.status[serviceError.code], error: serviceError.message });
      reply({ step_id: message.step_id, error_code: serviceError.code, error_message: serviceError.message });
    });
  }

  private async runStep(message: StepMessage__Output, reply: Reply): Promise<void> {
    const { stage, config } = this.runtime;
    this.checkRoute(message);
    if (message.deadline_unix_ms > 0 && Date.now() > message.deadline_unix_ms) {
      throw new ServiceError(grpc.status.DEADLINE_EXCEEDED, `step ${message.step_id} reached ${this.options.nodeId} after its deadline`);
    }
    const rows: StepRow[] = message.sequences.map((s) => ({ sequenceId: s.sequence_id, pastLength: s.past_length, tokenIds: s.token_ids, reserveTokens: s.reserve_tokens }));
    const newTokens = rows.reduce((n, row) => n + row.tokenIds.length, 0);
    let hiddenStates: Float32Array | undefined;
    if (!stage.isFirst) {
      if (message.hidden_states === null) throw ServiceError.invalidArgument('hidden_states', `stage ${stage.index} needs the previous stage's hidden states`);
      const tensor = decodeTensor(message.hidden_states, 'hidden_states');
      if (tensor.dtype !== 'float32' || tensor.dims.length !== 2 || tensor.dims[0] !== newTokens || tensor.dims[1] !== config.nEmbd) {
        throw ServiceError.invalidArgument('hidden_states', `expected float32[${newTokens}, ${config.nEmbd}], got ${tensor.dtype}[${tensor.dims.join(', ')}]`);
      }
      hiddenStates = tensor.data as Float32Array;
    }
    for (const s of message.sequences) {
      if (s.past_length === 0) this.logger.info('sequence admitted', { request_id: message.request_id, sequence_id: s.sequence_id, prompt_tokens: s.token_ids.length });
    }

    const stopTimer = this.metrics.forwardSeconds.startTimer();
    const started = performance.now();
    const result = await this.runtime.step({ rows, hiddenStates });
    const forwardMs = performance.now() - started;
    stopTimer();
    this.metrics.batchSize.observe(rows.length);
    this.updateKvGauges();
    const timing = { node_id: this.options.nodeId, stage: stage.index, forward_ms: forwardMs };

    if (stage.isLast) {
      if (result.logits === undefined) throw new ServiceError(grpc.status.INTERNAL, 'last stage produced no logits');
      reply({ step_id: message.step_id, tokens: this.sample(message.sequences, result.logits), timings: [timing] });
      return;
    }
    if (result.hiddenStates === undefined) throw new ServiceError(grpc.status.INTERNAL, `stage ${stage.index} produced no hidden states`);
    const next = message.route[1];
    const hidden = encodeTensor(float32Tensor([newTokens, config.nEmbd], result.hiddenStates));
    this.metrics.sentBytes.inc(result.hiddenStates.byteLength);
    this.links.to(next.address)
      .send({
        route: message.route.slice(1),
        sequences: message.sequences,
        hidden_states: hidden,
        release_sequence_ids: message.release_sequence_ids,
        deadline_unix_ms: message.deadline_unix_ms,
        request_id: message.request_id,
      })
      .then(
        (downstream: StepResult__Output) => reply({ ...downstream, step_id: message.step_id, timings: [timing, ...downstream.timings] }),
        (error: unknown) => {
          const serviceError = ServiceError.from(error);
          reply({
            step_id: message.step_id,
            error_code: serviceError.code,
            error_message: `${next.node_id}: ${serviceError.message}`,
            failed_node_id: serviceError.code === grpc.status.UNAVAILABLE ? next.node_id : '',
          });
        },
      );
  }

  private checkRoute(message: StepMessage__Output): void {
    const { stage } = this.runtime;
    const here = message.route[0];
    if (here === undefined || here.node_id !== this.options.nodeId) {
      throw ServiceError.invalidArgument('route[0].node_id', `this is node ${this.options.nodeId}, the step names "${here?.node_id ?? ''}"`);
    }
    const expectedHops = this.runtime.manifest.stages.length - stage.index;
    if (message.route.length !== expectedHops) {
      throw ServiceError.invalidArgument('route', `stage ${stage.index} of ${this.runtime.manifest.stages.length} needs ${expectedHops} hops from here, got ${message.route.length}`);
    }
  }

  private sample(sequences: readonly SequenceStep__Output[], logits: Float32Array): SampledToken[] {
    const vocab = this.runtime.config.vocabSize;
    const tokens: SampledToken[] = [];
    sequences.forEach((s, row) => {
      let state = this.sampling.get(s.sequence_id);
      if (state === undefined) {
        state = { history: [] };
        this.sampling.set(s.sequence_id, state);
      }
      state.history.push(...s.token_ids);
      if (!s.sample) return;
      // A sequence's sampling parameters never change: the first step that samples sets them.
      state.sampler ??= createSampler(
        parseGenerationConfig({
          maxNewTokens: 1,
          temperature: s.sampling?.temperature ?? 0,
          topK: s.sampling?.top_k ?? 0,
          // proto3 sends an unset float as 0, which for these two means "off".
          topP: s.sampling?.top_p || 1,
          repetitionPenalty: s.sampling?.repetition_penalty || 1,
          seed: s.sampling?.seed ?? 0,
        }),
      );
      const picked = state.sampler.sample(logits.subarray(row * vocab, (row + 1) * vocab), state.history, s.generated_index);
      tokens.push({ sequence_id: s.sequence_id, token_id: picked.tokenId, logprob: picked.logprob });
    });
    return tokens;
  }

  private async release(sequenceId: string): Promise<void> {
    await this.runtime.releaseInOrder(sequenceId);
    this.sampling.delete(sequenceId);
    this.updateKvGauges();
  }

  private dropIdleSequences(): void {
    const dropped = this.runtime.dropIdle(this.options.kvIdleTtlMs, Date.now());
    for (const id of dropped) this.sampling.delete(id);
    if (dropped.length > 0) {
      this.logger.info('dropped idle sequences', { sequences: dropped.length, ttl_ms: this.options.kvIdleTtlMs });
      this.updateKvGauges();
    }
  }

  private updateKvGauges(): void {
    this.metrics.kvSequences.set(this.runtime.sequenceCount);
    this.metrics.kvBytes.set(this.runtime.kvBytes);
  }

}
