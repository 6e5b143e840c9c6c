import { status } from '@grpc/grpc-js';
import { Template } from '@huggingface/jinja';
import { ServiceError } from '../../shared/errors';
import type { ChatMessage } from './chat-request';
import type { TokenizerConfig } from './tokenizer-config';

/** Which template rendered a chat: the checkpoint's own, or the ChatML default. */
export type ChatTemplateKind = 'checkpoint' | 'chatml';

/**
 * Turns a conversation into the prompt text a chat model was trained on: the checkpoint's
 * `chat_template` rendered with `@huggingface/jinja`, with the variables transformers passes
 * (messages, add_generation_prompt, the special tokens' text, tools and documents as none), or,
 * for a checkpoint without one, ChatML (`<|im_start|>{role}\n{content}<|im_end|>\n`).
 */
export class ChatTemplate {
  private constructor(
    readonly kind: ChatTemplateKind,
    private readonly template: Template | undefined,
    private readonly specialTokens: Readonly<Record<string, string>>,
  ) {}

  /** Compiles the checkpoint's template now, so that a broken one fails the load, not a request. */
  static fromConfig(config: TokenizerConfig, source = 'tokenizer_config.json'): ChatTemplate {
    const specialTokens: Record<string, string> = {};
    if (config.bosToken !== undefined) specialTokens.bos_token = config.bosToken;
    if (config.eosToken !== undefined) specialTokens.eos_token = config.eosToken;
    if (config.unkToken !== undefined) specialTokens.unk_token = config.unkToken;
    if (config.padToken !== undefined) specialTokens.pad_token = config.padToken;
    if (config.chatTemplate === undefined) return new ChatTemplate('chatml', undefined, specialTokens);
    try {
      return new ChatTemplate('checkpoint', new Template(config.chatTemplate), specialTokens);
    } catch (error) {
      throw new Error(`${source}: field chat_template: ${error instanceof Error ? error.message : String(error)}`);
    }
  }

  /**
   * The prompt text of `messages`. A template that refuses the conversation (its raise_exception,
   * as in "roles must alternate user/assistant") answers INVALID_ARGUMENT naming `messages` with
   * the template's own words. @huggingface/jinja throws the same Error for raise_exception as for
   * a failing filter, so any failure of a template that compiled is reported that way.
   */
  render(messages: readonly ChatMessage[], addGenerationPrompt: boolean): string {
    if (this.template === undefined) return renderChatMl(messages, addGenerationPrompt);
    try {
      return this.template.render({
        messages: messages.map((message) => ({ role: message.role, content: message.content })),
        add_generation_prompt: addGenerationPrompt,
        tools: null,
        documents: null,
        ...this.specialTokens,
      });
    } catch (error) {
      throw new ServiceError(status.INVALID_ARGUMENT, `messages: the chat template refused them: ${error instanceof Error ? error.message : String(error)}`, error);
    }
  }
}

function renderChatMl(messages: readonly ChatMessage[], addGenerationPrompt: boolean): string {
  const turns = messages.map((message) => `<|im_start|>${message.role}\n${message.content}<|im_end|>\n`);
  return turns.join('') + (addGenerationPrompt ? '<|im_start|>assistant\n' : '');
}
