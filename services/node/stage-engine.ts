import type { ModelManifest, StageManifest } from '../../shared/model/manifest';
import type { ModelShape } from '../../shared/model/model-shape';
import type { StepOutput, StepRequest } from './stage-runtime';

/** KV numbers of a stage, as Describe and the metrics report them. */
export interface KvStats {
  readonly sequences: number;
  /** Bytes allocated. */
  readonly bytes: number;
  /** Bytes reserved by admitted sequences (what the budget bounds). */
  readonly reservedBytes: number;
  /** 2 × layers × kvHeads × headDim × 4. */
  readonly bytesPerToken: number;
  /** What a reserved position costs against the budget: bytesPerToken, plus hidden × 4 on a stage that is not the last (its cached hidden states). */
  readonly reservedBytesPerToken: number;
}

/**
 * What the model-node service needs of a stage: the StageRuntime itself (tests, the in-process
 * pipeline) or a StageWorker running one on a worker thread, which keeps the node's event loop
 * free for gRPC while onnxruntime computes.
 */
export interface StageEngine {
  readonly manifest: ModelManifest;
  readonly stage: StageManifest;
  readonly shape: ModelShape;
  /** The latest KV numbers (a worker's are as of its last reply). */
  kvStats(): KvStats;
  reserve(sequenceId: string, tokens: number): Promise<void>;
  step(request: StepRequest): Promise<StepOutput>;
  /** Cuts a sequence's KV back to `length` tokens after every step queued before (FAILED_PRECONDITION if it holds fewer). */
  rewindInOrder(sequenceId: string, length: number): Promise<void>;
  /** Frees a sequence after every step queued before; resolves whether it was held. */
  releaseInOrder(sequenceId: string): Promise<boolean>;
  /** Frees sequences idle for longer than `ttlMs` (after the queued steps); resolves with their ids. */
  dropIdle(ttlMs: number, nowMs: number): Promise<string[]>;
  close(): Promise<void>;
}
