import type * as grpc from '@grpc/grpc-js';
import type { MessageTypeDefinition } from '@grpc/proto-loader';

import type { DescribeRequest as _pipeserve_v1_DescribeRequest, DescribeRequest__Output as _pipeserve_v1_DescribeRequest__Output } from './pipeserve/v1/DescribeRequest';
import type { DescribeResponse as _pipeserve_v1_DescribeResponse, DescribeResponse__Output as _pipeserve_v1_DescribeResponse__Output } from './pipeserve/v1/DescribeResponse';
import type { Hop as _pipeserve_v1_Hop, Hop__Output as _pipeserve_v1_Hop__Output } from './pipeserve/v1/Hop';
import type { ModelNodeClient as _pipeserve_v1_ModelNodeClient, ModelNodeDefinition as _pipeserve_v1_ModelNodeDefinition } from './pipeserve/v1/ModelNode';
import type { SampledToken as _pipeserve_v1_SampledToken, SampledToken__Output as _pipeserve_v1_SampledToken__Output } from './pipeserve/v1/SampledToken';
import type { SamplingParameters as _pipeserve_v1_SamplingParameters, SamplingParameters__Output as _pipeserve_v1_SamplingParameters__Output } from './pipeserve/v1/SamplingParameters';
import type { SequenceStep as _pipeserve_v1_SequenceStep, SequenceStep__Output as _pipeserve_v1_SequenceStep__Output } from './pipeserve/v1/SequenceStep';
import type { StageTiming as _pipeserve_v1_StageTiming, StageTiming__Output as _pipeserve_v1_StageTiming__Output } from './pipeserve/v1/StageTiming';
import type { StepMessage as _pipeserve_v1_StepMessage, StepMessage__Output as _pipeserve_v1_StepMessage__Output } from './pipeserve/v1/StepMessage';
import type { StepResult as _pipeserve_v1_StepResult, StepResult__Output as _pipeserve_v1_StepResult__Output } from './pipeserve/v1/StepResult';
import type { Tensor as _pipeserve_v1_Tensor, Tensor__Output as _pipeserve_v1_Tensor__Output } from './pipeserve/v1/Tensor';

type SubtypeConstructor<Constructor extends new (...args: any) => any, Subtype> = {
  new(...args: ConstructorParameters<Constructor>): Subtype;
};

export interface ProtoGrpcType {
  pipeserve: {
    v1: {
      DescribeRequest: MessageTypeDefinition<_pipeserve_v1_DescribeRequest, _pipeserve_v1_DescribeRequest__Output>
      DescribeResponse: MessageTypeDefinition<_pipeserve_v1_DescribeResponse, _pipeserve_v1_DescribeResponse__Output>
      Hop: MessageTypeDefinition<_pipeserve_v1_Hop, _pipeserve_v1_Hop__Output>
      ModelNode: SubtypeConstructor<typeof grpc.Client, _pipeserve_v1_ModelNodeClient> & { service: _pipeserve_v1_ModelNodeDefinition }
      SampledToken: MessageTypeDefinition<_pipeserve_v1_SampledToken, _pipeserve_v1_SampledToken__Output>
      SamplingParameters: MessageTypeDefinition<_pipeserve_v1_SamplingParameters, _pipeserve_v1_SamplingParameters__Output>
      SequenceStep: MessageTypeDefinition<_pipeserve_v1_SequenceStep, _pipeserve_v1_SequenceStep__Output>
      StageTiming: MessageTypeDefinition<_pipeserve_v1_StageTiming, _pipeserve_v1_StageTiming__Output>
      StepMessage: MessageTypeDefinition<_pipeserve_v1_StepMessage, _pipeserve_v1_StepMessage__Output>
      StepResult: MessageTypeDefinition<_pipeserve_v1_StepResult, _pipeserve_v1_StepResult__Output>
      Tensor: MessageTypeDefinition<_pipeserve_v1_Tensor, _pipeserve_v1_Tensor__Output>
    }
  }
}

