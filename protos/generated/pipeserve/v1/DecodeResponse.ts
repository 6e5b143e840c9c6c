// Original file: protos/tokenizer.proto


export interface DecodeResponse {
  'text'?: (string);
}

export interface DecodeResponse__Output {
  'text': (string);
}
