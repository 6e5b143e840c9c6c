import * as grpc from '@grpc/grpc-js';
import type { DecodeStreamRequest__Output } from '../../protos/generated/pipeserve/v1/DecodeStreamRequest';
import type { TokenizerClient, TokenizerHandlers } from '../../protos/generated/pipeserve/v1/Tokenizer';
import { TokenTextStream } from '../../services/coordinator/token-text-stream';
import { ServiceError } from '../../shared/errors';
import { createClient, startServer, type RunningServer } from '../../shared/grpc/channel';
import { protos } from '../../shared/grpc/proto-loader';

/** Short, so the graceful shutdown gives up on the open stream and force-closes it, as the tokenizer's SIGTERM handler does after 5 s. */
const SHUTDOWN_GRACE_MS = 100;
const STREAM_DEADLINE_MS = 60_000;

/** A tokenizer whose DecodeStream answers the first message only: later pushes stay pending. */
function answeringOnceHandlers(): TokenizerHandlers {
  const unused = (_call: unknown, callback: grpc.sendUnaryData<never>): void => callback({ code: grpc.status.UNIMPLEMENTED });
  return {
    Encode: unused,
    Decode: unused,
    RenderChat: unused,
    DecodeStream: (call) => {
      let answered = 0;
      call.on('data', (request: DecodeStreamRequest__Output) => {
        if (answered++ === 0) call.write({ text: `t${request.token_ids.join(',')}`, tokens_seen: request.token_ids.length });
      });
      call.on('end', () => call.end());
      call.on('error', () => undefined);
    },
  };
}

async function startTokenizer(): Promise<{ server: RunningServer; client: TokenizerClient }> {
  const server = await startServer('127.0.0.1:0', [
    { name: 'pipeserve.v1.Tokenizer', definition: protos().tokenizer.pipeserve.v1.Tokenizer.service, implementation: answeringOnceHandlers() },
  ]);
  return { server, client: createClient(protos().tokenizer.pipeserve.v1.Tokenizer, `127.0.0.1:${server.port}`) };
}

async function rejectionOf(promise: Promise<unknown>): Promise<ServiceError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(ServiceError);
    return error as ServiceError;
  }
  throw new Error('the promise resolved');
}

describe('TokenTextStream', () => {
  it('a tokenizer that shuts down mid-stream fails pending and later pushes with UNAVAILABLE, not CANCELLED', async () => {
    const { server, client } = await startTokenizer();
    try {
      const stream = new TokenTextStream(client, 'r1', Date.now() + STREAM_DEADLINE_MS);
      expect(await stream.push([7])).toBe('t7');
      const pending = rejectionOf(stream.push([8]));
      await server.shutdown(SHUTDOWN_GRACE_MS);
      const failure = await pending;
      expect(grpc.status[failure.code]).toBe('UNAVAILABLE');
      expect(failure.message).toMatch(/^tokenizer: the tokenizer closed the call/);
      const later = await rejectionOf(stream.push([9]));
      expect(grpc.status[later.code]).toBe('UNAVAILABLE');
    } finally {
      client.close();
    }
  });

  it('a stream this side cancels fails with CANCELLED', async () => {
    const { server, client } = await startTokenizer();
    try {
      const stream = new TokenTextStream(client, 'r2', Date.now() + STREAM_DEADLINE_MS);
      expect(await stream.push([1])).toBe('t1');
      const pending = rejectionOf(stream.push([2]));
      stream.cancel();
      expect(grpc.status[(await pending).code]).toBe('CANCELLED');
    } finally {
      client.close();
      await server.shutdown(0);
    }
  });
});
