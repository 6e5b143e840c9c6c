import { parentPort, workerData } from 'node:worker_threads';
import { ServiceError } from '../../shared/errors';
import { StageRuntime, type StepOutput } from './stage-runtime';
import type { StageWorkerData, WorkerReply, WorkerRequest } from './stage-worker';

/**
 * The worker-thread side of StageWorker: owns one StageRuntime (the ONNX session and the KV
 * cache) and answers requests in order. Every reply carries the KV numbers, so the main thread
 * reports them without asking.
 */
async function serve(): Promise<void> {
  const port = parentPort;
  if (port === null) throw new Error('stage-worker-thread must run as a worker thread');
  const data = workerData as StageWorkerData;
  let runtime: StageRuntime;
  try {
    runtime = await StageRuntime.load(data.modelDir, data.stageIndex, { kvBudgetBytes: data.kvBudgetBytes, intraOpThreads: data.intraOpThreads });
  } catch (error) {
    port.postMessage({ kind: 'failed-to-load', message: (error as Error).message } satisfies WorkerReply);
    return;
  }
  port.postMessage({ kind: 'loaded', manifest: runtime.manifest, stats: runtime.kvStats() } satisfies WorkerReply);

  port.on('message', (request: WorkerRequest) => {
    const reply = (result: Omit<Extract<WorkerReply, { kind: 'done' }>, 'kind' | 'id' | 'stats'>, transfer: ArrayBuffer[] = []): void => {
      const message: WorkerReply = { kind: 'done', id: request.id, stats: runtime.kvStats(), ...result };
      try {
        port.postMessage(message, transfer);
      } catch {
        // An output backed by memory that cannot be detached goes by copy instead.
        port.postMessage(message);
      }
    };
    const fail = (error: unknown): void => {
      const serviceError = ServiceError.from(error);
      port.postMessage({ kind: 'error', id: request.id, code: serviceError.code, message: serviceError.message, stats: runtime.kvStats() } satisfies WorkerReply);
    };
    switch (request.op) {
      case 'step':
        runtime.step(request.request).then((output: StepOutput) => reply({ output }, transferablesOf(output)), fail);
        return;
      case 'reserve':
        runtime.reserve(request.sequenceId, request.tokens).then(() => reply({}), fail);
        return;
      case 'release':
        runtime.releaseInOrder(request.sequenceId).then((held) => reply({ held }), fail);
        return;
      case 'rewind':
        runtime.rewindInOrder(request.sequenceId, request.length).then(() => reply({}), fail);
        return;
      case 'drop-idle':
        runtime.dropIdle(request.ttlMs, request.nowMs).then((dropped) => reply({ dropped }), fail);
        return;
      case 'close':
        runtime.close().then(() => reply({}), fail);
        return;
    }
  });
}

function transferablesOf(output: StepOutput): ArrayBuffer[] {
  const buffers = [output.hiddenStates, output.logits, output.logsumexp, output.argmax].filter((a): a is Float32Array | Int32Array => a !== undefined).map((a) => a.buffer as ArrayBuffer);
  return [...new Set(buffers)];
}

void serve();
