import * as path from 'node:path';
import { status } from '@grpc/grpc-js';
import { ServiceError } from '../../shared/errors';
import { headDim, type Gpt2Config } from '../../shared/model/gpt2-config';
import { readManifest, verifyStageFiles, type ModelManifest, type StageManifest } from '../../shared/model/manifest';
import { float32Tensor, int64Tensor, type Tensor } from '../../shared/tensor';
import { stageIoNames } from '../../shared/model/stage-io-names';
import { KvCache, type KvAppend } from './kv-cache';
import { OnnxSession } from './onnx-session';

/** One sequence of a step: its new tokens, which sit at positions pastLength, pastLength + 1, … */
export interface StepRow {
  readonly sequenceId: string;
  /** Tokens this stage must already hold for the sequence (0 for a new one). */
  readonly pastLength: number;
  /** The new tokens. Every stage receives them (the first embeds them, all check positions). */
  readonly tokenIds: readonly number[];
  /** KV room to reserve for the sequence up front (its prompt plus every token it may generate). */
  readonly reserveTokens?: number;
}

export interface StepRequest {
  readonly rows: readonly StepRow[];
  /** Packed [Σ tokens, E] in row order, no padding; required by every stage but the first. */
  readonly hiddenStates?: Float32Array;
}

export interface StepResult {
  /** Packed [Σ tokens, E] in row order; from every stage but the last. */
  readonly hiddenStates?: Float32Array;
  /** [rows, V]: each row's next-token logits; from the last stage. */
  readonly logits?: Float32Array;
}

/**
 * The present tensors of a batch's last step, kept to be fed back as the next step's past when
 * the same sequences step again in the same order (every continuing decode step of a stable
 * batch): the bare onnxruntime loop's zero-copy path. Each row's entries are right-aligned
 * within `width` columns; `pending` counts, per sequence, the newest entries that are not yet
 * in the KV cache. They are written back when the batch changes, a row was padded, or a
 * sequence leaves. While a batch is resident its KV exists twice at most (cache + tensors).
 */
interface ResidentBatch {
  readonly sequenceIds: readonly string[];
  readonly width: number;
  /** Per local layer, [B, H, width, D]. */
  readonly keys: readonly Float32Array[];
  readonly values: readonly Float32Array[];
  readonly pending: ReadonlyMap<string, number>;
}

export interface StageRuntimeOptions {
  /** Upper bound of this stage's KV cache; crossing it answers RESOURCE_EXHAUSTED. */
  readonly kvBudgetBytes: number;
  /** onnxruntime intra-op threads; 0 or absent lets onnxruntime decide. */
  readonly intraOpThreads?: number;
  /** See OnnxSessionOptions.allowSpinning: off when stage processes share cores. */
  readonly allowSpinning?: boolean;
}

/**
 * One stage of a compiled model: its ONNX graph and the KV cache of its layers. `step` turns a
 * batch of rows (different past lengths, different numbers of new tokens) into the left-padded
 * feeds of docs/stage-graph.md, runs the graph, keeps each row's real present entries, and
 * returns the packed hidden states (or the logits on the last stage). Steps run one at a time,
 * in arrival order, so a cache length checked by a step is still true when it runs.
 */
export class StageRuntime {
  private readonly cache: KvCache;
  /** Each sequence's resident batch, if its newest entries live in a step's present tensors. */
  private readonly residents = new Map<string, ResidentBatch>();
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    readonly manifest: ModelManifest,
    readonly stage: StageManifest,
    private readonly session: OnnxSession,
    options: StageRuntimeOptions,
  ) {
    const { config } = manifest;
    this.cache = new KvCache({
      layerCount: stage.layerEnd - stage.layerStart,
      nHead: config.nHead,
      headDim: headDim(config),
      maxLength: config.nPositions,
      kvBudgetBytes: options.kvBudgetBytes,
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
    const session = await OnnxSession.open(graphPath, { intraOpThreads: options.intraOpThreads, allowSpinning: options.allowSpinning });
    try {
      checkGraphInputs(graphPath, session.inputNames, expectedInputs(stage));
    } catch (error) {
      await session.close();
      throw error;
    }
    return new StageRuntime(manifest, stage, session, options);
  }

  get config(): Gpt2Config {
    return this.manifest.config;
  }

  /** Bytes held by this stage's KV cache. */
  get kvBytes(): number {
    return this.cache.bytes;
  }

  get sequenceCount(): number {
    return this.cache.sequenceCount;
  }

  /** Tokens cached for a sequence (0 if unknown). */
  cachedLength(sequenceId: string): number {
    return this.cache.length(sequenceId) + (this.residents.get(sequenceId)?.pending.get(sequenceId) ?? 0);
  }

  step(request: StepRequest): Promise<StepResult> {
    const result = this.queue.then(() => this.runStep(request));
    this.queue = result.catch(() => undefined);
    return result;
  }

  /**
   * Frees a sequence once every step queued before this call has run, so a release that
   * arrives behind a step on the same stream never overtakes it.
   */
  releaseInOrder(sequenceId: string): Promise<boolean> {
    const released = this.queue.then(() => this.release(sequenceId));
    this.queue = released.catch(() => undefined);
    return released;
  }

  /** Frees a sequence's KV entries; returns whether it was held. */
  release(sequenceId: string): boolean {
    this.residents.delete(sequenceId);
    return this.cache.release(sequenceId);
  }

  /** Frees sequences idle for longer than `ttlMs`; returns their ids. */
  dropIdle(ttlMs: number, nowMs: number): string[] {
    const dropped = this.cache.dropIdle(ttlMs, nowMs);
    for (const sequenceId of dropped) this.residents.delete(sequenceId);
    return dropped;
  }

  async close(): Promise<void> {
    await this.queue;
    await this.session.close();
  }

  private async runStep(request: StepRequest): Promise<StepResult> {
    this.checkRequest(request);
    const { rows } = request;
    const { nEmbd } = this.config;
    const batch = rows.length;
    const newWidth = Math.max(...rows.map((r) => r.tokenIds.length));
    const pastWidth = Math.max(...rows.map((r) => r.pastLength));
    const sequenceIds = rows.map((r) => r.sequenceId);
    const uniform = rows.every((r) => r.tokenIds.length === newWidth);
    const reused = uniform ? this.residentBatchOf(sequenceIds, pastWidth) : undefined;
    if (reused === undefined) {
      for (const sequenceId of sequenceIds) this.writeBack(this.residents.get(sequenceId));
    } else {
      this.cache.touch(sequenceIds);
    }

    const admitted = this.cache.reserve(
      rows.map((r) => ({ sequenceId: r.sequenceId, length: Math.min(this.config.nPositions, Math.max(r.pastLength + r.tokenIds.length, r.reserveTokens ?? 0)) })),
    );
    let outputs: Record<string, Tensor>;
    try {
      outputs = await this.session.run(this.buildFeeds(request, newWidth, pastWidth, reused));
    } catch (error) {
      for (const sequenceId of admitted) this.cache.release(sequenceId);
      throw error;
    }

    const totalWidth = pastWidth + newWidth;
    const presentDims = [batch, this.config.nHead, totalWidth, headDim(this.config)];
    const keys: Float32Array[] = [];
    const values: Float32Array[] = [];
    for (let layer = this.stage.layerStart; layer < this.stage.layerEnd; layer++) {
      keys.push(floatOutput(outputs, stageIoNames.presentKey(layer), presentDims));
      values.push(floatOutput(outputs, stageIoNames.presentValue(layer), presentDims));
    }
    const resident: ResidentBatch = {
      sequenceIds,
      width: totalWidth,
      keys,
      values,
      pending: new Map(rows.map((r) => [r.sequenceId, (reused?.pending.get(r.sequenceId) ?? 0) + r.tokenIds.length])),
    };
    // Padded rows are not right-aligned, and a sequence released while the graph ran (its
    // request was cancelled) breaks the batch: then the new entries go to the cache at once.
    if (uniform && sequenceIds.every((id) => this.cache.has(id))) {
      for (const sequenceId of sequenceIds) this.residents.set(sequenceId, resident);
    } else {
      for (const sequenceId of sequenceIds) this.residents.delete(sequenceId);
      this.writeBack(resident);
    }

    if (this.stage.isLast) {
      return { logits: floatOutput(outputs, stageIoNames.logits, [batch, this.config.vocabSize]) };
    }
    const hidden = floatOutput(outputs, stageIoNames.hiddenStatesOut, [batch, newWidth, nEmbd]);
    return { hiddenStates: packRows(hidden, rows, newWidth, nEmbd) };
  }

  /** The resident batch of exactly these sequences in this order, if its width is the step's past. */
  private residentBatchOf(sequenceIds: readonly string[], pastWidth: number): ResidentBatch | undefined {
    const resident = this.residents.get(sequenceIds[0]);
    if (resident === undefined || resident.width !== pastWidth || resident.sequenceIds.length !== sequenceIds.length) return undefined;
    return resident.sequenceIds.every((id, i) => id === sequenceIds[i] && this.residents.get(id) === resident) ? resident : undefined;
  }

  /** Copies a resident batch's pending entries into the KV cache and forgets the batch. */
  private writeBack(resident: ResidentBatch | undefined): void {
    if (resident === undefined) return;
    const appends: KvAppend[] = resident.sequenceIds
      .map((sequenceId, row) => ({ sequenceId, row, count: resident.pending.get(sequenceId) ?? 0 }))
      .filter((append) => append.count > 0 && this.cache.has(append.sequenceId));
    resident.keys.forEach((key, layer) => this.cache.append(layer, key, resident.values[layer], resident.width, appends));
    this.cache.commit(appends);
    for (const sequenceId of resident.sequenceIds) {
      if (this.residents.get(sequenceId) === resident) this.residents.delete(sequenceId);
    }
  }

  /** Rejects a request before anything changes: bad ids, positions, shapes, or a cache that disagrees. */
  private checkRequest(request: StepRequest): void {
    const { rows, hiddenStates } = request;
    const { nPositions, vocabSize, nEmbd } = this.config;
    if (rows.length === 0) throw ServiceError.invalidArgument('rows', 'a step needs at least one row');
    const seen = new Set<string>();
    rows.forEach((row, i) => {
      const field = `rows[${i}]`;
      if (row.sequenceId === '') throw ServiceError.invalidArgument(`${field}.sequenceId`, 'is empty');
      if (seen.has(row.sequenceId)) {
        throw ServiceError.invalidArgument(`${field}.sequenceId`, `${row.sequenceId} appears twice in one step`);
      }
      seen.add(row.sequenceId);
      if (!Number.isInteger(row.pastLength) || row.pastLength < 0) {
        throw ServiceError.invalidArgument(`${field}.pastLength`, `must be an integer >= 0, got ${row.pastLength}`);
      }
      if (row.tokenIds.length === 0) throw ServiceError.invalidArgument(`${field}.tokenIds`, 'a row needs at least one new token');
      if (row.pastLength + row.tokenIds.length > nPositions) {
        throw ServiceError.invalidArgument(
          `${field}.tokenIds`,
          `positions ${row.pastLength}…${row.pastLength + row.tokenIds.length - 1} exceed the model's ${nPositions} positions`,
        );
      }
      row.tokenIds.forEach((id, j) => {
        if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
          throw ServiceError.invalidArgument(`${field}.tokenIds[${j}]`, `${id} is not a token id in [0, ${vocabSize})`);
        }
      });
      const cached = this.cachedLength(row.sequenceId);
      if (cached !== row.pastLength) {
        throw new ServiceError(
          status.FAILED_PRECONDITION,
          `sequence ${row.sequenceId}: stage ${this.stage.index} holds ${cached} cached tokens, the step says pastLength ${row.pastLength}`,
        );
      }
    });
    const tokens = rows.reduce((n, r) => n + r.tokenIds.length, 0);
    if (this.stage.isFirst) {
      if (hiddenStates !== undefined) {
        throw ServiceError.invalidArgument('hiddenStates', 'the first stage embeds tokenIds itself and takes no hidden states');
      }
    } else if (hiddenStates === undefined) {
      throw ServiceError.invalidArgument('hiddenStates', `stage ${this.stage.index} is not the first and needs [${tokens}, ${nEmbd}] hidden states`);
    } else if (hiddenStates.length !== tokens * nEmbd) {
      throw ServiceError.invalidArgument(
        'hiddenStates',
        `expected ${tokens} tokens × ${nEmbd} = ${tokens * nEmbd} floats, got ${hiddenStates.length}`,
      );
    }
  }

  private buildFeeds(request: StepRequest, newWidth: number, pastWidth: number, reused: ResidentBatch | undefined): Record<string, Tensor> {
    const { rows } = request;
    const batch = rows.length;
    const feeds: Record<string, Tensor> = {};

    const positions = new BigInt64Array(batch * newWidth);
    const mask = new BigInt64Array(batch * (pastWidth + newWidth));
    rows.forEach((row, b) => {
      const s = row.tokenIds.length;
      for (let i = 0; i < s; i++) positions[b * newWidth + newWidth - s + i] = BigInt(row.pastLength + i);
      const maskRow = b * (pastWidth + newWidth);
      mask.fill(1n, maskRow + pastWidth - row.pastLength, maskRow + pastWidth);
      mask.fill(1n, maskRow + pastWidth + newWidth - s, maskRow + pastWidth + newWidth);
    });
    feeds[stageIoNames.positionIds] = int64Tensor([batch, newWidth], positions);
    feeds[stageIoNames.attentionMask] = int64Tensor([batch, pastWidth + newWidth], mask);

    if (this.stage.isFirst) {
      const ids = new BigInt64Array(batch * newWidth);
      rows.forEach((row, b) => {
        const offset = b * newWidth + newWidth - row.tokenIds.length;
        row.tokenIds.forEach((id, i) => (ids[offset + i] = BigInt(id)));
      });
      feeds[stageIoNames.inputIds] = int64Tensor([batch, newWidth], ids);
    } else {
      const { nEmbd } = this.config;
      const packed = request.hiddenStates as Float32Array;
      feeds[stageIoNames.hiddenStates] = float32Tensor([batch, newWidth, nEmbd], padRows(packed, rows, newWidth, nEmbd));
    }

    const sequenceIds = rows.map((r) => r.sequenceId);
    const pastDims = [batch, this.config.nHead, pastWidth, headDim(this.config)];
    for (let layer = this.stage.layerStart; layer < this.stage.layerEnd; layer++) {
      const local = layer - this.stage.layerStart;
      const past = reused !== undefined ? { key: reused.keys[local], value: reused.values[local] } : this.cache.gather(sequenceIds, local, pastWidth);
      feeds[stageIoNames.pastKey(layer)] = float32Tensor(pastDims, past.key);
      feeds[stageIoNames.pastValue(layer)] = float32Tensor(pastDims, past.value);
    }
    return feeds;
  }
}

function expectedInputs(stage: StageManifest): string[] {
  const names: string[] = [stage.isFirst ? stageIoNames.inputIds : stageIoNames.hiddenStates, stageIoNames.positionIds, stageIoNames.attentionMask];
  for (let layer = stage.layerStart; layer < stage.layerEnd; layer++) {
    names.push(stageIoNames.pastKey(layer), stageIoNames.pastValue(layer));
  }
  return names;
}

function checkGraphInputs(graphPath: string, actual: readonly string[], expected: readonly string[]): void {
  const missing = expected.filter((name) => !actual.includes(name));
  const unexpected = actual.filter((name) => !expected.includes(name));
  if (missing.length > 0 || unexpected.length > 0) {
    throw new Error(
      `${graphPath}: graph inputs do not match its manifest stage: missing [${missing.join(', ')}], unexpected [${unexpected.join(', ')}]`,
    );
  }
}

/** Packed [Σ s, E] → left-padded [B, S, E]. Decode steps (every row one token) need no copy. */
function padRows(packed: Float32Array, rows: readonly StepRow[], newWidth: number, width: number): Float32Array {
  if (rows.every((r) => r.tokenIds.length === newWidth)) return packed;
  const padded = new Float32Array(rows.length * newWidth * width);
  let offset = 0;
  rows.forEach((row, b) => {
    const span = row.tokenIds.length * width;
    padded.set(packed.subarray(offset, offset + span), (b * newWidth + newWidth - row.tokenIds.length) * width);
    offset += span;
  });
  return padded;
}

/** Left-padded [B, S, E] → packed [Σ s, E]. Decode steps need no copy. */
function packRows(padded: Float32Array, rows: readonly StepRow[], newWidth: number, width: number): Float32Array {
  if (rows.every((r) => r.tokenIds.length === newWidth)) return padded;
  const total = rows.reduce((n, r) => n + r.tokenIds.length, 0);
  const packed = new Float32Array(total * width);
  let offset = 0;
  rows.forEach((row, b) => {
    const span = row.tokenIds.length * width;
    const from = (b * newWidth + newWidth - row.tokenIds.length) * width;
    packed.set(padded.subarray(from, from + span), offset);
    offset += span;
  });
  return packed;
}

function floatOutput(outputs: Readonly<Record<string, Tensor>>, name: string, dims: readonly number[]): Float32Array {
  const tensor = outputs[name];
  if (tensor === undefined) throw new ServiceError(status.INTERNAL, `the stage graph did not return ${name}`);
  if (tensor.dtype !== 'float32' || tensor.dims.length !== dims.length || tensor.dims.some((d, i) => d !== dims[i])) {
    throw new ServiceError(
      status.INTERNAL,
      `${name}: expected float32[${dims.join(', ')}], the graph returned ${tensor.dtype}[${tensor.dims.join(', ')}]`,
    );
  }
  return tensor.data as Float32Array;
}
