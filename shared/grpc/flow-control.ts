import type * as http2 from 'node:http2';
import type * as grpc from '@grpc/grpc-js';

type Http2Server = http2.Http2Server | http2.Http2SecureServer;

/** What grpc-js 1.x keeps per HTTP/2 server it listens with (`Server.http2Servers`, not exported). */
interface ListenerEntry {
  readonly sessions: Set<http2.ServerHttp2Session>;
}

/**
 * Raises the HTTP/2 receive windows of a bound grpc-js server to `windowBytes`, per stream and per
 * connection, for the sessions it has and every later one.
 *
 * grpc-js reads `grpc-node.flow_control_window` for its client transports only (a server-side
 * change, grpc/grpc-node#3058, is not released), so a server keeps HTTP/2's 64 KiB windows, and a
 * node sending a step of 64 rows (192 KiB of GPT-2 hidden states) to the next waits a round trip
 * for every 64 KiB. With 2 ms each way on every node's link, 64 streams lost 18-28 % of their
 * tokens/s that way (two runs); bench/results-link-delay.md has the figures with 16 MiB. grpc-js keeps its
 * HTTP/2 servers in a private map; a grpc-js without it fails here, at start, rather than serving
 * with small windows unnoticed (tests/unit/grpc-flow-control.test.ts checks the windows a peer sees).
 */
export function raiseServerWindows(server: grpc.Server, windowBytes: number): void {
  const listeners = (server as unknown as { readonly http2Servers?: unknown }).http2Servers;
  if (!(listeners instanceof Map)) {
    throw new Error('raiseServerWindows: this @grpc/grpc-js keeps no http2Servers map; limits.flow_control_window_bytes cannot be applied to its servers');
  }
  for (const [listener, entry] of listeners as Map<Http2Server, ListenerEntry>) {
    listener.updateSettings({ initialWindowSize: windowBytes });
    listener.on('session', (session: http2.ServerHttp2Session) => widenConnection(session, windowBytes));
    // Sessions accepted between listening and now get the stream window by a new SETTINGS frame.
    for (const session of entry.sessions) {
      if (session.destroyed) continue;
      session.settings({ initialWindowSize: windowBytes });
      widenConnection(session, windowBytes);
    }
  }
}

function widenConnection(session: http2.Http2Session, windowBytes: number): void {
  if (!session.destroyed) session.setLocalWindowSize(windowBytes);
}
