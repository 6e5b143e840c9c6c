import type * as grpc from '@grpc/grpc-js';
import type { CoordinatorMessage } from '../../protos/generated/pipeserve/v1/CoordinatorMessage';
import type { ModelNodeClient } from '../../protos/generated/pipeserve/v1/ModelNode';
import type { NodeEvent__Output } from '../../protos/generated/pipeserve/v1/NodeEvent';
import { requestMetadata } from '../../shared/grpc/channel';

/** How long `next` waits for an event before the test fails. */
export const EVENT_TIMEOUT_MS = 10_000;

/** A raw Connect session, as a coordinator (or an impostor) holds one: send messages, await events. */
export class RawNodeSession {
  private readonly events: NodeEvent__Output[] = [];
  private readonly waiters: (() => void)[] = [];
  readonly call: grpc.ClientDuplexStream<CoordinatorMessage, NodeEvent__Output>;

  constructor(client: ModelNodeClient) {
    this.call = client.Connect(requestMetadata(''));
    this.call.on('data', (event: NodeEvent__Output) => {
      this.events.push(event);
      for (const wake of this.waiters.splice(0)) wake();
    });
    this.call.on('error', () => undefined);
    this.call.write({ hello: { coordinator_id: 'test' } });
  }

  send(message: CoordinatorMessage): void {
    this.call.write(message);
  }

  /** The next event of `kind`, in arrival order. */
  async next<K extends NonNullable<NodeEvent__Output['kind']>>(kind: K): Promise<NonNullable<NodeEvent__Output[K]>> {
    const until = Date.now() + EVENT_TIMEOUT_MS;
    for (;;) {
      const at = this.events.findIndex((e) => e.kind === kind);
      if (at >= 0) return this.events.splice(at, 1)[0][kind] as NonNullable<NodeEvent__Output[K]>;
      if (Date.now() > until) throw new Error(`no ${kind} event within ${EVENT_TIMEOUT_MS} ms`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 100);
      });
    }
  }

  close(): void {
    this.call.end();
  }
}
