// Original file: protos/node.proto

import type { Long } from '@grpc/proto-loader';

export interface StepFailed {
  'step_id'?: (number | string | Long);
  'code'?: (number);
  'message'?: (string);
  'node_id'?: (string);
  'unreachable'?: (boolean);
}

export interface StepFailed__Output {
  'step_id': (number);
  'code': (number);
  'message': (string);
  'node_id': (string);
  'unreachable': (boolean);
}
