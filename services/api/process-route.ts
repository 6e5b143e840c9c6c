import type { RequestHandler } from 'express';
import type { Limits } from '../../shared/config';
import { ServiceError } from '../../shared/errors';
import type { ApiMetrics } from './api-metrics';
import type { GenerationClient } from './generation-client';
import { parseProcessRequest } from './process-request';
import { toProcessResponse } from './process-response';
import { contextOf } from './request-context';
import { sendError } from './send-error';

export interface GenerationRouteDeps {
  readonly generation: GenerationClient;
  readonly limits: Limits;
  readonly metrics: ApiMetrics;
}

/** `POST /api/model/process`: encode, generate, answer once with the whole completion. */
export function processRoute(deps: GenerationRouteDeps): RequestHandler {
  return async (req, res) => {
    const context = contextOf(req);
    // A client that hangs up stops its generation: the coordinator then frees the sequence's KV caches.
    const clientGone = new AbortController();
    res.once('close', () => {
      if (!res.writableFinished) clientGone.abort();
    });
    try {
      const request = parseProcessRequest(req.body, deps.limits);
      const deadlineUnixMs = context.receivedAtUnixMs + deps.limits.requestTimeoutMs;
      const prompt = await deps.generation.encode(request.text, context.requestId, deadlineUnixMs);
      const summary = await deps.generation.process(request, prompt.tokenIds, context.requestId, deadlineUnixMs, clientGone.signal);
      deps.metrics.countTokens('prompt', summary.prompt_tokens);
      deps.metrics.countTokens('generated', summary.generated_tokens);
      res.json(
        toProcessResponse(summary, {
          requestId: context.requestId,
          tokenizeMs: prompt.tokenizeMs,
          totalMs: performance.now() - context.startedAt,
          metadata: request.metadata,
        }),
      );
    } catch (error) {
      sendError(res, ServiceError.from(error), context);
    }
  };
}
