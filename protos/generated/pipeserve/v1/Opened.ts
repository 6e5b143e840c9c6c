// Original file: protos/node.proto


export interface Opened {
  'sequence_id'?: (string);
  'code'?: (number);
  'message'?: (string);
  'reserved_bytes'?: (number | string);
}

export interface Opened__Output {
  'sequence_id': (string);
  'code': (number);
  'message': (string);
  'reserved_bytes': (number);
}
