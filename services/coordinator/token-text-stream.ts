import * as grpc from '@grpc/grpc-js';
import type { DecodeStreamRequest } from '../../protos/generated/pipeserve/v1/DecodeStreamRequest';
import type { DecodeStreamResponse__Output } from '../../protos/generated/pipeserve/v1/DecodeStreamResponse';
import type { TokenizerClient } from '../../protos/generated/pipeserve/v1/Tokenizer';
import { ServiceError } from '../../shared/errors';
import { requestMetadata, untilDeadline } from '../../shared/grpc/channel';

interface Waiter {
  readonly resolve: (text: string) => void;
  readonly reject: (error: ServiceError) => void;
}

/**
 * One sequence's text, decoded incrementally by the tokenizer service's DecodeStream: each
 * push resolves with the text its tokens complete, in order.
 */
export class TokenTextStream {
  private readonly call: grpc.ClientDuplexStream<DecodeStreamRequest, DecodeStreamResponse__Output>;
  private readonly waiters: Waiter[] = [];
  private failure: ServiceError | undefined;
  private cancelledHere = false;

  constructor(client: TokenizerClient, requestId: string, deadlineUnixMs: number) {
    this.call = client.DecodeStream(requestMetadata(requestId), untilDeadline(deadlineUnixMs));
    this.call.on('data', (response: DecodeStreamResponse__Output) => this.waiters.shift()?.resolve(response.text));
    this.call.on('error', (error: Error) => {
      const serviceError = ServiceError.fromCall(error, 'tokenizer', this.cancelledHere);
      this.failure = new ServiceError(serviceError.code, `tokenizer: ${serviceError.message}`, error);
      for (const waiter of this.waiters.splice(0)) waiter.reject(this.failure);
    });
    this.call.on('end', () => {
      const ended = new ServiceError(grpc.status.UNAVAILABLE, 'tokenizer: the decode stream ended early');
      for (const waiter of this.waiters.splice(0)) waiter.reject(ended);
    });
  }

  push(tokenIds: readonly number[], flush = false): Promise<string> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      this.call.write({ token_ids: [...tokenIds], flush });
    });
  }

  close(): void {
    this.call.end();
  }

  cancel(): void {
    this.cancelledHere = true;
    this.call.cancel();
  }
}
