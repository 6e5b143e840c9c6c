// Original file: protos/coordinator.proto


export interface NodeStatus {
  'node_id'?: (string);
  'address'?: (string);
  'stage'?: (number);
  'serving'?: (boolean);
  'detail'?: (string);
}

export interface NodeStatus__Output {
  'node_id': (string);
  'address': (string);
  'stage': (number);
  'serving': (boolean);
  'detail': (string);
}
