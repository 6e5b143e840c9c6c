import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { status } from '@grpc/grpc-js';
import { ChatTemplate } from '../../services/tokenizer/chat-template';

const CHAT = [
  { role: 'user', content: 'Hello' },
  { role: 'assistant', content: 'Hi!' },
  { role: 'user', content: 'How are you?' },
];

let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'chat-template-'));
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function withConfig(config: Record<string, unknown>): Promise<ChatTemplate> {
  await writeFile(path.join(dir, 'tokenizer_config.json'), JSON.stringify(config));
  return ChatTemplate.load(dir);
}

describe('ChatTemplate', () => {
  test('a checkpoint without chat_template gets ChatML, with the assistant opening only when asked', async () => {
    const template = await withConfig({ model_max_length: 1024 });
    expect(template.source).toBe('chatml');
    const turns = '<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\nHi!<|im_end|>\n<|im_start|>user\nHow are you?<|im_end|>\n';
    expect(template.render(CHAT, false)).toBe(turns);
    expect(template.render(CHAT, true)).toBe(`${turns}<|im_start|>assistant\n`);
  });

  test("the checkpoint's own Jinja chat_template is rendered, with its bos and eos tokens", async () => {
    // A Llama-2-style template, written out here as a checkpoint would ship it.
    const template = await withConfig({
      bos_token: { content: '<s>', lstrip: false },
      eos_token: '</s>',
      chat_template:
        "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% else %}{{ message['content'] + eos_token }}{% endif %}{% endfor %}",
    });
    expect(template.source).toBe('checkpoint');
    expect(template.render(CHAT, true)).toBe('<s>[INST] Hello [/INST]Hi!</s>[INST] How are you? [/INST]');
  });

  test('a list of named templates uses the "default" one', async () => {
    const template = await withConfig({ chat_template: [{ name: 'tool_use', template: 'tools' }, { name: 'default', template: '{{ messages | length }}' }] });
    expect(template.render(CHAT, false)).toBe('3');
  });

  test('a template that raises refuses the chat with INVALID_ARGUMENT naming messages', async () => {
    const template = await withConfig({
      chat_template: "{% for message in messages %}{% if message['role'] == 'assistant' and loop.first %}{{ raise_exception('must start with a user turn') }}{% endif %}{{ message['content'] }}{% endfor %}",
    });
    expect(template.render(CHAT, false)).toBe('HelloHi!How are you?');
    expect(() => template.render([{ role: 'assistant', content: 'x' }], false)).toThrow(expect.objectContaining({ code: status.INVALID_ARGUMENT, message: expect.stringMatching(/^messages: .*must start with a user turn/) }));
  });

  test('a chat_template that does not parse fails the load, naming the file', async () => {
    await expect(withConfig({ chat_template: '{% for %}' })).rejects.toThrow(/tokenizer_config\.json: chat_template does not parse/);
  });
});
