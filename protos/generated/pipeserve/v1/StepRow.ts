// Original file: protos/node.proto


export interface StepRow {
  'sequence_id'?: (string);
  'token'?: (Buffer | Uint8Array | string);
  'past_length'?: (number);
  'token_ids'?: (number)[];
  'sample'?: (boolean);
  'generated_index'?: (number);
}

export interface StepRow__Output {
  'sequence_id': (string);
  'token': (Buffer);
  'past_length': (number);
  'token_ids': (number)[];
  'sample': (boolean);
  'generated_index': (number);
}
