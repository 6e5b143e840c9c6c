import * as grpc from '@grpc/grpc-js';
import type { Registry } from 'prom-client';
import { decode as referenceDecode, encode as referenceEncode } from 'gpt-3-encoder';
import type { DecodeResponse__Output } from '../../protos/generated/pipeserve/v1/DecodeResponse';
import type { DecodeStreamResponse__Output } from '../../protos/generated/pipeserve/v1/DecodeStreamResponse';
import type { TokenizerClient } from '../../protos/generated/pipeserve/v1/Tokenizer';
import type { RenderChatResponse__Output } from '../../protos/generated/pipeserve/v1/RenderChatResponse';
import { ChatTemplate } from '../../services/tokenizer/chat-template';
import { TextTokenizer } from '../../services/tokenizer/text-tokenizer';
import { createTokenizerHandlers } from '../../services/tokenizer/tokenizer-service';
import { callOptions, createClient, startServer, type RunningServer } from '../../shared/grpc/channel';
import { protos } from '../../shared/grpc/proto-loader';
import { createLogger } from '../../shared/logger';
import { createMetricsRegistry } from '../../shared/metrics';
import { gpt2TokenizerDir, removeGpt2TokenizerDir } from '../support/gpt2-tokenizer-dir';

const END_OF_TEXT_ID = 50256;
const END_OF_TEXT = '<|endoftext|>';
const CALL_DEADLINE_MS = 30_000;

let server: RunningServer;
let client: TokenizerClient;

beforeAll(async () => {
  const tokenizer = await TextTokenizer.load(await gpt2TokenizerDir());
  const logger = createLogger('tokenizer', 'error');
  logger.silent = true;
  const registry: Registry = createMetricsRegistry('tokenizer');
  const handlers = createTokenizerHandlers(tokenizer, { vocabSize: 50257, maxTextChars: 8192, chatTemplate: ChatTemplate.chatml() }, registry, logger);
  server = await startServer('127.0.0.1:0', [{ name: 'pipeserve.v1.Tokenizer', definition: protos().tokenizer.pipeserve.v1.Tokenizer.service, implementation: handlers }]);
  client = createClient(protos().tokenizer.pipeserve.v1.Tokenizer, `127.0.0.1:${server.port}`);
});

afterAll(async () => {
  client.close();
  await server.shutdown(0);
  await removeGpt2TokenizerDir();
});

function decode(tokenIds: number[], skipSpecialTokens: boolean): Promise<string> {
  return new Promise((resolve, reject) => {
    client.Decode({ token_ids: tokenIds, skip_special_tokens: skipSpecialTokens }, callOptions(CALL_DEADLINE_MS), (error, response?: DecodeResponse__Output) => {
      if (error) reject(error);
      else resolve(response?.text ?? '');
    });
  });
}

function renderChat(messages: Array<{ role: string; content: string }>, addGenerationPrompt: boolean): Promise<RenderChatResponse__Output> {
  return new Promise((resolve, reject) => {
    client.RenderChat({ messages, add_generation_prompt: addGenerationPrompt }, callOptions(CALL_DEADLINE_MS), (error, response?: RenderChatResponse__Output) => {
      if (error || response === undefined) reject(error);
      else resolve(response);
    });
  });
}

describe('Tokenizer service', () => {
  it('RenderChat renders ChatML and answers the GPT-2 encoding of that text', async () => {
    const messages = [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Hi there' },
    ];
    const expected = '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n';
    const rendered = await renderChat(messages, true);
    expect(rendered).toEqual({ text: expected, token_ids: referenceEncode(expected), template: 'chatml' });
    expect((await renderChat(messages, false)).text).toBe(expected.slice(0, -'<|im_start|>assistant\n'.length));
  });

  it('RenderChat refuses an empty chat and a chat longer than the text limit with INVALID_ARGUMENT', async () => {
    await expect(renderChat([], true)).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT, details: 'messages: must not be empty' });
    await expect(renderChat([{ role: 'user', content: 'x'.repeat(8193) }], true)).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
  });

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
    const call = client.DecodeStream(callOptions(CALL_DEADLINE_MS));
    const pieces: string[] = [];
    const ended = new Promise<void>((resolve, reject) => {
      call.on('data', (response: DecodeStreamResponse__Output) => pieces.push(response.text));
      call.on('end', resolve);
      call.on('error', reject);
    });
    for (const id of ids) call.write({ token_ids: [id], flush: false });
    call.write({ token_ids: [END_OF_TEXT_ID], flush: true });
    call.end();
    await ended;
    expect(pieces).toHaveLength(ids.length + 1);
    expect(pieces.join('')).toBe(referenceDecode(ids));
  });
});
