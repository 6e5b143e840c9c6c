/**
 * The architecture numbers every family-agnostic part reads (stage runtime, KV cache, split
 * planner, scheduler, sampler): written into the manifest by the compiler, which gets them from
 * the model family. Nothing outside tools/families branches on which family a model is.
 */
export interface ModelShape {
  readonly vocabSize: number;
  /** The most positions a sequence may reach (prompt plus generated tokens). */
  readonly contextLength: number;
  /** Width of the residual stream: the hidden states that travel between stages. */
  readonly hiddenSize: number;
  readonly layers: number;
  readonly attentionHeads: number;
  /** Heads of the key/value cache: fewer than attentionHeads under grouped-query attention. */
  readonly kvHeads: number;
  readonly headDim: number;
  /** Prepended to prompts when the tokenizer says so; null when the model has none. */
  readonly bosTokenId: number | null;
  /** Any of these ends a generation. */
  readonly eosTokenIds: readonly number[];
  /** The most keys a query attends to (Mistral's sliding window); null = the whole context. */
  readonly slidingWindow: number | null;
}

const FLOAT32_BYTES = 4;

/** Bytes one cached token costs in `layerCount` layers: a key and a value of kvHeads × headDim floats per layer. */
export function kvBytesPerToken(shape: ModelShape, layerCount: number): number {
  return 2 * layerCount * shape.kvHeads * shape.headDim * FLOAT32_BYTES;
}

export function isEos(shape: ModelShape, tokenId: number): boolean {
  return shape.eosTokenIds.includes(tokenId);
}
