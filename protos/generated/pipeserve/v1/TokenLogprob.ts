// Original file: protos/token_logprob.proto


export interface TokenLogprob {
  'token_id'?: (number);
  'logprob'?: (number | string);
}

export interface TokenLogprob__Output {
  'token_id': (number);
  'logprob': (number);
}
