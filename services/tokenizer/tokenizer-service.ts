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
import { parseChatRequest } from './chat-request';
import type { ChatTemplate } from './chat-template';
import { IncrementalDecoder } from './incremental-decoder';
import type { EncodeOptions } from './text-tokenizer';
import type { TokenizerLimits } from './tokenizer-limits';

/** What the service needs of a tokenizer (TextTokenizer satisfies it). */
export interface TokenizerModel {
  readonly vocabSize: number;
  encode(text: string, options?: EncodeOptions): number[];
  /** Leaves special tokens out when `skipSpecialTokens` is true or omitted. */
  decode(ids: readonly number[], skipSpecialTokens?: boolean): string;
  /** Index of the first id that names no token, or -1. */
  indexOfUnknownId(ids: readonly number[]): number;
}

export interface TokenizerServiceParts {
  readonly tokenizer: TokenizerModel;
  readonly chatTemplate: ChatTemplate;
  readonly limits: TokenizerLimits;
}

const OPERATION_SECONDS_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25];

class TokenizerMetrics {
  readonly operations: Counter<'operation' | 'status'>;
  readonly duration: Histogram<'operation'>;
  readonly tokens: Counter<'operation'>;

  constructor(registry: Registry) {
    this.operations = new Counter({ name: 'pipeserve_tokenizer_operations_total', help: 'Tokenizer calls by operation and gRPC status', labelNames: ['operation', 'status'], registers: [registry] });
    this.duration = new Histogram({ name: 'pipeserve_tokenizer_operation_duration_seconds', help: 'Time spent in one tokenizer operation', labelNames: ['operation'], buckets: OPERATION_SECONDS_BUCKETS, registers: [registry] });
    this.tokens = new Counter({ name: 'pipeserve_tokenizer_tokens_total', help: 'Tokens produced (encode) or consumed (decode)', labelNames: ['operation'], registers: [registry] });
  }
}

/** gRPC handlers of the Tokenizer service. Every request is checked against `limits` before any work. */
export function createTokenizerHandlers(parts: TokenizerServiceParts, registry: Registry, logger: Logger): TokenizerHandlers {
  const { tokenizer, chatTemplate, limits } = parts;
  const metrics = new TokenizerMetrics(registry);

  const checkText = (text: string, field: string): void => {
    const bytes = Buffer.byteLength(text, 'utf8');
    if (bytes > limits.maxTextBytes) throw ServiceError.invalidArgument(field, `is ${bytes} bytes of UTF-8; the limit is ${limits.maxTextBytes}`);
  };

  const checkIds = (ids: readonly number[], field: string, maxIds: number): void => {
    if (ids.length > maxIds) throw ServiceError.invalidArgument(field, `${ids.length} ids; the limit is ${maxIds}`);
    const bad = tokenizer.indexOfUnknownId(ids);
    if (bad >= 0) throw ServiceError.invalidArgument(`${field}[${bad}]`, `${ids[bad]} is outside the vocabulary (size ${tokenizer.vocabSize})`);
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

  return {
    Encode(call: grpc.ServerUnaryCall<EncodeRequest__Output, EncodeResponse>, callback: grpc.sendUnaryData<EncodeResponse>): void {
      try {
        const ids = measure('encode', () => {
          const { text, parse_special_tokens } = call.request;
          checkText(text, 'text');
          const tokenIds = tokenizer.encode(text, { parseSpecialTokens: parse_special_tokens });
          return { result: tokenIds, tokens: tokenIds.length };
        });
        logger.info('encoded', { request_id: requestIdOf(call.metadata), tokens: ids.length });
        callback(null, { token_ids: ids });
      } catch (error) {
        fail(callback, error, call, 'encode');
      }
    },

    Decode(call: grpc.ServerUnaryCall<DecodeRequest__Output, DecodeResponse>, callback: grpc.sendUnaryData<DecodeResponse>): void {
      try {
        const text = measure('decode', () => {
          checkIds(call.request.token_ids, 'token_ids', limits.maxDecodeIds);
          return { result: tokenizer.decode(call.request.token_ids, call.request.skip_special_tokens), tokens: call.request.token_ids.length };
        });
        callback(null, { text });
      } catch (error) {
        fail(callback, error, call, 'decode');
      }
    },

    DecodeStream(call: grpc.ServerDuplexStream<DecodeStreamRequest__Output, DecodeStreamResponse>): void {
      // Streamed text is generated text: the special tokens a model emits (end of text) never show in it.
      const decoder = new IncrementalDecoder(tokenizer);
      let failed = false;
      call.on('data', (request: DecodeStreamRequest__Output) => {
        if (failed) return;
        try {
          const text = measure('decode_stream', () => {
            checkIds(request.token_ids, 'token_ids', limits.maxStreamMessageIds);
            const total = decoder.tokensSeen + request.token_ids.length;
            if (total > limits.maxStreamIds) {
              throw ServiceError.invalidArgument('token_ids', `this message brings the stream to ${total} ids; the limit per stream is ${limits.maxStreamIds}`);
            }
            const piece = decoder.push(request.token_ids);
            return { result: request.flush ? piece + decoder.flush() : piece, tokens: request.token_ids.length };
          });
          call.write({ text, tokens_seen: decoder.tokensSeen });
        } catch (error) {
          failed = true;
          const serviceError = ServiceError.from(error);
          logger.warn('tokenizer call failed', { operation: 'decode_stream', request_id: requestIdOf(call.metadata), code: grpc.status[serviceError.code], error: serviceError.message });
          call.emit('error', { code: serviceError.code, details: serviceError.message });
        }
      });
      call.on('end', () => {
        logger.info('decode stream ended', { request_id: requestIdOf(call.metadata), tokens: decoder.tokensSeen });
        if (!failed) call.end();
      });
      call.on('error', () => undefined);
    },

    RenderChat(call: grpc.ServerUnaryCall<RenderChatRequest__Output, RenderChatResponse>, callback: grpc.sendUnaryData<RenderChatResponse>): void {
      try {
        const response = measure('render_chat', () => {
          const request = parseChatRequest(call.request, limits);
          const text = chatTemplate.render(request.messages, request.addGenerationPrompt);
          if (Buffer.byteLength(text, 'utf8') > limits.maxTextBytes) {
            throw ServiceError.invalidArgument('messages', `the rendered conversation is ${Buffer.byteLength(text, 'utf8')} bytes of UTF-8; the limit is ${limits.maxTextBytes}`);
          }
          // The template's control tokens (<|im_start|>, [INST], <s>) must be control tokens; a BOS it writes is not doubled.
          const tokenIds = tokenizer.encode(text, { parseSpecialTokens: true });
          return { result: { text, token_ids: tokenIds, template: chatTemplate.kind }, tokens: tokenIds.length };
        });
        logger.info('rendered chat', { request_id: requestIdOf(call.metadata), template: response.template, tokens: response.token_ids.length });
        callback(null, response);
      } catch (error) {
        fail(callback, error, call, 'render_chat');
      }
    },
  };
}
