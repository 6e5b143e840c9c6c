// Original file: protos/node.proto

import type { StepRow as _pipeserve_v1_StepRow, StepRow__Output as _pipeserve_v1_StepRow__Output } from '../../pipeserve/v1/StepRow';
import type { Tensor as _pipeserve_v1_Tensor, Tensor__Output as _pipeserve_v1_Tensor__Output } from '../../pipeserve/v1/Tensor';
import type { StageTiming as _pipeserve_v1_StageTiming, StageTiming__Output as _pipeserve_v1_StageTiming__Output } from '../../pipeserve/v1/StageTiming';
import type { Long } from '@grpc/proto-loader';

export interface Step {
  'step_id'?: (number | string | Long);
  'rows'?: (_pipeserve_v1_StepRow)[];
  'hidden_states'?: (_pipeserve_v1_Tensor | null);
  'timeout_ms'?: (number);
  'request_id'?: (string);
  'timings'?: (_pipeserve_v1_StageTiming)[];
  'fill_only'?: (boolean);
}

export interface Step__Output {
  'step_id': (number);
  'rows': (_pipeserve_v1_StepRow__Output)[];
  'hidden_states': (_pipeserve_v1_Tensor__Output | null);
  'timeout_ms': (number);
  'request_id': (string);
  'timings': (_pipeserve_v1_StageTiming__Output)[];
  'fill_only': (boolean);
}
