// Original file: protos/node.proto


export interface SampledToken {
  'sequence_id'?: (string);
  'token_id'?: (number);
  'logprob'?: (number | string);
}

export interface SampledToken__Output {
  'sequence_id': (string);
  'token_id': (number);
  'logprob': (number);
}
