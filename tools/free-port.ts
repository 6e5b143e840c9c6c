import net from 'node:net';

/**
 * Ports for test and benchmark systems come from below Linux's ephemeral range (32768-60999),
 * so the source port of some outgoing connection can never take one between the check and
 * the service's own bind.
 */
const FIRST_PORT = 20_000;
const PORT_COUNT = 12_768;
const ATTEMPTS = 50;

/**
 * Ports this process has handed out: a config asks for a dozen ports before any service binds
 * one, so without this two of them could be the same free port (CI saw the api and a node
 * given one port).
 */
const handedOut = new Set<number>();

/**
 * A port free on every interface a moment ago (bound on 0.0.0.0, as the gRPC services bind,
 * then released). Another process can still take it in between: callers are tests and
 * benchmarks, which retry or fail loudly.
 */
export async function freeLoopbackPort(): Promise<number> {
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    const port = FIRST_PORT + Math.floor(Math.random() * PORT_COUNT);
    if (handedOut.has(port)) continue;
    if (await canBind(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error(`no free port found in ${ATTEMPTS} tries between ${FIRST_PORT} and ${FIRST_PORT + PORT_COUNT - 1}`);
}

function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '0.0.0.0', () => server.close(() => resolve(true)));
  });
}
