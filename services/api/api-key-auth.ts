import { createHash, timingSafeEqual } from 'node:crypto';
import { status } from '@grpc/grpc-js';
import type { RequestHandler } from 'express';
import { ServiceError } from '../../shared/errors';
import { contextOf } from './request-context';
import { sendError } from './send-error';

/**
 * What anyone may reach without the key: probes and metrics (orchestrators and Prometheus carry
 * no key), the playground and the docs with their assets and the OpenAPI document they read (no
 * secret in any of them; the calls they make need the key).
 */
const PUBLIC_PATHS = new Set(['/', '/health', '/ready', '/metrics', '/docs', '/openapi.json']);
const PUBLIC_PREFIXES = ['/static/', '/docs/assets/'];

/** Express routes `/docs/` as `/docs` (non-strict routing): a trailing slash does not make a public page private. */
export function isPublicPath(path: string): boolean {
  const route = path.length > 1 ? path.replace(/\/+$/, '') : path;
  return PUBLIC_PATHS.has(route) || PUBLIC_PREFIXES.some((prefix) => path.startsWith(prefix));
}

/**
 * `Authorization: Bearer <key>` on every other route, or 401 with `WWW-Authenticate: Bearer`.
 * Keys are compared as SHA-256 digests in constant time: neither their length nor their
 * content leaks through timing.
 */
export function apiKeyAuth(apiKey: string): RequestHandler {
  const expected = digest(apiKey);
  return (req, res, next) => {
    if (isPublicPath(req.path)) {
      next();
      return;
    }
    const match = /^Bearer +(\S+) *$/i.exec(req.get('authorization') ?? '');
    if (match !== null && timingSafeEqual(digest(match[1]), expected)) {
      next();
      return;
    }
    res.setHeader('WWW-Authenticate', 'Bearer');
    const problem = match === null ? 'missing; send Authorization: Bearer <api key>' : 'the API key is not valid';
    sendError(res, new ServiceError(status.UNAUTHENTICATED, `authorization: ${problem}`), contextOf(req), 401);
  };
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}
