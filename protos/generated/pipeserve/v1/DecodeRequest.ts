// Original file: protos/tokenizer.proto


export interface DecodeRequest {
  'token_ids'?: (number)[];
  'skip_special_tokens'?: (boolean);
}

export interface DecodeRequest__Output {
  'token_ids': (number)[];
  'skip_special_tokens': (boolean);
}
