import { writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { Tokenizer as RustTokenizer } from 'tokenizers';
import type { ChatMessage } from '../../services/tokenizer/chat-request';
import { ChatTemplate } from '../../services/tokenizer/chat-template';
import { TextTokenizer } from '../../services/tokenizer/text-tokenizer';
import { parseTokenizerConfig } from '../../services/tokenizer/tokenizer-config';
import { ServiceError } from '../../shared/errors';
import { buildTokenizerFixture, removeTokenizerFixtures, writeTokenizerFixture, type TokenizerFixtureKind } from '../support/tokenizer-fixtures';

const CONVERSATION: ChatMessage[] = [
  { role: 'system', content: 'You are terse.' },
  { role: 'user', content: 'Hi there' },
  { role: 'assistant', content: 'Hello.' },
  { role: 'user', content: 'Say </s> or <|im_end|>?' },
];

/** The rendered texts, written out by hand from each family's published template. */
const EXPECTED: Record<'llama2' | 'llama3' | 'qwen2', string> = {
  llama2: '<s>[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHi there [/INST] Hello. </s><s>[INST] Say </s> or <|im_end|>? [/INST]',
  llama3:
    '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>' +
    '<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nSay </s> or <|im_end|>?<|eot_id|>' +
    '<|start_header_id|>assistant<|end_header_id|>\n\n',
  qwen2: '<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nSay </s> or <|im_end|>?<|im_end|>\n<|im_start|>assistant\n',
};

const tokenizers = new Map<TokenizerFixtureKind, TextTokenizer>();

beforeAll(async () => {
  for (const kind of ['llama2', 'mistral', 'llama3', 'qwen2'] as const) tokenizers.set(kind, await TextTokenizer.load(await writeTokenizerFixture(kind)));
});

afterAll(removeTokenizerFixtures);

function loaded(kind: TokenizerFixtureKind): { tokenizer: TextTokenizer; template: ChatTemplate } {
  const tokenizer = tokenizers.get(kind);
  if (tokenizer === undefined) throw new Error(`${kind} was not loaded`);
  return { tokenizer, template: ChatTemplate.fromConfig(tokenizer.config) };
}

function refusalOf(run: () => unknown): ServiceError {
  try {
    run();
  } catch (error) {
    return ServiceError.from(error);
  }
  throw new Error('no error was thrown');
}

describe('ChatTemplate', () => {
  test.each(['llama2', 'llama3', 'qwen2'] as const)("renders the %s checkpoint's own template with bos_token, eos_token and add_generation_prompt", (kind) => {
    const { template } = loaded(kind);
    expect(template.kind).toBe('checkpoint');
    expect(template.render(CONVERSATION, true)).toBe(EXPECTED[kind]);
  });

  test('the list-of-named-templates form (Mistral) uses the one named "default"', () => {
    const { template } = loaded('mistral');
    const messages: ChatMessage[] = [
      { role: 'user', content: 'Hi' },
      { role: 'assistant', content: 'Hello' },
      { role: 'user', content: 'Bye' },
    ];
    expect(template.render(messages, true)).toBe('<s>[INST] Hi [/INST]Hello</s>[INST] Bye [/INST]');
  });

  test('Qwen2 adds its default system prompt when the conversation has none', () => {
    expect(loaded('qwen2').template.render([{ role: 'user', content: 'Hi' }], false)).toBe('<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n');
  });

  test("a template's raise_exception is INVALID_ARGUMENT naming messages, with the template's words", () => {
    const refusal = refusalOf(() => loaded('llama2').template.render([{ role: 'assistant', content: 'I start' }], false));
    expect(refusal.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(refusal.message).toBe('messages: the chat template refused them: Conversation roles must alternate user/assistant/user/assistant/...');
    expect(refusalOf(() => loaded('mistral').template.render([{ role: 'system', content: 'x' }], false)).message).toBe(
      'messages: the chat template refused them: Conversation roles must alternate user/assistant/user/assistant/...',
    );
  });

  test('without a chat_template, ChatML: <|im_start|>{role}\\n{content}<|im_end|>\\n, then <|im_start|>assistant\\n when a reply is asked for', () => {
    const template = ChatTemplate.fromConfig(parseTokenizerConfig({ bos_token: '<s>' }, 'tokenizer_config.json'));
    expect(template.kind).toBe('chatml');
    const messages: ChatMessage[] = [
      { role: 'system', content: 'S' },
      { role: 'user', content: 'U' },
      { role: 'assistant', content: 'A' },
      { role: 'tool', content: '{"ok": true}' },
    ];
    const turns = '<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\nA<|im_end|>\n<|im_start|>tool\n{"ok": true}<|im_end|>\n';
    expect(template.render(messages, false)).toBe(turns);
    expect(template.render(messages, true)).toBe(`${turns}<|im_start|>assistant\n`);
  });

  test('a template that does not compile fails the load, naming the field', () => {
    expect(() => ChatTemplate.fromConfig(parseTokenizerConfig({ chat_template: '{% for m in messages %}' }, 'x/tokenizer_config.json'), 'x/tokenizer_config.json')).toThrow(
      /^x\/tokenizer_config\.json: field chat_template: /,
    );
  });

  test('a list of named templates without "default" fails the load, listing the names', () => {
    expect(() => parseTokenizerConfig({ chat_template: [{ name: 'tool_use', template: 'x' }, { name: 'rag', template: 'y' }] }, 'tokenizer_config.json')).toThrow(
      'tokenizer_config.json: field chat_template: no template named "default" (found "tool_use", "rag")',
    );
  });

  test('a chat_template.jinja beside tokenizer_config.json is the template when the config has none', async () => {
    const dir = await writeTokenizerFixture('qwen2', { chat_template: null });
    await writeFile(path.join(dir, 'chat_template.jinja'), '{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}');
    const tokenizer = await TextTokenizer.load(dir);
    expect(ChatTemplate.fromConfig(tokenizer.config).render([{ role: 'user', content: 'hi' }], true)).toBe('[user] hi\n');
  });
});

describe('rendered chats encoded with special tokens parsed', () => {
  test.each(['llama2', 'llama3', 'qwen2'] as const)('%s: the ids are what Hugging Face tokenizers (Rust) makes of the rendered text, control tokens as control tokens, one BOS', async (kind) => {
    const { tokenizer, template } = loaded(kind);
    const text = template.render(CONVERSATION, true);
    const reference = RustTokenizer.fromString(JSON.stringify(buildTokenizerFixture(kind).tokenizerJson));
    // The template writes the BOS itself: the reference adds no other.
    const expected = (await reference.encode(text, null, { addSpecialTokens: false })).getIds();
    const ids = tokenizer.encode(text, { parseSpecialTokens: true });
    expect(ids).toEqual(expected);
    if (tokenizer.bosTokenId !== undefined) {
      expect(ids[0]).toBe(tokenizer.bosTokenId);
      expect(ids[1]).not.toBe(tokenizer.bosTokenId);
    }
    const eos = tokenizer.encode(kind === 'llama2' ? '</s>' : kind === 'llama3' ? '<|eot_id|>' : '<|im_end|>', { parseSpecialTokens: true, addBos: false });
    expect(eos).toHaveLength(1);
    expect(ids).toContain(eos[0]);
  });

  test('the ChatML default on a Llama 2 checkpoint without a template gets the BOS that add_bos_token asks for', async () => {
    const tokenizer = await TextTokenizer.load(await writeTokenizerFixture('llama2', { chat_template: null }));
    const template = ChatTemplate.fromConfig(tokenizer.config);
    expect(template.kind).toBe('chatml');
    const ids = tokenizer.encode(template.render([{ role: 'user', content: 'Hi' }], true), { parseSpecialTokens: true });
    expect(ids[0]).toBe(1);
    expect(ids.filter((id) => id === 1)).toHaveLength(1);
  });
});
