import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { OnnxSession } from '../../services/node/onnx-session';
import { float32Tensor, int64Tensor } from '../../shared/tensor';
import type { Weight } from '../../shared/model/weight';
import { dequantizeBlockwise, quantizeBlockwise, type QuantBits } from '../../tools/compiler/block-quantize';
import { attr, MICROSOFT_DOMAIN, OnnxGraph } from '../../tools/compiler/onnx-graph';
import { writeOnnxModel } from '../../tools/compiler/write-onnx-model';
import { maxAbsDifference } from '../support/compiler-fixtures';

/** Bits and whether blocks carry zero points: every combination the formats can use. */
const FORMATS: [QuantBits, boolean][] = [
  [4, false],
  [4, true],
  [8, false],
  [8, true],
];

let workDir: string;

beforeAll(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), 'block-quantize-'));
});

afterAll(async () => {
  await rm(workDir, { recursive: true, force: true });
});

/** Deterministic values in [-0.05, 0.05). */
function pseudoRandom(count: number, seed: number): Float32Array {
  let state = seed >>> 0;
  return Float32Array.from({ length: count }, () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return (state / 2 ** 32 - 0.5) * 0.1;
  });
}

function matrix(rows: number, columns: number, seed: number): Weight {
  return { dims: [rows, columns], data: pseudoRandom(rows * columns, seed) };
}

async function open(graph: OnnxGraph): Promise<OnnxSession> {
  const file = path.join(await mkdtemp(path.join(workDir, 'graph-')), 'graph.onnx');
  await writeOnnxModel(graph, file);
  return OnnxSession.open(file, { intraOpThreads: 1 });
}

describe('quantizeBlockwise packs what onnxruntime reads', () => {
  test('4-bit symmetric: the largest-magnitude value lands on level 0, values packed low nibble first', () => {
    // v_i = (i mod 16 − 8) / 2: the extreme −4 gives scale −4 / −8 = 0.5, so q_i = i mod 16.
    const values = Float32Array.from({ length: 32 }, (_, i) => ((i % 16) - 8) / 2);
    const q = quantizeBlockwise({ dims: [1, 32], data: values }, { bits: 4, blockSize: 32, zeroPoints: false });
    expect([...q.data]).toEqual([0x10, 0x32, 0x54, 0x76, 0x98, 0xba, 0xdc, 0xfe, 0x10, 0x32, 0x54, 0x76, 0x98, 0xba, 0xdc, 0xfe]);
    expect([...q.scales]).toEqual([0.5]);
    expect(q.zeroPoints).toBeUndefined();
  });

  test('4-bit asymmetric: [min, max] over 15 steps, two blocks\' zero points per byte, the first block low', () => {
    // Block 0: −1 + i/4 (min −1, max 2.75: scale 0.25, zero point 4, q_i = i mod 16).
    // Block 1: 0 … 3.75 in steps of 0.25 (min clamps to 0: zero point 0, q_i = i mod 16).
    const values = Float32Array.from({ length: 64 }, (_, i) => (i < 32 ? -1 + (i % 16) / 4 : (i % 16) / 4));
    const q = quantizeBlockwise({ dims: [1, 64], data: values }, { bits: 4, blockSize: 32, zeroPoints: true });
    const block = [0x10, 0x32, 0x54, 0x76, 0x98, 0xba, 0xdc, 0xfe];
    expect([...q.data]).toEqual([...block, ...block, ...block, ...block]);
    expect([...q.scales]).toEqual([0.25, 0.25]);
    expect([...(q.zeroPoints ?? [])]).toEqual([0x04]);
  });

  test('8-bit: one byte per weight around the default zero point 128; zero points one byte per block', () => {
    const values = Float32Array.from({ length: 32 }, (_, i) => (i - 16) / 128);
    const symmetric = quantizeBlockwise({ dims: [1, 32], data: values }, { bits: 8, blockSize: 32, zeroPoints: false });
    // Extreme −16/128 → scale (−0.125) / (−128); q_i = round(v_i / scale) + 128 = 8 i.
    expect([...symmetric.data]).toEqual(Array.from({ length: 32 }, (_, i) => 8 * i));
    const asymmetric = quantizeBlockwise({ dims: [1, 32], data: values }, { bits: 8, blockSize: 32, zeroPoints: true });
    expect(asymmetric.zeroPoints).toHaveLength(1);
    expect(asymmetric.data[16]).toBe(asymmetric.zeroPoints?.[0]); // 0 is exactly representable
  });

  test.each(FORMATS)('%i-bit, zero points %s: every weight comes back within half a step (one step where a symmetric block clips)', (bits, zeroPoints) => {
    const weight = matrix(7, 100, bits * 10 + Number(zeroPoints));
    const q = quantizeBlockwise(weight, { bits, blockSize: 32, zeroPoints });
    const back = dequantizeBlockwise(q);
    expect(q.blocks).toBe(4); // 100 columns: the last block is padded
    for (let r = 0; r < 7; r++) {
      for (let c = 0; c < 100; c++) {
        const step = Math.abs(q.scales[r * q.blocks + Math.floor(c / 32)]);
        const bound = zeroPoints ? step / 2 : step;
        expect(Math.abs(back.data[r * 100 + c] - weight.data[r * 100 + c])).toBeLessThanOrEqual(bound * (1 + 1e-6));
      }
    }
  });
});

describe('onnxruntime reads the packed layout as dequantizeBlockwise does', () => {
  test.each(FORMATS)('%i-bit, zero points %s: MatMulNBits (accuracy level 0) equals a float MatMul with the dequantized weight, K padded', async (bits, zeroPoints) => {
    const [n, k, m] = [48, 80, 3];
    const q = quantizeBlockwise(matrix(n, k, 5), { bits, blockSize: 32, zeroPoints });
    const dequantized = dequantizeBlockwise(q).data;
    const a = pseudoRandom(m * k, 6);
    const expected = new Float32Array(m * n);
    for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) for (let t = 0; t < k; t++) expected[i * n + j] += a[i * k + t] * dequantized[j * k + t];

    const graph = new OnnxGraph('matmul-nbits');
    graph.addInput('a', 'float32', ['m', k]);
    const inputs = [
      'a',
      graph.addInitializer('b', 'uint8', [n, q.blocks, (32 * bits) / 8], q.data),
      graph.addInitializer('scales', 'float32', [n, q.blocks], q.scales),
    ];
    if (q.zeroPoints !== undefined) inputs.push(graph.addInitializer('zero_points', 'uint8', [n, q.zeroPoints.length / n], q.zeroPoints));
    const y = graph.op('MatMulNBits', inputs, { K: attr.int(k), N: attr.int(n), bits: attr.int(bits), block_size: attr.int(32), accuracy_level: attr.int(0) }, MICROSOFT_DOMAIN);
    graph.addOutput(y, 'float32', ['m', n]);
    const session = await open(graph);
    try {
      const out = await session.run({ a: float32Tensor([m, k], a) });
      expect(maxAbsDifference(out[y].data as Float32Array, expected)).toBeLessThan(1e-6);
    } finally {
      await session.close();
    }
  });

  test.each(FORMATS)('%i-bit, zero points %s: GatherBlockQuantized over [rows, blocks, blob] returns the dequantized rows', async (bits, zeroPoints) => {
    const [rows, width] = [20, 64];
    const q = quantizeBlockwise(matrix(rows, width, 8), { bits, blockSize: 32, zeroPoints });
    const dequantized = dequantizeBlockwise(q).data;
    const graph = new OnnxGraph('gather-block-quantized');
    graph.addInput('ids', 'int64', ['b', 's']);
    const inputs = [graph.addInitializer('data', 'uint8', [rows, q.blocks, (32 * bits) / 8], q.data), 'ids', graph.addInitializer('scales', 'float32', [rows, q.blocks, 1], q.scales)];
    if (q.zeroPoints !== undefined) {
      const perBlock = Uint8Array.from({ length: rows * q.blocks }, (_, i) => {
        const [r, b] = [Math.floor(i / q.blocks), i % q.blocks];
        const zeroPoints = q.zeroPoints as Uint8Array;
        const rowBytes = zeroPoints.length / rows;
        return bits === 8 ? zeroPoints[r * rowBytes + b] : (zeroPoints[r * rowBytes + (b >> 1)] >> ((b & 1) * 4)) & 0x0f;
      });
      inputs.push(graph.addInitializer('zero_points', 'uint8', [rows, q.blocks, 1], perBlock));
    }
    const y = graph.op('GatherBlockQuantized', inputs, { gather_axis: attr.int(0), quantize_axis: attr.int(2), block_size: attr.int(32), bits: attr.int(bits) }, MICROSOFT_DOMAIN);
    graph.addOutput(y, 'float32', ['b', 's', q.blocks, 32]);
    const session = await open(graph);
    try {
      const ids = [3, 19, 0, 7];
      const out = await session.run({ ids: int64Tensor([2, 2], ids) });
      const expected = new Float32Array(ids.length * width);
      ids.forEach((id, i) => expected.set(dequantized.subarray(id * width, (id + 1) * width), i * width));
      expect(out[y].dims).toEqual([2, 2, 2, 32]);
      expect(maxAbsDifference(out[y].data as Float32Array, expected)).toBe(0);
    } finally {
      await session.close();
    }
  });
});
