// Original file: protos/node.proto

import type { Hello as _pipeserve_v1_Hello, Hello__Output as _pipeserve_v1_Hello__Output } from '../../pipeserve/v1/Hello';
import type { OpenSequence as _pipeserve_v1_OpenSequence, OpenSequence__Output as _pipeserve_v1_OpenSequence__Output } from '../../pipeserve/v1/OpenSequence';
import type { Step as _pipeserve_v1_Step, Step__Output as _pipeserve_v1_Step__Output } from '../../pipeserve/v1/Step';
import type { ReleaseSequences as _pipeserve_v1_ReleaseSequences, ReleaseSequences__Output as _pipeserve_v1_ReleaseSequences__Output } from '../../pipeserve/v1/ReleaseSequences';
import type { RewindSequence as _pipeserve_v1_RewindSequence, RewindSequence__Output as _pipeserve_v1_RewindSequence__Output } from '../../pipeserve/v1/RewindSequence';

export interface CoordinatorMessage {
  'hello'?: (_pipeserve_v1_Hello | null);
  'open'?: (_pipeserve_v1_OpenSequence | null);
  'step'?: (_pipeserve_v1_Step | null);
  'release'?: (_pipeserve_v1_ReleaseSequences | null);
  'rewind'?: (_pipeserve_v1_RewindSequence | null);
  'kind'?: "hello"|"open"|"step"|"release"|"rewind";
}

export interface CoordinatorMessage__Output {
  'hello'?: (_pipeserve_v1_Hello__Output | null);
  'open'?: (_pipeserve_v1_OpenSequence__Output | null);
  'step'?: (_pipeserve_v1_Step__Output | null);
  'release'?: (_pipeserve_v1_ReleaseSequences__Output | null);
  'rewind'?: (_pipeserve_v1_RewindSequence__Output | null);
  'kind'?: "hello"|"open"|"step"|"release"|"rewind";
}
