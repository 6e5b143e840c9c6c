// Original file: protos/node.proto


export interface Rewound {
  'sequence_id'?: (string);
  'code'?: (number);
  'message'?: (string);
}

export interface Rewound__Output {
  'sequence_id': (string);
  'code': (number);
  'message': (string);
}
