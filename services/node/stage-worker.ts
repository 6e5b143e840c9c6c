import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import * as grpc from '@grpc/grpc-js';
import { ServiceError } from '../../shared/errors';
import type { ModelManifest, StageManifest } from '../../shared/model/manifest';
import type { ModelShape } from '../../shared/model/model-shape';
import { PROJECT_ROOT } from '../../shared/project-root';
import type { KvStats, StageEngine } from './stage-engine';
import type { StepOutput, StepRequest } from './stage-runtime';

export interface StageWorkerData {
  readonly modelDir: string;
  readonly stageIndex: number;
  readonly kvBudgetBytes: number;
  readonly intraOpThreads?: number;
}

export type WorkerOperation =
  | { readonly op: 'step'; readonly request: StepRequest }
  | { readonly op: 'reserve'; readonly sequenceId: string; readonly tokens: number }
  | { readonly op: 'release'; readonly sequenceId: string }
  | { readonly op: 'rewind'; readonly sequenceId: string; readonly length: number }
  | { readonly op: 'drop-idle'; readonly ttlMs: number; readonly nowMs: number }
  | { readonly op: 'close' };

export type WorkerRequest = WorkerOperation & { readonly id: number };

export type WorkerReply =
  | { readonly kind: 'loaded'; readonly manifest: ModelManifest; readonly stats: KvStats }
  | { readonly kind: 'failed-to-load'; readonly message: string }
  | { readonly kind: 'done'; readonly id: number; readonly stats: KvStats; readonly output?: StepOutput; readonly held?: boolean; readonly dropped?: string[] }
  | { readonly kind: 'error'; readonly id: number; readonly code: number; readonly message: string; readonly stats: KvStats };

type DoneReply = Extract<WorkerReply, { kind: 'done' }>;

/**
 * A stage runtime on a worker thread. onnxruntime-node runs a graph synchronously on the
 * calling thread, so a node that ran it on its main thread could neither answer health checks
 * nor take in the next micro-batch while it computes; here the main thread stays free for
 * gRPC, and steps queue in the worker back to back. Hidden states and logits cross by transfer,
 * not copy.
 */
export class StageWorker implements StageEngine {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (reply: DoneReply) => void; reject: (error: ServiceError) => void }>();
  private stats: KvStats;
  private exited: ServiceError | undefined;

  private constructor(
    private readonly worker: Worker,
    readonly manifest: ModelManifest,
    readonly stage: StageManifest,
    initial: KvStats,
  ) {
    this.stats = initial;
    worker.on('message', (reply: WorkerReply) => this.onReply(reply));
    const fatal = (error: ServiceError): void => {
      this.exited = error;
      for (const waiter of this.pending.values()) waiter.reject(error);
      this.pending.clear();
    };
    worker.on('error', (error) => fatal(new ServiceError(grpc.status.INTERNAL, `stage worker crashed: ${error.message}`, error)));
    worker.on('exit', (code) => fatal(new ServiceError(grpc.status.UNAVAILABLE, `stage worker exited with code ${code}`)));
  }

  static load(data: StageWorkerData): Promise<StageWorker> {
    const worker = new Worker(workerScript(), { workerData: data });
    return new Promise<StageWorker>((resolve, reject) => {
      const onError = (error: Error): void => reject(error);
      worker.once('error', onError);
      worker.once('message', (reply: WorkerReply) => {
        worker.off('error', onError);
        if (reply.kind === 'loaded') {
          const stage = reply.manifest.stages[data.stageIndex];
          resolve(new StageWorker(worker, reply.manifest, stage, reply.stats));
        } else {
          void worker.terminate();
          reject(new Error(reply.kind === 'failed-to-load' ? reply.message : `stage worker answered ${reply.kind} before loading`));
        }
      });
    });
  }

  get shape(): ModelShape {
    return this.manifest.shape;
  }

  kvStats(): KvStats {
    return this.stats;
  }

  async reserve(sequenceId: string, tokens: number): Promise<void> {
    await this.call({ op: 'reserve', sequenceId, tokens });
  }

  async step(request: StepRequest): Promise<StepOutput> {
    // The packed hidden states usually view a received gRPC buffer that other messages share: copy, then transfer the copy.
    const hidden = request.hiddenStates === undefined ? undefined : Float32Array.from(request.hiddenStates);
    const reply = await this.call({ op: 'step', request: { ...request, hiddenStates: hidden } }, hidden === undefined ? [] : [hidden.buffer]);
    return reply.output as StepOutput;
  }

  async rewindInOrder(sequenceId: string, length: number): Promise<void> {
    await this.call({ op: 'rewind', sequenceId, length });
  }

  async releaseInOrder(sequenceId: string): Promise<boolean> {
    return (await this.call({ op: 'release', sequenceId })).held === true;
  }

  async dropIdle(ttlMs: number, nowMs: number): Promise<string[]> {
    return (await this.call({ op: 'drop-idle', ttlMs, nowMs })).dropped ?? [];
  }

  async close(): Promise<void> {
    if (this.exited === undefined) await this.call({ op: 'close' }).catch(() => undefined);
    await this.worker.terminate();
  }

  private call(operation: WorkerOperation, transfer: ArrayBuffer[] = []): Promise<DoneReply> {
    if (this.exited !== undefined) return Promise.reject(this.exited);
    const id = this.nextId++;
    return new Promise<DoneReply>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      const request: WorkerRequest = { ...operation, id };
      this.worker.postMessage(request, transfer);
    });
  }

  private onReply(reply: WorkerReply): void {
    if (reply.kind !== 'done' && reply.kind !== 'error') return;
    this.stats = reply.stats;
    const waiter = this.pending.get(reply.id);
    if (waiter === undefined) return;
    this.pending.delete(reply.id);
    if (reply.kind === 'done') waiter.resolve(reply);
    else waiter.reject(new ServiceError(reply.code as grpc.status, reply.message));
  }
}

/** The compiled worker entry: next to this file in dist/, or in dist/ when tests run the TypeScript sources. */
function workerScript(): string {
  const local = path.join(__dirname, 'stage-worker-thread.js');
  return __filename.endsWith('.ts') ? path.join(PROJECT_ROOT, 'dist', 'services', 'node', 'stage-worker-thread.js') : local;
}
