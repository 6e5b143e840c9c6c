// Original file: protos/node.proto

import type { Step as _pipeserve_v1_Step, Step__Output as _pipeserve_v1_Step__Output } from '../../pipeserve/v1/Step';
import type { Long } from '@grpc/proto-loader';

export interface ForwardMessage {
  'forward_id'?: (number | string | Long);
  'step'?: (_pipeserve_v1_Step | null);
}

export interface ForwardMessage__Output {
  'forward_id': (number);
  'step': (_pipeserve_v1_Step__Output | null);
}
