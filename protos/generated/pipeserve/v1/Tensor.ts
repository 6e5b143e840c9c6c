// Original file: protos/tensor.proto


export interface Tensor {
  'dtype'?: (string);
  'dims'?: (number)[];
  'data'?: (Buffer | Uint8Array | string);
}

export interface Tensor__Output {
  'dtype': (string);
  'dims': (number)[];
  'data': (Buffer);
}
