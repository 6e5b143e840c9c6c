import { status } from '@grpc/grpc-js';
import { ServiceError } from '../../shared/errors';

export interface KvCacheOptions {
  /** How many layers this stage holds (local layer indices 0 … layerCount - 1). */
  readonly layerCount: number;
  readonly nHead: number;
  readonly headDim: number;
  /** The most tokens one sequence can hold (the model's nPositions): growth never goes past it. */
  readonly maxLength: number;
  /** Upper bound on the bytes of every key and value buffer together. */
  readonly kvBudgetBytes: number;
  /** Milliseconds clock for idle tracking; injectable so tests control time. */
  readonly clock?: () => number;
}

/** What one sequence of a step writes: `count` real new entries, read from row `row` of a present tensor. */
export interface KvAppend {
  readonly sequenceId: string;
  readonly row: number;
  readonly count: number;
}

/** Left-padded past of a batch for one layer, [B, H, P, D] each. */
export interface GatheredPast {
  readonly key: Float32Array;
  readonly value: Float32Array;
}

interface LayerBuffers {
  key: Float32Array;
  value: Float32Array;
}

interface SequenceEntry {
  length: number;
  capacity: number;
  layers: LayerBuffers[];
  lastUsedMs: number;
}

const FLOAT32_BYTES = 4;
/** Smallest allocation for a new sequence, so short decodes do not regrow every token. */
const MIN_CAPACITY_TOKENS = 16;

/**
 * Keys and values of the layers of one stage, per sequence, each stored as [H, capacity, D] so
 * one head's entries are contiguous and a gather copies P·D floats per head in one call.
 * Growth doubles (amortised O(1) per token) but never past the budget: when the doubled size
 * does not fit, the exact size is tried, and when that does not fit either the request fails
 * with RESOURCE_EXHAUSTED. Nothing live is ever evicted to make room.
 */
export class KvCache {
  private readonly sequences = new Map<string, SequenceEntry>();
  private allocatedBytes = 0;
  private readonly clock: () => number;

  constructor(private readonly options: KvCacheOptions) {
    this.clock = options.clock ?? Date.now;
  }

  /** Bytes held by every key and value buffer (capacity, not just the filled part). */
  get bytes(): number {
    return this.allocatedBytes;
  }

  get sequenceCount(): number {
    return this.sequences.size;
  }

  get kvBudgetBytes(): number {
    return this.options.kvBudgetBytes;
  }

  has(sequenceId: string): boolean {
    return this.sequences.has(sequenceId);
  }

  /** Tokens cached for a sequence; 0 for an unknown one. */
  length(sequenceId: string): number {
    return this.sequences.get(sequenceId)?.length ?? 0;
  }

  /**
   * Makes room for every sequence to reach its `length` tokens, admitting unknown sequences.
   * All or nothing: if the whole set does not fit in the budget, nothing changes and
   * RESOURCE_EXHAUSTED is thrown. Returns the ids that were admitted by this call.
   */
  reserve(requests: readonly { sequenceId: string; length: number }[]): string[] {
    const plans: { sequenceId: string; entry: SequenceEntry | undefined; needed: number; capacity: number }[] = [];
    for (const { sequenceId, length } of requests) {
      if (length > this.options.maxLength) {
        throw ServiceError.invalidArgument(
          `sequence ${sequenceId}`,
          `needs ${length} cached tokens, more than the model's ${this.options.maxLength} positions`,
        );
      }
      const entry = this.sequences.get(sequenceId);
      if (entry !== undefined && length <= entry.capacity) continue;
      const current = entry?.capacity ?? 0;
      plans.push({ sequenceId, entry, needed: length, capacity: this.grownCapacity(current, length) });
    }
    if (this.allocatedBytes + this.extraBytes(plans) > this.options.kvBudgetBytes) {
      // Doubling is an optimisation, not a need: retry with exact sizes before refusing.
      for (const plan of plans) plan.capacity = plan.needed;
      const extra = this.extraBytes(plans);
      if (this.allocatedBytes + extra > this.options.kvBudgetBytes) {
        throw new ServiceError(
          status.RESOURCE_EXHAUSTED,
          `KV cache budget exhausted: ${this.allocatedBytes} bytes held by ${this.sequences.size} sequences, ` +
            `${extra} more needed, budget ${this.options.kvBudgetBytes} bytes`,
        );
      }
    }
    const now = this.clock();
    const admitted: string[] = [];
    for (const plan of plans) {
      this.allocatedBytes += (plan.capacity - (plan.entry?.capacity ?? 0)) * this.tokenBytes;
      if (plan.entry === undefined) {
        this.sequences.set(plan.sequenceId, {
          length: 0,
          capacity: plan.capacity,
          layers: this.allocateLayers(plan.capacity),
          lastUsedMs: now,
        });
        admitted.push(plan.sequenceId);
      } else {
        this.resize(plan.entry, plan.capacity);
        plan.entry.lastUsedMs = now;
      }
    }
    return admitted;
  }

  /**
   * Copies the left-padded past of `sequenceIds` for one local layer into [B, H, pastLength, D]
   * tensors: a row with `p` cached tokens fills columns pastLength - p … pastLength - 1, the
   * rest stays zero (masked by the attention mask).
   */
  gather(sequenceIds: readonly string[], layer: number, pastLength: number): GatheredPast {
    const { nHead, headDim } = this.options;
    const rowStride = nHead * pastLength * headDim;
    const key = new Float32Array(sequenceIds.length * rowStride);
    const value = new Float32Array(sequenceIds.length * rowStride);
    sequenceIds.forEach((sequenceId, b) => {
      const entry = this.sequences.get(sequenceId);
      if (entry === undefined || entry.length === 0) return;
      if (entry.length > pastLength) {
        throw new ServiceError(
          status.INTERNAL,
          `sequence ${sequenceId} has ${entry.length} cached tokens, more than the batch past ${pastLength}`,
        );
      }
      const buffers = entry.layers[layer];
      const count = entry.length * headDim;
      for (let h = 0; h < nHead; h++) {
        const from = h * entry.capacity * headDim;
        const to = b * rowStride + (h * pastLength + pastLength - entry.length) * headDim;
        key.set(buffers.key.subarray(from, from + count), to);
        value.set(buffers.value.subarray(from, from + count), to);
      }
      entry.lastUsedMs = this.clock();
    });
    return { key, value };
  }

  /**
   * Appends the real new entries of a step for one local layer. `presentKey`/`presentValue` are
   * [B, H, columns, D]; a row's `count` real entries are its last `count` columns (left padding).
   * Capacity must have been reserved first; the sequence length advances with `commit`.
   */
  append(layer: number, presentKey: Float32Array, presentValue: Float32Array, columns: number, appends: readonly KvAppend[]): void {
    const { nHead, headDim } = this.options;
    const rowStride = nHead * columns * headDim;
    for (const { sequenceId, row, count } of appends) {
      const entry = this.requireEntry(sequenceId);
      if (entry.length + count > entry.capacity) {
        throw new ServiceError(
          status.INTERNAL,
          `sequence ${sequenceId}: appending ${count} entries to ${entry.length} exceeds the reserved ${entry.capacity}`,
        );
      }
      const buffers = entry.layers[layer];
      const span = count * headDim;
      for (let h = 0; h < nHead; h++) {
        const from = row * rowStride + (h * columns + columns - count) * headDim;
        const to = (h * entry.capacity + entry.length) * headDim;
        buffers.key.set(presentKey.subarray(from, from + span), to);
        buffers.value.set(presentValue.subarray(from, from + span), to);
      }
    }
  }

  /** Advances each sequence's length once every layer of the step has been appended. */
  commit(appends: readonly KvAppend[]): void {
    const now = this.clock();
    for (const { sequenceId, count } of appends) {
      const entry = this.requireEntry(sequenceId);
      entry.length += count;
      entry.lastUsedMs = now;
    }
  }

  /** Marks sequences as used now (a step that read their past from somewhere else). */
  touch(sequenceIds: readonly string[]): void {
    const now = this.clock();
    for (const sequenceId of sequenceIds) {
      const entry = this.sequences.get(sequenceId);
      if (entry !== undefined) entry.lastUsedMs = now;
    }
  }

  /** Frees a sequence; returns whether it was cached. */
  release(sequenceId: string): boolean {
    const entry = this.sequences.get(sequenceId);
    if (entry === undefined) return false;
    this.sequences.delete(sequenceId);
    this.allocatedBytes -= entry.capacity * this.tokenBytes;
    return true;
  }

  /** Frees the sequences untouched for more than `ttlMs` (abandoned by a caller that died); returns their ids. */
  dropIdle(ttlMs: number, nowMs: number): string[] {
    const dropped: string[] = [];
    for (const [sequenceId, entry] of this.sequences) {
      if (nowMs - entry.lastUsedMs > ttlMs) dropped.push(sequenceId);
    }
    for (const sequenceId of dropped) this.release(sequenceId);
    return dropped;
  }

  /** Bytes of one cached token across every layer, key and value. */
  private get tokenBytes(): number {
    const { layerCount, nHead, headDim } = this.options;
    return 2 * layerCount * nHead * headDim * FLOAT32_BYTES;
  }

  private extraBytes(plans: readonly { entry: SequenceEntry | undefined; capacity: number }[]): number {
    return plans.reduce((sum, plan) => sum + (plan.capacity - (plan.entry?.capacity ?? 0)) * this.tokenBytes, 0);
  }

  private grownCapacity(current: number, needed: number): number {
    const doubled = Math.max(MIN_CAPACITY_TOKENS, current * 2);
    return Math.min(this.options.maxLength, Math.max(needed, doubled));
  }

  private allocateLayers(capacity: number): LayerBuffers[] {
    const { layerCount, nHead, headDim } = this.options;
    return Array.from({ length: layerCount }, () => ({
      key: new Float32Array(nHead * capacity * headDim),
      value: new Float32Array(nHead * capacity * headDim),
    }));
  }

  private resize(entry: SequenceEntry, capacity: number): void {
    const { nHead, headDim } = this.options;
    const layers = this.allocateLayers(capacity);
    const count = entry.length * headDim;
    entry.layers.forEach((old, l) => {
      for (let h = 0; h < nHead; h++) {
        const from = h * entry.capacity * headDim;
        const to = h * capacity * headDim;
        layers[l].key.set(old.key.subarray(from, from + count), to);
        layers[l].value.set(old.value.subarray(from, from + count), to);
      }
    });
    entry.layers = layers;
    entry.capacity = capacity;
  }

  private requireEntry(sequenceId: string): SequenceEntry {
    const entry = this.sequences.get(sequenceId);
    if (entry === undefined) {
      throw new ServiceError(status.FAILED_PRECONDITION, `sequence ${sequenceId} is not in the KV cache`);
    }
    return entry;
  }
}
