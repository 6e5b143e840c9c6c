import { randomUUID } from 'node:crypto';
import type { Request, RequestHandler } from 'express';
import type { Logger } from '../../shared/logger';
import type { ApiMetrics } from './api-metrics';

/** What every handler knows about its request. */
export interface RequestContext {
  readonly requestId: string;
  /** Carries `request_id` on every line. */
  readonly logger: Logger;
  /** Epoch ms of arrival: the request's deadline counts from here. */
  readonly receivedAtUnixMs: number;
  /** performance.now() at arrival, for durations. */
  readonly startedAt: number;
}

/** Ids a client may choose: enough for UUIDs, ULIDs and trace ids, nothing that could forge a log line or header. */
const SANE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

const contexts = new WeakMap<Request, RequestContext>();

/**
 * First middleware of the app: gives the request an id (a sane incoming X-Request-Id, else a
 * random UUID), echoes it in the X-Request-Id response header, and when the response closes
 * logs one line and records the request metrics under the matched route pattern.
 */
export function requestContext(logger: Logger, metrics: ApiMetrics): RequestHandler {
  return (req, res, next) => {
    const incoming = req.get('x-request-id');
    const requestId = incoming !== undefined && SANE_REQUEST_ID.test(incoming) ? incoming : randomUUID();
    const context: RequestContext = {
      requestId,
      logger: logger.child({ request_id: requestId }),
      receivedAtUnixMs: Date.now(),
      startedAt: performance.now(),
    };
    contexts.set(req, context);
    res.setHeader('X-Request-Id', requestId);
    res.once('close', () => {
      const seconds = (performance.now() - context.startedAt) / 1000;
      const route = req.route !== undefined ? String(req.route.path) : 'unmatched';
      metrics.observeRequest(route, req.method, res.statusCode, seconds);
      context.logger.info('request', {
        method: req.method,
        path: req.path,
        status: res.statusCode,
        duration_ms: Math.round(seconds * 1e6) / 1e3,
        completed: res.writableFinished,
      });
    });
    next();
  };
}

export function contextOf(req: Request): RequestContext {
  const context = contexts.get(req);
  if (context === undefined) throw new Error(`no request context for ${req.method} ${req.path}: requestContext must be the first middleware`);
  return context;
}
