// Original file: protos/coordinator.proto

import type { Timings as _pipeserve_v1_Timings, Timings__Output as _pipeserve_v1_Timings__Output } from '../../pipeserve/v1/Timings';

export interface GenerationSummary {
  'request_id'?: (string);
  'token_ids'?: (number)[];
  'text'?: (string);
  'finish_reason'?: (string);
  'prompt_tokens'?: (number);
  'generated_tokens'?: (number);
  'timings'?: (_pipeserve_v1_Timings | null);
}

export interface GenerationSummary__Output {
  'request_id': (string);
  'token_ids': (number)[];
  'text': (string);
  'finish_reason': (string);
  'prompt_tokens': (number);
  'generated_tokens': (number);
  'timings': (_pipeserve_v1_Timings__Output | null);
}
