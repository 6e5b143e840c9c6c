import type * as grpc from '@grpc/grpc-js';
import type { MessageTypeDefinition } from '@grpc/proto-loader';

import type { ChatMessage as _pipeserve_v1_ChatMessage, ChatMessage__Output as _pipeserve_v1_ChatMessage__Output } from './pipeserve/v1/ChatMessage';
import type { DecodeRequest as _pipeserve_v1_DecodeRequest, DecodeRequest__Output as _pipeserve_v1_DecodeRequest__Output } from './pipeserve/v1/DecodeRequest';
import type { DecodeResponse as _pipeserve_v1_DecodeResponse, DecodeResponse__Output as _pipeserve_v1_DecodeResponse__Output } from './pipeserve/v1/DecodeResponse';
import type { DecodeStreamRequest as _pipeserve_v1_DecodeStreamRequest, DecodeStreamRequest__Output as _pipeserve_v1_DecodeStreamRequest__Output } from './pipeserve/v1/DecodeStreamRequest';
import type { DecodeStreamResponse as _pipeserve_v1_DecodeStreamResponse, DecodeStreamResponse__Output as _pipeserve_v1_DecodeStreamResponse__Output } from './pipeserve/v1/DecodeStreamResponse';
import type { EncodeRequest as _pipeserve_v1_EncodeRequest, EncodeRequest__Output as _pipeserve_v1_EncodeRequest__Output } from './pipeserve/v1/EncodeRequest';
import type { EncodeResponse as _pipeserve_v1_EncodeResponse, EncodeResponse__Output as _pipeserve_v1_EncodeResponse__Output } from './pipeserve/v1/EncodeResponse';
import type { RenderChatRequest as _pipeserve_v1_RenderChatRequest, RenderChatRequest__Output as _pipeserve_v1_RenderChatRequest__Output } from './pipeserve/v1/RenderChatRequest';
import type { RenderChatResponse as _pipeserve_v1_RenderChatResponse, RenderChatResponse__Output as _pipeserve_v1_RenderChatResponse__Output } from './pipeserve/v1/RenderChatResponse';
import type { TokenizerClient as _pipeserve_v1_TokenizerClient, TokenizerDefinition as _pipeserve_v1_TokenizerDefinition } from './pipeserve/v1/Tokenizer';

type SubtypeConstructor<Constructor extends new (...args: any) => any, Subtype> = {
  new(...args: ConstructorParameters<Constructor>): Subtype;
};

export interface ProtoGrpcType {
  pipeserve: {
    v1: {
      ChatMessage: MessageTypeDefinition<_pipeserve_v1_ChatMessage, _pipeserve_v1_ChatMessage__Output>
      DecodeRequest: MessageTypeDefinition<_pipeserve_v1_DecodeRequest, _pipeserve_v1_DecodeRequest__Output>
      DecodeResponse: MessageTypeDefinition<_pipeserve_v1_DecodeResponse, _pipeserve_v1_DecodeResponse__Output>
      DecodeStreamRequest: MessageTypeDefinition<_pipeserve_v1_DecodeStreamRequest, _pipeserve_v1_DecodeStreamRequest__Output>
      DecodeStreamResponse: MessageTypeDefinition<_pipeserve_v1_DecodeStreamResponse, _pipeserve_v1_DecodeStreamResponse__Output>
      EncodeRequest: MessageTypeDefinition<_pipeserve_v1_EncodeRequest, _pipeserve_v1_EncodeRequest__Output>
      EncodeResponse: MessageTypeDefinition<_pipeserve_v1_EncodeResponse, _pipeserve_v1_EncodeResponse__Output>
      RenderChatRequest: MessageTypeDefinition<_pipeserve_v1_RenderChatRequest, _pipeserve_v1_RenderChatRequest__Output>
      RenderChatResponse: MessageTypeDefinition<_pipeserve_v1_RenderChatResponse, _pipeserve_v1_RenderChatResponse__Output>
      Tokenizer: SubtypeConstructor<typeof grpc.Client, _pipeserve_v1_TokenizerClient> & { service: _pipeserve_v1_TokenizerDefinition }
    }
  }
}

