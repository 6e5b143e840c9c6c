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

export interface StageRuntimeOptions {
  /** Upper bound of this stage's KV cache; crossing it answers RESOURCE_EXHAUSTED. */
  readonly kvBudgetBytes: number;
  /** onnxruntime intra-op threads; 0 or absent lets onnxruntime decide. */
  readonly intraOpThreads?: number;
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
    const session = await OnnxSession.open(graphPath, { intraOpThreads: options.intraOpThreads });
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
    return this.cache.length(sequenceId);
  }

  step(request: StepRequest): Promise<StepResult> {
    const result = this.queue.then(() => this.runStep(request));
    this.queue = result.catch(() => undefined);
    return result;
  }

  /** Frees a sequence's KV entries; returns whether it was held. */
  release(sequenceId: string): boolean {
    return this.cache.release(sequenceId);
  }

  /** Frees sequences idle for longer than `ttlMs`; returns their ids. */
  dropIdle(ttlMs: number, nowMs: number): string[] {
    return this.cache.dropIdle(ttlMs, nowMs);
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

    const admitted = this.cache.reserve(rows.map((r) => ({ sequenceId: r.sequenceId, length: r.pastLength + r.tokenIds.length })));
    let outputs: Record<string, Tensor>;
    try {
      outputs = await this.session.run(this.buildFeeds(request, newWidth, pastWidth));
    } catch (error) {
      for (const sequenceId of admitted) this.cache.release(sequenceId);
      throw error;
    }

    const totalWidth = pastWidth + newWidth;
    // A sequence released while the graph ran (its request was cancelled) is simply not kept.
    const appends: KvAppend[] = rows
      .map((r, row) => ({ sequenceId: r.sequenceId, row, count: r.tokenIds.length }))
      .filter((append) => this.cache.has(append.sequenceId));
    const { nHead } = this.config;
    const presentDims = [batch, nHead, totalWidth, headDim(this.config)];
    for (let layer = this.stage.layerStart; layer < this.stage.layerEnd; layer++) {
      const key = floatOutput(outputs, stageIoNames.presentKey(layer), presentDims);
      const value = floatOutput(outputs, stageIoNames.presentValue(layer), presentDims);
      this.cache.append(layer - this.stage.layerStart, key, value, totalWidth, appends);
    }
    this.cache.commit(appends);

    if (this.stage.isLast) {
      return { logits: floatOutput(outputs, stageIoNames.logits, [batch, this.config.vocabSize]) };
    }
    const hidden = floatOutput(outputs, stageIoNames.hiddenStatesOut, [batch, newWidth, nEmbd]);
    return { hiddenStates: packRows(hidden, rows, newWidth, nEmbd) };
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

  private buildFeeds(request: StepRequest, newWidth: number, pastWidth: number): Record<string, Tensor> {
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
      const past = this.cache.gather(sequenceIds, layer - this.stage.layerStart, pastWidth);
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
