// Original file: protos/tokenizer.proto


export interface EncodeRequest {
  'text'?: (string);
  'parse_special_tokens'?: (boolean);
}

export interface EncodeRequest__Output {
  'text': (string);
  'parse_special_tokens': (boolean);
}
