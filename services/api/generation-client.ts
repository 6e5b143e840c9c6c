import { status, type ClientReadableStream, type ClientUnaryCall } from '@grpc/grpc-js';
import type { GenerateEvent__Output } from '../../protos/generated/pipeserve/v1/GenerateEvent';
import type { GenerateRequest } from '../../protos/generated/pipeserve/v1/GenerateRequest';
import type { CoordinatorClient } from '../../protos/generated/pipeserve/v1/Coordinator';
import type { GenerationSummary__Output } from '../../protos/generated/pipeserve/v1/GenerationSummary';
import type { EncodeRequest } from '../../protos/generated/pipeserve/v1/EncodeRequest';
import type { EncodeResponse__Output } from '../../protos/generated/pipeserve/v1/EncodeResponse';
import type { TokenizerClient } from '../../protos/generated/pipeserve/v1/Tokenizer';
import { requestMetadata, unary, untilDeadline } from '../../shared/grpc/channel';
import { ServiceError } from '../../shared/errors';
import { RequestFieldError } from './parse-input';
import type { DecodeRequest } from '../../protos/generated/pipeserve/v1/DecodeRequest';
import type { DecodeResponse__Output } from '../../protos/generated/pipeserve/v1/DecodeResponse';
import type { RenderChatRequest } from '../../protos/generated/pipeserve/v1/RenderChatRequest';
import type { RenderChatResponse__Output } from '../../protos/generated/pipeserve/v1/RenderChatResponse';
import type { GenerationSettings } from './generation-settings';

/** Encoding a prompt (or rendering a chat) takes milliseconds; a tokenizer that needs longer is in trouble, not busy. */
export const ENCODE_DEADLINE_MS = 5_000;

export interface ChatPromptMessage {
  readonly role: string;
  readonly content: string;
}

export interface EncodedPrompt {
  readonly tokenIds: readonly number[];
  readonly tokenizeMs: number;
}

/**
 * The api's two outgoing hops: the tokenizer (Encode) and the coordinator (Process / Generate),
 * each under the request's absolute deadline, with the request id in the call metadata. Errors
 * come back as ServiceErrors; when a service is down or slow, the message says which one.
 */
export class GenerationClient {
  constructor(
    private readonly tokenizer: TokenizerClient,
    private readonly coordinator: CoordinatorClient,
  ) {}

  async encode(text: string, requestId: string, deadlineUnixMs: number): Promise<EncodedPrompt> {
    const started = performance.now();
    try {
      const response = await unary<EncodeRequest, EncodeResponse__Output>(
        (argument, metadata, options, callback) => this.tokenizer.Encode(argument, metadata, options, callback),
        { text },
        requestMetadata(requestId),
        untilDeadline(Math.min(deadlineUnixMs, Date.now() + ENCODE_DEADLINE_MS)),
      );
      return { tokenIds: response.token_ids, tokenizeMs: performance.now() - started };
    } catch (error) {
      throw naming('tokenizer', error);
    }
  }

  /** The chat as the model's prompt, through the tokenizer's chat template (with the assistant turn opened). */
  async renderChat(messages: readonly ChatPromptMessage[], requestId: string, deadlineUnixMs: number): Promise<EncodedPrompt & { readonly text: string }> {
    const started = performance.now();
    try {
      const response = await unary<RenderChatRequest, RenderChatResponse__Output>(
        (argument, metadata, options, callback) => this.tokenizer.RenderChat(argument, metadata, options, callback),
        { messages: messages.map((m) => ({ role: m.role, content: m.content })), add_generation_prompt: true },
        requestMetadata(requestId),
        untilDeadline(Math.min(deadlineUnixMs, Date.now() + ENCODE_DEADLINE_MS)),
      );
      return { tokenIds: response.token_ids, text: response.text, tokenizeMs: performance.now() - started };
    } catch (error) {
      throw naming('tokenizer', error);
    }
  }

  /** The text of one token on its own, special tokens included (for naming log-probability alternatives). */
  async decodeToken(tokenId: number, requestId: string, deadlineUnixMs: number): Promise<string> {
    try {
      const response = await unary<DecodeRequest, DecodeResponse__Output>(
        (argument, metadata, options, callback) => this.tokenizer.Decode(argument, metadata, options, callback),
        { token_ids: [tokenId], skip_special_tokens: false },
        requestMetadata(requestId),
        untilDeadline(Math.min(deadlineUnixMs, Date.now() + ENCODE_DEADLINE_MS)),
      );
      return response.text;
    } catch (error) {
      throw naming('tokenizer', error);
    }
  }

  /** Aborting `signal` cancels the call (the coordinator then frees the sequence). */
  async process(
    request: GenerationSettings,
    promptTokenIds: readonly number[],
    requestId: string,
    deadlineUnixMs: number,
    signal: AbortSignal,
  ): Promise<GenerationSummary__Output> {
    // The client may have left while its prompt was being encoded: an abort listener added now would never fire.
    if (signal.aborted) throw new ServiceError(status.CANCELLED, 'the client went away before generation started');
    let call: ClientUnaryCall | undefined;
    let cancelledHere = false;
    const cancel = (): void => {
      cancelledHere = true;
      call?.cancel();
    };
    signal.addEventListener('abort', cancel, { once: true });
    try {
      return await unary<GenerateRequest, GenerationSummary__Output>(
        (argument, metadata, options, callback) => (call = this.coordinator.Process(argument, metadata, options, callback)),
        generateRequest(request, promptTokenIds, requestId),
        requestMetadata(requestId),
        untilDeadline(deadlineUnixMs),
      );
    } catch (error) {
      throw inRequestTerms(naming('coordinator', error, cancelledHere), PROCESS_FIELD_NAMES);
    } finally {
      signal.removeEventListener('abort', cancel);
    }
  }

  /**
   * The caller owns the stream: it must cancel it when its client goes away. Map its errors with
   * `coordinatorError`, saying whether the caller had cancelled the stream.
   */
  generate(request: GenerationSettings, promptTokenIds: readonly number[], requestId: string, deadlineUnixMs: number): ClientReadableStream<GenerateEvent__Output> {
    return this.coordinator.Generate(generateRequest(request, promptTokenIds, requestId), requestMetadata(requestId), untilDeadline(deadlineUnixMs));
  }

  static coordinatorError(error: unknown, cancelledHere: boolean, fields: RequestFieldNames = PROCESS_FIELD_NAMES): ServiceError {
    return inRequestTerms(naming('coordinator', error, cancelledHere), fields);
  }
}

/** What a route's clients call the coordinator's request fields that its refusals name. */
export interface RequestFieldNames {
  /** The field the prompt came from (prompt_token_ids on the coordinator). */
  readonly prompt: string;
  /** The field of the number of new tokens (parameters.max_new_tokens on the coordinator). */
  readonly maxNewTokens: string;
}

/** /api/model/process and /api/model/generate. */
export const PROCESS_FIELD_NAMES: RequestFieldNames = { prompt: 'text', maxNewTokens: 'max_new_tokens' };

/**
 * The coordinator refuses fields of its gRPC request ("prompt_token_ids: the prompt is 300
 * tokens ..."); a REST client sent other fields, so its message names those ("text: ..."),
 * keeping the coordinator's words after the field.
 */
function inRequestTerms(error: ServiceError, fields: RequestFieldNames): ServiceError {
  if (error.code !== status.INVALID_ARGUMENT) return error;
  const named = /^([\w.]+): (.*)$/s.exec(error.message);
  if (named === null) return error;
  const [, field, problem] = named;
  if (field === 'prompt_token_ids') return new RequestFieldError(fields.prompt, problem, error);
  if (field === 'parameters.max_new_tokens') return new RequestFieldError(fields.maxNewTokens, problem, error);
  if (field.startsWith('parameters.')) return new RequestFieldError(field.slice('parameters.'.length), problem, error);
  return error;
}

function generateRequest(request: GenerationSettings, promptTokenIds: readonly number[], requestId: string): GenerateRequest {
  return {
    request_id: requestId,
    prompt_token_ids: [...promptTokenIds],
    parameters: {
      max_new_tokens: request.maxNewTokens,
      temperature: request.temperature,
      top_k: request.topK,
      top_p: request.topP,
      repetition_penalty: request.repetitionPenalty,
      seed: request.seed,
      stop: [...request.stop],
      top_logprobs: request.topLogprobs,
      ignore_eos: request.ignoreEos,
    },
    priority: request.priority,
  };
}

/**
 * A 503 should tell the client which service is missing; an INVALID_ARGUMENT keeps the service's
 * own words (they name the problem, e.g. a prompt longer than the model's context). A service
 * refusing the cluster's own calls (UNAUTHENTICATED, PERMISSION_DENIED) means the services'
 * security settings disagree: the server's fault (500), not a wrong key of the client's (401).
 */
function naming(service: 'tokenizer' | 'coordinator', thrown: unknown, cancelledHere = false): ServiceError {
  const error = ServiceError.fromCall(thrown, service, cancelledHere);
  switch (error.code) {
    case status.UNAUTHENTICATED:
    case status.PERMISSION_DENIED:
      return new ServiceError(
        status.INTERNAL,
        `server misconfiguration: the ${service} refused an internal call (${error.message}); every service must have the same security.cluster_secret (CLUSTER_SECRET)`,
        error,
      );
    case status.UNAVAILABLE:
      return new ServiceError(error.code, `${service} unavailable: ${error.message}`, error);
    case status.DEADLINE_EXCEEDED:
      return new ServiceError(error.code, `${service} did not answer before the request deadline: ${error.message}`, error);
    case status.INTERNAL:
    case status.UNKNOWN:
      return new ServiceError(error.code, `${service} failed: ${error.message}`, error);
    default:
      return error;
  }
}
