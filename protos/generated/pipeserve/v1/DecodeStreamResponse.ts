// Original file: protos/tokenizer.proto


export interface DecodeStreamResponse {
  'text'?: (string);
  'tokens_seen'?: (number);
}

export interface DecodeStreamResponse__Output {
  'text': (string);
  'tokens_seen': (number);
}
