// Original file: protos/coordinator.proto

import type { TokenLogprob as _pipeserve_v1_TokenLogprob, TokenLogprob__Output as _pipeserve_v1_TokenLogprob__Output } from '../../pipeserve/v1/TokenLogprob';

export interface TokenEvent {
  'index'?: (number);
  'token_id'?: (number);
  'logprob'?: (number | string);
  'text'?: (string);
  'top_logprobs'?: (_pipeserve_v1_TokenLogprob)[];
}

export interface TokenEvent__Output {
  'index': (number);
  'token_id': (number);
  'logprob': (number);
  'text': (string);
  'top_logprobs': (_pipeserve_v1_TokenLogprob__Output)[];
}
