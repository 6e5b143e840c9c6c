import * as path from 'node:path';
import { status } from '@grpc/grpc-js';
import { ServiceError } from '../../shared/errors';
import { readManifest, verifyStageFiles, type ModelManifest, type StageManifest } from '../../shared/model/manifest';
import type { ModelShape } from '../../shared/model/model-shape';
import { stageIoNames } from '../../shared/model/stage-io-names';
import { float32Tensor, int64Tensor, type Tensor } from '../../shared/tensor';
import { KvCache, type KvView } from './kv-cache';
import { OnnxSession } from './onnx-session';
import type { KvStats, StageEngine } from './stage-engine';

/** One sequence of a step: its new tokens, which sit at positions pastLength, pastLength + 1, … */
export interface StepRow {
  readonly sequenceId: string;
  /** Tokens this stage must already hold for the sequence (0 for a new one). */
  readonly pastLength: number;
  /** The new tokens. Every stage receives them (the first embeds them, all check positions). */
  readonly tokenIds: readonly number[];
  /** KV room to reserve for the sequence (its prompt plus every token it may generate), if not reserved before. */
  readonly reserveTokens?: number;
}

export interface StepRequest {
  readonly rows: readonly StepRow[];
  /** Packed [Σ tokens, hidden] in row order, no padding; required by every stage but the first. */
  readonly hiddenStates?: Float32Array;
  /** Date.now() after which the step is not run (DEADLINE_EXCEEDED): it waited too long in the queue. */
  readonly deadlineUnixMs?: number;
}

export interface StepOutput {
  /** Packed [Σ tokens, hidden] in row order; from every stage but the last. */
  readonly hiddenStates?: Float32Array;
  /** [rows, vocab]: each row's next-token logits, in row order; from the last stage. */
  readonly logits?: Float32Array;
  /** [rows]: log Σ exp of each row's logits; from the last stage. */
  readonly logsumexp?: Float32Array;
  /** [rows]: index of each row's largest logit; from a last stage whose graph computes it (docs/stage-graph.md). */
  readonly argmax?: Int32Array;
}

export interface StageRuntimeOptions {
  /** Upper bound of this stage's KV cache; crossing it answers RESOURCE_EXHAUSTED. */
  readonly kvBudgetBytes: number;
  /** onnxruntime intra-op threads; 0 or absent lets onnxruntime decide. */
  readonly intraOpThreads?: number;
}

/** Rows of one graph run, in the order the graph sees them, with where each came from in the step. */
interface Run {
  readonly rows: readonly StepRow[];
  /** Index of each run row in the step's rows. */
  readonly stepIndex: readonly number[];
}

/**
 * One stage of a compiled model: its ONNX graph and the KV cache of its layers. `step` turns a
 * batch of rows (different past lengths, different numbers of new tokens) into graph runs — the
 * one-token rows together, the first prompts together (right-padded), each longer continuation
 * alone, which is what GroupQueryAttention can batch — feeds each run's past straight from the
 * cache, appends the step's new keys and values, and returns the packed hidden states (or the
 * logits on the last stage) in the step's row order. Steps run one at a time, in arrival order,
 * so a cache length checked by a step is still true when it runs.
 */
export class StageRuntime implements StageEngine {
  private readonly cache: KvCache;
  private queue: Promise<unknown> = Promise.resolve();
  /** Whether the graph returns each row's argmax (graphs compiled before it did not). */
  private readonly hasArgmax: boolean;

  private constructor(
    readonly manifest: ModelManifest,
    readonly stage: StageManifest,
    private readonly session: OnnxSession,
    options: StageRuntimeOptions,
  ) {
    const { shape } = manifest;
    this.hasArgmax = stage.isLast && session.outputNames.includes(stageIoNames.argmax);
    this.cache = new KvCache({
      layerCount: stage.layerEnd - stage.layerStart,
      kvHeads: shape.kvHeads,
      headDim: shape.headDim,
      maxLength: shape.contextLength,
      kvBudgetBytes: options.kvBudgetBytes,
      // A stage that is not the last keeps the hidden states it passes on (HiddenStateCache), float32 per position.
      extraBytesPerToken: stage.isLast ? 0 : shape.hiddenSize * 4,
    });
  }

  /** Reads the manifest, checks the stage's files against their sha256, and opens its graph. */
  static async load(modelDir: string, stageIndex: number, options: StageRuntimeOptions): Promise<StageRuntime> {
    const manifest = await readManifest(modelDir);
    const stage = manifest.stages.find((s) => s.index === stageIndex);
    if (stage === undefined) {
      throw new Error(`stage: ${modelDir} has stages 0…${manifest.stages.length - 1}, not ${stageIndex}`);
    }
    await verifyStageFiles(modelDir, stage);
    const graphPath = path.join(modelDir, stage.files[0].path);
    const session = await OnnxSession.open(graphPath, { intraOpThreads: options.intraOpThreads, memoryPattern: false });
    try {
      checkGraphInputs(graphPath, session.inputNames, expectedInputs(stage));
    } catch (error) {
      await session.close();
      throw error;
    }
    return new StageRuntime(manifest, stage, session, options);
  }

  get shape(): ModelShape {
    return this.manifest.shape;
  }

  /** Tokens cached for a sequence (0 if unknown). */
  cachedLength(sequenceId: string): number {
    return this.cache.length(sequenceId);
  }

  holds(sequenceId: string): boolean {
    return this.cache.has(sequenceId);
  }

  kvStats(): KvStats {
    return {
      sequences: this.cache.sequenceCount,
      bytes: this.cache.bytes,
      reservedBytes: this.cache.reservedBytes,
      bytesPerToken: this.cache.bytesPerToken,
      reservedBytesPerToken: this.cache.reservedBytesPerToken,
    };
  }

  /** Reserves a sequence's KV room ahead of its first step; RESOURCE_EXHAUSTED when the budget cannot take it. */
  async reserve(sequenceId: string, tokens: number): Promise<void> {
    this.cache.reserve([{ sequenceId, length: Math.min(this.shape.contextLength, tokens) }]);
  }

  step(request: StepRequest): Promise<StepOutput> {
    const result = this.queue.then(() => this.runStep(request));
    this.queue = result.catch(() => undefined);
    return result;
  }

  /**
   * Frees a sequence once every step queued before this call has run, so a release that
   * arrives behind a step never overtakes it.
   */
  releaseInOrder(sequenceId: string): Promise<boolean> {
    const released = this.queue.then(() => this.release(sequenceId));
    this.queue = released.catch(() => undefined);
    return released;
  }

  /** Cuts a sequence's KV back to `length` tokens once every step queued before this call has run. */
  rewindInOrder(sequenceId: string, length: number): Promise<void> {
    const rewound = this.queue.then(() => this.cache.truncate(sequenceId, length));
    this.queue = rewound.catch(() => undefined);
    return rewound;
  }

  /** Frees a sequence's KV entries; returns whether it was held. */
  release(sequenceId: string): boolean {
    return this.cache.release(sequenceId);
  }

  /** Frees sequences idle for longer than `ttlMs`, after the steps queued before; resolves with their ids. */
  dropIdle(ttlMs: number, nowMs: number): Promise<string[]> {
    const dropped = this.queue.then(() => this.cache.dropIdle(ttlMs, nowMs));
    this.queue = dropped.catch(() => undefined);
    return dropped;
  }

  async close(): Promise<void> {
    await this.queue;
    await this.session.close();
  }

  private async runStep(request: StepRequest): Promise<StepOutput> {
    if (request.deadlineUnixMs !== undefined && Date.now() > request.deadlineUnixMs) {
      throw new ServiceError(status.DEADLINE_EXCEEDED, `stage ${this.stage.index}: the step's deadline passed while it waited to run`);
    }
    this.checkRequest(request);
    const { rows } = request;
    const admitted = this.cache.reserve(
      rows.map((r) => ({ sequenceId: r.sequenceId, length: Math.min(this.shape.contextLength, Math.max(r.pastLength + r.tokenIds.length, r.reserveTokens ?? 0)) })),
    );
    try {
      const { hiddenSize, vocabSize } = this.shape;
      const offsets = packedOffsets(rows);
      const total = offsets[rows.length];
      const hidden = this.stage.isLast ? undefined : new Float32Array(total * hiddenSize);
      const logits = this.stage.isLast ? new Float32Array(rows.length * vocabSize) : undefined;
      const logsumexp = this.stage.isLast ? new Float32Array(rows.length) : undefined;
      const argmax = this.hasArgmax ? new Int32Array(rows.length) : undefined;
      for (const run of planRuns(rows)) {
        const view = this.cache.view(
          run.rows.map((r) => r.sequenceId),
          run.rows.map((r) => r.tokenIds.length),
        );
        // The view may order rows differently from the step: feed and read the graph in view order.
        const byId = new Map(run.rows.map((r, i) => [r.sequenceId, i]));
        const ordered = view.order.map((id) => run.stepIndex[byId.get(id) as number]);
        const outputs = await this.session.run(this.feeds(request, ordered, view, offsets));
        this.appendPresents(outputs, view, ordered.map((i) => rows[i].tokenIds.length));
        const width = Math.max(...ordered.map((i) => rows[i].tokenIds.length));
        if (hidden !== undefined) {
          const out = floatOutput(outputs, stageIoNames.hiddenStatesOut, [ordered.length, width, hiddenSize]);
          ordered.forEach((i, r) => hidden.set(out.subarray(r * width * hiddenSize, (r * width + rows[i].tokenIds.length) * hiddenSize), offsets[i] * hiddenSize));
        } else if (logits !== undefined && logsumexp !== undefined) {
          const out = floatOutput(outputs, stageIoNames.logits, [ordered.length, vocabSize]);
          const lse = floatOutput(outputs, stageIoNames.logsumexp, [ordered.length]);
          const picks = argmax === undefined ? undefined : int64Output(outputs, stageIoNames.argmax, [ordered.length]);
          if (ordered.length === rows.length && ordered.every((i, r) => i === r)) {
            if (argmax !== undefined && picks !== undefined) picks.forEach((pick, r) => (argmax[r] = Number(pick)));
            return { logits: out, logsumexp: lse, argmax };
          }
          ordered.forEach((i, r) => {
            logits.set(out.subarray(r * vocabSize, (r + 1) * vocabSize), i * vocabSize);
            logsumexp[i] = lse[r];
            if (argmax !== undefined && picks !== undefined) argmax[i] = Number(picks[r]);
          });
        }
      }
      return hidden !== undefined ? { hiddenStates: hidden } : { logits, logsumexp, argmax };
    } catch (error) {
      for (const sequenceId of admitted) this.cache.release(sequenceId);
      throw error;
    }
  }

  private appendPresents(outputs: Readonly<Record<string, Tensor>>, view: KvView, counts: readonly number[]): void {
    const { kvHeads, headDim } = this.shape;
    const width = Math.max(...counts);
    const dims = [counts.length, kvHeads, width, headDim];
    for (let layer = this.stage.layerStart; layer < this.stage.layerEnd; layer++) {
      const key = floatOutput(outputs, stageIoNames.presentKey(layer), dims);
      const value = floatOutput(outputs, stageIoNames.presentValue(layer), dims);
      this.cache.append(view, layer - this.stage.layerStart, key, value, width, counts);
    }
    this.cache.commit(view, counts);
  }

  /** The feeds of one run: rows in view order, new tokens right-padded, the past straight from the cache. */
  private feeds(request: StepRequest, ordered: readonly number[], view: KvView, offsets: readonly number[]): Record<string, Tensor> {
    const rows = ordered.map((i) => request.rows[i]);
    const batch = rows.length;
    const width = Math.max(...rows.map((r) => r.tokenIds.length));
    const pastWidth = view.pastWidth;
    const positions = new BigInt64Array(batch * width);
    const mask = new BigInt64Array(batch * (pastWidth + width));
    rows.forEach((row, b) => {
      for (let i = 0; i < row.tokenIds.length; i++) positions[b * width + i] = BigInt(row.pastLength + i);
      const maskRow = b * (pastWidth + width);
      mask.fill(1n, maskRow, maskRow + row.pastLength);
      mask.fill(1n, maskRow + pastWidth, maskRow + pastWidth + row.tokenIds.length);
    });
    const feeds: Record<string, Tensor> = {
      [stageIoNames.positionIds]: int64Tensor([batch, width], positions),
      [stageIoNames.attentionMask]: int64Tensor([batch, pastWidth + width], mask),
    };
    if (this.stage.isFirst) {
      const ids = new BigInt64Array(batch * width);
      rows.forEach((row, b) => row.tokenIds.forEach((id, i) => (ids[b * width + i] = BigInt(id))));
      feeds[stageIoNames.inputIds] = int64Tensor([batch, width], ids);
    } else {
      const { hiddenSize } = this.shape;
      const packed = request.hiddenStates as Float32Array;
      const padded = new Float32Array(batch * width * hiddenSize);
      ordered.forEach((i, b) => {
        const row = request.rows[i];
        padded.set(packed.subarray(offsets[i] * hiddenSize, (offsets[i] + row.tokenIds.length) * hiddenSize), b * width * hiddenSize);
      });
      feeds[stageIoNames.hiddenStates] = float32Tensor([batch, width, hiddenSize], padded);
    }
    const pastDims = [batch, this.shape.kvHeads, pastWidth, this.shape.headDim];
    for (let layer = this.stage.layerStart; layer < this.stage.layerEnd; layer++) {
      const past = view.past(layer - this.stage.layerStart);
      feeds[stageIoNames.pastKey(layer)] = float32Tensor(pastDims, past.key);
      feeds[stageIoNames.pastValue(layer)] = float32Tensor(pastDims, past.value);
    }
    return feeds;
  }

  /** Rejects a request before anything changes: bad ids, positions, shapes, or a cache that disagrees. */
  private checkRequest(request: StepRequest): void {
    const { rows, hiddenStates } = request;
    const { contextLength, vocabSize, hiddenSize } = this.shape;
    if (rows.length === 0) throw ServiceError.invalidArgument('rows', 'a step needs at least one row');
    const seen = new Set<string>();
    rows.forEach((row, i) => {
      const field = `rows[${i}]`;
      if (row.sequenceId === '') throw ServiceError.invalidArgument(`${field}.sequenceId`, 'is empty');
      if (seen.has(row.sequenceId)) throw ServiceError.invalidArgument(`${field}.sequenceId`, `${row.sequenceId} appears twice in one step`);
      seen.add(row.sequenceId);
      if (!Number.isInteger(row.pastLength) || row.pastLength < 0) {
        throw ServiceError.invalidArgument(`${field}.pastLength`, `must be an integer >= 0, got ${row.pastLength}`);
      }
      if (row.tokenIds.length === 0) throw ServiceError.invalidArgument(`${field}.tokenIds`, 'a row needs at least one new token');
      if (row.pastLength + row.tokenIds.length > contextLength) {
        throw ServiceError.invalidArgument(
          `${field}.tokenIds`,
          `positions ${row.pastLength}…${row.pastLength + row.tokenIds.length - 1} exceed the model's ${contextLength} positions`,
        );
      }
      row.tokenIds.forEach((id, j) => {
        if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
          throw ServiceError.invalidArgument(`${field}.tokenIds[${j}]`, `${id} is not a token id in [0, ${vocabSize})`);
        }
      });
      const cached = this.cache.length(row.sequenceId);
      if (cached !== row.pastLength) {
        throw new ServiceError(
          status.FAILED_PRECONDITION,
          `sequence ${row.sequenceId}: stage ${this.stage.index} holds ${cached} cached tokens, the step says pastLength ${row.pastLength}`,
        );
      }
    });
    const tokens = rows.reduce((n, r) => n + r.tokenIds.length, 0);
    if (this.stage.isFirst) {
      if (hiddenStates !== undefined) throw ServiceError.invalidArgument('hiddenStates', 'the first stage embeds tokenIds itself and takes no hidden states');
    } else if (hiddenStates === undefined) {
      throw ServiceError.invalidArgument('hiddenStates', `stage ${this.stage.index} is not the first and needs [${tokens}, ${hiddenSize}] hidden states`);
    } else if (hiddenStates.length !== tokens * hiddenSize) {
      throw ServiceError.invalidArgument('hiddenStates', `expected ${tokens} tokens × ${hiddenSize} = ${tokens * hiddenSize} floats, got ${hiddenStates.length}`);
    }
  }
}

/**
 * Splits a step into the runs GroupQueryAttention can take: every one-token row in one run
 * (past lengths may differ), every first prompt in one run (no past, right-padded), and each
 * longer row that already has a past on its own. Plain graphs get the same runs, so both
 * variants compute exactly the same batches.
 */
export function planRuns(rows: readonly StepRow[]): Run[] {
  const single: number[] = [];
  const prompts: number[] = [];
  const runs: Run[] = [];
  rows.forEach((row, i) => {
    if (row.tokenIds.length === 1) single.push(i);
    else if (row.pastLength === 0) prompts.push(i);
    else runs.push({ rows: [row], stepIndex: [i] });
  });
  for (const group of [prompts, single]) if (group.length > 0) runs.unshift({ rows: group.map((i) => rows[i]), stepIndex: group });
  return runs;
}

/** Start of each row's tokens in a packed [Σ tokens, …] tensor, plus the total at the end. */
function packedOffsets(rows: readonly StepRow[]): number[] {
  const offsets = [0];
  for (const row of rows) offsets.push(offsets[offsets.length - 1] + row.tokenIds.length);
  return offsets;
}

function expectedInputs(stage: StageManifest): string[] {
  const names: string[] = [stage.isFirst ? stageIoNames.inputIds : stageIoNames.hiddenStates, stageIoNames.positionIds, stageIoNames.attentionMask];
  for (let layer = stage.layerStart; layer < stage.layerEnd; layer++) names.push(stageIoNames.pastKey(layer), stageIoNames.pastValue(layer));
  return names;
}

function checkGraphInputs(graphPath: string, actual: readonly string[], expected: readonly string[]): void {
  const missing = expected.filter((name) => !actual.includes(name));
  const unexpected = actual.filter((name) => !expected.includes(name));
  if (missing.length > 0 || unexpected.length > 0) {
    throw new Error(`${graphPath}: graph inputs do not match its manifest stage: missing [${missing.join(', ')}], unexpected [${unexpected.join(', ')}]`);
  }
}

function floatOutput(outputs: Readonly<Record<string, Tensor>>, name: string, dims: readonly number[]): Float32Array {
  return checkedOutput(outputs, name, 'float32', dims).data as Float32Array;
}

function int64Output(outputs: Readonly<Record<string, Tensor>>, name: string, dims: readonly number[]): BigInt64Array {
  return checkedOutput(outputs, name, 'int64', dims).data as BigInt64Array;
}

function checkedOutput(outputs: Readonly<Record<string, Tensor>>, name: string, dtype: Tensor['dtype'], dims: readonly number[]): Tensor {
  const tensor = outputs[name];
  if (tensor === undefined) throw new ServiceError(status.INTERNAL, `the stage graph did not return ${name}`);
  if (tensor.dtype !== dtype || tensor.dims.length !== dims.length || tensor.dims.some((d, i) => d !== dims[i])) {
    throw new ServiceError(status.INTERNAL, `${name}: expected ${dtype}[${dims.join(', ')}], the graph returned ${tensor.dtype}[${tensor.dims.join(', ')}]`);
  }
  return tensor;
}
