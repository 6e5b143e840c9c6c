// Original file: protos/coordinator.proto

import type { NodeTiming as _pipeserve_v1_NodeTiming, NodeTiming__Output as _pipeserve_v1_NodeTiming__Output } from '../../pipeserve/v1/NodeTiming';

export interface Timings {
  'queue_ms'?: (number | string);
  'time_to_first_token_ms'?: (number | string);
  'total_ms'?: (number | string);
  'nodes'?: (_pipeserve_v1_NodeTiming)[];
}

export interface Timings__Output {
  'queue_ms': (number);
  'time_to_first_token_ms': (number);
  'total_ms': (number);
  'nodes': (_pipeserve_v1_NodeTiming__Output)[];
}
