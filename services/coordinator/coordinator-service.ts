import { randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import type { CoordinatorHandlers } from '../../protos/generated/pipeserve/v1/Coordinator';
import type { GenerateEvent } from '../../protos/generated/pipeserve/v1/GenerateEvent';
import type { GenerateRequest__Output } from '../../protos/generated/pipeserve/v1/GenerateRequest';
import type { GenerationParameters__Output } from '../../protos/generated/pipeserve/v1/GenerationParameters';
import type { GenerationSummary } from '../../protos/generated/pipeserve/v1/GenerationSummary';
import type { TopologyRequest__Output } from '../../protos/generated/pipeserve/v1/TopologyRequest';
import type { TopologyResponse } from '../../protos/generated/pipeserve/v1/TopologyResponse';
import type { Limits } from '../../shared/config';
import { ServiceError } from '../../shared/errors';
import { DEFAULT_GENERATION_CONFIG as DEFAULTS, fitNewTokens, MAX_STOP_STRINGS } from '../../shared/generation-config';
import { isValidRequestId, requestIdOf } from '../../shared/grpc/channel';
import type { Logger } from '../../shared/logger';
import type { ModelShape } from '../../shared/model/model-shape';
import type { Decoder } from '../tokenizer/incremental-decoder';
import { MAX_TOP_LOGPROBS } from '../node/sampling/sampler';
import { PRIORITIES, type Priority } from './admission-queue';
import type { CoordinatorMetrics } from './coordinator-metrics';
import { GenerationSession, type GenerationSink } from './generation-session';
import type { ReplicaHealth } from './replica-health';
import type { Scheduler } from './scheduler';
import type { SamplingSettings, SequenceRequest } from './sequence';

/** Longest stop string accepted, in characters. */
const MAX_STOP_STRING_LENGTH = 256;

export interface CoordinatorServiceDeps {
  readonly scheduler: Scheduler;
  readonly health: ReplicaHealth;
  /** The model's tokenizer, loaded in this process: text is decoded where it streams. */
  readonly decoder: Decoder;
  readonly model: { readonly name: string; readonly shape: ModelShape; readonly stages: number };
  readonly limits: Limits;
  readonly metrics: CoordinatorMetrics;
  readonly logger: Logger;
}

/** gRPC handlers of the Coordinator service: each request becomes one GenerationSession. */
export function createCoordinatorHandlers(deps: CoordinatorServiceDeps): CoordinatorHandlers {
  return {
    Generate(call: grpc.ServerWritableStream<GenerateRequest__Output, GenerateEvent>): void {
      let finished = false;
      const session = startSession(deps, call.request, call.metadata, call.getDeadline(), {
        token: (token) => {
          if (!finished && !call.cancelled) call.write({ token });
        },
        summary: (summary) => {
          if (finished || call.cancelled) return;
          finished = true;
          call.write({ summary });
          call.end();
        },
        error: (error) => {
          if (finished || call.cancelled) return;
          finished = true;
          call.emit('error', error.toStatusObject());
        },
      });
      call.on('cancelled', () => session?.cancel());
    },

    Process(call: grpc.ServerUnaryCall<GenerateRequest__Output, GenerationSummary>, callback: grpc.sendUnaryData<GenerationSummary>): void {
      let answered = false;
      const session = startSession(deps, call.request, call.metadata, call.getDeadline(), {
        token: () => undefined,
        summary: (summary) => {
          if (answered) return;
          answered = true;
          callback(null, summary);
        },
        error: (error) => {
          if (answered) return;
          answered = true;
          callback(error.toStatusObject());
        },
      });
      call.on('cancelled', () => session?.cancel());
    },

    Topology(_call: grpc.ServerUnaryCall<TopologyRequest__Output, TopologyResponse>, callback: grpc.sendUnaryData<TopologyResponse>): void {
      callback(null, {
        model_name: deps.model.name,
        stages: deps.model.stages,
        nodes: deps.health.all().map((state) => ({
          node_id: state.replica.id,
          address: state.replica.address,
          stage: state.replica.stage,
          serving: state.serving && state.breaker.allows(Date.now()),
          detail: state.breaker.allows(Date.now()) ? state.detail : `circuit open (${state.detail})`,
        })),
      });
    },
  };
}

/** Parses the request and starts its session; a bad request is answered at once and starts nothing. */
function startSession(deps: CoordinatorServiceDeps, request: GenerateRequest__Output, metadata: grpc.Metadata, callDeadline: grpc.Deadline, sink: GenerationSink): GenerationSession | undefined {
  const requestId = (isValidRequestId(request.request_id) ? request.request_id : requestIdOf(metadata)) || randomUUID();
  let parsed: SequenceRequest;
  try {
    const sampling = fitDefaultLength(parseParameters(request.parameters, deps.limits), request, deps.model.shape);
    checkPrompt(request.prompt_token_ids, sampling, deps.model.shape, deps.limits);
    parsed = {
      requestId,
      promptIds: request.prompt_token_ids,
      sampling,
      deadlineUnixMs: Math.min(deadlineOf(callDeadline), Date.now() + deps.limits.requestTimeoutMs),
      priority: parsePriority(request.priority),
    };
  } catch (error) {
    deps.metrics.rejectedRequests.inc({ reason: 'invalid' });
    sink.error(ServiceError.from(error));
    return undefined;
  }
  const session = new GenerationSession(parsed, deps.scheduler, deps.decoder, countRejections(sink, deps.metrics), deps.logger);
  session.start();
  return session;
}

/** Counts what the scheduler refuses before admission (full queue, no replica). */
function countRejections(sink: GenerationSink, metrics: CoordinatorMetrics): GenerationSink {
  let tokens = 0;
  return {
    token: (event) => {
      tokens++;
      sink.token(event);
    },
    summary: (summary) => sink.summary(summary),
    error: (error) => {
      if (tokens === 0 && (error.code === grpc.status.RESOURCE_EXHAUSTED || error.code === grpc.status.UNAVAILABLE)) {
        metrics.rejectedRequests.inc({ reason: error.code === grpc.status.RESOURCE_EXHAUSTED ? 'queue_full' : 'unavailable' });
      }
      sink.error(error);
    },
  };
}

function deadlineOf(deadline: grpc.Deadline): number {
  const ms = deadline instanceof Date ? deadline.getTime() : deadline;
  return Number.isFinite(ms) && ms > 0 ? ms : Number.POSITIVE_INFINITY;
}

function parsePriority(value: string): Priority {
  if (value === '') return 'interactive';
  if (!(PRIORITIES as readonly string[]).includes(value)) throw ServiceError.invalidArgument('priority', `must be one of ${PRIORITIES.join(', ')}, got "${value}"`);
  return value as Priority;
}

/** Parses the optional parameters into full settings; errors name the proto field. */
export function parseParameters(parameters: GenerationParameters__Output | null, limits: Limits): SamplingSettings {
  const p: GenerationParameters__Output = parameters ?? { stop: [], top_logprobs: 0, ignore_eos: false };
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
  p.stop.forEach((stop, i) => {
    if (stop === '') throw ServiceError.invalidArgument(`parameters.stop[${i}]`, 'must not be empty');
    if (stop.length > MAX_STOP_STRING_LENGTH) throw ServiceError.invalidArgument(`parameters.stop[${i}]`, `at most ${MAX_STOP_STRING_LENGTH} characters, got ${stop.length}`);
  });
  if (p.top_logprobs > MAX_TOP_LOGPROBS) throw ServiceError.invalidArgument('parameters.top_logprobs', `at most ${MAX_TOP_LOGPROBS}, got ${p.top_logprobs}`);
  return {
    maxNewTokens,
    temperature,
    topK: p.top_k ?? DEFAULTS.topK,
    topP,
    repetitionPenalty,
    seed: p.seed ?? DEFAULTS.seed,
    stop: p.stop,
    topLogprobs: p.top_logprobs,
    ignoreEos: p.ignore_eos,
  };
}

/**
 * A caller that left max_new_tokens out asked for the default, not for that many tokens: it is
 * lowered to what the model's context leaves after the prompt (a prompt with no room at all is
 * still refused by checkPrompt). An explicit max_new_tokens is kept, and refused if it does not fit.
 */
export function fitDefaultLength(sampling: SamplingSettings, request: GenerateRequest__Output, shape: ModelShape): SamplingSettings {
  const fit = fitNewTokens(request.prompt_token_ids.length, sampling.maxNewTokens, request.parameters?.max_new_tokens != null, shape.contextLength);
  return typeof fit === 'number' ? { ...sampling, maxNewTokens: fit } : sampling;
}

function checkPrompt(promptIds: readonly number[], sampling: SamplingSettings, shape: ModelShape, limits: Limits): void {
  if (promptIds.length === 0) throw ServiceError.invalidArgument('prompt_token_ids', 'must not be empty');
  if (promptIds.length > limits.maxPromptTokens) {
    throw ServiceError.invalidArgument('prompt_token_ids', `the prompt is ${promptIds.length} tokens; the limit is ${limits.maxPromptTokens}`);
  }
  const bad = promptIds.findIndex((id) => id >= shape.vocabSize);
  if (bad >= 0) throw ServiceError.invalidArgument(`prompt_token_ids[${bad}]`, `${promptIds[bad]} is outside the vocabulary (size ${shape.vocabSize})`);
  const fit = fitNewTokens(promptIds.length, sampling.maxNewTokens, true, shape.contextLength);
  if (typeof fit !== 'number') throw ServiceError.invalidArgument(fit.field === 'prompt' ? 'prompt_token_ids' : 'parameters.max_new_tokens', fit.problem);
}
