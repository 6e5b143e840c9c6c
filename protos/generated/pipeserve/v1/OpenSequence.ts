// Original file: protos/node.proto

import type { SamplingParameters as _pipeserve_v1_SamplingParameters, SamplingParameters__Output as _pipeserve_v1_SamplingParameters__Output } from '../../pipeserve/v1/SamplingParameters';

export interface OpenSequence {
  'sequence_id'?: (string);
  'request_id'?: (string);
  'token'?: (Buffer | Uint8Array | string);
  'reserve_tokens'?: (number);
  'next_node_id'?: (string);
  'sampling'?: (_pipeserve_v1_SamplingParameters | null);
}

export interface OpenSequence__Output {
  'sequence_id': (string);
  'request_id': (string);
  'token': (Buffer);
  'reserve_tokens': (number);
  'next_node_id': (string);
  'sampling': (_pipeserve_v1_SamplingParameters__Output | null);
}
