import type * as grpc from '@grpc/grpc-js';
import type { MessageTypeDefinition } from '@grpc/proto-loader';

import type { CoordinatorClient as _pipeserve_v1_CoordinatorClient, CoordinatorDefinition as _pipeserve_v1_CoordinatorDefinition } from './pipeserve/v1/Coordinator';
import type { GenerateEvent as _pipeserve_v1_GenerateEvent, GenerateEvent__Output as _pipeserve_v1_GenerateEvent__Output } from './pipeserve/v1/GenerateEvent';
import type { GenerateRequest as _pipeserve_v1_GenerateRequest, GenerateRequest__Output as _pipeserve_v1_GenerateRequest__Output } from './pipeserve/v1/GenerateRequest';
import type { GenerationParameters as _pipeserve_v1_GenerationParameters, GenerationParameters__Output as _pipeserve_v1_GenerationParameters__Output } from './pipeserve/v1/GenerationParameters';
import type { GenerationSummary as _pipeserve_v1_GenerationSummary, GenerationSummary__Output as _pipeserve_v1_GenerationSummary__Output } from './pipeserve/v1/GenerationSummary';
import type { NodeStatus as _pipeserve_v1_NodeStatus, NodeStatus__Output as _pipeserve_v1_NodeStatus__Output } from './pipeserve/v1/NodeStatus';
import type { NodeTiming as _pipeserve_v1_NodeTiming, NodeTiming__Output as _pipeserve_v1_NodeTiming__Output } from './pipeserve/v1/NodeTiming';
import type { Timings as _pipeserve_v1_Timings, Timings__Output as _pipeserve_v1_Timings__Output } from './pipeserve/v1/Timings';
import type { TokenEvent as _pipeserve_v1_TokenEvent, TokenEvent__Output as _pipeserve_v1_TokenEvent__Output } from './pipeserve/v1/TokenEvent';
import type { TokenLogprob as _pipeserve_v1_TokenLogprob, TokenLogprob__Output as _pipeserve_v1_TokenLogprob__Output } from './pipeserve/v1/TokenLogprob';
import type { TopologyRequest as _pipeserve_v1_TopologyRequest, TopologyRequest__Output as _pipeserve_v1_TopologyRequest__Output } from './pipeserve/v1/TopologyRequest';
import type { TopologyResponse as _pipeserve_v1_TopologyResponse, TopologyResponse__Output as _pipeserve_v1_TopologyResponse__Output } from './pipeserve/v1/TopologyResponse';

type SubtypeConstructor<Constructor extends new (...args: any) => any, Subtype> = {
  new(...args: ConstructorParameters<Constructor>): Subtype;
};

export interface ProtoGrpcType {
  pipeserve: {
    v1: {
      Coordinator: SubtypeConstructor<typeof grpc.Client, _pipeserve_v1_CoordinatorClient> & { service: _pipeserve_v1_CoordinatorDefinition }
      GenerateEvent: MessageTypeDefinition<_pipeserve_v1_GenerateEvent, _pipeserve_v1_GenerateEvent__Output>
      GenerateRequest: MessageTypeDefinition<_pipeserve_v1_GenerateRequest, _pipeserve_v1_GenerateRequest__Output>
      GenerationParameters: MessageTypeDefinition<_pipeserve_v1_GenerationParameters, _pipeserve_v1_GenerationParameters__Output>
      GenerationSummary: MessageTypeDefinition<_pipeserve_v1_GenerationSummary, _pipeserve_v1_GenerationSummary__Output>
      NodeStatus: MessageTypeDefinition<_pipeserve_v1_NodeStatus, _pipeserve_v1_NodeStatus__Output>
      NodeTiming: MessageTypeDefinition<_pipeserve_v1_NodeTiming, _pipeserve_v1_NodeTiming__Output>
      Timings: MessageTypeDefinition<_pipeserve_v1_Timings, _pipeserve_v1_Timings__Output>
      TokenEvent: MessageTypeDefinition<_pipeserve_v1_TokenEvent, _pipeserve_v1_TokenEvent__Output>
      TokenLogprob: MessageTypeDefinition<_pipeserve_v1_TokenLogprob, _pipeserve_v1_TokenLogprob__Output>
      TopologyRequest: MessageTypeDefinition<_pipeserve_v1_TopologyRequest, _pipeserve_v1_TopologyRequest__Output>
      TopologyResponse: MessageTypeDefinition<_pipeserve_v1_TopologyResponse, _pipeserve_v1_TopologyResponse__Output>
    }
  }
}

