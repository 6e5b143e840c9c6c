// Original file: protos/node.proto

import type { TokenLogprob as _pipeserve_v1_TokenLogprob, TokenLogprob__Output as _pipeserve_v1_TokenLogprob__Output } from '../../pipeserve/v1/TokenLogprob';

export interface SampledToken {
  'sequence_id'?: (string);
  'token_id'?: (number);
  'logprob'?: (number | string);
  'top_logprobs'?: (_pipeserve_v1_TokenLogprob)[];
}

export interface SampledToken__Output {
  'sequence_id': (string);
  'token_id': (number);
  'logprob': (number);
  'top_logprobs': (_pipeserve_v1_TokenLogprob__Output)[];
}
