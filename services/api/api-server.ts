import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { Express } from 'express';
import type { Limits } from '../../shared/config';

/** How often Node checks the header and request timeouts: its default (30 s) would let a slow client stay four times longer than a 10 s limit. */
const TIMEOUT_CHECK_INTERVAL_MS = 1_000;

/** Node's own answers to a request it cannot parse, as JSON like every other error of the api. */
const CLIENT_ERROR_ANSWERS: Readonly<Record<string, readonly [number, string, string]>> = {
  HPE_HEADER_OVERFLOW: [431, 'Request Header Fields Too Large', 'the request headers are too large'],
  ERR_HTTP_REQUEST_TIMEOUT: [408, 'Request Timeout', 'the request was not received in time'],
};

/**
 * The api's HTTP server: a client has `httpHeadersTimeoutMs` to send its headers and
 * `httpRequestTimeoutMs` for the whole request (headers and body), so a slow sender cannot hold a
 * connection for minutes (a response may then stream for as long as its generation runs). A
 * request Node cannot even parse (bad header bytes, a header too large) is answered with a JSON
 * error and the connection closed.
 */
export function createApiServer(app: Express, limits: Pick<Limits, 'httpHeadersTimeoutMs' | 'httpRequestTimeoutMs'>): http.Server {
  const server = http.createServer(
    {
      headersTimeout: limits.httpHeadersTimeoutMs,
      requestTimeout: Math.max(limits.httpRequestTimeoutMs, limits.httpHeadersTimeoutMs),
      connectionsCheckingInterval: TIMEOUT_CHECK_INTERVAL_MS,
    },
    app,
  );
  server.on('clientError', (error: NodeJS.ErrnoException, socket) => {
    // As Node's own handler does: answer only where no response has started on the socket.
    if (!socket.writable || (socket as { _httpMessage?: { headersSent?: boolean } })._httpMessage?.headersSent === true) {
      socket.destroy();
      return;
    }
    const [code, reason, message] = CLIENT_ERROR_ANSWERS[error.code ?? ''] ?? [400, 'Bad Request', 'the request is not valid HTTP'];
    const requestId = randomUUID();
    const body = JSON.stringify({ error: { code: code === 408 ? 'DEADLINE_EXCEEDED' : 'INVALID_ARGUMENT', message, request_id: requestId } });
    socket.end(
      `HTTP/1.1 ${code} ${reason}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
        `X-Request-Id: ${requestId}\r\nConnection: close\r\n\r\n${body}`,
    );
  });
  return server;
}
