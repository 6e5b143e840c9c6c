// Original file: protos/tokenizer.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { DecodeRequest as _pipeserve_v1_DecodeRequest, DecodeRequest__Output as _pipeserve_v1_DecodeRequest__Output } from '../../pipeserve/v1/DecodeRequest';
import type { DecodeResponse as _pipeserve_v1_DecodeResponse, DecodeResponse__Output as _pipeserve_v1_DecodeResponse__Output } from '../../pipeserve/v1/DecodeResponse';
import type { DecodeStreamRequest as _pipeserve_v1_DecodeStreamRequest, DecodeStreamRequest__Output as _pipeserve_v1_DecodeStreamRequest__Output } from '../../pipeserve/v1/DecodeStreamRequest';
import type { DecodeStreamResponse as _pipeserve_v1_DecodeStreamResponse, DecodeStreamResponse__Output as _pipeserve_v1_DecodeStreamResponse__Output } from '../../pipeserve/v1/DecodeStreamResponse';
import type { EncodeRequest as _pipeserve_v1_EncodeRequest, EncodeRequest__Output as _pipeserve_v1_EncodeRequest__Output } from '../../pipeserve/v1/EncodeRequest';
import type { EncodeResponse as _pipeserve_v1_EncodeResponse, EncodeResponse__Output as _pipeserve_v1_EncodeResponse__Output } from '../../pipeserve/v1/EncodeResponse';
import type { RenderChatRequest as _pipeserve_v1_RenderChatRequest, RenderChatRequest__Output as _pipeserve_v1_RenderChatRequest__Output } from '../../pipeserve/v1/RenderChatRequest';
import type { RenderChatResponse as _pipeserve_v1_RenderChatResponse, RenderChatResponse__Output as _pipeserve_v1_RenderChatResponse__Output } from '../../pipeserve/v1/RenderChatResponse';

export interface TokenizerClient extends grpc.Client {
  Decode(argument: _pipeserve_v1_DecodeRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_pipeserve_v1_DecodeResponse__Output>): grpc.ClientUnaryCall;
  Decode(argument: _pipeserve_v1_DecodeRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_pipeserve_v1_DecodeResponse__Output>): grpc.ClientUnaryCall;
  Decode(argument: _pipeserve_v1_DecodeRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_pipeserve_v1_DecodeResponse__Output>): grpc.ClientUnaryCall;
  Decode(argument: _pipeserve_v1_DecodeRequest, callback: grpc.requestCallback<_pipeserve_v1_DecodeResponse__Output>): grpc.ClientUnaryCall;
  decode(argument: _pipeserve_v1_DecodeRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_pipeserve_v1_DecodeResponse__Output>): grpc.ClientUnaryCall;
  decode(argument: _pipeserve_v1_DecodeRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_pipeserve_v1_DecodeResponse__Output>): grpc.ClientUnaryCall;
  decode(argument: _pipeserve_v1_DecodeRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_pipeserve_v1_DecodeResponse__Output>): grpc.ClientUnaryCall;
  decode(argument: _pipeserve_v1_DecodeRequest, callback: grpc.requestCallback<_pipeserve_v1_DecodeResponse__Output>): grpc.ClientUnaryCall;
  
  DecodeStream(metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientDuplexStream<_pipeserve_v1_DecodeStreamRequest, _pipeserve_v1_DecodeStreamResponse__Output>;
  DecodeStream(options?: grpc.CallOptions): grpc.ClientDuplexStream<_pipeserve_v1_DecodeStreamRequest, _pipeserve_v1_DecodeStreamResponse__Output>;
  decodeStream(metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientDuplexStream<_pipeserve_v1_DecodeStreamRequest, _pipeserve_v1_DecodeStreamResponse__Output>;
  decodeStream(options?: grpc.CallOptions): grpc.ClientDuplexStream<_pipeserve_v1_DecodeStreamRequest, _pipeserve_v1_DecodeStreamResponse__Output>;
  
  Encode(argument: _pipeserve_v1_EncodeRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_pipeserve_v1_EncodeResponse__Output>): grpc.ClientUnaryCall;
  Encode(argument: _pipeserve_v1_EncodeRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_pipeserve_v1_EncodeResponse__Output>): grpc.ClientUnaryCall;
  Encode(argument: _pipeserve_v1_EncodeRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_pipeserve_v1_EncodeResponse__Output>): grpc.ClientUnaryCall;
  Encode(argument: _pipeserve_v1_EncodeRequest, callback: grpc.requestCallback<_pipeserve_v1_EncodeResponse__Output>): grpc.ClientUnaryCall;
  encode(argument: _pipeserve_v1_EncodeRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_pipeserve_v1_EncodeResponse__Output>): grpc.ClientUnaryCall;
  encode(argument: _pipeserve_v1_EncodeRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_pipeserve_v1_EncodeResponse__Output>): grpc.ClientUnaryCall;
  encode(argument: _pipeserve_v1_EncodeRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_pipeserve_v1_EncodeResponse__Output>): grpc.ClientUnaryCall;
  encode(argument: _pipeserve_v1_EncodeRequest, callback: grpc.requestCallback<_pipeserve_v1_EncodeResponse__Output>): grpc.ClientUnaryCall;
  
  RenderChat(argument: _pipeserve_v1_RenderChatRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_pipeserve_v1_RenderChatResponse__Output>): grpc.ClientUnaryCall;
  RenderChat(argument: _pipeserve_v1_RenderChatRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_pipeserve_v1_RenderChatResponse__Output>): grpc.ClientUnaryCall;
  RenderChat(argument: _pipeserve_v1_RenderChatRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_pipeserve_v1_RenderChatResponse__Output>): grpc.ClientUnaryCall;
  RenderChat(argument: _pipeserve_v1_RenderChatRequest, callback: grpc.requestCallback<_pipeserve_v1_RenderChatResponse__Output>): grpc.ClientUnaryCall;
  renderChat(argument: _pipeserve_v1_RenderChatRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_pipeserve_v1_RenderChatResponse__Output>): grpc.ClientUnaryCall;
  renderChat(argument: _pipeserve_v1_RenderChatRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_pipeserve_v1_RenderChatResponse__Output>): grpc.ClientUnaryCall;
  renderChat(argument: _pipeserve_v1_RenderChatRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_pipeserve_v1_RenderChatResponse__Output>): grpc.ClientUnaryCall;
  renderChat(argument: _pipeserve_v1_RenderChatRequest, callback: grpc.requestCallback<_pipeserve_v1_RenderChatResponse__Output>): grpc.ClientUnaryCall;
  
}

export interface TokenizerHandlers extends grpc.UntypedServiceImplementation {
  Decode: grpc.handleUnaryCall<_pipeserve_v1_DecodeRequest__Output, _pipeserve_v1_DecodeResponse>;
  
  DecodeStream: grpc.handleBidiStreamingCall<_pipeserve_v1_DecodeStreamRequest__Output, _pipeserve_v1_DecodeStreamResponse>;
  
  Encode: grpc.handleUnaryCall<_pipeserve_v1_EncodeRequest__Output, _pipeserve_v1_EncodeResponse>;
  
  RenderChat: grpc.handleUnaryCall<_pipeserve_v1_RenderChatRequest__Output, _pipeserve_v1_RenderChatResponse>;
  
}

export interface TokenizerDefinition extends grpc.ServiceDefinition {
  Decode: MethodDefinition<_pipeserve_v1_DecodeRequest, _pipeserve_v1_DecodeResponse, _pipeserve_v1_DecodeRequest__Output, _pipeserve_v1_DecodeResponse__Output>
  DecodeStream: MethodDefinition<_pipeserve_v1_DecodeStreamRequest, _pipeserve_v1_DecodeStreamResponse, _pipeserve_v1_DecodeStreamRequest__Output, _pipeserve_v1_DecodeStreamResponse__Output>
  Encode: MethodDefinition<_pipeserve_v1_EncodeRequest, _pipeserve_v1_EncodeResponse, _pipeserve_v1_EncodeRequest__Output, _pipeserve_v1_EncodeResponse__Output>
  RenderChat: MethodDefinition<_pipeserve_v1_RenderChatRequest, _pipeserve_v1_RenderChatResponse, _pipeserve_v1_RenderChatRequest__Output, _pipeserve_v1_RenderChatResponse__Output>
}
