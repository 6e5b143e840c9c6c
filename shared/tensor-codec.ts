import { status } from '@grpc/grpc-js';
import { endianness } from 'node:os';
import type { Tensor as TensorMessage, Tensor__Output as TensorMessageOutput } from '../protos/generated/pipeserve/v1/Tensor';
import { ServiceError } from './errors';
import { elementCount, type DType, type Tensor } from './tensor';

const BYTES_PER_ELEMENT: Record<DType, number> = { float32: 4, int64: 8, int32: 4 };

if (endianness() !== 'LE') {
  // Wire bytes are little-endian and we view them in place; a big-endian host would need swaps.
  throw new Error('pipeserve needs a little-endian host');
}

/** The one codec between the project's tensors and wire bytes. The data is viewed, not copied. */
export function encodeTensor(tensor: Tensor): TensorMessage {
  const { data } = tensor;
  return {
    dtype: tensor.dtype,
    dims: [...tensor.dims],
    data: Buffer.from(data.buffer, data.byteOffset, data.byteLength),
  };
}

/** Decodes a wire tensor, checking dtype and that the byte length fits the dims. */
export function decodeTensor(message: TensorMessageOutput, field = 'tensor'): Tensor {
  const dtype = message.dtype as DType;
  const size = BYTES_PER_ELEMENT[dtype];
  if (size === undefined) {
    throw new ServiceError(status.INVALID_ARGUMENT, `${field}.dtype: unsupported "${message.dtype}" (float32, int64, int32)`);
  }
  const count = elementCount(message.dims);
  const bytes = message.data;
  if (bytes.byteLength !== count * size) {
    throw new ServiceError(
      status.INVALID_ARGUMENT,
      `${field}.data: ${bytes.byteLength} bytes do not fit ${dtype}[${message.dims.join(', ')}] (${count * size} bytes)`,
    );
  }
  // Typed arrays need aligned offsets; a received Buffer may sit at any offset of its pool.
  const aligned = bytes.byteOffset % size === 0 ? bytes : Buffer.from(bytes);
  const buffer = aligned.buffer;
  const offset = aligned.byteOffset;
  const data =
    dtype === 'float32'
      ? new Float32Array(buffer, offset, count)
      : dtype === 'int64'
        ? new BigInt64Array(buffer, offset, count)
        : new Int32Array(buffer, offset, count);
  return { dtype, dims: [...message.dims], data } as Tensor;
}
