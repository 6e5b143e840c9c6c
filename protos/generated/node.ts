import type * as grpc from '@grpc/grpc-js';
import type { MessageTypeDefinition } from '@grpc/proto-loader';

import type { CoordinatorMessage as _pipeserve_v1_CoordinatorMessage, CoordinatorMessage__Output as _pipeserve_v1_CoordinatorMessage__Output } from './pipeserve/v1/CoordinatorMessage';
import type { DescribeRequest as _pipeserve_v1_DescribeRequest, DescribeRequest__Output as _pipeserve_v1_DescribeRequest__Output } from './pipeserve/v1/DescribeRequest';
import type { DescribeResponse as _pipeserve_v1_DescribeResponse, DescribeResponse__Output as _pipeserve_v1_DescribeResponse__Output } from './pipeserve/v1/DescribeResponse';
import type { ForwardMessage as _pipeserve_v1_ForwardMessage, ForwardMessage__Output as _pipeserve_v1_ForwardMessage__Output } from './pipeserve/v1/ForwardMessage';
import type { ForwardReply as _pipeserve_v1_ForwardReply, ForwardReply__Output as _pipeserve_v1_ForwardReply__Output } from './pipeserve/v1/ForwardReply';
import type { Hello as _pipeserve_v1_Hello, Hello__Output as _pipeserve_v1_Hello__Output } from './pipeserve/v1/Hello';
import type { ModelNodeClient as _pipeserve_v1_ModelNodeClient, ModelNodeDefinition as _pipeserve_v1_ModelNodeDefinition } from './pipeserve/v1/ModelNode';
import type { NodeEvent as _pipeserve_v1_NodeEvent, NodeEvent__Output as _pipeserve_v1_NodeEvent__Output } from './pipeserve/v1/NodeEvent';
import type { OpenSequence as _pipeserve_v1_OpenSequence, OpenSequence__Output as _pipeserve_v1_OpenSequence__Output } from './pipeserve/v1/OpenSequence';
import type { Opened as _pipeserve_v1_Opened, Opened__Output as _pipeserve_v1_Opened__Output } from './pipeserve/v1/Opened';
import type { ReleaseSequences as _pipeserve_v1_ReleaseSequences, ReleaseSequences__Output as _pipeserve_v1_ReleaseSequences__Output } from './pipeserve/v1/ReleaseSequences';
import type { Released as _pipeserve_v1_Released, Released__Output as _pipeserve_v1_Released__Output } from './pipeserve/v1/Released';
import type { RewindSequence as _pipeserve_v1_RewindSequence, RewindSequence__Output as _pipeserve_v1_RewindSequence__Output } from './pipeserve/v1/RewindSequence';
import type { Rewound as _pipeserve_v1_Rewound, Rewound__Output as _pipeserve_v1_Rewound__Output } from './pipeserve/v1/Rewound';
import type { SampledToken as _pipeserve_v1_SampledToken, SampledToken__Output as _pipeserve_v1_SampledToken__Output } from './pipeserve/v1/SampledToken';
import type { SamplingParameters as _pipeserve_v1_SamplingParameters, SamplingParameters__Output as _pipeserve_v1_SamplingParameters__Output } from './pipeserve/v1/SamplingParameters';
import type { StageTiming as _pipeserve_v1_StageTiming, StageTiming__Output as _pipeserve_v1_StageTiming__Output } from './pipeserve/v1/StageTiming';
import type { Step as _pipeserve_v1_Step, Step__Output as _pipeserve_v1_Step__Output } from './pipeserve/v1/Step';
import type { StepFailed as _pipeserve_v1_StepFailed, StepFailed__Output as _pipeserve_v1_StepFailed__Output } from './pipeserve/v1/StepFailed';
import type { StepResult as _pipeserve_v1_StepResult, StepResult__Output as _pipeserve_v1_StepResult__Output } from './pipeserve/v1/StepResult';
import type { StepRow as _pipeserve_v1_StepRow, StepRow__Output as _pipeserve_v1_StepRow__Output } from './pipeserve/v1/StepRow';
import type { Tensor as _pipeserve_v1_Tensor, Tensor__Output as _pipeserve_v1_Tensor__Output } from './pipeserve/v1/Tensor';
import type { TokenLogprob as _pipeserve_v1_TokenLogprob, TokenLogprob__Output as _pipeserve_v1_TokenLogprob__Output } from './pipeserve/v1/TokenLogprob';

type SubtypeConstructor<Constructor extends new (...args: any) => any, Subtype> = {
  new(...args: ConstructorParameters<Constructor>): Subtype;
};

export interface ProtoGrpcType {
  pipeserve: {
    v1: {
      CoordinatorMessage: MessageTypeDefinition<_pipeserve_v1_CoordinatorMessage, _pipeserve_v1_CoordinatorMessage__Output>
      DescribeRequest: MessageTypeDefinition<_pipeserve_v1_DescribeRequest, _pipeserve_v1_DescribeRequest__Output>
      DescribeResponse: MessageTypeDefinition<_pipeserve_v1_DescribeResponse, _pipeserve_v1_DescribeResponse__Output>
      ForwardMessage: MessageTypeDefinition<_pipeserve_v1_ForwardMessage, _pipeserve_v1_ForwardMessage__Output>
      ForwardReply: MessageTypeDefinition<_pipeserve_v1_ForwardReply, _pipeserve_v1_ForwardReply__Output>
      Hello: MessageTypeDefinition<_pipeserve_v1_Hello, _pipeserve_v1_Hello__Output>
      ModelNode: SubtypeConstructor<typeof grpc.Client, _pipeserve_v1_ModelNodeClient> & { service: _pipeserve_v1_ModelNodeDefinition }
      NodeEvent: MessageTypeDefinition<_pipeserve_v1_NodeEvent, _pipeserve_v1_NodeEvent__Output>
      OpenSequence: MessageTypeDefinition<_pipeserve_v1_OpenSequence, _pipeserve_v1_OpenSequence__Output>
      Opened: MessageTypeDefinition<_pipeserve_v1_Opened, _pipeserve_v1_Opened__Output>
      ReleaseSequences: MessageTypeDefinition<_pipeserve_v1_ReleaseSequences, _pipeserve_v1_ReleaseSequences__Output>
      Released: MessageTypeDefinition<_pipeserve_v1_Released, _pipeserve_v1_Released__Output>
      RewindSequence: MessageTypeDefinition<_pipeserve_v1_RewindSequence, _pipeserve_v1_RewindSequence__Output>
      Rewound: MessageTypeDefinition<_pipeserve_v1_Rewound, _pipeserve_v1_Rewound__Output>
      SampledToken: MessageTypeDefinition<_pipeserve_v1_SampledToken, _pipeserve_v1_SampledToken__Output>
      SamplingParameters: MessageTypeDefinition<_pipeserve_v1_SamplingParameters, _pipeserve_v1_SamplingParameters__Output>
      StageTiming: MessageTypeDefinition<_pipeserve_v1_StageTiming, _pipeserve_v1_StageTiming__Output>
      Step: MessageTypeDefinition<_pipeserve_v1_Step, _pipeserve_v1_Step__Output>
      StepFailed: MessageTypeDefinition<_pipeserve_v1_StepFailed, _pipeserve_v1_StepFailed__Output>
      StepResult: MessageTypeDefinition<_pipeserve_v1_StepResult, _pipeserve_v1_StepResult__Output>
      StepRow: MessageTypeDefinition<_pipeserve_v1_StepRow, _pipeserve_v1_StepRow__Output>
      Tensor: MessageTypeDefinition<_pipeserve_v1_Tensor, _pipeserve_v1_Tensor__Output>
      TokenLogprob: MessageTypeDefinition<_pipeserve_v1_TokenLogprob, _pipeserve_v1_TokenLogprob__Output>
    }
  }
}

