import { randomUUID } from 'node:crypto';
import type * as grpc from '@grpc/grpc-js';
import type { CoordinatorMessage__Output } from '../../protos/generated/pipeserve/v1/CoordinatorMessage';
import type { NodeEvent } from '../../protos/generated/pipeserve/v1/NodeEvent';
import type { ServiceError } from '../../shared/errors';

/**
 * A node's end of one coordinator's Connect session. Every sequence opened on it belongs to it:
 * results and failures of that sequence's steps are written here and nowhere else, and when
 * the session ends its sequences are released.
 */
export class CoordinatorSession {
  /** Unique per session, never sent anywhere: ownership is by object, this is for logs. */
  readonly id = randomUUID();
  coordinatorId = '';
  private open = true;

  constructor(private readonly call: grpc.ServerDuplexStream<CoordinatorMessage__Output, NodeEvent>) {}

  get isOpen(): boolean {
    return this.open && !this.call.cancelled && this.call.writable;
  }

  send(event: NodeEvent): void {
    if (this.isOpen) this.call.write(event);
  }

  /** Ends the session with an error status: for a message that has no answer of its own to carry one. */
  fail(error: ServiceError): void {
    if (this.isOpen) this.call.emit('error', error.toStatusObject());
  }

  close(): void {
    this.open = false;
  }
}
