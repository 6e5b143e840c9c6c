// Original file: protos/node.proto


export interface Hop {
  'node_id'?: (string);
  'address'?: (string);
}

export interface Hop__Output {
  'node_id': (string);
  'address': (string);
}
