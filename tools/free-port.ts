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
 * A port free on every interface a moment ago (bound on 0.0.0.0, as the gRPC services bind,
 * then released). Another process can still take it in between: callers are tests and
 * benchmarks, which retry or fail loudly.
 */
export async function freeLoopbackPort(): Promise<number> {
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    const port = FIRST_PORT + Math.floor(Math.random() * PORT_COUNT);
    if (await canBind(port)) return port;
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
