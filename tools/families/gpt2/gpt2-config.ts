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

/** The config.json fields this project reads and writes (Hugging Face names). */
export interface HfGpt2ConfigJson {
  readonly architectures: string[];
  readonly model_type: 'gpt2';
  readonly vocab_size: number;
  readonly n_positions: number;
  readonly n_ctx: number;
  readonly n_embd: number;
  readonly n_layer: number;
  readonly n_head: number;
  readonly n_inner: number;
  readonly layer_norm_epsilon: number;
  readonly activation_function: 'gelu_new' | 'gelu';
  readonly bos_token_id: number;
  readonly eos_token_id: number;
  readonly tie_word_embeddings: true;
}

/** Hugging Face's GPT2Config defaults for the fields older config.json files leave out. */
const HF_DEFAULT_LAYER_NORM_EPSILON = 1e-5;
const HF_DEFAULT_ACTIVATION = 'gelu_new';
const HF_DEFAULT_SPECIAL_TOKEN_ID = 50256;

export const GPT2_ARCHITECTURE = 'GPT2LMHeadModel';

export function parseGpt2Config(json: unknown, source: string): Gpt2Config {
  if (!isPlainObject(json)) throw new Error(`${source}: expected a JSON object`);
  const field = (name: string): string => `${source}: field ${name}`;
  if (json.model_type !== 'gpt2') {
    throw new Error(`${field('model_type')}: unsupported model_type ${JSON.stringify(json.model_type)} (only gpt2 is supported)`);
  }
  const positive = (name: string, fallback?: number): number => {
    const value = json[name] ?? fallback;
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
      throw new Error(`${field(name)}: expected a positive integer, got ${JSON.stringify(value)}`);
    }
    return value;
  };
  const vocabSize = positive('vocab_size');
  const nPositions = positive('n_positions');
  const nEmbd = positive('n_embd');
  const nLayer = positive('n_layer');
  const nHead = positive('n_head');
  if (nEmbd % nHead !== 0) {
    throw new Error(`${field('n_head')}: n_embd ${nEmbd} is not divisible by n_head ${nHead}`);
  }
  const nInner = positive('n_inner', 4 * nEmbd);
  const layerNormEpsilon = json.layer_norm_epsilon ?? HF_DEFAULT_LAYER_NORM_EPSILON;
  if (typeof layerNormEpsilon !== 'number' || !(layerNormEpsilon > 0)) {
    throw new Error(`${field('layer_norm_epsilon')}: expected a positive number, got ${JSON.stringify(layerNormEpsilon)}`);
  }
  const activation = json.activation_function ?? HF_DEFAULT_ACTIVATION;
  if (activation !== 'gelu_new' && activation !== 'gelu') {
    throw new Error(`${field('activation_function')}: unsupported activation ${JSON.stringify(activation)} (gelu_new or gelu)`);
  }
  const tokenId = (name: string): number => {
    const value = json[name] ?? HF_DEFAULT_SPECIAL_TOKEN_ID;
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0 || value >= vocabSize) {
      throw new Error(`${field(name)}: expected a token id below vocab_size ${vocabSize}, got ${JSON.stringify(value)}`);
    }
    return value;
  };
  // These switches change the attention math that the stage graphs implement, so refuse them.
  if (json.scale_attn_weights === false) throw new Error(`${field('scale_attn_weights')}: false is not supported`);
  if (json.scale_attn_by_inverse_layer_idx === true) {
    throw new Error(`${field('scale_attn_by_inverse_layer_idx')}: true is not supported`);
  }
  if (json.add_cross_attention === true) throw new Error(`${field('add_cross_attention')}: true is not supported`);
  if (json.tie_word_embeddings === false) {
    throw new Error(`${field('tie_word_embeddings')}: false is not supported (the LM head is tied to wte)`);
  }
  return {
    modelType: 'gpt2',
    vocabSize,
    nPositions,
    nEmbd,
    nLayer,
    nHead,
    nInner,
    layerNormEpsilon,
    activation,
    bosTokenId: tokenId('bos_token_id'),
    eosTokenId: tokenId('eos_token_id'),
  };
}

export function toHfConfigJson(config: Gpt2Config): HfGpt2ConfigJson {
  return {
    architectures: [GPT2_ARCHITECTURE],
    model_type: 'gpt2',
    vocab_size: config.vocabSize,
    n_positions: config.nPositions,
    n_ctx: config.nPositions,
    n_embd: config.nEmbd,
    n_layer: config.nLayer,
    n_head: config.nHead,
    n_inner: config.nInner,
    layer_norm_epsilon: config.layerNormEpsilon,
    activation_function: config.activation,
    bos_token_id: config.bosTokenId,
    eos_token_id: config.eosTokenId,
    tie_word_embeddings: true,
  };
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
