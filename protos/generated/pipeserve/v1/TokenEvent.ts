// Original file: protos/coordinator.proto


export interface TokenEvent {
  'index'?: (number);
  'token_id'?: (number);
  'logprob'?: (number | string);
  'text'?: (string);
}

export interface TokenEvent__Output {
  'index': (number);
  'token_id': (number);
  'logprob': (number);
  'text': (string);
}
