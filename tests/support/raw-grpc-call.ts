import * as grpc from '@grpc/grpc-js';
import type { MethodDefinition } from '@grpc/proto-loader';

/** How a call ended, and what the server answered on it before that. */
export interface CallOutcome<Response = unknown> {
  readonly code: grpc.status;
  readonly details: string;
  readonly responses: readonly Response[];
}

export interface RawCallOptions {
  readonly deadlineMs: number;
  readonly metadata?: grpc.Metadata;
  /** Bidi streams: half-close after this many responses (default 0: right after the last request). */
  readonly endAfterResponses?: number;
}

const sendAsIs = (bytes: Buffer): Buffer => bytes;

/**
 * Calls one method of a service definition with request bodies given as bytes (written to the
 * wire unchanged, so they may be anything) and decodes the responses with the method's own
 * deserializer. Every call has a deadline: a server that never answers ends DEADLINE_EXCEEDED.
 */
export function rawCall<Req, Res, ReqOut, ResOut>(
  client: grpc.Client,
  method: MethodDefinition<Req, Res, ReqOut, ResOut>,
  requests: readonly Buffer[],
  options: RawCallOptions,
): Promise<CallOutcome<ResOut>> {
  const metadata = options.metadata ?? new grpc.Metadata();
  const callOptions: grpc.CallOptions = { deadline: Date.now() + options.deadlineMs };
  const receive = (bytes: Buffer): ResOut => method.responseDeserialize(bytes);
  const responses: ResOut[] = [];
  return new Promise((resolve) => {
    const finish = (status: { code: grpc.status; details: string }): void => resolve({ code: status.code, details: status.details, responses });
    if (!method.requestStream && !method.responseStream) {
      client.makeUnaryRequest(method.path, sendAsIs, receive, requests[0] ?? Buffer.alloc(0), metadata, callOptions, (error, response) => {
        if (response !== undefined) responses.push(response);
        finish(error ?? { code: grpc.status.OK, details: '' });
      });
      return;
    }
    if (!method.requestStream) {
      const call = client.makeServerStreamRequest(method.path, sendAsIs, receive, requests[0] ?? Buffer.alloc(0), metadata, callOptions);
      call.on('data', (response: ResOut) => responses.push(response));
      call.on('error', () => undefined);
      call.on('status', finish);
      return;
    }
    const call = client.makeBidiStreamRequest(method.path, sendAsIs, receive, metadata, callOptions);
    const wanted = options.endAfterResponses ?? 0;
    call.on('data', (response: ResOut) => {
      responses.push(response);
      if (responses.length === wanted) call.end();
    });
    call.on('error', () => undefined);
    call.on('status', finish);
    for (const request of requests) call.write(request);
    if (wanted === 0) call.end();
  });
}

/** The bytes of a request message, as the method's own serializer writes them. */
export function encodeRequest<Req, Res, ReqOut, ResOut>(method: MethodDefinition<Req, Res, ReqOut, ResOut>, message: Req): Buffer {
  return method.requestSerialize(message);
}
