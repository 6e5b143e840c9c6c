import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Template } from '@huggingface/jinja';
import { ServiceError } from '../../shared/errors';

export interface ChatTurn {
  readonly role: string;
  readonly content: string;
}

/** Where the template came from: the checkpoint's tokenizer_config.json, or the built-in default. */
export type ChatTemplateSource = 'checkpoint' | 'chatml';

/**
 * ChatML, the default for checkpoints without a template of their own:
 * `<|im_start|>role\ncontent<|im_end|>\n` per message, then `<|im_start|>assistant\n`.
 */
export const CHATML_TEMPLATE =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/**
 * A chat as prompt text, with the checkpoint's own `chat_template` (a Jinja template in
 * tokenizer_config.json, rendered by @huggingface/jinja as transformers does) or ChatML.
 */
export class ChatTemplate {
  private constructor(
    private readonly template: Template,
    readonly source: ChatTemplateSource,
    /** bos_token / eos_token of tokenizer_config.json: templates may use them. */
    private readonly specialTokens: Readonly<Record<string, string>>,
  ) {}

  static chatml(): ChatTemplate {
    return new ChatTemplate(new Template(CHATML_TEMPLATE), 'chatml', {});
  }

  /** From `dir`/tokenizer_config.json; ChatML when it has no chat_template. */
  static async load(dir: string): Promise<ChatTemplate> {
    const file = path.join(dir, 'tokenizer_config.json');
    const config = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
    const text = templateText(config.chat_template, file);
    const specialTokens: Record<string, string> = {};
    for (const key of ['bos_token', 'eos_token']) {
      const token = tokenText(config[key]);
      if (token !== undefined) specialTokens[key] = token;
    }
    if (text === undefined) return new ChatTemplate(new Template(CHATML_TEMPLATE), 'chatml', specialTokens);
    try {
      return new ChatTemplate(new Template(text), 'checkpoint', specialTokens);
    } catch (error) {
      throw new Error(`${file}: chat_template does not parse: ${error instanceof Error ? error.message : String(error)}`);
    }
  }

  /** A template that refuses the chat (raise_exception, e.g. roles out of order) answers INVALID_ARGUMENT. */
  render(messages: readonly ChatTurn[], addGenerationPrompt: boolean): string {
    try {
      return this.template.render({
        messages: messages.map((m) => ({ role: m.role, content: m.content })),
        add_generation_prompt: addGenerationPrompt,
        ...this.specialTokens,
      });
    } catch (error) {
      throw ServiceError.invalidArgument('messages', `the chat template refused them: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
}

/** `chat_template` is a string, or a list of named templates of which "default" is the chat one. */
function templateText(value: unknown, file: string): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return value;
  if (Array.isArray(value)) {
    const named = value.find((entry: unknown) => typeof entry === 'object' && entry !== null && (entry as { name?: unknown }).name === 'default') as { template?: unknown } | undefined;
    if (typeof named?.template === 'string') return named.template;
  }
  throw new Error(`${file}: chat_template must be a string or a list with a "default" entry`);
}

/** A special token is written as a string or as an AddedToken object with `content`. */
function tokenText(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'object' && value !== null && typeof (value as { content?: unknown }).content === 'string') return (value as { content: string }).content;
  return undefined;
}
