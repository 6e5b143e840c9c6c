// Original file: protos/node.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { DescribeRequest as _pipeserve_v1_DescribeRequest, DescribeRequest__Output as _pipeserve_v1_DescribeRequest__Output } from '../../pipeserve/v1/DescribeRequest';
import type { DescribeResponse as _pipeserve_v1_DescribeResponse, DescribeResponse__Output as _pipeserve_v1_DescribeResponse__Output } from '../../pipeserve/v1/DescribeResponse';
import type { StepMessage as _pipeserve_v1_StepMessage, StepMessage__Output as _pipeserve_v1_StepMessage__Output } from '../../pipeserve/v1/StepMessage';
import type { StepResult as _pipeserve_v1_StepResult, StepResult__Output as _pipeserve_v1_StepResult__Output } from '../../pipeserve/v1/StepResult';

export interface ModelNodeClient extends grpc.Client {
  Describe(argument: _pipeserve_v1_DescribeRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_pipeserve_v1_DescribeResponse__Output>): grpc.ClientUnaryCall;
  Describe(argument: _pipeserve_v1_DescribeRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_pipeserve_v1_DescribeResponse__Output>): grpc.ClientUnaryCall;
  Describe(argument: _pipeserve_v1_DescribeRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_pipeserve_v1_DescribeResponse__Output>): grpc.ClientUnaryCall;
  Describe(argument: _pipeserve_v1_DescribeRequest, callback: grpc.requestCallback<_pipeserve_v1_DescribeResponse__Output>): grpc.ClientUnaryCall;
  describe(argument: _pipeserve_v1_DescribeRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_pipeserve_v1_DescribeResponse__Output>): grpc.ClientUnaryCall;
  describe(argument: _pipeserve_v1_DescribeRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_pipeserve_v1_DescribeResponse__Output>): grpc.ClientUnaryCall;
  describe(argument: _pipeserve_v1_DescribeRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_pipeserve_v1_DescribeResponse__Output>): grpc.ClientUnaryCall;
  describe(argument: _pipeserve_v1_DescribeRequest, callback: grpc.requestCallback<_pipeserve_v1_DescribeResponse__Output>): grpc.ClientUnaryCall;
  
  Pipeline(metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientDuplexStream<_pipeserve_v1_StepMessage, _pipeserve_v1_StepResult__Output>;
  Pipeline(options?: grpc.CallOptions): grpc.ClientDuplexStream<_pipeserve_v1_StepMessage, _pipeserve_v1_StepResult__Output>;
  pipeline(metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientDuplexStream<_pipeserve_v1_StepMessage, _pipeserve_v1_StepResult__Output>;
  pipeline(options?: grpc.CallOptions): grpc.ClientDuplexStream<_pipeserve_v1_StepMessage, _pipeserve_v1_StepResult__Output>;
  
}

export interface ModelNodeHandlers extends grpc.UntypedServiceImplementation {
  Describe: grpc.handleUnaryCall<_pipeserve_v1_DescribeRequest__Output, _pipeserve_v1_DescribeResponse>;
  
  Pipeline: grpc.handleBidiStreamingCall<_pipeserve_v1_StepMessage__Output, _pipeserve_v1_StepResult>;
  
}

export interface ModelNodeDefinition extends grpc.ServiceDefinition {
  Describe: MethodDefinition<_pipeserve_v1_DescribeRequest, _pipeserve_v1_DescribeResponse, _pipeserve_v1_DescribeRequest__Output, _pipeserve_v1_DescribeResponse__Output>
  Pipeline: MethodDefinition<_pipeserve_v1_StepMessage, _pipeserve_v1_StepResult, _pipeserve_v1_StepMessage__Output, _pipeserve_v1_StepResult__Output>
}
