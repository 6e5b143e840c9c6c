import * as grpc from '@grpc/grpc-js';
import type { CoordinatorMessage } from '../../protos/generated/pipeserve/v1/CoordinatorMessage';
import type { ModelNodeClient } from '../../protos/generated/pipeserve/v1/ModelNode';
import type { NodeEvent__Output } from '../../protos/generated/pipeserve/v1/NodeEvent';
import type { OpenSequence } from '../../protos/generated/pipeserve/v1/OpenSequence';
import type { RewindSequence } from '../../protos/generated/pipeserve/v1/RewindSequence';
import type { Step } from '../../protos/generated/pipeserve/v1/Step';
import type { StepFailed__Output } from '../../protos/generated/pipeserve/v1/StepFailed';
import type { StepResult__Output } from '../../protos/generated/pipeserve/v1/StepResult';
import { ServiceError } from '../../shared/errors';
import { createClient, MAX_RECONNECT_BACKOFF_MS, requestMetadata } from '../../shared/grpc/channel';
import { protos } from '../../shared/grpc/proto-loader';
import type { Logger } from '../../shared/logger';
import type { NodeReplica } from '../../shared/node-directory';

/** How long opening a session waits for the channel: one reconnect backoff and a margin. */
export const SESSION_READY_TIMEOUT_MS = MAX_RECONNECT_BACKOFF_MS + 1_000;

/** What a node reports about steps, and a session that ended (the replica is gone, or restarted). */
export interface NodeSessionListener {
  onResult(replicaId: string, result: StepResult__Output): void;
  onFailed(replicaId: string, failed: StepFailed__Output): void;
  onClosed(replicaId: string, error: ServiceError): void;
}

type ConnectCall = grpc.ClientDuplexStream<CoordinatorMessage, NodeEvent__Output>;

interface Waiter<T> {
  readonly resolve: (value: T) => void;
  readonly reject: (error: ServiceError) => void;
  readonly timer: NodeJS.Timeout;
}

/**
 * The coordinator's Connect session with one replica: opens, first-stage steps and releases go
 * out on it; acknowledgements, results and failures come back. Everything the replica holds for
 * this coordinator lives as long as the session: when it breaks, the listener hears of it at
 * once (a killed replica is noticed in milliseconds, not at the next health check), every
 * pending acknowledgement fails, and the next use opens a new session.
 */
export class NodeSession {
  private readonly client: ModelNodeClient;
  private call: ConnectCall | undefined;
  private connecting: Promise<ConnectCall> | undefined;
  private readonly opens = new Map<string, Waiter<void>>();
  private readonly rewinds = new Map<string, Waiter<void>>();
  private readonly releases: Waiter<string[]>[] = [];
  private closed = false;

  constructor(
    readonly replica: NodeReplica,
    private readonly coordinatorId: string,
    private readonly listener: NodeSessionListener,
    private readonly logger: Logger,
  ) {
    this.client = createClient(protos().node.pipeserve.v1.ModelNode, replica.address);
  }

  get connected(): boolean {
    return this.call !== undefined;
  }

  /** Opens a sequence on the replica; resolves when it acknowledges, rejects with its status. */
  open(open: OpenSequence, timeoutMs: number): Promise<void> {
    return this.acknowledged(this.opens, open.sequence_id as string, { open }, 'opening', timeoutMs);
  }

  /** Rewinds a sequence on the replica (a partial replay); resolves when it acknowledges, rejects with its status. */
  rewind(rewind: RewindSequence, timeoutMs: number): Promise<void> {
    return this.acknowledged(this.rewinds, rewind.sequence_id as string, { rewind }, 'rewinding', timeoutMs);
  }

  /** Sends `message` about sequence `id` and waits for the replica's answer to it (settled in `waiters`), at most `timeoutMs`. */
  private acknowledged(waiters: Map<string, Waiter<void>>, id: string, message: CoordinatorMessage, action: string, timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        waiters.delete(id);
        reject(new ServiceError(grpc.status.DEADLINE_EXCEEDED, `${this.replica.id} did not acknowledge ${action} ${id} within ${timeoutMs} ms`));
      }, timeoutMs);
      waiters.set(id, { resolve, reject, timer });
      this.send(message).catch((error: ServiceError) => this.settle(waiters, id, error));
    });
  }

  /** Sends a step into the replica (a first stage); failures of the session come back through the listener. */
  step(step: Step): Promise<void> {
    return this.send({ step });
  }

  /** Releases sequences; resolves with the ids the replica held and freed. */
  release(sequenceIds: readonly string[], requestId: string, timeoutMs: number): Promise<string[]> {
    return new Promise<string[]>((resolve, reject) => {
      const waiter: Waiter<string[]> = {
        resolve,
        reject,
        timer: setTimeout(() => {
          const at = this.releases.indexOf(waiter);
          if (at >= 0) this.releases.splice(at, 1);
          reject(new ServiceError(grpc.status.DEADLINE_EXCEEDED, `${this.replica.id} did not acknowledge a release within ${timeoutMs} ms`));
        }, timeoutMs),
      };
      this.releases.push(waiter);
      this.send({ release: { sequence_ids: [...sequenceIds], request_id: requestId } }).catch((error: ServiceError) => {
        const at = this.releases.indexOf(waiter);
        if (at < 0) return;
        this.releases.splice(at, 1);
        clearTimeout(waiter.timer);
        reject(error);
      });
    });
  }

  close(): void {
    this.closed = true;
    this.failPending(new ServiceError(grpc.status.UNAVAILABLE, `session with ${this.replica.id} closed`));
    this.call?.end();
    this.call = undefined;
    this.client.close();
  }

  private async send(message: CoordinatorMessage): Promise<void> {
    if (this.closed) throw new ServiceError(grpc.status.UNAVAILABLE, `session with ${this.replica.id} is closed`);
    const call = this.call ?? (await this.connect());
    call.write(message);
  }

  private connect(): Promise<ConnectCall> {
    this.connecting ??= new Promise<ConnectCall>((resolve, reject) => {
      this.client.waitForReady(Date.now() + SESSION_READY_TIMEOUT_MS, (error?: Error) => {
        this.connecting = undefined;
        if (this.closed) reject(new ServiceError(grpc.status.UNAVAILABLE, `session with ${this.replica.id} is closed`));
        else if (error !== undefined) reject(new ServiceError(grpc.status.UNAVAILABLE, `${this.replica.id} at ${this.replica.address} is unreachable: ${error.message}`));
        else resolve(this.call ?? this.openCall());
      });
    });
    return this.connecting;
  }

  private openCall(): ConnectCall {
    const call = this.client.Connect(requestMetadata(''));
    this.call = call;
    call.write({ hello: { coordinator_id: this.coordinatorId } });
    call.on('data', (event: NodeEvent__Output) => this.onEvent(event));
    const ended = (error: ServiceError): void => {
      if (this.call !== call) return;
      this.call = undefined;
      this.failPending(error);
      if (!this.closed) this.listener.onClosed(this.replica.id, error);
    };
    call.on('error', (error: Error) => ended(ServiceError.fromCall(error, this.replica.id, this.closed)));
    call.on('end', () => ended(new ServiceError(grpc.status.UNAVAILABLE, `${this.replica.id} ended the session`)));
    return call;
  }

  private onEvent(event: NodeEvent__Output): void {
    switch (event.kind) {
      case 'opened': {
        const opened = event.opened;
        if (!opened) return;
        this.settle(this.opens, opened.sequence_id, opened.code === grpc.status.OK ? undefined : new ServiceError(opened.code as grpc.status, `${this.replica.id}: ${opened.message}`));
        return;
      }
      case 'rewound': {
        const rewound = event.rewound;
        if (!rewound) return;
        this.settle(this.rewinds, rewound.sequence_id, rewound.code === grpc.status.OK ? undefined : new ServiceError(rewound.code as grpc.status, `${this.replica.id}: ${rewound.message}`));
        return;
      }
      case 'result':
        if (event.result) this.listener.onResult(this.replica.id, event.result);
        return;
      case 'failed':
        if (event.failed) this.listener.onFailed(this.replica.id, event.failed);
        return;
      case 'released': {
        const waiter = this.releases.shift();
        if (waiter === undefined) return;
        clearTimeout(waiter.timer);
        waiter.resolve(event.released?.sequence_ids ?? []);
        return;
      }
      default:
        this.logger.warn('node event without a kind', { node_id: this.replica.id });
    }
  }

  private settle(waiters: Map<string, Waiter<void>>, sequenceId: string, error: ServiceError | undefined): void {
    const waiter = waiters.get(sequenceId);
    if (waiter === undefined) return;
    waiters.delete(sequenceId);
    clearTimeout(waiter.timer);
    if (error === undefined) waiter.resolve();
    else waiter.reject(error);
  }

  private failPending(error: ServiceError): void {
    for (const waiters of [this.opens, this.rewinds]) {
      for (const [id, waiter] of waiters) {
        clearTimeout(waiter.timer);
        waiter.reject(error);
        waiters.delete(id);
      }
    }
    for (const waiter of this.releases.splice(0)) {
      clearTimeout(waiter.timer);
      waiter.reject(error);
    }
  }
}
