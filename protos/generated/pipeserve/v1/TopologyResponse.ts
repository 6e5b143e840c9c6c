// Original file: protos/coordinator.proto

import type { NodeStatus as _pipeserve_v1_NodeStatus, NodeStatus__Output as _pipeserve_v1_NodeStatus__Output } from '../../pipeserve/v1/NodeStatus';

export interface TopologyResponse {
  'model_name'?: (string);
  'stages'?: (number);
  'nodes'?: (_pipeserve_v1_NodeStatus)[];
}

export interface TopologyResponse__Output {
  'model_name': (string);
  'stages': (number);
  'nodes': (_pipeserve_v1_NodeStatus__Output)[];
}
