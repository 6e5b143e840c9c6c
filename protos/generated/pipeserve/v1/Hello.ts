// Original file: protos/node.proto


export interface Hello {
  'coordinator_id'?: (string);
}

export interface Hello__Output {
  'coordinator_id': (string);
}
