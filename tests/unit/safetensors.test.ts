import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { readSafetensors, readSafetensorsHeader, writeSafetensors } from '../../shared/model/safetensors';
import type { Weight } from '../../shared/model/weight';

/** Builds a safetensors file byte by byte, independently of writeSafetensors. */
function handMadeSafetensors(header: object, data: Buffer, headerLengthOverride?: bigint): Buffer {
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(headerLengthOverride ?? BigInt(json.length));
  return Buffer.concat([length, json, data]);
}

function u16le(values: number[]): Buffer {
  const buffer = Buffer.alloc(values.length * 2);
  values.forEach((v, i) => buffer.writeUInt16LE(v, i * 2));
  return buffer;
}

describe('safetensors', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'safetensors-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('write then read gives back every tensor, shape and metadata', async () => {
    const file = path.join(dir, 'round-trip.safetensors');
    const tensors = new Map<string, Weight>([
      ['a', { dims: [2, 3], data: Float32Array.from([1, -2, 3.5, 0, 1e-8, -1e30]) }],
      ['scalar', { dims: [], data: Float32Array.from([7]) }],
      ['empty', { dims: [0, 4], data: new Float32Array(0) }],
      ['b', { dims: [3], data: Float32Array.from([Math.PI, Number.MAX_VALUE, -0]) }],
    ]);
    await writeSafetensors(file, tensors, { format: 'pt' });

    const read = await readSafetensors(file);
    expect([...read.keys()].sort()).toEqual(['a', 'b', 'empty', 'scalar']);
    for (const [name, weight] of tensors) {
      expect(read.get(name)?.dims).toEqual(weight.dims);
      expect(Array.from(read.get(name)?.data ?? [])).toEqual(Array.from(weight.data));
    }
    expect((await readSafetensorsHeader(file)).metadata).toEqual({ format: 'pt' });
  });

  test('the written file follows the format: u64 header length, 8-byte aligned, offsets in order', async () => {
    const file = path.join(dir, 'layout.safetensors');
    await writeSafetensors(file, new Map([['x', { dims: [3], data: Float32Array.from([1, 2, 3]) }]]));
    const bytes = await readFile(file);
    const headerLength = Number(bytes.readBigUInt64LE(0));
    expect(headerLength % 8).toBe(0);
    const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8'));
    expect(header).toEqual({ x: { dtype: 'F32', shape: [3], data_offsets: [0, 12] } });
    expect(bytes.length).toBe(8 + headerLength + 12);
    expect(bytes.readFloatLE(8 + headerLength + 8)).toBe(3);
  });

  test('only the named tensors are read', async () => {
    const file = path.join(dir, 'subset.safetensors');
    await writeSafetensors(
      file,
      new Map([
        ['keep', { dims: [1], data: Float32Array.from([1]) }],
        ['skip', { dims: [1], data: Float32Array.from([2]) }],
      ]),
    );
    const read = await readSafetensors(file, ['keep']);
    expect([...read.keys()]).toEqual(['keep']);
    await expect(readSafetensors(file, ['nope'])).rejects.toThrow(`${file}: no tensor named nope`);
  });

  test('F16 values convert to float32 as hand-computed (normal, subnormal, max, infinity, signed zero)', async () => {
    const file = path.join(dir, 'f16.safetensors');
    // 0x3C00 = 1, 0xC000 = -2, 0x3555 = 0.333251953125, 0x7BFF = 65504, 0x0001 = 2^-24, 0x7C00 = +inf, 0x8000 = -0
    const bits = [0x3c00, 0xc000, 0x3555, 0x7bff, 0x0001, 0x7c00, 0x8000];
    await writeFile(file, handMadeSafetensors({ h: { dtype: 'F16', shape: [7], data_offsets: [0, 14] } }, u16le(bits)));
    const data = (await readSafetensors(file)).get('h')?.data;
    expect(Array.from(data ?? [])).toEqual([1, -2, 0.333251953125, 65504, 2 ** -24, Infinity, -0]);
  });

  test('BF16 values convert to float32 as hand-computed', async () => {
    const file = path.join(dir, 'bf16.safetensors');
    // 0x3F80 = 1, 0xC040 = -3, 0x4049 = 3.140625, 0x0000 = 0, 0xFF80 = -inf
    const bits = [0x3f80, 0xc040, 0x4049, 0x0000, 0xff80];
    await writeFile(file, handMadeSafetensors({ b: { dtype: 'BF16', shape: [5], data_offsets: [0, 10] } }, u16le(bits)));
    const data = (await readSafetensors(file)).get('b')?.data;
    expect(Array.from(data ?? [])).toEqual([1, -3, 3.140625, 0, -Infinity]);
  });

  test('a tensor of a dtype that is not a float is listed but cannot be read as float32', async () => {
    const file = path.join(dir, 'i64.safetensors');
    await writeFile(file, handMadeSafetensors({ ids: { dtype: 'I64', shape: [1], data_offsets: [0, 8] } }, Buffer.alloc(8)));
    expect((await readSafetensorsHeader(file)).tensors.get('ids')?.dtype).toBe('I64');
    await expect(readSafetensors(file)).rejects.toThrow(`${file}: tensor ids: dtype I64 cannot be read as float32`);
  });

  describe('bad files are rejected with the file and the problem', () => {
    const cases: [string, () => Buffer, string][] = [
      ['a file shorter than the length prefix', () => Buffer.alloc(5), 'truncated safetensors file (5 bytes'],
      [
        'a header length past the end of the file',
        () => handMadeSafetensors({}, Buffer.alloc(0), 1000n),
        'header length 1000 runs past the end of the file',
      ],
      ['an absurd header length', () => handMadeSafetensors({}, Buffer.alloc(0), 2n ** 60n), 'above the 100000000-byte limit'],
      [
        'a header that is not JSON',
        () => {
          const bytes = handMadeSafetensors({ a: 1 }, Buffer.alloc(0));
          bytes.write('{{{{', 8);
          return bytes;
        },
        'corrupt safetensors header: not valid JSON',
      ],
      [
        'an unknown dtype',
        () => handMadeSafetensors({ w: { dtype: 'F128', shape: [1], data_offsets: [0, 16] } }, Buffer.alloc(16)),
        'tensor w: unknown dtype "F128"',
      ],
      [
        'a byte range past the data section (truncated data)',
        () => handMadeSafetensors({ w: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, Buffer.alloc(12)),
        'tensor w: data_offsets [0, 16] fall outside the 12-byte data section',
      ],
      [
        'a byte range that does not match the shape',
        () => handMadeSafetensors({ w: { dtype: 'F32', shape: [2, 2], data_offsets: [0, 12] } }, Buffer.alloc(16)),
        'tensor w: data_offsets [0, 12] hold 12 bytes, but F32[2, 2] needs 16',
      ],
      [
        'overlapping tensors',
        () =>
          handMadeSafetensors(
            { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } },
            Buffer.alloc(12),
          ),
        'tensor b: data_offsets overlap those of a',
      ],
      [
        'a negative shape',
        () => handMadeSafetensors({ w: { dtype: 'F32', shape: [-1], data_offsets: [0, 0] } }, Buffer.alloc(0)),
        'tensor w: shape must be an array of non-negative integers',
      ],
    ];
    test.each(cases)('%s', async (_, makeBytes, problem) => {
      const file = path.join(dir, 'bad.safetensors');
      await writeFile(file, makeBytes());
      await expect(readSafetensorsHeader(file)).rejects.toThrow(`${file}: `);
      await expect(readSafetensors(file)).rejects.toThrow(problem);
    });

    test('a missing file', async () => {
      const file = path.join(dir, 'absent.safetensors');
      await expect(readSafetensors(file)).rejects.toThrow(`${file}: cannot open safetensors file (ENOENT)`);
    });
  });

  test('a tensor whose values do not match its shape is refused on write', async () => {
    const file = path.join(dir, 'mismatch.safetensors');
    await expect(writeSafetensors(file, new Map([['w', { dims: [2, 2], data: new Float32Array(3) }]]))).rejects.toThrow(
      `${file}: tensor w has shape [2, 2] but 3 values`,
    );
  });
});
