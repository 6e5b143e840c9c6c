import type { Weight } from '../../shared/model/weight';

/** Bits per weight the quantized formats use: int8 and int4. */
export type QuantBits = 4 | 8;

export interface BlockQuantizeOptions {
  readonly bits: QuantBits;
  /** Consecutive weights along a row that share one scale (and zero point). */
  readonly blockSize: number;
  /**
   * Asymmetric blocks: each block stores a zero point and spans [min, max] of its values. Without
   * them a block is symmetric around onnxruntime's default zero point 2^(bits-1).
   */
  readonly zeroPoints: boolean;
}

/**
 * A [rows, columns] matrix quantized block-wise along each row, laid out exactly as onnxruntime's
 * com.microsoft MatMulNBits takes its B (rows = N outputs, columns = K inputs) and
 * GatherBlockQuantized its data (rows = table entries):
 * - `data` [rows, blocks, blockSize·bits/8]: for 4 bits, value 2i of a block in the low nibble of
 *   byte i and value 2i+1 in the high nibble; for 8 bits, one byte per value. A last block that
 *   runs past `columns` is padded with the zero point (it dequantizes to 0).
 * - `scales` [rows, blocks].
 * - `zeroPoints` [rows, ⌈blocks·bits/8⌉], packed like `data` (two blocks per byte for 4 bits),
 *   present for asymmetric blocks only.
 * A weight dequantizes to (q − zeroPoint) · scale.
 */
export interface BlockQuantized {
  readonly bits: QuantBits;
  readonly blockSize: number;
  readonly rows: number;
  readonly columns: number;
  readonly blocks: number;
  readonly data: Uint8Array;
  readonly scales: Float32Array;
  readonly zeroPoints?: Uint8Array;
}

/**
 * Block sizes onnxruntime's CPU MatMulNBits takes: the schema asks for a power of two >= 16, and
 * onnxruntime-node 1.30's kernel refuses a session with anything above 256 (measured).
 */
export const BLOCK_SIZES = [16, 32, 64, 128, 256] as const;

export function isValidBlockSize(blockSize: number): boolean {
  return (BLOCK_SIZES as readonly number[]).includes(blockSize);
}

/** Bytes of one packed block. */
export function blobBytes(bits: QuantBits, blockSize: number): number {
  return (blockSize * bits) / 8;
}

/** Bytes of a row's packed zero points. */
export function zeroPointRowBytes(bits: QuantBits, blocks: number): number {
  return Math.ceil((blocks * bits) / 8);
}

/**
 * Round-to-nearest block quantization of a [rows, columns] float32 matrix.
 *
 * Symmetric blocks use onnxruntime's own rule (MLAS's blockwise quantizer): the block's value of
 * largest magnitude, divided by −2^(bits−1), is the scale, so that value lands exactly on level 0
 * and all 2^bits levels are used (a value of the opposite sign and the same magnitude clips by
 * one step). Asymmetric blocks stretch [min(min, 0), max(max, 0)] over the levels, with zero
 * exactly representable.
 */
export function quantizeBlockwise(weight: Weight, options: BlockQuantizeOptions): BlockQuantized {
  const { bits, blockSize, zeroPoints: asymmetric } = options;
  if (weight.dims.length !== 2) throw new Error(`block quantization needs a [rows, columns] matrix, got [${weight.dims.join(', ')}]`);
  if (!isValidBlockSize(blockSize)) throw new Error(`block size must be one of ${BLOCK_SIZES.join(', ')}, got ${blockSize}`);
  const [rows, columns] = weight.dims;
  const blocks = Math.ceil(columns / blockSize);
  const blob = blobBytes(bits, blockSize);
  const levels = 2 ** bits - 1;
  const midpoint = 2 ** (bits - 1);
  const zpBytes = zeroPointRowBytes(bits, blocks);
  const data = new Uint8Array(rows * blocks * blob);
  const scales = new Float32Array(rows * blocks);
  const zeroPoints = asymmetric ? new Uint8Array(rows * zpBytes) : undefined;
  const values = weight.data;
  const q = new Uint8Array(blockSize);

  for (let r = 0; r < rows; r++) {
    const rowStart = r * columns;
    for (let b = 0; b < blocks; b++) {
      const start = rowStart + b * blockSize;
      const count = Math.min(blockSize, columns - b * blockSize);
      let scale: number;
      let zeroPoint: number;
      if (asymmetric) {
        let min = 0;
        let max = 0;
        for (let i = 0; i < count; i++) {
          const v = values[start + i];
          if (v < min) min = v;
          if (v > max) max = v;
        }
        scale = Math.fround((max - min) / levels);
        zeroPoint = scale === 0 ? 0 : clamp(Math.round(-min / scale), 0, levels);
      } else {
        let extreme = 0;
        for (let i = 0; i < count; i++) {
          const v = values[start + i];
          if (Math.abs(v) > Math.abs(extreme)) extreme = v;
        }
        scale = Math.fround(extreme / -midpoint);
        zeroPoint = midpoint;
      }
      const inverse = scale === 0 ? 0 : 1 / scale;
      for (let i = 0; i < count; i++) q[i] = clamp(Math.round(values[start + i] * inverse) + zeroPoint, 0, levels);
      q.fill(zeroPoint, count);

      scales[r * blocks + b] = scale;
      const out = (r * blocks + b) * blob;
      if (bits === 8) data.set(q, out);
      else for (let i = 0; i < blob; i++) data[out + i] = q[2 * i] | (q[2 * i + 1] << 4);
      if (zeroPoints !== undefined) {
        if (bits === 8) zeroPoints[r * zpBytes + b] = zeroPoint;
        else zeroPoints[r * zpBytes + (b >> 1)] |= zeroPoint << ((b & 1) * 4);
      }
    }
  }
  return { bits, blockSize, rows, columns, blocks, data, scales, zeroPoints };
}

/** The float32 matrix a quantized one stands for: (q − zeroPoint) · scale, read back from the packed layout. */
export function dequantizeBlockwise(quantized: BlockQuantized): Weight {
  const { bits, blockSize, rows, columns, blocks, data, scales, zeroPoints } = quantized;
  const blob = blobBytes(bits, blockSize);
  const zpBytes = zeroPointRowBytes(bits, blocks);
  const out = new Float32Array(rows * columns);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < columns; c++) {
      const b = Math.floor(c / blockSize);
      const i = c % blockSize;
      const byte = data[(r * blocks + b) * blob + (bits === 8 ? i : i >> 1)];
      const value = bits === 8 ? byte : (byte >> ((i & 1) * 4)) & 0x0f;
      let zeroPoint = 2 ** (bits - 1);
      if (zeroPoints !== undefined) {
        const zp = zeroPoints[r * zpBytes + (bits === 8 ? b : b >> 1)];
        zeroPoint = bits === 8 ? zp : (zp >> ((b & 1) * 4)) & 0x0f;
      }
      out[r * columns + c] = (value - zeroPoint) * scales[r * blocks + b];
    }
  }
  return { dims: [rows, columns], data: out };
}

function clamp(value: number, min: number, max: number): number {
  return value < min ? min : value > max ? max : value;
}
