import type * as grpc from '@grpc/grpc-js';
import type { MessageTypeDefinition } from '@grpc/proto-loader';

import type { TokenLogprob as _pipeserve_v1_TokenLogprob, TokenLogprob__Output as _pipeserve_v1_TokenLogprob__Output } from './pipeserve/v1/TokenLogprob';

type SubtypeConstructor<Constructor extends new (...args: any) => any, Subtype> = {
  new(...args: ConstructorParameters<Constructor>): Subtype;
};

export interface ProtoGrpcType {
  pipeserve: {
    v1: {
      TokenLogprob: MessageTypeDefinition<_pipeserve_v1_TokenLogprob, _pipeserve_v1_TokenLogprob__Output>
    }
  }
}

