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

  /**
   * One named event with a single-line JSON `data:` (JSON.stringify never emits a raw newline).
   * An `id` is what a browser's EventSource sends back as Last-Event-ID when it reconnects.
   */
  send(event: string, data: unknown, id?: string): void {
    this.write(`${id === undefined ? '' : `id: ${id}\n`}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  }

  /** An unnamed event (`data:` only), as OpenAI streams chunks: EventSource's `onmessage` receives it. */
  sendData(data: object): void {
    this.write(`data: ${JSON.stringify(data)}\n\n`);
  }

  /** OpenAI's end of stream: `data: [DONE]`. */
  sendDone(): void {
    this.write('data: [DONE]\n\n');
  }

  private write(text: string): void {
    if (this.res.writableEnded || this.res.destroyed) return;
    this.res.write(text);
  }

  end(): void {
    if (!this.res.writableEnded) this.res.end();
  }
}
