// Original file: protos/node.proto

import type { Hop as _pipeserve_v1_Hop, Hop__Output as _pipeserve_v1_Hop__Output } from '../../pipeserve/v1/Hop';
import type { SequenceStep as _pipeserve_v1_SequenceStep, SequenceStep__Output as _pipeserve_v1_SequenceStep__Output } from '../../pipeserve/v1/SequenceStep';
import type { Tensor as _pipeserve_v1_Tensor, Tensor__Output as _pipeserve_v1_Tensor__Output } from '../../pipeserve/v1/Tensor';
import type { Long } from '@grpc/proto-loader';

export interface StepMessage {
  'step_id'?: (number | string | Long);
  'route'?: (_pipeserve_v1_Hop)[];
  'sequences'?: (_pipeserve_v1_SequenceStep)[];
  'hidden_states'?: (_pipeserve_v1_Tensor | null);
  'release_sequence_ids'?: (string)[];
  'deadline_unix_ms'?: (number | string);
  'request_id'?: (string);
}

export interface StepMessage__Output {
  'step_id': (number);
  'route': (_pipeserve_v1_Hop__Output)[];
  'sequences': (_pipeserve_v1_SequenceStep__Output)[];
  'hidden_states': (_pipeserve_v1_Tensor__Output | null);
  'release_sequence_ids': (string)[];
  'deadline_unix_ms': (number);
  'request_id': (string);
}
