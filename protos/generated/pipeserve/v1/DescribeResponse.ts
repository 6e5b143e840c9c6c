// Original file: protos/node.proto


export interface DescribeResponse {
  'node_id'?: (string);
  'model_name'?: (string);
  'stage'?: (number);
  'stages'?: (number);
  'layer_start'?: (number);
  'layer_end'?: (number);
  'kv_sequences'?: (number);
  'kv_bytes'?: (number | string);
  'kv_budget_bytes'?: (number | string);
  'kv_reserved_bytes'?: (number | string);
  'kv_bytes_per_token'?: (number | string);
  'weights'?: (string);
}

export interface DescribeResponse__Output {
  'node_id': (string);
  'model_name': (string);
  'stage': (number);
  'stages': (number);
  'layer_start': (number);
  'layer_end': (number);
  'kv_sequences': (number);
  'kv_bytes': (number);
  'kv_budget_bytes': (number);
  'kv_reserved_bytes': (number);
  'kv_bytes_per_token': (number);
  'weights': (string);
}
