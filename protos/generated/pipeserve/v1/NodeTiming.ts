// Original file: protos/coordinator.proto


export interface NodeTiming {
  'node_id'?: (string);
  'stage'?: (number);
  'forward_ms'?: (number | string);
  'steps'?: (number);
}

export interface NodeTiming__Output {
  'node_id': (string);
  'stage': (number);
  'forward_ms': (number);
  'steps': (number);
}
