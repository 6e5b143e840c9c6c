import { status } from '@grpc/grpc-js';
import type { Response } from 'express';
import { httpStatusOf, type ServiceError } from '../../shared/errors';
import { invalidField } from './parse-input';
import type { RequestContext } from './request-context';
import type { OpenAiErrorBody } from './schemas/openai-schemas';
import type { serviceSchemas } from './schemas/service-schemas';
import type { z } from './schemas/zod-openapi';

/** Seconds a client should wait after a 429 when the coordinator gave no hint of its own. */
export const RETRY_AFTER_SECONDS = 1;

/** Retry-After in whole seconds: the coordinator's hint (from its queue's drain rate), rounded up. */
export function retryAfterSeconds(error: ServiceError): number {
  return error.retryAfterMs === undefined ? RETRY_AFTER_SECONDS : Math.max(1, Math.ceil(error.retryAfterMs / 1000));
}
/** Routes under this prefix are OpenAI's API: their errors take OpenAI's shape. */
export const OPENAI_PREFIX = '/v1/';

/** `{ "error": { "code": "<grpc status name>", "message": "...", "request_id": "..." } }` */
export type ErrorBody = z.output<ReturnType<typeof serviceSchemas>['ErrorBody']>;

export function errorBody(error: ServiceError, requestId: string): ErrorBody {
  return { error: { code: status[error.code] ?? 'UNKNOWN', message: error.message, request_id: requestId } };
}

/**
 * OpenAI's error shape: `type` from the HTTP status as OpenAI names its classes, `param` the
 * field at fault when the body's schema named one, `code` OpenAI's where one fits (a model it
 * does not serve, a wrong key, a full queue), else the gRPC status in lower case.
 */
export function openAiErrorBody(error: ServiceError, httpStatus: number): OpenAiErrorBody {
  const param = invalidField(error);
  return { error: { message: error.message, type: openAiType(httpStatus), param, code: openAiCode(error, httpStatus, param) } };
}

/**
 * Logs a failed request (warn for the client's mistakes, error for ours) and answers it as JSON
 * with the HTTP status that `httpStatusOf` maps its gRPC code to, or with `httpStatus` for the
 * conditions of the HTTP edge that have no gRPC status of their own (401, 415). Under /v1/ the
 * body has OpenAI's shape. A response already under way (a stream) or abandoned by its client
 * gets nothing more.
 */
export function sendError(res: Response, error: ServiceError, context: RequestContext, httpStatus = httpStatusOf(error.code)): void {
  const fields = { code: status[error.code], error: error.message, http_status: httpStatus };
  if (httpStatus >= 500) context.logger.error('request failed', fields);
  else context.logger.warn('request failed', fields);
  if (res.headersSent || res.destroyed) return;
  if (error.code === status.RESOURCE_EXHAUSTED) res.setHeader('Retry-After', String(retryAfterSeconds(error)));
  res.status(httpStatus).json(isOpenAiPath(res.req.path) ? openAiErrorBody(error, httpStatus) : errorBody(error, context.requestId));
}

export function isOpenAiPath(path: string): boolean {
  return path.startsWith(OPENAI_PREFIX);
}

function openAiType(httpStatus: number): string {
  if (httpStatus === 401) return 'authentication_error';
  if (httpStatus === 404) return 'not_found_error';
  if (httpStatus === 429) return 'rate_limit_error';
  if (httpStatus === 503) return 'service_unavailable';
  if (httpStatus >= 500) return 'server_error';
  return 'invalid_request_error';
}

function openAiCode(error: ServiceError, httpStatus: number, param: string | null): string {
  if (httpStatus === 401) return 'invalid_api_key';
  if (httpStatus === 415) return 'unsupported_content_encoding';
  if (error.code === status.NOT_FOUND && param === 'model') return 'model_not_found';
  if (error.code === status.RESOURCE_EXHAUSTED) return 'rate_limit_exceeded';
  if (error.code === status.INVALID_ARGUMENT && param !== null) return 'invalid_value';
  return (status[error.code] ?? 'unknown').toLowerCase();
}
