import { status } from '@grpc/grpc-js';
import type { RequestHandler } from 'express';
import type { GenerateEvent__Output } from '../../protos/generated/pipeserve/v1/GenerateEvent';
import { ServiceError } from '../../shared/errors';
import { GenerationClient, type EncodedPrompt } from './generation-client';
import { parseProcessQuery, parseProcessRequest, type ProcessRequest } from './process-request';
import type { GenerationRouteDeps } from './process-route';
import { toProcessResponse } from './process-response';
import { contextOf } from './request-context';
import { errorBody, sendError } from './send-error';
import { SseStream } from './sse-stream';

/**
 * `POST /api/model/generate` (JSON body) and `GET /api/model/generate` (the same fields as
 * query parameters, for a browser's EventSource): the generation as a text/event-stream of named
 * events, one `token` per generated token, then `done` with the process route's JSON. The 200
 * and the stream headers wait for the coordinator's first event, so a request it refuses at once
 * (full queue, prompt too long) still gets its proper HTTP status; a failure after that arrives as
 * an `error` event.
 *
 * The GET stream's events carry ids. An EventSource reconnects when a stream ends, sending the
 * last id it saw as Last-Event-ID: a generation cannot be resumed, so such a request is answered
 * 204, which tells the EventSource to stop instead of starting the generation again.
 */
export function generateRoute(deps: GenerationRouteDeps, from: 'body' | 'query'): RequestHandler {
  return async (req, res) => {
    const context = contextOf(req);
    if (from === 'query' && req.get('last-event-id') !== undefined) {
      res.status(204).end();
      return;
    }
    const eventId = (name: string | number): string | undefined => (from === 'query' ? `${context.requestId}:${name}` : undefined);
    const deadlineUnixMs = context.receivedAtUnixMs + deps.limits.requestTimeoutMs;
    let closed = false;
    res.once('close', () => {
      closed = true;
    });
    let request: ProcessRequest;
    let prompt: EncodedPrompt;
    try {
      request = from === 'body' ? parseProcessRequest(req.body, deps.limits) : parseProcessQuery(req.query as Record<string, unknown>, deps.limits);
      prompt = await deps.generation.encode(request.text, context.requestId, deadlineUnixMs);
    } catch (error) {
      sendError(res, ServiceError.from(error), context);
      return;
    }
    if (closed) return;

    const call = deps.generation.generate(request, prompt.tokenIds, context.requestId, deadlineUnixMs);
    let stream: SseStream | undefined;
    // Set once the outcome is known (summary sent, failure reported, or client gone): later events change nothing.
    let settled = false;
    let cancelledHere = false;

    res.once('close', () => {
      if (settled) return;
      settled = true;
      // Cancelling the call is what frees the sequence's KV caches in every stage.
      cancelledHere = true;
      call.cancel();
      context.logger.info('client went away; generation cancelled');
    });

    call.on('data', (event: GenerateEvent__Output) => {
      if (settled) return;
      stream ??= SseStream.open(res);
      if (event.token) {
        deps.metrics.countTokens('generated', 1);
        stream.send('token', { index: event.token.index, token_id: event.token.token_id, text: event.token.text }, eventId(event.token.index));
      } else if (event.summary) {
        settled = true;
        deps.metrics.countTokens('prompt', event.summary.prompt_tokens);
        const totalMs = performance.now() - context.startedAt;
        stream.send('done', toProcessResponse(event.summary, { requestId: context.requestId, tokenizeMs: prompt.tokenizeMs, totalMs, metadata: request.metadata }), eventId('done'));
        stream.end();
      }
    });
    call.on('error', (error: unknown) => fail(GenerationClient.coordinatorError(error, cancelledHere)));
    call.on('end', () => fail(new ServiceError(status.INTERNAL, 'coordinator: the stream ended without a summary')));

    function fail(error: ServiceError): void {
      if (settled) return;
      settled = true;
      if (stream === undefined) {
        sendError(res, error, context);
        return;
      }
      context.logger.error('stream failed', { code: status[error.code], error: error.message });
      stream.send('error', errorBody(error, context.requestId), eventId('error'));
      stream.end();
    }
  };
}
