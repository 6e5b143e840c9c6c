import type { Gpt2Config } from './gpt2-config';

/** A float32 weight with its shape. Hugging Face GPT-2 keeps linear weights as Conv1D: [in, out]. */
export interface Weight {
  readonly dims: readonly number[];
  readonly data: Float32Array;
}

export interface LinearWeights {
  /** [in, out] (Conv1D layout, as stored by Hugging Face GPT-2). */
  readonly weight: Weight;
  /** [out] */
  readonly bias: Weight;
}

export interface LayerNormWeights {
  readonly weight: Weight;
  readonly bias: Weight;
}

export interface Gpt2LayerWeights {
  readonly ln1: LayerNormWeights;
  /** c_attn: [nEmbd, 3 * nEmbd], q|k|v concatenated along out. */
  readonly attnQkv: LinearWeights;
  /** c_proj of attention: [nEmbd, nEmbd]. */
  readonly attnProj: LinearWeights;
  readonly ln2: LayerNormWeights;
  /** c_fc: [nEmbd, nInner]. */
  readonly mlpFc: LinearWeights;
  /** c_proj of the MLP: [nInner, nEmbd]. */
  readonly mlpProj: LinearWeights;
}

/** A whole GPT-2 checkpoint in memory. The LM head is tied to `wte`. */
export interface Gpt2Weights {
  /** [vocabSize, nEmbd] */
  readonly wte: Weight;
  /** [nPositions, nEmbd] */
  readonly wpe: Weight;
  readonly layers: readonly Gpt2LayerWeights[];
  readonly lnF: LayerNormWeights;
}

export interface Gpt2Checkpoint {
  readonly config: Gpt2Config;
  readonly weights: Gpt2Weights;
}
