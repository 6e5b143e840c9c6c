import { status } from '@grpc/grpc-js';
import type { Response } from 'express';
import { httpStatusOf, type ServiceError } from '../../shared/errors';
import type { RequestContext } from './request-context';

/** Seconds a client should wait after a 429 when the coordinator gave no hint of its own. */
export const RETRY_AFTER_SECONDS = 1;

/** Retry-After in whole seconds: the coordinator's hint (from its queue's drain rate), rounded up. */
export function retryAfterSeconds(error: ServiceError): number {
  return error.retryAfterMs === undefined ? RETRY_AFTER_SECONDS : Math.max(1, Math.ceil(error.retryAfterMs / 1000));
}

/** `{ "error": { "code": "<grpc status name>", "message": "...", "request_id": "..." } }` */
export interface ErrorBody {
  readonly error: { readonly code: string; readonly message: string; readonly request_id: string };
}

export function errorBody(error: ServiceError, requestId: string): ErrorBody {
  return { error: { code: status[error.code] ?? 'UNKNOWN', message: error.message, request_id: requestId } };
}

/**
 * Logs a failed request (warn for the client's mistakes, error for ours) and answers it as JSON
 * with the HTTP status that `httpStatusOf` maps its gRPC code to. A response already under way
 * (a stream) or abandoned by its client gets nothing more.
 */
export function sendError(res: Response, error: ServiceError, context: RequestContext): void {
  const httpStatus = httpStatusOf(error.code);
  const fields = { code: status[error.code], error: error.message, http_status: httpStatus };
  if (httpStatus >= 500) context.logger.error('request failed', fields);
  else context.logger.warn('request failed', fields);
  if (res.headersSent || res.destroyed) return;
  if (error.code === status.RESOURCE_EXHAUSTED) res.setHeader('Retry-After', String(retryAfterSeconds(error)));
  res.status(httpStatus).json(errorBody(error, context.requestId));
}
