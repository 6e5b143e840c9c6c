import * as grpc from '@grpc/grpc-js';
import type { CoordinatorHandlers } from '../../protos/generated/pipeserve/v1/Coordinator';
import type { GenerateEvent } from '../../protos/generated/pipeserve/v1/GenerateEvent';
import type { GenerateRequest__Output } from '../../protos/generated/pipeserve/v1/GenerateRequest';
import type { GenerationParameters__Output } from '../../protos/generated/pipeserve/v1/GenerationParameters';
import type { GenerationSummary } from '../../protos/generated/pipeserve/v1/GenerationSummary';
import type { TokenEvent } from '../../protos/generated/pipeserve/v1/TokenEvent';
import type { TokenizerClient } from '../../protos/generated/pipeserve/v1/Tokenizer';
import type { TopologyRequest__Output } from '../../protos/generated/pipeserve/v1/TopologyRequest';
import type { TopologyResponse } from '../../protos/generated/pipeserve/v1/TopologyResponse';
import type { Limits } from '../../shared/config';
import { ServiceError } from '../../shared/errors';
import { DEFAULT_GENERATION_CONFIG as DEFAULTS, MAX_STOP_STRINGS } from '../../shared/generation-config';
import { requestIdOf } from '../../shared/grpc/channel';
import type { Logger } from '../../shared/logger';
import type { Gpt2Config } from '../../shared/model/gpt2-config';
import type { NodeHealth } from './node-health';
import type { Scheduler } from './scheduler';
import type { FinishReason, SamplingSettings, Sequence } from './sequence';
import { StopStringMatcher } from './stop-string-matcher';
import { TokenTextStream } from './token-text-stream';


interface GenerationSink {
  token(event: TokenEvent): void;
  summary(summary: GenerationSummary): void;
  error(error: ServiceError): void;
  /** Registers what to do when the caller goes away. */
  onCancel(handler: () => void): void;
}

export interface CoordinatorServiceDeps {
  readonly scheduler: Scheduler;
  readonly health: NodeHealth;
  readonly tokenizer: TokenizerClient;
  readonly model: { readonly name: string; readonly config: Gpt2Config; readonly stages: number };
  readonly limits: Limits;
  readonly logger: Logger;
}

/** gRPC handlers of the Coordinator service. */
export function createCoordinatorHandlers(deps: CoordinatorServiceDeps): CoordinatorHandlers {
  return {
    Generate(call: grpc.ServerWritableStream<GenerateRequest__Output, GenerateEvent>): void {
      let finished = false;
      const end = (): void => {
        finished = true;
      };
      run(deps, call.request, call.metadata, call.getDeadline(), {
        token: (token) => {
          if (!finished && !call.cancelled) call.write({ token });
        },
        summary: (summary) => {
          if (finished || call.cancelled) return;
          end();
          call.write({ summary });
          call.end();
        },
        error: (error) => {
          if (finished || call.cancelled) return;
          end();
          call.emit('error', { code: error.code, details: error.message });
        },
        onCancel: (handler) => call.on('cancelled', handler),
      });
    },

    Process(call: grpc.ServerUnaryCall<GenerateRequest__Output, GenerationSummary>, callback: grpc.sendUnaryData<GenerationSummary>): void {
      let answered = false;
      run(deps, call.request, call.metadata, call.getDeadline(), {
        token: () => undefined,
        summary: (summary) => {
          if (answered) return;
          answered = true;
          callback(null, summary);
        },
        error: (error) => {
          if (answered) return;
          answered = true;
          callback({ code: error.code, details: error.message });
        },
        onCancel: (handler) => call.on('cancelled', handler),
      });
    },

    Topology(_call: grpc.ServerUnaryCall<TopologyRequest__Output, TopologyResponse>, callback: grpc.sendUnaryData<TopologyResponse>): void {
      callback(null, {
        model_name: deps.model.name,
        stages: deps.model.stages,
        nodes: deps.health.all().map((state) => ({
          node_id: state.node.id,
          address: state.node.address,
          stage: state.node.modelPart,
          serving: state.serving,
          detail: state.detail,
        })),
      });
    },
  };
}

function run(deps: CoordinatorServiceDeps, request: GenerateRequest__Output, metadata: grpc.Metadata, callDeadline: grpc.Deadline, sink: GenerationSink): void {
  const requestId = request.request_id || requestIdOf(metadata);
  let sampling: SamplingSettings;
  try {
    sampling = parseParameters(request.parameters, deps.limits);
    checkPrompt(request.prompt_token_ids, sampling, deps.model.config, deps.limits);
  } catch (error) {
    sink.error(ServiceError.from(error));
    return;
  }
  const deadlineUnixMs = Math.min(deadlineOf(callDeadline), Date.now() + deps.limits.requestTimeoutMs);
  const text = new TokenTextStream(deps.tokenizer, requestId, deadlineUnixMs);
  const matcher = new StopStringMatcher(sampling.stop);
  const kept: number[] = [];
  let emitting: Promise<void> = Promise.resolve();
  let finalIndex = -1;
  let finishReason: FinishReason | undefined;
  let failed = false;
  let sequence: Sequence | undefined;

  const fail = (error: ServiceError): void => {
    if (failed) return;
    failed = true;
    if (sequence !== undefined) deps.scheduler.cancel(sequence);
    text.cancel();
    if (error.code !== grpc.status.CANCELLED) deps.logger.warn('generation failed', { request_id: requestId, code: grpc.status[error.code], error: error.message });
    sink.error(error);
  };

  const summarize = (reason: FinishReason, current: Sequence): GenerationSummary => {
    const nodes = [...current.nodeTimings.values()].sort((a, b) => a.stage - b.stage);
    const arrived = current.arrivedAt;
    return {
      request_id: requestId,
      token_ids: kept,
      text: matcher.fullText,
      finish_reason: reason,
      prompt_tokens: request.prompt_token_ids.length,
      generated_tokens: kept.length,
      timings: {
        queue_ms: (current.admittedAt ?? arrived) - arrived,
        time_to_first_token_ms: (current.firstTokenAt ?? arrived) - arrived,
        total_ms: performance.now() - arrived,
        nodes: nodes.map((n) => ({ node_id: n.nodeId, stage: n.stage, forward_ms: n.forwardMs, steps: n.steps })),
      },
    };
  };

  try {
    sequence = deps.scheduler.submit(
      { requestId, promptIds: request.prompt_token_ids, sampling, deadlineUnixMs },
      {
        onToken: (index, tokenId, logprob) => {
          emitting = emitting.then(async () => {
            if (failed || matcher.stopped) return;
            let piece = matcher.push(await text.push([tokenId]));
            kept.push(tokenId);
            if (matcher.stopped) {
              deps.scheduler.stop(sequence as Sequence, 'stop_string');
            } else if (index === finalIndex) {
              piece += matcher.push(await text.push([], true)) + matcher.finish();
            }
            sink.token({ index, token_id: tokenId, logprob, text: piece });
            if (matcher.stopped || index === finalIndex) {
              text.close();
              sink.summary(summarize(matcher.stopped ? 'stop_string' : (finishReason as FinishReason), sequence as Sequence));
            }
          }).catch((error: unknown) => fail(ServiceError.from(error)));
        },
        onFinish: (reason) => {
          finishReason = reason;
          if (reason !== 'stop_string' && sequence !== undefined) finalIndex = sequence.generated.length - 1;
        },
        onError: (error) => fail(error),
      },
    );
  } catch (error) {
    text.cancel();
    sink.error(ServiceError.from(error));
    return;
  }
  sink.onCancel(() => fail(new ServiceError(grpc.status.CANCELLED, 'the client cancelled the request')));
  deps.logger.info('generation started', { request_id: requestId, sequence_id: sequence.id, prompt_tokens: request.prompt_token_ids.length, max_new_tokens: sampling.maxNewTokens });
}

function deadlineOf(deadline: grpc.Deadline): number {
  const ms = deadline instanceof Date ? deadline.getTime() : deadline;
  return Number.isFinite(ms) && ms > 0 ? ms : Number.POSITIVE_INFINITY;
}

/** Parses the optional parameters into full settings; errors name the proto field. */
export function parseParameters(parameters: GenerationParameters__Output | null, limits: Limits): SamplingSettings {
  const p: GenerationParameters__Output = parameters ?? { stop: [], top_logprobs: 0 };
  // An omitted field takes the default, lowered to the configured ceiling: the caller did not ask for more.
  const maxNewTokens = p.max_new_tokens ?? Math.min(DEFAULTS.maxNewTokens, limits.maxNewTokens);
  if (maxNewTokens < 1 || maxNewTokens > limits.maxNewTokens) {
    throw ServiceError.invalidArgument('parameters.max_new_tokens', `must be between 1 and ${limits.maxNewTokens}, got ${maxNewTokens}`);
  }
  const temperature = p.temperature ?? DEFAULTS.temperature;
  if (!Number.isFinite(temperature) || temperature < 0) throw ServiceError.invalidArgument('parameters.temperature', `must be >= 0 (0 = greedy), got ${temperature}`);
  const topP = p.top_p ?? DEFAULTS.topP;
  if (!(topP > 0 && topP <= 1)) throw ServiceError.invalidArgument('parameters.top_p', `must be in (0, 1], got ${topP}`);
  const repetitionPenalty = p.repetition_penalty ?? DEFAULTS.repetitionPenalty;
  if (!(repetitionPenalty > 0) || !Number.isFinite(repetitionPenalty)) {
    throw ServiceError.invalidArgument('parameters.repetition_penalty', `must be > 0 (1 = off), got ${repetitionPenalty}`);
  }
  if (p.stop.length > MAX_STOP_STRINGS) throw ServiceError.invalidArgument('parameters.stop', `at most ${MAX_STOP_STRINGS} stop strings, got ${p.stop.length}`);
  const empty = p.stop.findIndex((s) => s === '');
  if (empty >= 0) throw ServiceError.invalidArgument(`parameters.stop[${empty}]`, 'must not be empty');
  return { maxNewTokens, temperature, topK: p.top_k ?? DEFAULTS.topK, topP, repetitionPenalty, seed: p.seed ?? DEFAULTS.seed, stop: p.stop };
}

function checkPrompt(promptIds: readonly number[], sampling: SamplingSettings, config: Gpt2Config, limits: Limits): void {
  if (promptIds.length === 0) throw ServiceError.invalidArgument('prompt_token_ids', 'must not be empty');
  if (promptIds.length > limits.maxPromptTokens) {
    throw ServiceError.invalidArgument('prompt_token_ids', `the prompt is ${promptIds.length} tokens; the limit is ${limits.maxPromptTokens}`);
  }
  const bad = promptIds.findIndex((id) => id >= config.vocabSize);
  if (bad >= 0) throw ServiceError.invalidArgument(`prompt_token_ids[${bad}]`, `${promptIds[bad]} is outside the vocabulary (size ${config.vocabSize})`);
  if (promptIds.length + sampling.maxNewTokens > config.nPositions) {
    throw ServiceError.invalidArgument(
      'prompt_token_ids',
      `the prompt is ${promptIds.length} tokens and max_new_tokens is ${sampling.maxNewTokens}: together more than the model's context of ${config.nPositions} tokens`,
    );
  }
}
