import net from 'node:net';

/**
 * A userspace TCP proxy that holds every chunk for `delayMs` before passing it on, in both
 * directions: a network link's latency on loopback, where `tc netem` is not available. Chunks
 * keep their order (timers of one duration fire in the order they were set).
 */
export class DelayProxy {
  private readonly sockets = new Set<net.Socket>();

  private constructor(private readonly server: net.Server) {}

  static start(listenPort: number, target: { host: string; port: number }, delayMs: number): Promise<DelayProxy> {
    let proxy: DelayProxy | undefined;
    const server = net.createServer((client) => {
      const upstream = net.connect(target.port, target.host);
      for (const socket of [client, upstream]) {
        socket.setNoDelay(true);
        proxy?.sockets.add(socket);
        socket.once('close', () => proxy?.sockets.delete(socket));
      }
      const relay = (from: net.Socket, to: net.Socket): void => {
        from.on('data', (chunk: Buffer) => {
          setTimeout(() => {
            if (!to.destroyed) to.write(chunk);
          }, delayMs);
        });
        from.once('end', () => setTimeout(() => to.end(), delayMs));
        from.once('error', () => to.destroy());
      };
      relay(client, upstream);
      relay(upstream, client);
    });
    proxy = new DelayProxy(server);
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(listenPort, '127.0.0.1', () => resolve(proxy as DelayProxy));
    });
  }

  close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
