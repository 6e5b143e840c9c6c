import { status } from '@grpc/grpc-js';
import { KvCache, type KvView } from '../../services/node/kv-cache';
import { ServiceError } from '../../shared/errors';

const LAYERS = 2;
const KV_HEADS = 2;
const HEAD_DIM = 3;
const MAX_LENGTH = 64;
const TOKEN_BYTES = 2 * LAYERS * KV_HEADS * HEAD_DIM * 4;

/** A recognisable value for one cache entry, so a misplaced copy shows which coordinate went wrong. */
function entryValue(kind: 'k' | 'v', layer: number, seq: number, head: number, token: number, d: number): number {
  return (kind === 'k' ? 1 : -1) * (layer * 10_000 + seq * 1_000 + head * 100 + token + d / 10);
}

/** A graph's present output [B, kvHeads, columns, D]: row b's `count` new entries first, NaN padding after. */
function present(kind: 'k' | 'v', layer: number, rows: readonly { seq: number; firstToken: number; count: number }[], columns: number): Float32Array {
  const data = new Float32Array(rows.length * KV_HEADS * columns * HEAD_DIM).fill(Number.NaN);
  rows.forEach(({ seq, firstToken, count }, b) => {
    for (let h = 0; h < KV_HEADS; h++) {
      for (let i = 0; i < count; i++) {
        for (let d = 0; d < HEAD_DIM; d++) data[((b * KV_HEADS + h) * columns + i) * HEAD_DIM + d] = entryValue(kind, layer, seq, h, firstToken + i, d);
      }
    }
  });
  return data;
}

function newCache(kvBudgetBytes = 1 << 20, clock?: () => number): KvCache {
  return new KvCache({ layerCount: LAYERS, kvHeads: KV_HEADS, headDim: HEAD_DIM, maxLength: MAX_LENGTH, kvBudgetBytes, clock });
}

/** The sequence number encoded in an id like "s7". */
const seqOf = (id: string): number => Number(id.slice(1));

/** One step's cache bookkeeping, as the stage runtime does it: view, append every layer, commit. Returns the view. */
function step(cache: KvCache, rows: readonly { id: string; count: number }[]): KvView {
  const view = cache.view(
    rows.map((r) => r.id),
    rows.map((r) => r.count),
  );
  const byId = new Map(rows.map((r) => [r.id, r]));
  const ordered = view.order.map((id) => ({ id, seq: seqOf(id), count: (byId.get(id) as { count: number }).count, firstToken: cache.length(id) }));
  const columns = Math.max(...ordered.map((r) => r.count));
  for (let layer = 0; layer < LAYERS; layer++) {
    cache.append(view, layer, present('k', layer, ordered, columns), present('v', layer, ordered, columns), columns, ordered.map((r) => r.count));
  }
  cache.commit(view, ordered.map((r) => r.count));
  return view;
}

/** Checks a view's past against every entry its rows should hold: row b's first length(b) columns, right-padded. */
function expectPastHolds(cache: KvCache, view: KvView): void {
  for (let layer = 0; layer < LAYERS; layer++) {
    const past = view.past(layer);
    expect(past.key.length).toBe(view.order.length * KV_HEADS * view.pastWidth * HEAD_DIM);
    view.order.forEach((id, b) => {
      for (let h = 0; h < KV_HEADS; h++) {
        for (let t = 0; t < cache.length(id); t++) {
          for (let d = 0; d < HEAD_DIM; d++) {
            const at = ((b * KV_HEADS + h) * view.pastWidth + t) * HEAD_DIM + d;
            expect([id, layer, h, t, d, past.key[at]]).toEqual([id, layer, h, t, d, Math.fround(entryValue('k', layer, seqOf(id), h, t, d))]);
            expect(past.value[at]).toBe(Math.fround(entryValue('v', layer, seqOf(id), h, t, d)));
          }
        }
      }
    });
  }
}

function expectCode(fn: () => unknown, code: status): ServiceError {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(ServiceError);
  expect(status[(caught as ServiceError).code]).toBe(status[code]);
  return caught as ServiceError;
}

describe('KvCache', () => {
  test('a cached token costs 2 × layers × KV heads × head size × 4 bytes, and reservations count that way', () => {
    const cache = newCache();
    expect(cache.bytesPerToken).toBe(TOKEN_BYTES);
    cache.reserve([
      { sequenceId: 's1', length: 10 },
      { sequenceId: 's2', length: 6 },
    ]);
    expect(cache.reservedBytes).toBe(16 * TOKEN_BYTES);
    expect(cache.reserved('s1')).toBe(10);
    // Reserving less than held changes nothing; more grows the reservation.
    cache.reserve([{ sequenceId: 's1', length: 4 }]);
    cache.reserve([{ sequenceId: 's2', length: 8 }]);
    expect(cache.reservedBytes).toBe(18 * TOKEN_BYTES);
  });

  test('a reservation that does not fit is refused whole with RESOURCE_EXHAUSTED, and a release makes room', () => {
    const cache = newCache(10 * TOKEN_BYTES);
    cache.reserve([{ sequenceId: 's1', length: 6 }]);
    const error = expectCode(
      () =>
        cache.reserve([
          { sequenceId: 's2', length: 2 },
          { sequenceId: 's3', length: 3 },
        ]),
      status.RESOURCE_EXHAUSTED,
    );
    expect(error.message).toMatch(/KV cache budget exhausted/);
    expect([cache.has('s2'), cache.has('s3'), cache.sequenceCount]).toEqual([false, false, 1]);
    cache.release('s1');
    cache.reserve([
      { sequenceId: 's2', length: 2 },
      { sequenceId: 's3', length: 3 },
    ]);
    expect(cache.sequenceCount).toBe(2);
  });

  test('truncate cuts a sequence back (a partial replay continues from there) and refuses to grow one; the others keep their entries', () => {
    const cache = newCache();
    cache.reserve(['s1', 's2'].map((sequenceId) => ({ sequenceId, length: 20 })));
    step(cache, [
      { id: 's1', count: 5 },
      { id: 's2', count: 3 },
    ]);
    cache.truncate('s1', 2);
    expect([cache.length('s1'), cache.length('s2'), cache.reserved('s1')]).toEqual([2, 3, 20]);
    expectCode(() => cache.truncate('s1', 3), status.FAILED_PRECONDITION);
    expectCode(() => cache.truncate('nope', 0), status.FAILED_PRECONDITION);
    step(cache, [
      { id: 's1', count: 1 },
      { id: 's2', count: 1 },
    ]);
    expect([cache.length('s1'), cache.length('s2')]).toEqual([3, 4]);
    expectPastHolds(cache, cache.view(['s1', 's2'], [1, 1]));
  });

  test('what a stage keeps beside the cache per reserved position counts against the budget', () => {
    const perToken = 2 * LAYERS * KV_HEADS * HEAD_DIM * 4;
    const cache = new KvCache({ layerCount: LAYERS, kvHeads: KV_HEADS, headDim: HEAD_DIM, maxLength: MAX_LENGTH, kvBudgetBytes: 10 * (perToken + 64), extraBytesPerToken: 64 });
    expect(cache.reservedBytesPerToken).toBe(perToken + 64);
    cache.reserve([{ sequenceId: 's1', length: 10 }]);
    expect(cache.reservedBytes).toBe(10 * (perToken + 64));
    expectCode(() => cache.reserve([{ sequenceId: 's2', length: 1 }]), status.RESOURCE_EXHAUSTED);
  });

  test('more positions than the model has are INVALID_ARGUMENT', () => {
    expectCode(() => newCache().reserve([{ sequenceId: 's1', length: MAX_LENGTH + 1 }]), status.INVALID_ARGUMENT);
  });

  test('a first prompt sees no past; later steps see exactly the entries appended, per row, right-padded', () => {
    const cache = newCache();
    cache.reserve(['s1', 's2', 's3'].map((sequenceId) => ({ sequenceId, length: 20 })));
    const first = step(cache, [
      { id: 's1', count: 5 },
      { id: 's2', count: 2 },
      { id: 's3', count: 7 },
    ]);
    expect(first.pastWidth).toBe(0);
    expect(first.past(0).key.length).toBe(0);
    expect([cache.length('s1'), cache.length('s2'), cache.length('s3')]).toEqual([5, 2, 7]);
    const second = step(cache, [
      { id: 's1', count: 1 },
      { id: 's2', count: 1 },
      { id: 's3', count: 1 },
    ]);
    expect(second.pastWidth).toBeGreaterThanOrEqual(8);
    const third = cache.view(['s1', 's2', 's3'], [1, 1, 1]);
    expectPastHolds(cache, third);
  });

  test('a stable batch is fed in place: the same buffer, step after step, whatever order the step lists its rows in', () => {
    const cache = newCache();
    cache.reserve(['s1', 's2'].map((sequenceId) => ({ sequenceId, length: 30 })));
    step(cache, [
      { id: 's1', count: 3 },
      { id: 's2', count: 4 },
    ]);
    const a = cache.view(['s1', 's2'], [1, 1]);
    const b = cache.view(['s2', 's1'], [1, 1]);
    expect(b.order).toEqual(a.order);
    expect(b.past(1).key.buffer).toBe(a.past(1).key.buffer);
    expect(b.past(1).key.byteOffset).toBe(a.past(1).key.byteOffset);
    const bytes = cache.bytes;
    for (let i = 0; i < 5; i++) {
      step(cache, [
        { id: 's1', count: 1 },
        { id: 's2', count: 1 },
      ]);
    }
    expect(cache.bytes).toBe(bytes);
    expectPastHolds(cache, cache.view(['s1', 's2'], [1, 1]));
  });

  test('a sequence joining a batch is moved into the batch’s group, and every row keeps its entries', () => {
    const cache = newCache();
    cache.reserve(['s1', 's2', 's3'].map((sequenceId) => ({ sequenceId, length: 40 })));
    step(cache, [
      { id: 's1', count: 3 },
      { id: 's2', count: 2 },
    ]);
    step(cache, [{ id: 's3', count: 6 }]);
    const joined = cache.view(['s1', 's2', 's3'], [1, 1, 1]);
    expect([...joined.order].sort()).toEqual(['s1', 's2', 's3']);
    expectPastHolds(cache, joined);
    step(cache, [
      { id: 's3', count: 1 },
      { id: 's1', count: 1 },
      { id: 's2', count: 1 },
    ]);
    expectPastHolds(cache, cache.view(['s1', 's2', 's3'], [1, 1, 1]));
  });

  test('a batch taken from the middle of others gets its own rows; a single row with a long continuation steps alone', () => {
    const cache = newCache();
    const ids = ['s1', 's2', 's3', 's4'];
    cache.reserve(ids.map((sequenceId) => ({ sequenceId, length: 40 })));
    step(cache, ids.map((id, i) => ({ id, count: i + 2 })));
    const middle = cache.view(['s2', 's4'], [1, 1]);
    expectPastHolds(cache, middle);
    step(cache, [{ id: 's3', count: 9 }]);
    expectPastHolds(cache, cache.view(ids, [1, 1, 1, 1]));
  });

  test('growing past the group width keeps every entry', () => {
    const cache = newCache();
    cache.reserve(['s1', 's2'].map((sequenceId) => ({ sequenceId, length: MAX_LENGTH })));
    step(cache, [
      { id: 's1', count: 2 },
      { id: 's2', count: 3 },
    ]);
    for (let i = 0; i < 40; i++) {
      step(cache, [
        { id: 's1', count: 1 },
        { id: 's2', count: 1 },
      ]);
    }
    expect(cache.length('s2')).toBe(43);
    expectPastHolds(cache, cache.view(['s1', 's2'], [1, 1]));
  });

  test('release keeps the others dense and their entries intact; the last release frees every buffer', () => {
    const cache = newCache();
    const ids = ['s1', 's2', 's3'];
    cache.reserve(ids.map((sequenceId) => ({ sequenceId, length: 20 })));
    step(cache, ids.map((id, i) => ({ id, count: 3 + i })));
    expect(cache.bytes).toBeGreaterThan(0);
    expect(cache.release('s1')).toBe(true);
    expect(cache.release('s1')).toBe(false);
    const rest = cache.view(['s2', 's3'], [1, 1]);
    expect(rest.order.length).toBe(2);
    expectPastHolds(cache, rest);
    cache.release('s2');
    cache.release('s3');
    expect([cache.bytes, cache.reservedBytes, cache.sequenceCount]).toEqual([0, 0, 0]);
  });

  test('more new entries than a sequence reserved is an internal error, and nothing moves', () => {
    const cache = newCache();
    cache.reserve([{ sequenceId: 's1', length: 4 }]);
    expectCode(() => cache.view(['s1'], [5]), status.INTERNAL);
  });

  test('a view of a sequence never reserved is FAILED_PRECONDITION', () => {
    expectCode(() => newCache().view(['nobody'], [1]), status.FAILED_PRECONDITION);
  });

  test('dropIdle frees the sequences untouched for longer than the TTL, and only those', () => {
    let now = 1_000;
    const cache = newCache(1 << 20, () => now);
    cache.reserve(['s1', 's2'].map((sequenceId) => ({ sequenceId, length: 8 })));
    step(cache, [
      { id: 's1', count: 2 },
      { id: 's2', count: 2 },
    ]);
    now += 5_000;
    step(cache, [{ id: 's2', count: 1 }]);
    now += 2_000;
    expect(cache.dropIdle(6_000, now)).toEqual(['s1']);
    expect([cache.has('s1'), cache.has('s2')]).toEqual([false, true]);
    expectPastHolds(cache, cache.view(['s2'], [1]));
  });
});
