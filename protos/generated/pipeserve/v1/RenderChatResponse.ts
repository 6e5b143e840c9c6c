// Original file: protos/tokenizer.proto


export interface RenderChatResponse {
  'text'?: (string);
  'token_ids'?: (number)[];
  'template'?: (string);
}

export interface RenderChatResponse__Output {
  'text': (string);
  'token_ids': (number)[];
  'template': (string);
}
