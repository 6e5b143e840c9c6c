import * as grpc from '@grpc/grpc-js';
import { Counter, Histogram, type Registry } from 'prom-client';
import type { DecodeRequest__Output } from '../../protos/generated/pipeserve/v1/DecodeRequest';
import type { DecodeResponse } from '../../protos/generated/pipeserve/v1/DecodeResponse';
import type { DecodeStreamRequest__Output } from '../../protos/generated/pipeserve/v1/DecodeStreamRequest';
import type { DecodeStreamResponse } from '../../protos/generated/pipeserve/v1/DecodeStreamResponse';
import type { EncodeRequest__Output } from '../../protos/generated/pipeserve/v1/EncodeRequest';
import type { EncodeResponse } from '../../protos/generated/pipeserve/v1/EncodeResponse';
import type { RenderChatRequest__Output } from '../../protos/generated/pipeserve/v1/RenderChatRequest';
import type { RenderChatResponse } from '../../protos/generated/pipeserve/v1/RenderChatResponse';
import type { TokenizerHandlers } from '../../protos/generated/pipeserve/v1/Tokenizer';
import { ServiceError } from '../../shared/errors';
import { requestIdOf } from '../../shared/grpc/channel';
import type { Logger } from '../../shared/logger';
import type { ChatTemplate } from './chat-template';
import { IncrementalDecoder } from './incremental-decoder';

/** What the service needs of a tokenizer (TextTokenizer satisfies it). */
export interface TokenizerModel {
  encode(text: string): number[];
  /** Leaves special tokens out when `skipSpecialTokens` is true or omitted. */
  decode(ids: readonly number[], skipSpecialTokens?: boolean): string;
}

export interface TokenizerServiceOptions {
  readonly vocabSize: number;
  /** Longest text Encode accepts (and RenderChat renders), in characters. */
  readonly maxTextChars: number;
  readonly chatTemplate: ChatTemplate;
}

const OPERATION_SECONDS_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25];

class TokenizerMetrics {
  readonly operations: Counter<'operation' | 'status'>;
  readonly duration: Histogram<'operation'>;
  readonly tokens: Counter<'operation'>;

  constructor(registry: Registry) {
    this.operations = new Counter({ name: 'tokenizer_operations_total', help: 'Tokenizer calls by operation and gRPC status', labelNames: ['operation', 'status'], registers: [registry] });
    this.duration = new Histogram({ name: 'tokenizer_operation_duration_seconds', help: 'Time spent in one tokenizer operation', labelNames: ['operation'], buckets: OPERATION_SECONDS_BUCKETS, registers: [registry] });
    this.tokens = new Counter({ name: 'tokenizer_tokens_total', help: 'Tokens produced (encode) or consumed (decode)', labelNames: ['operation'], registers: [registry] });
  }
}

/** gRPC handlers of the Tokenizer service. */
export function createTokenizerHandlers(model: TokenizerModel, options: TokenizerServiceOptions, registry: Registry, logger: Logger): TokenizerHandlers {
  const metrics = new TokenizerMetrics(registry);

  const checkIds = (ids: readonly number[], field: string): void => {
    const bad = ids.findIndex((id) => id >= options.vocabSize);
    if (bad >= 0) throw ServiceError.invalidArgument(`${field}[${bad}]`, `${ids[bad]} is outside the vocabulary (size ${options.vocabSize})`);
  };

  const measure = <T>(operation: string, run: () => { result: T; tokens: number }): T => {
    const stopTimer = metrics.duration.startTimer({ operation });
    try {
      const { result, tokens } = run();
      metrics.operations.inc({ operation, status: 'OK' });
      metrics.tokens.inc({ operation }, tokens);
      return result;
    } catch (error) {
      metrics.operations.inc({ operation, status: grpc.status[ServiceError.from(error).code] });
      throw error;
    } finally {
      stopTimer();
    }
  };

  const fail = (callback: grpc.sendUnaryData<never>, error: unknown, call: grpc.ServerUnaryCall<unknown, unknown>, operation: string): void => {
    const serviceError = ServiceError.from(error);
    logger.warn('tokenizer call failed', { operation, request_id: requestIdOf(call.metadata), code: grpc.status[serviceError.code], error: serviceError.message });
    callback({ code: serviceError.code, details: serviceError.message });
  };

  const checkLength = (text: string, field: string): void => {
    if (text.length > options.maxTextChars) throw ServiceError.invalidArgument(field, `is ${text.length} characters; the limit is ${options.maxTextChars}`);
  };

  return {
    Encode(call: grpc.ServerUnaryCall<EncodeRequest__Output, EncodeResponse>, callback: grpc.sendUnaryData<EncodeResponse>): void {
      try {
        const ids = measure('encode', () => {
          const { text } = call.request;
          checkLength(text, 'text');
          const tokenIds = model.encode(text);
          return { result: tokenIds, tokens: tokenIds.length };
        });
        logger.info('encoded', { request_id: requestIdOf(call.metadata), tokens: ids.length });
        callback(null, { token_ids: ids });
      } catch (error) {
        fail(callback, error, call, 'encode');
      }
    },

    RenderChat(call: grpc.ServerUnaryCall<RenderChatRequest__Output, RenderChatResponse>, callback: grpc.sendUnaryData<RenderChatResponse>): void {
      try {
        const response = measure('render_chat', () => {
          const { messages, add_generation_prompt: addGenerationPrompt } = call.request;
          if (messages.length === 0) throw ServiceError.invalidArgument('messages', 'must not be empty');
          // Checked before rendering, so that no template runs over an unbounded input.
          checkLength(messages.map((m) => m.content).join(''), 'messages');
          const text = options.chatTemplate.render(messages, addGenerationPrompt);
          checkLength(text, 'messages (rendered)');
          const tokenIds = model.encode(text);
          return { result: { text, token_ids: tokenIds, template: options.chatTemplate.source }, tokens: tokenIds.length };
        });
        callback(null, response);
      } catch (error) {
        fail(callback, error, call, 'render_chat');
      }
    },

    Decode(call: grpc.ServerUnaryCall<DecodeRequest__Output, DecodeResponse>, callback: grpc.sendUnaryData<DecodeResponse>): void {
      try {
        const text = measure('decode', () => {
          checkIds(call.request.token_ids, 'token_ids');
          return { result: model.decode(call.request.token_ids, call.request.skip_special_tokens), tokens: call.request.token_ids.length };
        });
        callback(null, { text });
      } catch (error) {
        fail(callback, error, call, 'decode');
      }
    },

    DecodeStream(call: grpc.ServerDuplexStream<DecodeStreamRequest__Output, DecodeStreamResponse>): void {
      // Streamed text is generated text: the special tokens a model emits (end of text) never show in it.
      const decoder = new IncrementalDecoder(model);
      call.on('data', (request: DecodeStreamRequest__Output) => {
        try {
          const text = measure('decode_stream', () => {
            checkIds(request.token_ids, 'token_ids');
            const piece = decoder.push(request.token_ids);
            return { result: request.flush ? piece + decoder.flush() : piece, tokens: request.token_ids.length };
          });
          call.write({ text, tokens_seen: decoder.tokensSeen });
        } catch (error) {
          const serviceError = ServiceError.from(error);
          call.emit('error', { code: serviceError.code, details: serviceError.message });
        }
      });
      call.on('end', () => {
        logger.info('decode stream ended', { request_id: requestIdOf(call.metadata), tokens: decoder.tokensSeen });
        call.end();
      });
      call.on('error', () => undefined);
    },
  };
}
