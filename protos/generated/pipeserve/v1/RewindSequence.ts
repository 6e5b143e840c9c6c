// Original file: protos/node.proto

import type { Long } from '@grpc/proto-loader';

export interface RewindSequence {
  'sequence_id'?: (string);
  'token'?: (Buffer | Uint8Array | string);
  'length'?: (number);
  'next_node_id'?: (string);
  'refill'?: (boolean);
  'step_id'?: (number | string | Long);
  'history'?: (number)[];
  'timeout_ms'?: (number);
  'request_id'?: (string);
}

export interface RewindSequence__Output {
  'sequence_id': (string);
  'token': (Buffer);
  'length': (number);
  'next_node_id': (string);
  'refill': (boolean);
  'step_id': (number);
  'history': (number)[];
  'timeout_ms': (number);
  'request_id': (string);
}
