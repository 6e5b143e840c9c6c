/**
 * The project's own tensor type. Only services/node/onnx-session.ts converts it to and from
 * onnxruntime's tensors; everything else (the codec, the KV cache, sampling) uses this one.
 */
export type DType = 'float32' | 'int64' | 'int32';

export type TensorData<D extends DType> = D extends 'float32'
  ? Float32Array
  : D extends 'int64'
    ? BigInt64Array
    : Int32Array;

export interface Tensor<D extends DType = DType> {
  readonly dtype: D;
  readonly dims: readonly number[];
  readonly data: TensorData<D>;
}

export function elementCount(dims: readonly number[]): number {
  return dims.reduce((n, d) => n * d, 1);
}

export function float32Tensor(dims: readonly number[], data?: Float32Array): Tensor<'float32'> {
  const size = elementCount(dims);
  const values = data ?? new Float32Array(size);
  if (values.length !== size) {
    throw new RangeError(`float32 tensor [${dims.join(', ')}] needs ${size} values, got ${values.length}`);
  }
  return { dtype: 'float32', dims: [...dims], data: values };
}

export function int64Tensor(dims: readonly number[], values: ArrayLike<number> | BigInt64Array): Tensor<'int64'> {
  const size = elementCount(dims);
  if (values.length !== size) {
    throw new RangeError(`int64 tensor [${dims.join(', ')}] needs ${size} values, got ${values.length}`);
  }
  const data = values instanceof BigInt64Array ? values : BigInt64Array.from(Array.from(values, (v) => BigInt(v)));
  return { dtype: 'int64', dims: [...dims], data };
}

export function describeTensor(t: Tensor): string {
  return `${t.dtype}[${t.dims.join(', ')}]`;
}
