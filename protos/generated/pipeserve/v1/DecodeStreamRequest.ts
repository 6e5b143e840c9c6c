// Original file: protos/tokenizer.proto


export interface DecodeStreamRequest {
  'token_ids'?: (number)[];
  'flush'?: (boolean);
}

export interface DecodeStreamRequest__Output {
  'token_ids': (number)[];
  'flush': (boolean);
}
