// Original file: protos/tokenizer.proto


export interface EncodeResponse {
  'token_ids'?: (number)[];
}

export interface EncodeResponse__Output {
  'token_ids': (number)[];
}
