import * as grpc from '@grpc/grpc-js';
import { ServiceError } from '../../shared/errors';

interface Entry {
  data: Float32Array;
  /** Positions held: 0 … length - 1. */
  length: number;
}

/**
 * What a stage that is not the last passed on for each open sequence: its output hidden states,
 * position by position. When the next stage's replica is lost, a replacement rebuilds its KV
 * cache from these (a partial replay: only the lost stage recomputes), instead of every stage
 * replaying the whole history. hidden × 4 bytes per position (for GPT-2 small an eighth of what
 * the KV cache of a four-layer stage costs), reserved with the KV at open (KvCache's
 * extraBytesPerToken), so the KV budget bounds both.
 */
export class HiddenStateCache {
  private readonly sequences = new Map<string, Entry>();
  private allocatedBytes = 0;

  constructor(private readonly hiddenSize: number) {}

  /** Positions held for a sequence (0 for an unknown one). */
  length(sequenceId: string): number {
    return this.sequences.get(sequenceId)?.length ?? 0;
  }

  /** Stores `count` positions from `start`, read from `packed` at token offset `offset`; whatever followed `start` is dropped. */
  write(sequenceId: string, start: number, count: number, packed: Float32Array, offset: number): void {
    const h = this.hiddenSize;
    let entry = this.sequences.get(sequenceId);
    if (entry === undefined) {
      entry = { data: new Float32Array(Math.max(16, start + count) * h), length: 0 };
      this.sequences.set(sequenceId, entry);
      this.allocatedBytes += entry.data.byteLength;
    }
    // A gap (positions this stage never passed on) leaves the cache unusable for a refill: forget it.
    if (start > entry.length) {
      entry.length = 0;
      if (start !== 0) return;
    }
    const needed = (start + count) * h;
    if (needed > entry.data.length) {
      const grown = new Float32Array(Math.max(needed, entry.data.length * 2));
      grown.set(entry.data.subarray(0, entry.length * h));
      this.allocatedBytes += grown.byteLength - entry.data.byteLength;
      entry.data = grown;
    }
    entry.data.set(packed.subarray(offset * h, (offset + count) * h), start * h);
    entry.length = start + count;
  }

  /** Cuts a sequence back to `length` positions; FAILED_PRECONDITION when it holds fewer. */
  truncate(sequenceId: string, length: number): void {
    const held = this.length(sequenceId);
    if (length > held) throw new ServiceError(grpc.status.FAILED_PRECONDITION, `sequence ${sequenceId}: ${held} hidden states cached, cannot keep ${length}`);
    const entry = this.sequences.get(sequenceId);
    if (entry !== undefined) entry.length = length;
  }

  /** A copy of positions 0 … length - 1, packed [length, hidden]. */
  read(sequenceId: string, length: number): Float32Array {
    const held = this.length(sequenceId);
    if (length > held) throw new ServiceError(grpc.status.FAILED_PRECONDITION, `sequence ${sequenceId}: ${held} hidden states cached, ${length} needed`);
    return (this.sequences.get(sequenceId) as Entry).data.slice(0, length * this.hiddenSize);
  }

  delete(sequenceId: string): void {
    const entry = this.sequences.get(sequenceId);
    if (entry === undefined) return;
    this.allocatedBytes -= entry.data.byteLength;
    this.sequences.delete(sequenceId);
  }

  /** Bytes allocated (within what the KV budget reserves for them: hidden × 4 per reserved position). */
  get bytes(): number {
    return this.allocatedBytes;
  }
}
