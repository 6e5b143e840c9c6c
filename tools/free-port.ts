import net from 'node:net';

/**
 * A loopback port that was free a moment ago (bound to port 0, then released). Another process
 * can take it in between: callers are tests and benchmarks, which retry or fail loudly.
 */
export function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}
