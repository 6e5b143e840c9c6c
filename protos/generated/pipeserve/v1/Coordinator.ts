// Original file: protos/coordinator.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { GenerateEvent as _pipeserve_v1_GenerateEvent, GenerateEvent__Output as _pipeserve_v1_GenerateEvent__Output } from '../../pipeserve/v1/GenerateEvent';
import type { GenerateRequest as _pipeserve_v1_GenerateRequest, GenerateRequest__Output as _pipeserve_v1_GenerateRequest__Output } from '../../pipeserve/v1/GenerateRequest';
import type { GenerationSummary as _pipeserve_v1_GenerationSummary, GenerationSummary__Output as _pipeserve_v1_GenerationSummary__Output } from '../../pipeserve/v1/GenerationSummary';
import type { TopologyRequest as _pipeserve_v1_TopologyRequest, TopologyRequest__Output as _pipeserve_v1_TopologyRequest__Output } from '../../pipeserve/v1/TopologyRequest';
import type { TopologyResponse as _pipeserve_v1_TopologyResponse, TopologyResponse__Output as _pipeserve_v1_TopologyResponse__Output } from '../../pipeserve/v1/TopologyResponse';

export interface CoordinatorClient extends grpc.Client {
  Generate(argument: _pipeserve_v1_GenerateRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_pipeserve_v1_GenerateEvent__Output>;
  Generate(argument: _pipeserve_v1_GenerateRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_pipeserve_v1_GenerateEvent__Output>;
  generate(argument: _pipeserve_v1_GenerateRequest, metadata: grpc.Metadata, options?: grpc.CallOptions): grpc.ClientReadableStream<_pipeserve_v1_GenerateEvent__Output>;
  generate(argument: _pipeserve_v1_GenerateRequest, options?: grpc.CallOptions): grpc.ClientReadableStream<_pipeserve_v1_GenerateEvent__Output>;
  
  Process(argument: _pipeserve_v1_GenerateRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_pipeserve_v1_GenerationSummary__Output>): grpc.ClientUnaryCall;
  Process(argument: _pipeserve_v1_GenerateRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_pipeserve_v1_GenerationSummary__Output>): grpc.ClientUnaryCall;
  Process(argument: _pipeserve_v1_GenerateRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_pipeserve_v1_GenerationSummary__Output>): grpc.ClientUnaryCall;
  Process(argument: _pipeserve_v1_GenerateRequest, callback: grpc.requestCallback<_pipeserve_v1_GenerationSummary__Output>): grpc.ClientUnaryCall;
  process(argument: _pipeserve_v1_GenerateRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_pipeserve_v1_GenerationSummary__Output>): grpc.ClientUnaryCall;
  process(argument: _pipeserve_v1_GenerateRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_pipeserve_v1_GenerationSummary__Output>): grpc.ClientUnaryCall;
  process(argument: _pipeserve_v1_GenerateRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_pipeserve_v1_GenerationSummary__Output>): grpc.ClientUnaryCall;
  process(argument: _pipeserve_v1_GenerateRequest, callback: grpc.requestCallback<_pipeserve_v1_GenerationSummary__Output>): grpc.ClientUnaryCall;
  
  Topology(argument: _pipeserve_v1_TopologyRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_pipeserve_v1_TopologyResponse__Output>): grpc.ClientUnaryCall;
  Topology(argument: _pipeserve_v1_TopologyRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_pipeserve_v1_TopologyResponse__Output>): grpc.ClientUnaryCall;
  Topology(argument: _pipeserve_v1_TopologyRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_pipeserve_v1_TopologyResponse__Output>): grpc.ClientUnaryCall;
  Topology(argument: _pipeserve_v1_TopologyRequest, callback: grpc.requestCallback<_pipeserve_v1_TopologyResponse__Output>): grpc.ClientUnaryCall;
  topology(argument: _pipeserve_v1_TopologyRequest, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_pipeserve_v1_TopologyResponse__Output>): grpc.ClientUnaryCall;
  topology(argument: _pipeserve_v1_TopologyRequest, metadata: grpc.Metadata, callback: grpc.requestCallback<_pipeserve_v1_TopologyResponse__Output>): grpc.ClientUnaryCall;
  topology(argument: _pipeserve_v1_TopologyRequest, options: grpc.CallOptions, callback: grpc.requestCallback<_pipeserve_v1_TopologyResponse__Output>): grpc.ClientUnaryCall;
  topology(argument: _pipeserve_v1_TopologyRequest, callback: grpc.requestCallback<_pipeserve_v1_TopologyResponse__Output>): grpc.ClientUnaryCall;
  
}

export interface CoordinatorHandlers extends grpc.UntypedServiceImplementation {
  Generate: grpc.handleServerStreamingCall<_pipeserve_v1_GenerateRequest__Output, _pipeserve_v1_GenerateEvent>;
  
  Process: grpc.handleUnaryCall<_pipeserve_v1_GenerateRequest__Output, _pipeserve_v1_GenerationSummary>;
  
  Topology: grpc.handleUnaryCall<_pipeserve_v1_TopologyRequest__Output, _pipeserve_v1_TopologyResponse>;
  
}

export interface CoordinatorDefinition extends grpc.ServiceDefinition {
  Generate: MethodDefinition<_pipeserve_v1_GenerateRequest, _pipeserve_v1_GenerateEvent, _pipeserve_v1_GenerateRequest__Output, _pipeserve_v1_GenerateEvent__Output>
  Process: MethodDefinition<_pipeserve_v1_GenerateRequest, _pipeserve_v1_GenerationSummary, _pipeserve_v1_GenerateRequest__Output, _pipeserve_v1_GenerationSummary__Output>
  Topology: MethodDefinition<_pipeserve_v1_TopologyRequest, _pipeserve_v1_TopologyResponse, _pipeserve_v1_TopologyRequest__Output, _pipeserve_v1_TopologyResponse__Output>
}
