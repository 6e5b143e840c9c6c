import * as grpc from '@grpc/grpc-js';
import type { MethodDefinition } from '@grpc/proto-loader';

/** Answers in arrival order, awaited one at a time with a bound on each wait. */
export class Inbox<T> {
  private readonly queued: T[] = [];
  private readonly waiting: Array<(answer: T | undefined) => void> = [];
  private closed = false;

  push(answer: T): void {
    const waiter = this.waiting.shift();
    if (waiter !== undefined) waiter(answer);
    else this.queued.push(answer);
  }

  /** No more answers will come: whoever waits gets undefined. */
  close(): void {
    this.closed = true;
    for (const waiter of this.waiting.splice(0)) waiter(undefined);
  }

  /** The next answer; undefined when none came within `timeoutMs` (or none will come). */
  next(timeoutMs: number): Promise<T | undefined> {
    if (this.queued.length > 0) return Promise.resolve(this.queued.shift());
    if (this.closed) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      const done = (answer: T | undefined): void => {
        clearTimeout(timer);
        resolve(answer);
      };
      const timer = setTimeout(() => {
        this.waiting.splice(this.waiting.indexOf(done), 1);
        resolve(undefined);
      }, timeoutMs);
      this.waiting.push(done);
    });
  }
}

/**
 * One bidirectional stream driven step by step by a test: write a message, await the next
 * answer, end and read the status. Answers go to the probe's own inbox, or to one that several
 * probes share (a test that waits for whichever stream answers). The stream has a deadline and
 * every wait a bound, so a server that stays silent fails the test instead of hanging it.
 */
export class StreamProbe<Req, Res, ReqOut, ResOut> {
  private readonly call: grpc.ClientDuplexStream<Buffer, ResOut>;
  private readonly status: Promise<{ code: grpc.status; details: string }>;
  private readonly inbox: Pick<Inbox<ResOut>, 'push' | 'close'>;
  private readonly ownInbox = new Inbox<ResOut>();
  private ended = false;
  /** Messages written so far. */
  sent = 0;

  constructor(
    client: grpc.Client,
    private readonly method: MethodDefinition<Req, Res, ReqOut, ResOut>,
    deadlineMs: number,
    options: { readonly metadata?: grpc.Metadata; readonly inbox?: Pick<Inbox<NoInfer<ResOut>>, 'push' | 'close'> } = {},
  ) {
    this.inbox = options.inbox ?? this.ownInbox;
    const receive = (bytes: Buffer): ResOut => method.responseDeserialize(bytes);
    this.call = client.makeBidiStreamRequest(method.path, (bytes: Buffer) => bytes, receive, options.metadata ?? new grpc.Metadata(), { deadline: Date.now() + deadlineMs });
    this.call.on('data', (answer: ResOut) => this.inbox.push(answer));
    this.call.on('error', () => undefined);
    this.status = new Promise((resolve) => {
      this.call.on('status', (status: grpc.StatusObject) => {
        this.ended = true;
        if (this.inbox === this.ownInbox) this.ownInbox.close();
        resolve({ code: status.code, details: status.details });
      });
    });
  }

  send(message: Req): void {
    this.sent++;
    this.call.write(this.method.requestSerialize(message));
  }

  /** The next answer of this probe's own inbox (undefined: none in time, or the stream ended). */
  next(timeoutMs: number): Promise<ResOut | undefined> {
    return this.ownInbox.next(timeoutMs);
  }

  /** Half-closes the stream and resolves with how it ended. */
  end(): Promise<{ code: grpc.status; details: string }> {
    if (!this.ended) this.call.end();
    return this.status;
  }
}
