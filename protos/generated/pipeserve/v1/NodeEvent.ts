// Original file: protos/node.proto

import type { Opened as _pipeserve_v1_Opened, Opened__Output as _pipeserve_v1_Opened__Output } from '../../pipeserve/v1/Opened';
import type { StepResult as _pipeserve_v1_StepResult, StepResult__Output as _pipeserve_v1_StepResult__Output } from '../../pipeserve/v1/StepResult';
import type { StepFailed as _pipeserve_v1_StepFailed, StepFailed__Output as _pipeserve_v1_StepFailed__Output } from '../../pipeserve/v1/StepFailed';
import type { Released as _pipeserve_v1_Released, Released__Output as _pipeserve_v1_Released__Output } from '../../pipeserve/v1/Released';
import type { Rewound as _pipeserve_v1_Rewound, Rewound__Output as _pipeserve_v1_Rewound__Output } from '../../pipeserve/v1/Rewound';

export interface NodeEvent {
  'opened'?: (_pipeserve_v1_Opened | null);
  'result'?: (_pipeserve_v1_StepResult | null);
  'failed'?: (_pipeserve_v1_StepFailed | null);
  'released'?: (_pipeserve_v1_Released | null);
  'rewound'?: (_pipeserve_v1_Rewound | null);
  'kind'?: "opened"|"result"|"failed"|"released"|"rewound";
}

export interface NodeEvent__Output {
  'opened'?: (_pipeserve_v1_Opened__Output | null);
  'result'?: (_pipeserve_v1_StepResult__Output | null);
  'failed'?: (_pipeserve_v1_StepFailed__Output | null);
  'released'?: (_pipeserve_v1_Released__Output | null);
  'rewound'?: (_pipeserve_v1_Rewound__Output | null);
  'kind'?: "opened"|"result"|"failed"|"released"|"rewound";
}
