import { status } from '@grpc/grpc-js';
import { ServiceError } from '../../shared/errors';

export interface KvCacheOptions {
  /** How many layers this stage holds (local layer indices 0 … layerCount - 1). */
  readonly layerCount: number;
  /** Key/value heads per layer (fewer than attention heads under grouped-query attention). */
  readonly kvHeads: number;
  readonly headDim: number;
  /** The most tokens one sequence can hold (the model's context length). */
  readonly maxLength: number;
  /** Upper bound on the KV memory that admitted sequences may reserve. */
  readonly kvBudgetBytes: number;
  /**
   * Bytes per reserved position the stage holds for a sequence outside this cache (the hidden
   * states a stage that is not the last keeps for a partial replay); counted in the budget.
   */
  readonly extraBytesPerToken?: number;
  /** Milliseconds clock for idle tracking; injectable so tests control time. */
  readonly clock?: () => number;
}

/**
 * The past of a batch, ready to feed a stage graph: the rows of one group, contiguous, so every
 * layer's past is a view into the cache itself, never a copy.
 */
export interface KvView {
  /** The view's sequences in row order: the order the graph's batch rows must follow. */
  readonly order: readonly string[];
  /** Past columns the graph sees: 0 when no row has a past (a first prompt), else the group's width. */
  readonly pastWidth: number;
  /** Per local layer, [rows, kvHeads, pastWidth, headDim] views into the cache. */
  past(layer: number): { readonly key: Float32Array; readonly value: Float32Array };
}

/**
 * A batch-shaped slab: per layer one key and one value buffer [rowCapacity, kvHeads, width, D].
 * Rows 0 … rows.length - 1 are occupied, densely. Row r's sequence holds its entries in columns
 * 0 … length - 1 (right-padded), which is how the stage graphs read a past.
 */
interface Group {
  rowCapacity: number;
  width: number;
  keys: Float32Array[];
  values: Float32Array[];
  readonly rows: string[];
}

interface Entry {
  length: number;
  reserved: number;
  group: Group | undefined;
  row: number;
  lastUsedMs: number;
}

const FLOAT32_BYTES = 4;
/** Widths grow in steps of this many positions (and by a quarter at least), so growth copies are rare. */
const WIDTH_GRANULE = 16;
const WIDTH_GROWTH = 1.25;
/** Spare rows a group gains when sequences join it, so each join does not reallocate. */
const ROW_GROWTH = 1.5;

/**
 * Keys and values of one stage's layers for every live sequence. Sequences live in groups,
 * batch-shaped buffers whose rows a step's batch can be fed from in place: when the same
 * sequences step together again (a stable micro-batch, every decode step of it), the graph reads
 * their past straight from the cache and the runtime appends only the step's new entries. When a
 * batch's membership changes, `view` rearranges once — sequences joining a group whose members
 * all step are appended to it, anything else gets a new group — and the old rows are compacted.
 * Admission reserves each sequence's whole length up front against the budget, so a running
 * sequence never fails for memory; nothing live is ever evicted.
 */
export class KvCache {
  private readonly sequences = new Map<string, Entry>();
  private readonly groups = new Set<Group>();
  private reservedTokens = 0;
  private allocatedBytes = 0;
  private readonly clock: () => number;

  constructor(private readonly options: KvCacheOptions) {
    this.clock = options.clock ?? Date.now;
  }

  /** Bytes one cached token costs across this stage's layers: 2 × layers × kvHeads × headDim × 4. */
  get bytesPerToken(): number {
    const { layerCount, kvHeads, headDim } = this.options;
    return 2 * layerCount * kvHeads * headDim * FLOAT32_BYTES;
  }

  /** What one reserved position costs against the budget: its KV entries and what the stage keeps beside them. */
  get reservedBytesPerToken(): number {
    return this.bytesPerToken + (this.options.extraBytesPerToken ?? 0);
  }

  /** Bytes reserved by admitted sequences (what the budget bounds). */
  get reservedBytes(): number {
    return this.reservedTokens * this.reservedBytesPerToken;
  }

  /** Bytes of every buffer allocated (reserved room is allocated as sequences grow into it). */
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

  /** Positions reserved for a sequence; 0 for an unknown one. */
  reserved(sequenceId: string): number {
    return this.sequences.get(sequenceId)?.reserved ?? 0;
  }

  /**
   * Reserves room for every sequence to reach `length` tokens, admitting unknown sequences. All
   * or nothing: if the whole set does not fit in the budget, nothing changes and
   * RESOURCE_EXHAUSTED is thrown. Returns the ids that were admitted by this call.
   */
  reserve(requests: readonly { readonly sequenceId: string; readonly length: number }[]): string[] {
    let extra = 0;
    for (const { sequenceId, length } of requests) {
      if (length > this.options.maxLength) {
        throw ServiceError.invalidArgument(`sequence ${sequenceId}`, `needs ${length} cached tokens, more than the model's ${this.options.maxLength} positions`);
      }
      extra += Math.max(0, length - (this.sequences.get(sequenceId)?.reserved ?? 0));
    }
    if (extra > 0 && (this.reservedTokens + extra) * this.reservedBytesPerToken > this.options.kvBudgetBytes) {
      throw new ServiceError(
        status.RESOURCE_EXHAUSTED,
        `KV cache budget exhausted: ${this.reservedBytes} bytes reserved by ${this.sequences.size} sequences, ` +
          `${extra * this.reservedBytesPerToken} more needed, budget ${this.options.kvBudgetBytes} bytes`,
      );
    }
    const now = this.clock();
    const admitted: string[] = [];
    for (const { sequenceId, length } of requests) {
      const entry = this.sequences.get(sequenceId);
      if (entry === undefined) {
        this.sequences.set(sequenceId, { length: 0, reserved: length, group: undefined, row: -1, lastUsedMs: now });
        this.reservedTokens += length;
        admitted.push(sequenceId);
      } else {
        if (length > entry.reserved) {
          this.reservedTokens += length - entry.reserved;
          entry.reserved = length;
        }
        entry.lastUsedMs = now;
      }
    }
    return admitted;
  }

  /**
   * Makes the given sequences the contiguous rows of one group with room for `newTokens[i]` more
   * entries each, and returns that view. Sequences must have been reserved.
   */
  view(sequenceIds: readonly string[], newTokens: readonly number[]): KvView {
    const entries = sequenceIds.map((id) => this.requireEntry(id));
    entries.forEach((entry, i) => {
      if (entry.length + newTokens[i] > entry.reserved) {
        throw new ServiceError(status.INTERNAL, `sequence ${sequenceIds[i]}: ${entry.length} + ${newTokens[i]} entries exceed its reserved ${entry.reserved}`);
      }
    });
    const group = this.arrange(sequenceIds, entries);
    const needed = Math.max(...entries.map((entry, i) => entry.length + newTokens[i]));
    if (needed > group.width) this.widen(group, needed);
    const start = Math.min(...entries.map((e) => e.row));
    const order = group.rows.slice(start, start + sequenceIds.length);
    const pastWidth = entries.every((e) => e.length === 0) ? 0 : group.width;
    const now = this.clock();
    for (const entry of entries) entry.lastUsedMs = now;
    const { kvHeads, headDim } = this.options;
    const rowStride = kvHeads * group.width * headDim;
    const empty = new Float32Array(0);
    return {
      order,
      pastWidth,
      past: (layer) =>
        pastWidth === 0
          ? { key: empty, value: empty }
          : {
              key: group.keys[layer].subarray(start * rowStride, (start + order.length) * rowStride),
              value: group.values[layer].subarray(start * rowStride, (start + order.length) * rowStride),
            },
    };
  }

  /**
   * Appends a step's new entries for one local layer. `presentKey` / `presentValue` are
   * [rows, kvHeads, columns, D] in `view.order`; row r's `counts[r]` real entries are its first
   * columns. The sequence lengths advance with `commit`, once every layer is appended.
   */
  append(view: KvView, layer: number, presentKey: Float32Array, presentValue: Float32Array, columns: number, counts: readonly number[]): void {
    const { kvHeads, headDim } = this.options;
    view.order.forEach((sequenceId, r) => {
      const entry = this.requireEntry(sequenceId);
      const group = entry.group as Group;
      const span = counts[r] * headDim;
      for (let h = 0; h < kvHeads; h++) {
        const from = ((r * kvHeads + h) * columns) * headDim;
        const to = ((entry.row * kvHeads + h) * group.width + entry.length) * headDim;
        group.keys[layer].set(presentKey.subarray(from, from + span), to);
        group.values[layer].set(presentValue.subarray(from, from + span), to);
      }
    });
  }

  /** Advances each sequence of the view by its count of appended entries. */
  commit(view: KvView, counts: readonly number[]): void {
    const now = this.clock();
    view.order.forEach((sequenceId, r) => {
      const entry = this.requireEntry(sequenceId);
      entry.length += counts[r];
      entry.lastUsedMs = now;
    });
  }

  /**
   * Cuts a sequence back to its first `length` entries (a failover replays from there); its
   * reservation stays. FAILED_PRECONDITION when it holds fewer.
   */
  truncate(sequenceId: string, length: number): void {
    const entry = this.requireEntry(sequenceId);
    if (length > entry.length) throw new ServiceError(status.FAILED_PRECONDITION, `sequence ${sequenceId} holds ${entry.length} entries, cannot keep ${length}`);
    entry.length = length;
    entry.lastUsedMs = this.clock();
  }

  /** Frees a sequence; returns whether it was cached. */
  release(sequenceId: string): boolean {
    const entry = this.sequences.get(sequenceId);
    if (entry === undefined) return false;
    this.sequences.delete(sequenceId);
    this.reservedTokens -= entry.reserved;
    if (entry.group !== undefined) this.removeRow(entry.group, entry.row);
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

  /** Marks sequences as used now. */
  touch(sequenceIds: readonly string[]): void {
    const now = this.clock();
    for (const sequenceId of sequenceIds) {
      const entry = this.sequences.get(sequenceId);
      if (entry !== undefined) entry.lastUsedMs = now;
    }
  }

  /** Places the sequences on contiguous rows of one group, moving as few as it can. */
  private arrange(sequenceIds: readonly string[], entries: readonly Entry[]): Group {
    const first = entries[0].group;
    if (first !== undefined && entries.every((e) => e.group === first)) {
      const rows = entries.map((e) => e.row);
      if (Math.max(...rows) - Math.min(...rows) === entries.length - 1) return first;
    }
    // The group holding most of the batch takes the others if none of its members is missing from the batch.
    const counts = new Map<Group, number>();
    for (const entry of entries) if (entry.group !== undefined) counts.set(entry.group, (counts.get(entry.group) ?? 0) + 1);
    let host: Group | undefined;
    for (const [group, count] of counts) if (host === undefined || count > (counts.get(host) as number)) host = group;
    const wanted = new Set(sequenceIds);
    if (host === undefined || !host.rows.every((id) => wanted.has(id))) {
      host = this.allocate(entries.length, this.initialWidth(entries));
    }
    const target = host;
    const joining = sequenceIds.filter((_, i) => entries[i].group !== target);
    if (target.rows.length + joining.length > target.rowCapacity) {
      this.reshape(target, Math.max(target.rows.length + joining.length, Math.ceil(target.rowCapacity * ROW_GROWTH)), target.width);
    }
    for (const sequenceId of joining) {
      const entry = this.requireEntry(sequenceId);
      if (entry.length > target.width) this.widen(target, entry.length);
      const row = target.rows.length;
      target.rows.push(sequenceId);
      if (entry.group !== undefined) {
        this.copyRow(entry.group, entry.row, target, row, entry.length);
        this.removeRow(entry.group, entry.row);
      }
      entry.group = target;
      entry.row = row;
    }
    return target;
  }

  private initialWidth(entries: readonly Entry[]): number {
    return Math.min(this.options.maxLength, roundUp(Math.max(1, ...entries.map((e) => e.length)), WIDTH_GRANULE));
  }

  private widen(group: Group, needed: number): void {
    const width = Math.min(this.options.maxLength, Math.max(roundUp(needed, WIDTH_GRANULE), roundUp(Math.ceil(group.width * WIDTH_GROWTH), WIDTH_GRANULE)));
    this.reshape(group, group.rowCapacity, width);
  }

  private allocate(rowCapacity: number, width: number): Group {
    const size = rowCapacity * this.options.kvHeads * width * this.options.headDim;
    const group: Group = {
      rowCapacity,
      width,
      keys: Array.from({ length: this.options.layerCount }, () => new Float32Array(size)),
      values: Array.from({ length: this.options.layerCount }, () => new Float32Array(size)),
      rows: [],
    };
    this.groups.add(group);
    this.allocatedBytes += 2 * this.options.layerCount * size * FLOAT32_BYTES;
    return group;
  }

  /** Reallocates a group's buffers with new dimensions, keeping every row's entries. */
  private reshape(group: Group, rowCapacity: number, width: number): void {
    const old = { ...group, keys: group.keys, values: group.values };
    const size = rowCapacity * this.options.kvHeads * width * this.options.headDim;
    this.allocatedBytes += 2 * this.options.layerCount * (size - group.rowCapacity * this.options.kvHeads * group.width * this.options.headDim) * FLOAT32_BYTES;
    group.keys = Array.from({ length: this.options.layerCount }, () => new Float32Array(size));
    group.values = Array.from({ length: this.options.layerCount }, () => new Float32Array(size));
    group.rowCapacity = rowCapacity;
    group.width = width;
    group.rows.forEach((sequenceId, row) => this.copyRow(old, row, group, row, this.requireEntry(sequenceId).length));
  }

  /** Copies the first `length` entries of a row, every layer and head. */
  private copyRow(from: Pick<Group, 'width' | 'keys' | 'values'>, fromRow: number, to: Group, toRow: number, length: number): void {
    const { kvHeads, headDim, layerCount } = this.options;
    const span = length * headDim;
    if (span === 0) return;
    for (let layer = 0; layer < layerCount; layer++) {
      for (let h = 0; h < kvHeads; h++) {
        const source = (fromRow * kvHeads + h) * from.width * headDim;
        const target = (toRow * kvHeads + h) * to.width * headDim;
        to.keys[layer].set(from.keys[layer].subarray(source, source + span), target);
        to.values[layer].set(from.values[layer].subarray(source, source + span), target);
      }
    }
  }

  /** Empties a row, keeping the group dense: the last row moves into the hole; an empty group is freed. */
  private removeRow(group: Group, row: number): void {
    const last = group.rows.length - 1;
    if (row !== last) {
      const moved = group.rows[last];
      const entry = this.requireEntry(moved);
      this.copyRow(group, last, group, row, entry.length);
      group.rows[row] = moved;
      entry.row = row;
    }
    group.rows.pop();
    if (group.rows.length === 0) {
      this.groups.delete(group);
      this.allocatedBytes -= 2 * this.options.layerCount * group.rowCapacity * this.options.kvHeads * group.width * this.options.headDim * FLOAT32_BYTES;
    }
  }

  private requireEntry(sequenceId: string): Entry {
    const entry = this.sequences.get(sequenceId);
    if (entry === undefined) throw new ServiceError(status.FAILED_PRECONDITION, `sequence ${sequenceId} is not in the KV cache`);
    return entry;
  }
}

function roundUp(value: number, granule: number): number {
  return Math.ceil(value / granule) * granule;
}
