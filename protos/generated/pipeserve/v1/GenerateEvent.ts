// Original file: protos/coordinator.proto

import type { TokenEvent as _pipeserve_v1_TokenEvent, TokenEvent__Output as _pipeserve_v1_TokenEvent__Output } from '../../pipeserve/v1/TokenEvent';
import type { GenerationSummary as _pipeserve_v1_GenerationSummary, GenerationSummary__Output as _pipeserve_v1_GenerationSummary__Output } from '../../pipeserve/v1/GenerationSummary';

export interface GenerateEvent {
  'token'?: (_pipeserve_v1_TokenEvent | null);
  'summary'?: (_pipeserve_v1_GenerationSummary | null);
  'event'?: "token"|"summary";
}

export interface GenerateEvent__Output {
  'token'?: (_pipeserve_v1_TokenEvent__Output | null);
  'summary'?: (_pipeserve_v1_GenerationSummary__Output | null);
  'event'?: "token"|"summary";
}
