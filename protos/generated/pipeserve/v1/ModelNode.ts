// Original file: protos/node.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { CoordinatorMessage as _pipeserve_v1_CoordinatorMessage, CoordinatorMessage__Output as _pipeserve_v1_CoordinatorMessage__Output } from '../../pipeserve/v1/CoordinatorMessage';
import type { DescribeRequest as _pipeserve_v1_DescribeRequest, DescribeRequest__Output as _pipeserve_v1_DescribeRequest__Output } from '../../pipeserve/v1/DescribeRequest';
import type { DescribeResponse as _pipeserve_v1_DescribeResponse, DescribeResponse__Output as _pipeserve_v1_DescribeResponse__Output } from '../../pipeserve/v1/DescribeResponse';
import type { ForwardMessage as _pipeserve_v1_ForwardMessage, ForwardMessage__Output as _pipeserve_v1_ForwardMessage__Output } from '../../pipeserve/v1/ForwardMessage';
import type { ForwardReply as _pipeserve_v1_ForwardReply, ForwardReply__Output as _pipeserve_v1_ForwardReply__Output } from '../../pipeserve/v1/ForwardReply';
import type { NodeEvent as _pipeserve_v1_NodeEvent, NodeEvent__Output as _pipeserve_v1_NodeEvent__Output } from '../../pipeserve/v1/NodeEvent';

export interface ModelNodeClient extends grpc.Client {
  Connect(metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientDuplexStream<_pipeserve_v1_CoordinatorMessage, _pipeserve_v1_NodeEvent__Output>;
  Connect(options?: grpc.CallOptions): grpc.ClientDuplexStream<_pipeserve_v1_CoordinatorMessage, _pipeserve_v1_NodeEvent__Output>;
  connect(metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientDuplexStream<_pipeserve_v1_CoordinatorMessage, _pipeserve_v1_NodeEvent__Output>;
  connect(options?: grpc.CallOptions): grpc.ClientDuplexStream<_pipeserve_v1_CoordinatorMessage, _pipeserve_v1_NodeEvent__Output>;
  
  Describe(argument: _pipeserve_v1_DescribeRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_pipeserve_v1_DescribeResponse__Output>): grpc.ClientUnaryCall;
  Describe(argument: _pipeserve_v1_DescribeRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_pipeserve_v1_DescribeResponse__Output>): grpc.ClientUnaryCall;
  Describe(argument: _pipeserve_v1_DescribeRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_pipeserve_v1_DescribeResponse__Output>): grpc.ClientUnaryCall;
  Describe(argument: _pipeserve_v1_DescribeRequest, callback: grpc.requestCallback<_pipeserve_v1_DescribeResponse__Output>): grpc.ClientUnaryCall;
  describe(argument: _pipeserve_v1_DescribeRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_pipeserve_v1_DescribeResponse__Output>): grpc.ClientUnaryCall;
  describe(argument: _pipeserve_v1_DescribeRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_pipeserve_v1_DescribeResponse__Output>): grpc.ClientUnaryCall;
  describe(argument: _pipeserve_v1_DescribeRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_pipeserve_v1_DescribeResponse__Output>): grpc.ClientUnaryCall;
  describe(argument: _pipeserve_v1_DescribeRequest, callback: grpc.requestCallback<_pipeserve_v1_DescribeResponse__Output>): grpc.ClientUnaryCall;
  
  Forward(metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientDuplexStream<_pipeserve_v1_ForwardMessage, _pipeserve_v1_ForwardReply__Output>;
  Forward(options?: grpc.CallOptions): grpc.ClientDuplexStream<_pipeserve_v1_ForwardMessage, _pipeserve_v1_ForwardReply__Output>;
  forward(metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientDuplexStream<_pipeserve_v1_ForwardMessage, _pipeserve_v1_ForwardReply__Output>;
  forward(options?: grpc.CallOptions): grpc.ClientDuplexStream<_pipeserve_v1_ForwardMessage, _pipeserve_v1_ForwardReply__Output>;
  
}

export interface ModelNodeHandlers extends grpc.UntypedServiceImplementation {
  Connect: grpc.handleBidiStreamingCall<_pipeserve_v1_CoordinatorMessage__Output, _pipeserve_v1_NodeEvent>;
  
  Describe: grpc.handleUnaryCall<_pipeserve_v1_DescribeRequest__Output, _pipeserve_v1_DescribeResponse>;
  
  Forward: grpc.handleBidiStreamingCall<_pipeserve_v1_ForwardMessage__Output, _pipeserve_v1_ForwardReply>;
  
}

export interface ModelNodeDefinition extends grpc.ServiceDefinition {
  Connect: MethodDefinition<_pipeserve_v1_CoordinatorMessage, _pipeserve_v1_NodeEvent, _pipeserve_v1_CoordinatorMessage__Output, _pipeserve_v1_NodeEvent__Output>
  Describe: MethodDefinition<_pipeserve_v1_DescribeRequest, _pipeserve_v1_DescribeResponse, _pipeserve_v1_DescribeRequest__Output, _pipeserve_v1_DescribeResponse__Output>
  Forward: MethodDefinition<_pipeserve_v1_ForwardMessage, _pipeserve_v1_ForwardReply, _pipeserve_v1_ForwardMessage__Output, _pipeserve_v1_ForwardReply__Output>
}
