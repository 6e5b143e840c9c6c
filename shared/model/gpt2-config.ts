/**
 * Architecture numbers of a GPT-2-family model, parsed once from a Hugging Face `config.json`
 * (or a manifest) into camelCase. Inner code trusts these values.
 */
export interface Gpt2Config {
  readonly modelType: 'gpt2';
  readonly vocabSize: number;
  /** Context length (`n_positions`). */
  readonly nPositions: number;
  /** Hidden width (`n_embd`). */
  readonly nEmbd: number;
  readonly nLayer: number;
  readonly nHead: number;
  /** MLP width (`n_inner`, default 4 * n_embd). */
  readonly nInner: number;
  readonly layerNormEpsilon: number;
  /** GPT-2 uses the tanh approximation (`gelu_new`); `gelu` is the exact erf form. */
  readonly activation: 'gelu_new' | 'gelu';
  readonly bosTokenId: number;
  readonly eosTokenId: number;
}

export function headDim(config: Gpt2Config): number {
  return config.nEmbd / config.nHead;
}
