// Original file: protos/tokenizer.proto

import type { ChatMessage as _pipeserve_v1_ChatMessage, ChatMessage__Output as _pipeserve_v1_ChatMessage__Output } from '../../pipeserve/v1/ChatMessage';

export interface RenderChatRequest {
  'messages'?: (_pipeserve_v1_ChatMessage)[];
  'add_generation_prompt'?: (boolean);
}

export interface RenderChatRequest__Output {
  'messages': (_pipeserve_v1_ChatMessage__Output)[];
  'add_generation_prompt': (boolean);
}
