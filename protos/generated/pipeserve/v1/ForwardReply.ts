// Original file: protos/node.proto

import type { Long } from '@grpc/proto-loader';

export interface ForwardReply {
  'forward_id'?: (number | string | Long);
  'code'?: (number);
  'message'?: (string);
}

export interface ForwardReply__Output {
  'forward_id': (number);
  'code': (number);
  'message': (string);
}
