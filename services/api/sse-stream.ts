import type { Response } from 'express';

/**
 * A text/event-stream answer. Each event is written as soon as it is sent: no compression
 * middleware sits in front of it, Nagle is off, and proxies are asked not to buffer.
 */
export class SseStream {
  private constructor(private readonly res: Response) {}

  /** Commits the 200 and the event-stream headers. */
  static open(res: Response): SseStream {
    res.status(200);
    res.setHeader('Content-Type', 'text/event-stream; charset=utf-8');
    res.setHeader('Cache-Control', 'no-cache, no-transform');
    res.setHeader('Connection', 'keep-alive');
    res.setHeader('X-Accel-Buffering', 'no');
    res.socket?.setNoDelay(true);
    res.flushHeaders();
    return new SseStream(res);
  }

  /** One `event:` with a single-line JSON `data:` (JSON.stringify never emits a raw newline). */
  send(event: string, data: unknown): void {
    if (this.res.writableEnded || this.res.destroyed) return;
    this.res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  }

  end(): void {
    if (!this.res.writableEnded) this.res.end();
  }
}
