// Original file: protos/coordinator.proto

import type { GenerationParameters as _pipeserve_v1_GenerationParameters, GenerationParameters__Output as _pipeserve_v1_GenerationParameters__Output } from '../../pipeserve/v1/GenerationParameters';

export interface GenerateRequest {
  'request_id'?: (string);
  'prompt_token_ids'?: (number)[];
  'parameters'?: (_pipeserve_v1_GenerationParameters | null);
  'priority'?: (string);
}

export interface GenerateRequest__Output {
  'request_id': (string);
  'prompt_token_ids': (number)[];
  'parameters': (_pipeserve_v1_GenerationParameters__Output | null);
  'priority': (string);
}
