import type { RenderChatRequest__Output } from '../../protos/generated/pipeserve/v1/RenderChatRequest';
import { ServiceError } from '../../shared/errors';
import type { TokenizerLimits } from './tokenizer-limits';

export const CHAT_ROLES = ['system', 'user', 'assistant', 'tool'] as const;
export type ChatRole = (typeof CHAT_ROLES)[number];

export interface ChatMessage {
  readonly role: ChatRole;
  readonly content: string;
}

export interface ChatRequest {
  readonly messages: readonly ChatMessage[];
  readonly addGenerationPrompt: boolean;
}

/**
 * Parses a RenderChat request: one to `maxChatMessages` messages, each with a known role, their
 * contents together at most `maxTextBytes` of UTF-8. Anything else is INVALID_ARGUMENT naming the field.
 */
export function parseChatRequest(request: RenderChatRequest__Output, limits: TokenizerLimits): ChatRequest {
  const { messages } = request;
  if (messages.length === 0) throw ServiceError.invalidArgument('messages', 'at least one message is needed');
  if (messages.length > limits.maxChatMessages) {
    throw ServiceError.invalidArgument('messages', `${messages.length} messages; the limit is ${limits.maxChatMessages}`);
  }
  let contentBytes = 0;
  const parsed = messages.map((message, i): ChatMessage => {
    if (!isChatRole(message.role)) {
      throw ServiceError.invalidArgument(`messages[${i}].role`, `${JSON.stringify(message.role)} is not one of ${CHAT_ROLES.join(', ')}`);
    }
    contentBytes += Buffer.byteLength(message.content, 'utf8');
    if (contentBytes > limits.maxTextBytes) {
      throw ServiceError.invalidArgument(`messages[${i}].content`, `the contents up to this message are ${contentBytes} bytes; the limit for all of them is ${limits.maxTextBytes}`);
    }
    return { role: message.role, content: message.content };
  });
  return { messages: parsed, addGenerationPrompt: request.add_generation_prompt };
}

function isChatRole(role: string): role is ChatRole {
  return (CHAT_ROLES as readonly string[]).includes(role);
}
