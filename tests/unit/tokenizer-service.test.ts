import * as grpc from '@grpc/grpc-js';
import type { Registry } from 'prom-client';
import { decode as referenceDecode, encode as referenceEncode } from 'gpt-3-encoder';
import type { ChatMessage } from '../../protos/generated/pipeserve/v1/ChatMessage';
import type { DecodeStreamRequest } from '../../protos/generated/pipeserve/v1/DecodeStreamRequest';
import type { DecodeStreamResponse__Output } from '../../protos/generated/pipeserve/v1/DecodeStreamResponse';
import type { RenderChatResponse__Output } from '../../protos/generated/pipeserve/v1/RenderChatResponse';
import type { TokenizerClient } from '../../protos/generated/pipeserve/v1/Tokenizer';
import { ChatTemplate } from '../../services/tokenizer/chat-template';
import { TextTokenizer } from '../../services/tokenizer/text-tokenizer';
import type { TokenizerLimits } from '../../services/tokenizer/tokenizer-limits';
import { createTokenizerHandlers } from '../../services/tokenizer/tokenizer-service';
import { ServiceError } from '../../shared/errors';
import { callOptions, createClient, startServer, unary, type RunningServer } from '../../shared/grpc/channel';
import { protos } from '../../shared/grpc/proto-loader';
import { createLogger } from '../../shared/logger';
import { createMetricsRegistry } from '../../shared/metrics';
import { gpt2TokenizerDir, removeGpt2TokenizerDir } from '../support/gpt2-tokenizer-dir';
import { removeTokenizerFixtures, writeTokenizerFixture } from '../support/tokenizer-fixtures';

const END_OF_TEXT_ID = 50256;
const END_OF_TEXT = '<|endoftext|>';
const GPT2_VOCAB_SIZE = 50257;
const CALL_DEADLINE_MS = 30_000;
/** Far below what the unbounded service took for 3 M ids (7 s): the refusal comes before any work. */
const REFUSAL_HANDLER_SECONDS = 0.05;
/** "<|im_start|>user\n", "<|im_end|>\n" and "<|im_start|>assistant\n". */
const CHATML_USER_TURN_AND_PROMPT_BYTES = 17 + 11 + 22;
const LIMITS: TokenizerLimits = { maxTextBytes: 4096, maxDecodeIds: 1024, maxStreamMessageIds: 64, maxStreamIds: 256, maxChatMessages: 8 };

interface Served {
  readonly server: RunningServer;
  readonly client: TokenizerClient;
  readonly registry: Registry;
}

let gpt2: Served;
let llama3: Served;
let gpt2Tokenizer: TextTokenizer;
let llama3Tokenizer: TextTokenizer;

async function serve(tokenizer: TextTokenizer): Promise<Served> {
  const logger = createLogger('tokenizer', 'error');
  logger.silent = true;
  const registry: Registry = createMetricsRegistry('tokenizer');
  const handlers = createTokenizerHandlers({ tokenizer, chatTemplate: ChatTemplate.fromConfig(tokenizer.config), limits: LIMITS }, registry, logger);
  const server = await startServer('127.0.0.1:0', [{ name: 'pipeserve.v1.Tokenizer', definition: protos().tokenizer.pipeserve.v1.Tokenizer.service, implementation: handlers }]);
  return { server, registry, client: createClient(protos().tokenizer.pipeserve.v1.Tokenizer, `127.0.0.1:${server.port}`) };
}

beforeAll(async () => {
  gpt2Tokenizer = await TextTokenizer.load(await gpt2TokenizerDir());
  llama3Tokenizer = await TextTokenizer.load(await writeTokenizerFixture('llama3'));
  gpt2 = await serve(gpt2Tokenizer);
  llama3 = await serve(llama3Tokenizer);
});

afterAll(async () => {
  for (const { client, server } of [gpt2, llama3]) {
    client.close();
    await server.shutdown(0);
  }
  await removeGpt2TokenizerDir();
  await removeTokenizerFixtures();
});

const encode = (client: TokenizerClient, text: string, parseSpecialTokens = false): Promise<number[]> =>
  unary<{ text: string; parse_special_tokens: boolean }, { token_ids: number[] }>(client.Encode.bind(client), { text, parse_special_tokens: parseSpecialTokens }, new grpc.Metadata(), callOptions(CALL_DEADLINE_MS)).then((r) => r.token_ids);

const decode = (tokenIds: number[], skipSpecialTokens: boolean): Promise<string> =>
  unary<{ token_ids: number[]; skip_special_tokens: boolean }, { text: string }>(gpt2.client.Decode.bind(gpt2.client), { token_ids: tokenIds, skip_special_tokens: skipSpecialTokens }, new grpc.Metadata(), callOptions(CALL_DEADLINE_MS)).then((r) => r.text);

const renderChat = (client: TokenizerClient, messages: ChatMessage[], addGenerationPrompt = true): Promise<RenderChatResponse__Output> =>
  unary(client.RenderChat.bind(client), { messages, add_generation_prompt: addGenerationPrompt }, new grpc.Metadata(), callOptions(CALL_DEADLINE_MS));

/** Seconds the handlers have spent in `operation` so far, from the service's own histogram. */
async function handlerSeconds(served: Served, operation: string): Promise<number> {
  const metric = await served.registry.getSingleMetric('pipeserve_tokenizer_operation_duration_seconds')?.get();
  const values = (metric?.values ?? []) as { metricName?: string; labels: Record<string, unknown>; value: number }[];
  return values.find((value) => value.metricName === 'pipeserve_tokenizer_operation_duration_seconds_sum' && value.labels.operation === operation)?.value ?? 0;
}

async function statusOf(call: Promise<unknown>): Promise<{ code: grpc.status; details: string }> {
  try {
    await call;
  } catch (error) {
    const { code, message } = ServiceError.from(error);
    return { code, details: message };
  }
  throw new Error('the call succeeded');
}

/** Runs a DecodeStream with `messages`; resolves with the pieces received and the final status. */
function decodeStream(messages: DecodeStreamRequest[]): Promise<{ pieces: string[]; error?: grpc.ServiceError }> {
  const call = gpt2.client.DecodeStream(callOptions(CALL_DEADLINE_MS));
  const pieces: string[] = [];
  const done = new Promise<{ pieces: string[]; error?: grpc.ServiceError }>((resolve) => {
    call.on('data', (response: DecodeStreamResponse__Output) => pieces.push(response.text));
    call.on('end', () => resolve({ pieces }));
    call.on('error', (error: grpc.ServiceError) => resolve({ pieces, error }));
  });
  for (const message of messages) call.write(message);
  call.end();
  return done;
}

describe('Tokenizer service', () => {
  it('Decode keeps <|endoftext|> when skip_special_tokens is false', async () => {
    expect(await decode([END_OF_TEXT_ID], false)).toBe(END_OF_TEXT);
    const ids = referenceEncode('the end');
    expect(await decode([...ids, END_OF_TEXT_ID], false)).toBe(referenceDecode(ids) + END_OF_TEXT);
  });

  it('Decode leaves <|endoftext|> out when skip_special_tokens is true', async () => {
    expect(await decode([END_OF_TEXT_ID], true)).toBe('');
    const ids = referenceEncode('the end');
    expect(await decode([...ids, END_OF_TEXT_ID], true)).toBe(referenceDecode(ids));
  });

  it('DecodeStream never shows special tokens in generated text', async () => {
    const ids = referenceEncode('Hello there');
    const { pieces, error } = await decodeStream([...ids.map((id) => ({ token_ids: [id], flush: false })), { token_ids: [END_OF_TEXT_ID], flush: true }]);
    expect(error).toBeUndefined();
    expect(pieces).toHaveLength(ids.length + 1);
    expect(pieces.join('')).toBe(referenceDecode(ids));
  });

  it('Encode keeps the text <|endoftext|> as text by default and makes it the control token with parse_special_tokens', async () => {
    const text = `a${END_OF_TEXT}b`;
    expect(await encode(gpt2.client, text)).toEqual(referenceEncode(text));
    expect(await encode(gpt2.client, text, true)).toEqual([...referenceEncode('a'), END_OF_TEXT_ID, ...referenceEncode('b')]);
  });

  it('Encode prepends the BOS of a checkpoint that wants one (Llama 3 style), once', async () => {
    const bos = llama3Tokenizer.bosTokenId;
    expect(bos).toBeDefined();
    expect(await encode(llama3.client, 'hello')).toEqual([bos, ...llama3Tokenizer.encode('hello', { addBos: false })]);
    expect(await encode(llama3.client, '<|begin_of_text|>hello', true)).toEqual([bos, ...llama3Tokenizer.encode('hello', { addBos: false })]);
  });
});

describe('Tokenizer service limits', () => {
  it('Encode of a text over maxTextBytes is INVALID_ARGUMENT naming text, refused before any encoding even for 8 MB', async () => {
    const justOver = 'é'.repeat(LIMITS.maxTextBytes / 2) + 'x'; // 2 bytes each: one byte over
    expect(await statusOf(encode(gpt2.client, justOver))).toEqual({ code: grpc.status.INVALID_ARGUMENT, details: `text: is ${LIMITS.maxTextBytes + 1} bytes of UTF-8; the limit is ${LIMITS.maxTextBytes}` });
    expect(await encode(gpt2.client, 'é'.repeat(LIMITS.maxTextBytes / 2))).toEqual(referenceEncode('é'.repeat(LIMITS.maxTextBytes / 2)));
    const before = await handlerSeconds(gpt2, 'encode');
    const { code, details } = await statusOf(encode(gpt2.client, 'lorem ipsum '.repeat(700_000)));
    expect((await handlerSeconds(gpt2, 'encode')) - before).toBeLessThan(REFUSAL_HANDLER_SECONDS);
    expect(code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(details).toMatch(/^text: /);
  });

  it('Decode of 3 M ids is INVALID_ARGUMENT naming token_ids, refused before any decoding', async () => {
    const ids = Array.from({ length: 3_000_000 }, (_, i) => i % GPT2_VOCAB_SIZE);
    const before = await handlerSeconds(gpt2, 'decode');
    expect(await statusOf(decode(ids, true))).toEqual({ code: grpc.status.INVALID_ARGUMENT, details: `token_ids: 3000000 ids; the limit is ${LIMITS.maxDecodeIds}` });
    expect((await handlerSeconds(gpt2, 'decode')) - before).toBeLessThan(REFUSAL_HANDLER_SECONDS);
    expect(await decode(Array(LIMITS.maxDecodeIds).fill(15496), true)).toBe('Hello'.repeat(LIMITS.maxDecodeIds));
  });

  it('Decode of an id outside the vocabulary is INVALID_ARGUMENT naming its index', async () => {
    expect(await statusOf(decode([15496, 995, GPT2_VOCAB_SIZE], true))).toEqual({
      code: grpc.status.INVALID_ARGUMENT,
      details: `token_ids[2]: ${GPT2_VOCAB_SIZE} is outside the vocabulary (size ${GPT2_VOCAB_SIZE})`,
    });
  });

  it('DecodeStream refuses a message over maxStreamMessageIds, naming token_ids', async () => {
    const { pieces, error } = await decodeStream([{ token_ids: [15496], flush: false }, { token_ids: Array(LIMITS.maxStreamMessageIds + 1).fill(995), flush: true }]);
    expect(pieces).toEqual(['Hello']);
    expect(error?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(error?.details).toBe(`token_ids: ${LIMITS.maxStreamMessageIds + 1} ids; the limit is ${LIMITS.maxStreamMessageIds}`);
  });

  it('DecodeStream refuses the message that takes a stream past maxStreamIds, after answering the ones before', async () => {
    const full = Array(LIMITS.maxStreamMessageIds).fill(995);
    const messages = Array.from({ length: LIMITS.maxStreamIds / LIMITS.maxStreamMessageIds }, () => ({ token_ids: full, flush: false }));
    const { pieces, error } = await decodeStream([...messages, { token_ids: [995], flush: true }]);
    expect(pieces.join('')).toBe(' world'.repeat(LIMITS.maxStreamIds));
    expect(error?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(error?.details).toBe(`token_ids: this message brings the stream to ${LIMITS.maxStreamIds + 1} ids; the limit per stream is ${LIMITS.maxStreamIds}`);
  });

  it('DecodeStream refuses an id outside the vocabulary by its index in the message', async () => {
    const { error } = await decodeStream([{ token_ids: [15496, GPT2_VOCAB_SIZE + 1], flush: true }]);
    expect(error?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(error?.details).toBe(`token_ids[1]: ${GPT2_VOCAB_SIZE + 1} is outside the vocabulary (size ${GPT2_VOCAB_SIZE})`);
  });
});

describe('RenderChat', () => {
  it('a checkpoint without chat_template (GPT-2) renders ChatML with the generation prompt', async () => {
    const response = await renderChat(gpt2.client, [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Hi!' },
    ]);
    const text = '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n';
    expect(response).toEqual({ text, token_ids: referenceEncode(text), template: 'chatml' });
  });

  it("a checkpoint's own template (Llama 3 style) renders, its control tokens become control tokens, BOS once", async () => {
    const response = await renderChat(llama3.client, [{ role: 'user', content: 'Hi!' }]);
    const text = '<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n';
    expect(response.text).toBe(text);
    expect(response.template).toBe('checkpoint');
    const id = (special: string): number => llama3Tokenizer.encode(special, { parseSpecialTokens: true, addBos: false })[0];
    const words = (s: string): number[] => llama3Tokenizer.encode(s, { addBos: false });
    expect(response.token_ids).toEqual([
      id('<|begin_of_text|>'),
      id('<|start_header_id|>'),
      ...words('user'),
      id('<|end_header_id|>'),
      ...words('\n\nHi!'),
      id('<|eot_id|>'),
      id('<|start_header_id|>'),
      ...words('assistant'),
      id('<|end_header_id|>'),
      ...words('\n\n'),
    ]);
  });

  it.each([
    ['an unknown role', [{ role: 'robot', content: 'beep' }], 'messages[0].role: "robot" is not one of system, user, assistant, tool'],
    ['an empty role', [{ role: 'user', content: 'a' }, { role: '', content: 'b' }], 'messages[1].role: "" is not one of system, user, assistant, tool'],
    ['no message', [], 'messages: at least one message is needed'],
    ['one message too many', Array.from({ length: LIMITS.maxChatMessages + 1 }, () => ({ role: 'user', content: 'x' })), `messages: ${LIMITS.maxChatMessages + 1} messages; the limit is ${LIMITS.maxChatMessages}`],
    [
      'contents one byte over the limit',
      [{ role: 'user', content: 'x'.repeat(LIMITS.maxTextBytes - 10) }, { role: 'assistant', content: 'y'.repeat(11) }],
      `messages[1].content: the contents up to this message are ${LIMITS.maxTextBytes + 1} bytes; the limit for all of them is ${LIMITS.maxTextBytes}`,
    ],
    ['a rendered chat over the limit', [{ role: 'user', content: 'x'.repeat(LIMITS.maxTextBytes - 10) }], `messages: the rendered conversation is ${LIMITS.maxTextBytes - 10 + CHATML_USER_TURN_AND_PROMPT_BYTES} bytes of UTF-8; the limit is ${LIMITS.maxTextBytes}`],
  ])('refuses %s with INVALID_ARGUMENT naming the field', async (_case, messages, details) => {
    expect(await statusOf(renderChat(gpt2.client, messages))).toEqual({ code: grpc.status.INVALID_ARGUMENT, details });
  });
});
