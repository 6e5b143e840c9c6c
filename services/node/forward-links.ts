import * as grpc from '@grpc/grpc-js';
import type { ForwardMessage } from '../../protos/generated/pipeserve/v1/ForwardMessage';
import type { ForwardReply__Output } from '../../protos/generated/pipeserve/v1/ForwardReply';
import type { ModelNodeClient } from '../../protos/generated/pipeserve/v1/ModelNode';
import { ServiceError } from '../../shared/errors';
import { createClient, MAX_RECONNECT_BACKOFF_MS, requestMetadata } from '../../shared/grpc/channel';
import { protos } from '../../shared/grpc/proto-loader';
import type { Logger } from '../../shared/logger';
import type { NodeDirectory } from '../../shared/node-directory';

/**
 * How long opening a stream waits for the channel: longer than one reconnect backoff, so a
 * stage that has just restarted is reached, and short enough that a dead one fails fast.
 */
export const LINK_READY_TIMEOUT_MS = MAX_RECONNECT_BACKOFF_MS + 1_000;

type ForwardStream = grpc.ClientDuplexStream<ForwardMessage, ForwardReply__Output>;

/** What a link reports back: a step the next node could not attribute, and a stream that broke. */
export interface ForwardLinkListener {
  onReply(peerId: string, reply: ForwardReply__Output): void;
}

/**
 * The sending end of one long-lived Forward stream to the next stage's replica. Messages keep
 * the order of the calls; `send` resolves once the message is written, or rejects with
 * UNAVAILABLE when the peer cannot be reached (the caller reports that to the step's owner).
 */
class ForwardLink {
  private readonly client: ModelNodeClient;
  private stream: ForwardStream | undefined;
  private opening: Promise<ForwardStream> | undefined;
  private closed = false;

  constructor(
    readonly peerId: string,
    readonly address: string,
    private readonly listener: ForwardLinkListener,
    private readonly logger: Logger,
  ) {
    this.client = createClient(protos().node.pipeserve.v1.ModelNode, address);
  }

  send(message: ForwardMessage): Promise<void> {
    if (this.closed) return Promise.reject(new ServiceError(grpc.status.UNAVAILABLE, `link to ${this.peerId} is closed`));
    if (this.stream !== undefined && this.opening === undefined) {
      this.stream.write(message);
      return Promise.resolve();
    }
    this.opening ??= this.openWhenReady().finally(() => {
      this.opening = undefined;
    });
    return this.opening.then((stream) => {
      stream.write(message);
    });
  }

  close(): void {
    this.closed = true;
    this.stream?.end();
    this.stream = undefined;
    this.client.close();
  }

  private openWhenReady(): Promise<ForwardStream> {
    return new Promise<ForwardStream>((resolve, reject) => {
      this.client.waitForReady(Date.now() + LINK_READY_TIMEOUT_MS, (error?: Error) => {
        if (this.closed) reject(new ServiceError(grpc.status.UNAVAILABLE, `link to ${this.peerId} is closed`));
        else if (error !== undefined) reject(new ServiceError(grpc.status.UNAVAILABLE, `${this.peerId} at ${this.address} is unreachable: ${error.message}`));
        else resolve(this.openStream());
      });
    });
  }

  private openStream(): ForwardStream {
    if (this.stream !== undefined) return this.stream;
    const stream = this.client.Forward(requestMetadata(''));
    this.stream = stream;
    stream.on('data', (reply: ForwardReply__Output) => this.listener.onReply(this.peerId, reply));
    const broken = (detail: string): void => {
      if (this.stream !== stream) return;
      this.stream = undefined;
      this.logger.warn('forward stream broke', { peer: this.peerId, address: this.address, detail });
    };
    stream.on('error', (error: Error) => broken(ServiceError.from(error).message));
    stream.on('end', () => broken('stream ended'));
    return stream;
  }
}

/**
 * A node's links to the replicas of the next stage, one per replica, opened on first use. A
 * link is made only to a replica the node directory lists (config.json or its DNS discovery):
 * the id a sequence was opened with is looked up, never an address from a message.
 */
export class ForwardLinks {
  private readonly links = new Map<string, ForwardLink>();
  private readonly unsubscribe: () => void;

  constructor(
    private readonly directory: NodeDirectory,
    private readonly listener: ForwardLinkListener,
    private readonly logger: Logger,
  ) {
    this.unsubscribe = directory.onChange(() => this.prune());
  }

  /** Peers a link is open (or opening) to. */
  get peers(): string[] {
    return [...this.links.keys()];
  }

  /**
   * Closes the links to replicas the directory no longer lists (a pod scaled away or replaced,
   * its address gone from DNS) or lists at another address: a node that lives through many
   * rollouts of the next stage holds channels only to replicas that exist. A step still writing
   * to a closed link fails UNAVAILABLE, as it would against the vanished replica itself.
   */
  prune(): void {
    for (const [peerId, link] of this.links) {
      const replica = this.directory.find(peerId);
      if (replica !== undefined && replica.address === link.address) continue;
      this.logger.info('closing the forward link to a replica that left the directory', { peer: peerId, address: link.address });
      link.close();
      this.links.delete(peerId);
    }
  }

  to(peerId: string): ForwardLink {
    const replica = this.directory.find(peerId);
    if (replica === undefined) throw new ServiceError(grpc.status.UNAVAILABLE, `${peerId} is not a known replica`);
    let link = this.links.get(peerId);
    if (link !== undefined && link.address !== replica.address) {
      link.close();
      link = undefined;
    }
    if (link === undefined) {
      link = new ForwardLink(peerId, replica.address, this.listener, this.logger);
      this.links.set(peerId, link);
    }
    return link;
  }

  closeAll(): void {
    this.unsubscribe();
    for (const link of this.links.values()) link.close();
    this.links.clear();
  }
}
