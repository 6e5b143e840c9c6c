import { status } from '@grpc/grpc-js';
import { KvCache, type KvAppend } from '../../services/node/kv-cache';
import { ServiceError } from '../../shared/errors';

const LAYERS = 2;
const HEADS = 2;
const HEAD_DIM = 3;
const MAX_LENGTH = 64;
const TOKEN_BYTES = 2 * LAYERS * HEADS * HEAD_DIM * 4;

/** A recognisable value for one cache entry, so a misplaced copy shows which coordinate went wrong. */
function entryValue(kind: 'k' | 'v', layer: number, seq: number, head: number, token: number, d: number): number {
  return (kind === 'k' ? 1 : -1) * (layer * 10_000 + seq * 1_000 + head * 100 + token + d / 10);
}

/** A [B, H, columns, D] present tensor whose row b holds `counts[b]` real tokens at its end, left-padded with NaN. */
function present(
  kind: 'k' | 'v',
  layer: number,
  rows: readonly { seq: number; firstToken: number; count: number }[],
  columns: number,
): Float32Array {
  const data = new Float32Array(rows.length * HEADS * columns * HEAD_DIM).fill(Number.NaN);
  rows.forEach(({ seq, firstToken, count }, b) => {
    for (let h = 0; h < HEADS; h++) {
      for (let i = 0; i < count; i++) {
        const column = columns - count + i;
        for (let d = 0; d < HEAD_DIM; d++) {
          data[((b * HEADS + h) * columns + column) * HEAD_DIM + d] = entryValue(kind, layer, seq, h, firstToken + i, d);
        }
      }
    }
  });
  return data;
}

/** The expected left-padded [B, H, P, D] past, written out coordinate by coordinate. */
function expectedPast(kind: 'k' | 'v', layer: number, rows: readonly { seq: number; length: number }[], pastLength: number): Float32Array {
  const data = new Float32Array(rows.length * HEADS * pastLength * HEAD_DIM);
  rows.forEach(({ seq, length }, b) => {
    for (let h = 0; h < HEADS; h++) {
      for (let t = 0; t < length; t++) {
        const column = pastLength - length + t;
        for (let d = 0; d < HEAD_DIM; d++) {
          data[((b * HEADS + h) * pastLength + column) * HEAD_DIM + d] = entryValue(kind, layer, seq, h, t, d);
        }
      }
    }
  });
  return data;
}

function newCache(kvBudgetBytes = 1 << 20, clock?: () => number): KvCache {
  return new KvCache({ layerCount: LAYERS, nHead: HEADS, headDim: HEAD_DIM, maxLength: MAX_LENGTH, kvBudgetBytes, clock });
}

/** Runs one step's cache bookkeeping the way the stage runtime does: reserve, append every layer, commit. */
function appendStep(cache: KvCache, rows: readonly { id: string; seq: number; count: number }[]): void {
  const columns = Math.max(...rows.map((r) => cache.length(r.id) + r.count));
  cache.reserve(rows.map((r) => ({ sequenceId: r.id, length: cache.length(r.id) + r.count })));
  const appends: KvAppend[] = rows.map((r, row) => ({ sequenceId: r.id, row, count: r.count }));
  const presentRows = rows.map((r) => ({ seq: r.seq, firstToken: cache.length(r.id), count: r.count }));
  for (let layer = 0; layer < LAYERS; layer++) {
    cache.append(layer, present('k', layer, presentRows, columns), present('v', layer, presentRows, columns), columns, appends);
  }
  cache.commit(appends);
}

function expectCode(fn: () => unknown, code: status): void {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ServiceError);
    expect((error as ServiceError).code).toBe(code);
    return;
  }
  throw new Error(`expected a ServiceError with code ${status[code]}`);
}

describe('KvCache', () => {
  test('appends only the real (right-aligned) present columns and gathers a left-padded batch', () => {
    const cache = newCache();
    appendStep(cache, [
      { id: 'a', seq: 1, count: 5 },
      { id: 'b', seq: 2, count: 2 },
    ]);
    appendStep(cache, [
      { id: 'a', seq: 1, count: 1 },
      { id: 'b', seq: 2, count: 3 },
    ]);
    expect(cache.length('a')).toBe(6);
    expect(cache.length('b')).toBe(5);
    for (let layer = 0; layer < LAYERS; layer++) {
      const rows = [
        { seq: 2, length: 5 },
        { seq: 1, length: 6 },
      ];
      const past = cache.gather(['b', 'a'], layer, 7);
      expect(Array.from(past.key)).toEqual(Array.from(expectedPast('k', layer, rows, 7)));
      expect(Array.from(past.value)).toEqual(Array.from(expectedPast('v', layer, rows, 7)));
    }
  });

  test('an unknown sequence gathers as all padding and has length 0', () => {
    const cache = newCache();
    appendStep(cache, [{ id: 'a', seq: 1, count: 2 }]);
    const past = cache.gather(['new', 'a'], 0, 2);
    const expected = expectedPast('k', 0, [{ seq: 0, length: 0 }, { seq: 1, length: 2 }], 2);
    expect(Array.from(past.key)).toEqual(Array.from(expected));
    expect(cache.length('new')).toBe(0);
    expect(cache.has('new')).toBe(false);
  });

  test('growing past the first allocation keeps every earlier entry in place', () => {
    const cache = newCache();
    for (let step = 0; step < 40; step++) appendStep(cache, [{ id: 'a', seq: 3, count: 1 }]);
    const past = cache.gather(['a'], 1, 40);
    expect(Array.from(past.value)).toEqual(Array.from(expectedPast('v', 1, [{ seq: 3, length: 40 }], 40)));
  });

  test('admitting a sequence past the budget throws RESOURCE_EXHAUSTED and changes nothing', () => {
    const cache = newCache(TOKEN_BYTES * 20);
    appendStep(cache, [{ id: 'a', seq: 1, count: 16 }]);
    const bytesBefore = cache.bytes;
    expectCode(() => cache.reserve([{ sequenceId: 'b', length: 5 }]), status.RESOURCE_EXHAUSTED);
    expect(cache.has('b')).toBe(false);
    expect(cache.sequenceCount).toBe(1);
    expect(cache.bytes).toBe(bytesBefore);
    expect(cache.length('a')).toBe(16);
  });

  test('growth falls back to the exact size when doubling would cross the budget, then refuses', () => {
    const cache = newCache(TOKEN_BYTES * 20);
    appendStep(cache, [{ id: 'a', seq: 1, count: 17 }]);
    appendStep(cache, [{ id: 'a', seq: 1, count: 3 }]);
    expect(cache.length('a')).toBe(20);
    expect(cache.bytes).toBeLessThanOrEqual(TOKEN_BYTES * 20);
    expectCode(() => cache.reserve([{ sequenceId: 'a', length: 21 }]), status.RESOURCE_EXHAUSTED);
    const past = cache.gather(['a'], 0, 20);
    expect(Array.from(past.key)).toEqual(Array.from(expectedPast('k', 0, [{ seq: 1, length: 20 }], 20)));
  });

  test('a batch that does not fit as a whole admits none of its sequences', () => {
    const cache = newCache(TOKEN_BYTES * 20);
    expectCode(
      () =>
        cache.reserve([
          { sequenceId: 'a', length: 12 },
          { sequenceId: 'b', length: 12 },
        ]),
      status.RESOURCE_EXHAUSTED,
    );
    expect(cache.sequenceCount).toBe(0);
    expect(cache.bytes).toBe(0);
  });

  test('bytes count the allocated capacity of every layer, key and value', () => {
    const cache = newCache(TOKEN_BYTES * 10);
    cache.reserve([{ sequenceId: 'a', length: 7 }]);
    // The budget only fits the exact 7 tokens, not the default first allocation.
    expect(cache.bytes).toBe(7 * 2 * LAYERS * HEADS * HEAD_DIM * Float32Array.BYTES_PER_ELEMENT);
  });

  test('release frees the bytes of a sequence and forgets it', () => {
    const cache = newCache();
    appendStep(cache, [{ id: 'a', seq: 1, count: 4 }]);
    appendStep(cache, [{ id: 'b', seq: 2, count: 4 }]);
    const both = cache.bytes;
    expect(cache.release('a')).toBe(true);
    expect(cache.bytes).toBe(both / 2);
    expect(cache.release('a')).toBe(false);
    expect(cache.release('b')).toBe(true);
    expect(cache.bytes).toBe(0);
    expect(cache.sequenceCount).toBe(0);
  });

  test('dropIdle frees only the sequences untouched for longer than the ttl', () => {
    let nowMs = 1_000;
    const cache = newCache(1 << 20, () => nowMs);
    appendStep(cache, [{ id: 'old', seq: 1, count: 2 }]);
    nowMs = 5_000;
    appendStep(cache, [{ id: 'fresh', seq: 2, count: 2 }]);
    const freshBytes = cache.bytes / 2;
    expect(cache.dropIdle(3_000, 6_000)).toEqual(['old']);
    expect(cache.has('old')).toBe(false);
    expect(cache.has('fresh')).toBe(true);
    expect(cache.bytes).toBe(freshBytes);
    expect(cache.dropIdle(3_000, 6_000)).toEqual([]);
  });

  test('a sequence longer than the model positions is rejected as INVALID_ARGUMENT', () => {
    const cache = newCache();
    expectCode(() => cache.reserve([{ sequenceId: 'a', length: MAX_LENGTH + 1 }]), status.INVALID_ARGUMENT);
  });
});
