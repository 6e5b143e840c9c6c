/** A float32 tensor of a checkpoint with its shape, as every model family and the compiler hold it. */
export interface Weight {
  readonly dims: readonly number[];
  readonly data: Float32Array;
}
