// Original file: protos/node.proto


export interface StageTiming {
  'node_id'?: (string);
  'stage'?: (number);
  'forward_ms'?: (number | string);
  'rows'?: (number);
}

export interface StageTiming__Output {
  'node_id': (string);
  'stage': (number);
  'forward_ms': (number);
  'rows': (number);
}
