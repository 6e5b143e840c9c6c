// Original file: protos/node.proto

import type { SamplingParameters as _pipeserve_v1_SamplingParameters, SamplingParameters__Output as _pipeserve_v1_SamplingParameters__Output } from '../../pipeserve/v1/SamplingParameters';

export interface SequenceStep {
  'sequence_id'?: (string);
  'past_length'?: (number);
  'token_ids'?: (number)[];
  'generated_index'?: (number);
  'sampling'?: (_pipeserve_v1_SamplingParameters | null);
  'sample'?: (boolean);
  'reserve_tokens'?: (number);
}

export interface SequenceStep__Output {
  'sequence_id': (string);
  'past_length': (number);
  'token_ids': (number)[];
  'generated_index': (number);
  'sampling': (_pipeserve_v1_SamplingParameters__Output | null);
  'sample': (boolean);
  'reserve_tokens': (number);
}
