import net from 'node:net';

/**
 * A userspace TCP proxy that holds every chunk for `delayMs` before passing it on, in both
 * directions: a network link's latency on loopback, where `tc netem` is not available. Chunks
 * keep their order, and the end of a stream comes after its last chunk.
 */
export class DelayProxy {
  private readonly sockets = new Set<net.Socket>();
  /** Chunks passed on and the time they were held in all, since the start or the last reset. */
  private held = { chunks: 0, totalMs: 0 };

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
        // One queue per direction, drained in order when each chunk is due: Node's timers count
        // from the event loop's cached clock, which can run a millisecond behind, so a drain that
        // comes early waits again for the rest instead of passing a chunk on too soon.
        const queue: { readonly chunk: Buffer | 'end'; readonly arrived: number }[] = [];
        let timer: NodeJS.Timeout | undefined;
        const drain = (): void => {
          timer = undefined;
          const now = performance.now();
          while (queue.length > 0 && now - queue[0].arrived >= delayMs) {
            const { chunk, arrived } = queue.shift() as (typeof queue)[number];
            if (to.destroyed) continue;
            if (chunk === 'end') {
              to.end();
              continue;
            }
            to.write(chunk);
            proxy?.record(now - arrived);
          }
          if (queue.length > 0) timer = setTimeout(drain, Math.max(1, Math.ceil(delayMs - (now - queue[0].arrived))));
        };
        const hold = (chunk: Buffer | 'end'): void => {
          queue.push({ chunk, arrived: performance.now() });
          timer ??= setTimeout(drain, delayMs);
        };
        from.on('data', (chunk: Buffer) => hold(chunk));
        from.once('end', () => hold('end'));
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

  /**
   * How long chunks were really held, on average: at least the delay asked, more by as much as
   * the timers of this process fire late (Node's are in whole ms, behind whatever else it runs).
   */
  heldDelay(): { readonly chunks: number; readonly meanMs: number } {
    return { chunks: this.held.chunks, meanMs: this.held.chunks === 0 ? 0 : this.held.totalMs / this.held.chunks };
  }

  resetHeldDelay(): void {
    this.held = { chunks: 0, totalMs: 0 };
  }

  private record(ms: number): void {
    this.held.chunks += 1;
    this.held.totalMs += ms;
  }

  close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
