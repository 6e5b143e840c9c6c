import * as grpc from '@grpc/grpc-js';
import type { Server } from 'node:http';
import os from 'node:os';
import type { Registry } from 'prom-client';
import type { CoordinatorHandlers } from '../../protos/generated/pipeserve/v1/Coordinator';
import type { GenerateRequest__Output } from '../../protos/generated/pipeserve/v1/GenerateRequest';
import type { GenerationSummary } from '../../protos/generated/pipeserve/v1/GenerationSummary';
import type { NodeStatus } from '../../protos/generated/pipeserve/v1/NodeStatus';
import type { TokenizerHandlers } from '../../protos/generated/pipeserve/v1/Tokenizer';
import { createApiServer } from '../../services/api/api-server';
import { createApiApp } from '../../services/api/app';
import { parseConfig, type AppConfig } from '../../shared/config';
import { createClient, requestIdOf, startServer, type RunningServer } from '../../shared/grpc/channel';
import { protos } from '../../shared/grpc/proto-loader';
import { createLogger } from '../../shared/logger';
import { createMetricsRegistry } from '../../shared/metrics';

/**
 * In-test stand-ins for the tokenizer and coordinator, with simple honest behaviour:
 * - the tokenizer maps UTF-8 bytes to ids (id = byte value) and back, and renders chats as ChatML;
 * - the coordinator "generates" the prompt ids reversed, at most max_new_tokens of them (with
 *   `fakeAlternatives` when top_logprobs are asked for),
 *   rejects prompts longer than `maxPromptTokens` (INVALID_ARGUMENT) and requests beyond
 *   `capacity` running at once (RESOURCE_EXHAUSTED), like the real one's admission control.
 */
export const FAKE_MAX_PROMPT_TOKENS = 64;
/** The fake model's context: a prompt and its new tokens together beyond it are refused, naming max_new_tokens. */
export const FAKE_CONTEXT_TOKENS = 256;

export interface FakeTokenizerOptions {
  /** Awaited before Encode answers: lets a test hold a request while its prompt is being encoded. */
  readonly beforeEncode?: (text: string) => Promise<void>;
}

export function fakeTokenizerHandlers(options: FakeTokenizerOptions = {}): TokenizerHandlers {
  return {
    Encode: (call, callback) => {
      const { text } = call.request;
      void (options.beforeEncode?.(text) ?? Promise.resolve()).then(() => callback(null, { token_ids: [...Buffer.from(text, 'utf8')] }));
    },
    Decode: (call, callback) => callback(null, { text: Buffer.from(call.request.token_ids).toString('utf8') }),
    RenderChat: (call, callback) => {
      const text = fakeChatText(call.request.messages, call.request.add_generation_prompt);
      callback(null, { text, token_ids: [...Buffer.from(text, 'utf8')], template: 'chatml' });
    },
    DecodeStream: (call) => {
      const decoder = new TextDecoder('utf-8');
      let seen = 0;
      call.on('data', (message: { token_ids: number[]; flush: boolean }) => {
        seen += message.token_ids.length;
        call.write({ text: decoder.decode(Uint8Array.from(message.token_ids), { stream: !message.flush }), tokens_seen: seen });
      });
      call.on('end', () => call.end());
    },
  };
}

/** The fake tokenizer's chat rendering: ChatML, as the real one renders for a checkpoint without a template. */
export function fakeChatText(messages: ReadonlyArray<{ role: string; content: string }>, addGenerationPrompt: boolean): string {
  return messages.map((m) => `<|im_start|>${m.role}\n${m.content}<|im_end|>\n`).join('') + (addGenerationPrompt ? '<|im_start|>assistant\n' : '');
}

export interface CoordinatorRecord {
  readonly requests: GenerateRequest__Output[];
  readonly metadataRequestIds: string[];
  readonly cancelled: string[];
}

export interface FakeCoordinatorOptions {
  /** Requests allowed to run at once; more get RESOURCE_EXHAUSTED. */
  readonly capacity: number;
  /** Awaited before each generated token (index from 0) is produced: lets a test hold a generation. */
  readonly beforeToken?: (index: number, requestId: string) => Promise<void>;
  readonly topology?: readonly NodeStatus[];
}

/** The log-probability the fake coordinator reports for every token it generates: the most likely one. */
export const FAKE_LOGPROB = -0.5;

/** Its alternatives: the token itself, then the next byte values, each one nat less likely. */
export function fakeAlternatives(tokenId: number, count: number): Array<{ token_id: number; logprob: number }> {
  return Array.from({ length: count }, (_, j) => ({ token_id: (tokenId + j) % 256, logprob: FAKE_LOGPROB - j }));
}

/** What the fake coordinator generates for a prompt: its ids reversed, at most maxNewTokens. */
function expectedGeneratedIds(promptIds: readonly number[], maxNewTokens: number): number[] {
  return [...promptIds].reverse().slice(0, maxNewTokens);
}

/** What Process and Generate calls share: the request, its metadata and its cancellation. */
interface AcceptedCall {
  readonly request: GenerateRequest__Output;
  readonly metadata: grpc.Metadata;
  on(event: 'cancelled', listener: () => void): unknown;
}

export function fakeCoordinatorHandlers(options: FakeCoordinatorOptions, record: CoordinatorRecord): CoordinatorHandlers {
  let running = 0;

  /** Admits the request or throws the status the real coordinator would answer. */
  function admit(request: GenerateRequest__Output): void {
    if (request.prompt_token_ids.length > FAKE_MAX_PROMPT_TOKENS) {
      throw { code: grpc.status.INVALID_ARGUMENT, details: `prompt_token_ids: ${request.prompt_token_ids.length} tokens, the model takes at most ${FAKE_MAX_PROMPT_TOKENS}` };
    }
    const asked = request.parameters?.max_new_tokens ?? 0;
    if (request.prompt_token_ids.length + asked > FAKE_CONTEXT_TOKENS) {
      throw { code: grpc.status.INVALID_ARGUMENT, details: `parameters.max_new_tokens: must be at most ${FAKE_CONTEXT_TOKENS - request.prompt_token_ids.length}, got ${asked}` };
    }
    if (running >= options.capacity) {
      throw { code: grpc.status.RESOURCE_EXHAUSTED, details: `queue full: ${running} requests running` };
    }
  }

  async function run(request: GenerateRequest__Output, isCancelled: () => boolean, onToken: (index: number, id: number, text: string) => void): Promise<GenerationSummary | undefined> {
    const maxNewTokens = request.parameters?.max_new_tokens ?? 32;
    const ids = expectedGeneratedIds(request.prompt_token_ids, maxNewTokens);
    const decoder = new TextDecoder('utf-8');
    let text = '';
    for (let i = 0; i < ids.length; i++) {
      await options.beforeToken?.(i, request.request_id);
      if (isCancelled()) return undefined;
      const piece = decoder.decode(Uint8Array.of(ids[i]), { stream: true });
      text += piece;
      onToken(i, ids[i], piece);
    }
    text += decoder.decode();
    return {
      request_id: request.request_id,
      token_ids: ids,
      text,
      finish_reason: ids.length === maxNewTokens ? 'length' : 'stop',
      prompt_tokens: request.prompt_token_ids.length,
      generated_tokens: ids.length,
      timings: { queue_ms: 0.5, time_to_first_token_ms: 1.25, total_ms: 2, nodes: [{ node_id: 'node1', stage: 0, forward_ms: 0.75, steps: ids.length }] },
    };
  }

  /**
   * Records the call and admits it. Returns whether the client has cancelled it so far, or
   * undefined when admission refused it (`reject` has then answered the error).
   */
  function accept(call: AcceptedCall, reject: (error: grpc.ServiceError) => void): (() => boolean) | undefined {
    record.requests.push(call.request);
    record.metadataRequestIds.push(requestIdOf(call.metadata));
    let cancelled = false;
    call.on('cancelled', () => {
      cancelled = true;
      record.cancelled.push(call.request.request_id);
    });
    try {
      admit(call.request);
    } catch (error) {
      reject(error as grpc.ServiceError);
      return undefined;
    }
    running++;
    return () => cancelled;
  }

  return {
    Process: (call, callback) => {
      const isCancelled = accept(call, (error) => callback(error));
      if (isCancelled === undefined) return;
      run(call.request, isCancelled, () => undefined)
        .then((summary) => {
          if (summary !== undefined) callback(null, summary);
        })
        .finally(() => running--);
    },
    Generate: (call) => {
      const isCancelled = accept(call, (error) => call.emit('error', error));
      if (isCancelled === undefined) return;
      const alternatives = call.request.parameters?.top_logprobs ?? 0;
      run(call.request, isCancelled, (index, id, text) => call.write({ token: { index, token_id: id, logprob: FAKE_LOGPROB, text, top_logprobs: fakeAlternatives(id, alternatives) } }))
        .then((summary) => {
          if (summary === undefined) return;
          call.write({ summary });
          call.end();
        })
        .finally(() => running--);
    },
    Topology: (_call, callback) => {
      const nodes = options.topology ?? [{ node_id: 'node1', address: '127.0.0.1:1', stage: 0, serving: true, detail: '' }];
      callback(null, { model_name: 'fake', stages: Math.max(...nodes.map((n) => n.stage ?? 0)) + 1, nodes: [...nodes] });
    },
  };
}

export async function startFakeTokenizer(options: FakeTokenizerOptions = {}): Promise<RunningServer> {
  return startServer('127.0.0.1:0', [
    { name: 'pipeserve.v1.Tokenizer', definition: protos().tokenizer.pipeserve.v1.Tokenizer.service, implementation: fakeTokenizerHandlers(options) },
  ]);
}

export async function startFakeCoordinator(options: FakeCoordinatorOptions): Promise<{ server: RunningServer; record: CoordinatorRecord }> {
  const record: CoordinatorRecord = { requests: [], metadataRequestIds: [], cancelled: [] };
  const server = await startServer('127.0.0.1:0', [
    { name: 'pipeserve.v1.Coordinator', definition: protos().coordinator.pipeserve.v1.Coordinator.service, implementation: fakeCoordinatorHandlers(options, record) },
  ]);
  return { server, record };
}

export function testConfig(tokenizerPort: number, coordinatorPort: number, limits: Record<string, number> = {}, api: Record<string, unknown> = {}): AppConfig {
  return parseConfig(
    {
      model_name: 'fake',
      model_dir: 'model',
      api: { port: 8000, host: '127.0.0.1', ...api },
      tokenizer: { address: `127.0.0.1:${tokenizerPort}`, metrics_port: 9101 },
      coordinator: { address: `127.0.0.1:${coordinatorPort}`, metrics_port: 9102 },
      nodes: [{ id: 'node1', address: '127.0.0.1:50051', model_part: 0, metrics_port: 9201 }],
      limits: { max_new_tokens: 512, ...limits },
    },
    { baseDir: os.tmpdir() },
  );
}

export interface RunningApi {
  readonly url: string;
  readonly registry: Registry;
  /** HTTP connections the api still holds open: 0 once it has seen every client hang up. */
  openConnections(): Promise<number>;
  close(): Promise<void>;
}

/** The api app over a real HTTP listener on an ephemeral port, with real gRPC clients. */
export async function startApi(config: AppConfig): Promise<RunningApi> {
  const { tokenizer, coordinator, health } = protos();
  const clients = {
    tokenizer: createClient(tokenizer.pipeserve.v1.Tokenizer, config.tokenizer.address),
    coordinator: createClient(coordinator.pipeserve.v1.Coordinator, config.coordinator.address),
    tokenizerHealth: createClient(health.grpc.health.v1.Health, config.tokenizer.address),
    coordinatorHealth: createClient(health.grpc.health.v1.Health, config.coordinator.address),
  };
  const logger = createLogger('api', 'error');
  logger.silent = true;
  const registry = createMetricsRegistry('api');
  const app = createApiApp({
    tokenizer: clients.tokenizer,
    coordinator: clients.coordinator,
    healthClients: { tokenizer: clients.tokenizerHealth, coordinator: clients.coordinatorHealth },
    config,
    logger,
    registry,
  });
  const server: Server = createApiServer(app, config.limits);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('the api server has no TCP address');
  return {
    url: `http://127.0.0.1:${address.port}`,
    registry,
    openConnections: () => new Promise<number>((resolve, reject) => server.getConnections((error, count) => (error ? reject(error) : resolve(count)))),
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      for (const client of Object.values(clients)) client.close();
    },
  };
}

/** Every bad input of the issue, with the field its message must start with. */
export const BAD_BODIES: ReadonlyArray<readonly [string, unknown, string]> = [
  ['missing text', {}, 'text: must be a non-empty string'],
  ['empty text', { text: '' }, 'text: must be a non-empty string'],
  ['numeric text', { text: 5 }, 'text: must be a non-empty string'],
  ['array body', [{ text: 'a' }], 'body: must be a JSON object'],
  ['null body', null, 'body: must be a JSON object'],
  ['string body', 'a', 'body: must be a JSON object'],
  ['number body', 5, 'body: must be a JSON object'],
  ['metadata not an object', { text: 'a', metadata: [1] }, 'metadata: must be a JSON object'],
  ['unknown field', { text: 'a', foo: 1 }, 'unknown field: foo'],
  ['max_new_tokens 0', { text: 'a', max_new_tokens: 0 }, 'max_new_tokens: must be an integer between 1 and 512'],
  ['max_new_tokens above the limit', { text: 'a', max_new_tokens: 513 }, 'max_new_tokens: must be an integer between 1 and 512'],
  ['max_new_tokens fractional', { text: 'a', max_new_tokens: 1.5 }, 'max_new_tokens: must be an integer between 1 and 512'],
  ['max_new_tokens as a string', { text: 'a', max_new_tokens: '4' }, 'max_new_tokens: must be an integer between 1 and 512'],
  ['negative temperature', { text: 'a', temperature: -0.1 }, 'temperature: must be a number >= 0'],
  ['null temperature', { text: 'a', temperature: null }, 'temperature: must be a number >= 0'],
  ['negative top_k', { text: 'a', top_k: -1 }, 'top_k: must be an integer >= 0'],
  ['fractional top_k', { text: 'a', top_k: 2.5 }, 'top_k: must be an integer >= 0'],
  ['top_p 0', { text: 'a', top_p: 0 }, 'top_p: must be a number greater than 0 and at most 1'],
  ['top_p above 1', { text: 'a', top_p: 1.01 }, 'top_p: must be a number greater than 0 and at most 1'],
  ['repetition_penalty 0', { text: 'a', repetition_penalty: 0 }, 'repetition_penalty: must be a number > 0'],
  ['negative seed', { text: 'a', seed: -1 }, 'seed: must be an integer between 0 and 4294967295'],
  ['seed above 2^32-1', { text: 'a', seed: 2 ** 32 }, 'seed: must be an integer between 0 and 4294967295'],
  ['stop not an array', { text: 'a', stop: 'x' }, 'stop: must be an array of at most 4 non-empty strings'],
  ['five stop strings', { text: 'a', stop: ['a', 'b', 'c', 'd', 'e'] }, 'stop: must be an array of at most 4 non-empty strings'],
  ['empty stop string', { text: 'a', stop: ['a', ''] }, 'stop[1]: must be an array of at most 4 non-empty strings'],
  ['unknown priority', { text: 'a', priority: 'urgent' }, 'priority: must be one of "interactive", "batch", got "urgent"'],
  ['ignore_eos not a boolean', { text: 'a', ignore_eos: 1 }, 'ignore_eos: must be a boolean, got 1'],
  ['infinite temperature', { text: 'a', temperature: 1e400 }, 'temperature: must be a number >= 0'],
  ['null metadata', { text: 'a', metadata: null }, 'metadata: must be a JSON object'],
];

export function postJson(url: string, body: unknown, init: { headers?: Record<string, string>; signal?: AbortSignal } = {}): Promise<Response> {
  return fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...init.headers },
    body: JSON.stringify(body),
    signal: init.signal,
  });
}

/** A promise with its resolve function, for holding a fake generation until the test lets it go. */
export function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}
