// Original file: protos/node.proto


export interface ReleaseSequences {
  'sequence_ids'?: (string)[];
  'request_id'?: (string);
}

export interface ReleaseSequences__Output {
  'sequence_ids': (string)[];
  'request_id': (string);
}
