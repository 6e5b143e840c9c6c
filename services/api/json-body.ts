import { status } from '@grpc/grpc-js';
import express, { type ErrorRequestHandler, type RequestHandler } from 'express';
import { ServiceError } from '../../shared/errors';
import { jsonNestingDepth, MAX_JSON_DEPTH } from './json-depth';
import { contextOf } from './request-context';
import { sendError } from './send-error';

/** body-parser's error `type` for a body we refuse as too deep (the others are body-parser's own). */
const TOO_DEEP = 'entity.too.deep';

/**
 * The middleware of every route that takes a JSON body: an identity-encoded application/json
 * body of at most `bodyLimitBytes`, nested at most MAX_JSON_DEPTH deep, parsed into req.body.
 * Everything else is refused before the route sees it.
 */
export function jsonBody(bodyLimitBytes: number): RequestHandler[] {
  return [
    requireIdentityEncoding,
    requireJsonContentType,
    express.json({
      limit: bodyLimitBytes,
      type: 'application/json',
      // Any JSON value parses (null, "text", 5 too) so that the route's schema names what is wrong
      // ("body: must be a JSON object"); strict mode called them invalid JSON, which they are not.
      strict: false,
      // Compressed bodies are refused above; never inflate one (a small gzip can expand without bound).
      inflate: false,
      verify: (_req, _res, bytes) => {
        if (jsonNestingDepth(bytes, MAX_JSON_DEPTH) > MAX_JSON_DEPTH) throw Object.assign(new Error(`nested deeper than ${MAX_JSON_DEPTH} levels`), { type: TOO_DEEP });
      },
    }),
  ];
}

/** A Content-Encoding other than identity is 415, with the one encoding accepted (RFC 7694). */
const requireIdentityEncoding: RequestHandler = (req, res, next) => {
  const encoding = req.get('content-encoding')?.trim().toLowerCase();
  if (encoding === undefined || encoding === '' || encoding === 'identity') {
    next();
    return;
  }
  res.setHeader('Accept-Encoding', 'identity');
  const error = new ServiceError(status.INVALID_ARGUMENT, `content-encoding: ${JSON.stringify(encoding.slice(0, 40))} is not supported; send the body uncompressed`);
  sendError(res, error, contextOf(req), 415);
};

const requireJsonContentType: RequestHandler = (req, res, next) => {
  const matched = req.is('application/json');
  if (matched === 'application/json') {
    next();
    return;
  }
  // req.is answers null when the request has no body at all.
  const error =
    matched === null
      ? ServiceError.invalidArgument('body', 'missing; send a JSON object as application/json')
      : ServiceError.invalidArgument('content-type', `must be application/json, got ${(req.get('content-type') ?? 'none').slice(0, 80)}`);
  sendError(res, error, contextOf(req));
};

/** Turns body-parser's errors into 400s that name the body; anything else is ours (500). */
export function bodyErrorHandler(bodyLimitBytes: number): ErrorRequestHandler {
  return (error: unknown, req, res, _next) => {
    const type = typeof error === 'object' && error !== null ? (error as { type?: unknown }).type : undefined;
    const message = error instanceof Error ? error.message : String(error);
    let serviceError: ServiceError;
    if (type === 'entity.too.large') serviceError = ServiceError.invalidArgument('body', `larger than ${bodyLimitBytes} bytes`);
    else if (type === 'entity.parse.failed') serviceError = ServiceError.invalidArgument('body', `invalid JSON: ${message}`);
    else if (type === TOO_DEEP) serviceError = ServiceError.invalidArgument('body', message);
    else if (typeof type === 'string') serviceError = ServiceError.invalidArgument('body', message);
    else serviceError = ServiceError.from(error);
    sendError(res, serviceError, contextOf(req));
  };
}
