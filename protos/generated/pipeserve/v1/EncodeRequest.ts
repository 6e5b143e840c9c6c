// Original file: protos/tokenizer.proto


export interface EncodeRequest {
  'text'?: (string);
}

export interface EncodeRequest__Output {
  'text': (string);
}
