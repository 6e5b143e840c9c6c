import * as grpc from '@grpc/grpc-js';
import type { ModelNodeClient } from '../protos/generated/pipeserve/v1/ModelNode';
import type { StepMessage } from '../protos/generated/pipeserve/v1/StepMessage';
import type { StepResult__Output } from '../protos/generated/pipeserve/v1/StepResult';
import { ServiceError } from './errors';
import { createClient, MAX_RECONNECT_BACKOFF_MS } from './grpc/channel';
import { protos } from './grpc/proto-loader';
import type { Logger } from './logger';

/** How long a step may wait when its message carries no deadline. */
export const DEFAULT_STEP_TIMEOUT_MS = 60_000;
/**
 * How long opening a stream waits for the channel: longer than one reconnect backoff, so a
 * stage that has just restarted is reached, and short enough that a dead one fails fast.
 */
export const LINK_READY_TIMEOUT_MS = MAX_RECONNECT_BACKOFF_MS + 1_000;

type StepStream = grpc.ClientDuplexStream<StepMessage, StepResult__Output>;

interface PendingStep {
  readonly resolve: (result: StepResult__Output) => void;
  readonly reject: (error: ServiceError) => void;
  readonly timer: NodeJS.Timeout;
}

/**
 * The sending end of one long-lived `Pipeline` stream to a model node (the coordinator's link
 * to a first stage, or a node's link to its next hop). Steps are matched to results by a step
 * id the link assigns, so steps from many callers can share one stream. When the stream
 * breaks, every pending step fails with UNAVAILABLE and the next send opens a new stream;
 * every step also fails at its deadline, so nothing waits forever.
 */
export class PipelineLink {
  private readonly client: ModelNodeClient;
  private stream: StepStream | undefined;
  /** Set while a new stream waits for the channel; later sends queue behind it, in order. */
  private opening: Promise<StepStream> | undefined;
  private readonly pending = new Map<number, PendingStep>();
  private nextStepId = 1;
  private closed = false;

  constructor(
    readonly address: string,
    private readonly logger: Logger,
  ) {
    this.client = createClient(protos().node.pipeserve.v1.ModelNode, address);
  }

  get pendingSteps(): number {
    return this.pending.size;
  }

  /** Sends one step and resolves with its result (which may carry an error code from a stage). */
  send(step: Omit<StepMessage, 'step_id'>): Promise<StepResult__Output> {
    if (this.closed) return Promise.reject(new ServiceError(grpc.status.UNAVAILABLE, `link to ${this.address} is closed`));
    const stepId = this.nextStepId++;
    const deadline = step.deadline_unix_ms !== undefined && Number(step.deadline_unix_ms) > 0 ? Number(step.deadline_unix_ms) : Date.now() + DEFAULT_STEP_TIMEOUT_MS;
    return new Promise<StepResult__Output>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(stepId);
        reject(new ServiceError(grpc.status.DEADLINE_EXCEEDED, `step to ${this.address} passed its deadline`));
      }, Math.max(0, deadline - Date.now()));
      this.pending.set(stepId, { resolve, reject, timer });
      this.write({ ...step, step_id: stepId }, (error) => {
        if (!this.pending.delete(stepId)) return;
        clearTimeout(timer);
        reject(error);
      });
    });
  }

  /** Sends a message that expects no result (a release of finished sequences). */
  sendOneWay(step: Omit<StepMessage, 'step_id'>): void {
    if (this.closed) return;
    this.write({ ...step, step_id: 0 }, (error) => this.logger.warn('release not sent', { address: this.address, error: error.message }));
  }

  /**
   * Writes on the open stream at once, or, while none is open, after the channel is ready:
   * messages keep the order of the calls either way.
   */
  private write(message: StepMessage, failed: (error: ServiceError) => void): void {
    if (this.stream !== undefined && this.opening === undefined) {
      this.stream.write(message);
      return;
    }
    if (this.opening === undefined) {
      const opening = this.openWhenReady();
      this.opening = opening;
      // Registered first, so it runs just before the queued writes: nothing can write directly
      // on the new stream ahead of them.
      const settled = (): void => {
        if (this.opening === opening) this.opening = undefined;
      };
      opening.then(settled, settled);
    }
    this.opening.then(
      (stream) => stream.write(message),
      (error: unknown) => failed(ServiceError.from(error)),
    );
  }

  private openWhenReady(): Promise<StepStream> {
    return new Promise<StepStream>((resolve, reject) => {
      this.client.waitForReady(Date.now() + LINK_READY_TIMEOUT_MS, (error?: Error) => {
        if (this.closed) reject(new ServiceError(grpc.status.UNAVAILABLE, `link to ${this.address} is closed`));
        else if (error !== undefined) reject(new ServiceError(grpc.status.UNAVAILABLE, `node at ${this.address} is unreachable: ${error.message}`));
        else resolve(this.openStream());
      });
    });
  }

  close(): void {
    this.closed = true;
    this.failAll(new ServiceError(grpc.status.UNAVAILABLE, `link to ${this.address} closed`));
    this.stream?.end();
    this.stream = undefined;
    this.client.close();
  }

  private openStream(): StepStream {
    if (this.stream !== undefined) return this.stream;
    const stream = this.client.Pipeline();
    this.stream = stream;
    stream.on('data', (result: StepResult__Output) => {
      const pending = this.pending.get(result.step_id);
      if (pending === undefined) return; // already timed out
      this.pending.delete(result.step_id);
      clearTimeout(pending.timer);
      pending.resolve(result);
    });
    const broken = (detail: string): void => {
      if (this.stream !== stream) return;
      this.stream = undefined;
      if (this.pending.size > 0) this.logger.warn('pipeline stream broke', { address: this.address, detail, pending_steps: this.pending.size });
      this.failAll(new ServiceError(grpc.status.UNAVAILABLE, `node at ${this.address} is unreachable: ${detail}`));
    };
    stream.on('error', (error: Error) => broken(ServiceError.from(error).message));
    stream.on('end', () => broken('stream ended'));
    return stream;
  }

  private failAll(error: ServiceError): void {
    for (const pending of this.pending.values()) {
      clearTimeout(pending.timer);
      pending.reject(error);
    }
    this.pending.clear();
  }
}

/** One PipelineLink per address, opened on first use (the coordinator's to first stages, a node's to its next hops). */
export class PipelineLinks {
  private readonly links = new Map<string, PipelineLink>();

  constructor(private readonly logger: Logger) {}

  to(address: string): PipelineLink {
    let link = this.links.get(address);
    if (link === undefined) {
      link = new PipelineLink(address, this.logger);
      this.links.set(address, link);
    }
    return link;
  }

  closeAll(): void {
    for (const link of this.links.values()) link.close();
    this.links.clear();
  }
}
