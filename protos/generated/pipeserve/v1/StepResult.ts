// Original file: protos/node.proto

import type { SampledToken as _pipeserve_v1_SampledToken, SampledToken__Output as _pipeserve_v1_SampledToken__Output } from '../../pipeserve/v1/SampledToken';
import type { StageTiming as _pipeserve_v1_StageTiming, StageTiming__Output as _pipeserve_v1_StageTiming__Output } from '../../pipeserve/v1/StageTiming';
import type { Long } from '@grpc/proto-loader';

export interface StepResult {
  'step_id'?: (number | string | Long);
  'tokens'?: (_pipeserve_v1_SampledToken)[];
  'timings'?: (_pipeserve_v1_StageTiming)[];
}

export interface StepResult__Output {
  'step_id': (number);
  'tokens': (_pipeserve_v1_SampledToken__Output)[];
  'timings': (_pipeserve_v1_StageTiming__Output)[];
}
