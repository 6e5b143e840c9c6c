// Original file: protos/node.proto


export interface Released {
  'sequence_ids'?: (string)[];
}

export interface Released__Output {
  'sequence_ids': (string)[];
}
