import { decodeTensor, encodeTensor } from '../../shared/tensor-codec';
import { float32Tensor, int64Tensor } from '../../shared/tensor';
import { ServiceError } from '../../shared/errors';
import { status } from '@grpc/grpc-js';

describe('tensor codec', () => {
  it('round-trips float32 bytes exactly, little-endian', () => {
    const values = new Float32Array([1.5, -2.25, 3.4028234663852886e38, 1e-45, Number.NaN, -0]);
    const message = encodeTensor(float32Tensor([2, 3], values));
    const bytes = Buffer.from(message.data as Buffer);
    // Independent check of the wire layout: little-endian IEEE-754 per element.
    for (let i = 0; i < values.length; i++) expect(Object.is(bytes.readFloatLE(i * 4), values[i])).toBe(true);
    const back = decodeTensor({ dtype: 'float32', dims: [2, 3], data: bytes });
    expect(back.dims).toEqual([2, 3]);
    expect(Array.from(back.data as Float32Array).map((v) => Object.is(v, -0) ? '-0' : String(v))).toEqual(Array.from(values).map((v) => Object.is(v, -0) ? '-0' : String(v)));
  });

  it('round-trips int64 values', () => {
    const message = encodeTensor(int64Tensor([3], [1, -7, 50256]));
    const back = decodeTensor({ dtype: 'int64', dims: [3], data: Buffer.from(message.data as Buffer) });
    expect(Array.from(back.data as BigInt64Array)).toEqual([1n, -7n, 50256n]);
  });

  it('decodes from an unaligned buffer offset', () => {
    const pool = Buffer.alloc(4 * 3 + 1);
    pool.writeFloatLE(0.5, 1);
    pool.writeFloatLE(-1, 5);
    pool.writeFloatLE(8, 9);
    const back = decodeTensor({ dtype: 'float32', dims: [3], data: pool.subarray(1) });
    expect(Array.from(back.data as Float32Array)).toEqual([0.5, -1, 8]);
  });

  it('rejects bytes that do not fit the dims, naming the field', () => {
    expect(() => decodeTensor({ dtype: 'float32', dims: [2, 2], data: Buffer.alloc(12) }, 'hidden_states')).toThrow(/hidden_states\.data: 12 bytes do not fit float32\[2, 2\]/);
    try {
      decodeTensor({ dtype: 'float32', dims: [2], data: Buffer.alloc(4) });
    } catch (error) {
      expect((error as ServiceError).code).toBe(status.INVALID_ARGUMENT);
    }
  });

  it('rejects an unknown dtype', () => {
    expect(() => decodeTensor({ dtype: 'float16', dims: [1], data: Buffer.alloc(2) }, 'x')).toThrow(/x\.dtype: unsupported "float16"/);
  });
});
