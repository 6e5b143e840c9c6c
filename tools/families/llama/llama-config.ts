import { isPlainObject } from '../../../shared/model/checkpoint-folder';

/**
 * Architecture numbers of a Llama-family model (LlamaForCausalLM, MistralForCausalLM,
 * Qwen2ForCausalLM), parsed once from a Hugging Face `config.json` into camelCase. The three
 * differ only in which biases exist and in Mistral's sliding window; everything else is one
 * decoder: RMSNorm, rotary embeddings, grouped-query attention, a SwiGLU MLP.
 */
export interface LlamaConfig {
  readonly architecture: LlamaArchitecture;
  readonly modelType: LlamaModelType;
  readonly vocabSize: number;
  readonly hiddenSize: number;
  /** SwiGLU width: gate_proj and up_proj are [intermediate, hidden]. */
  readonly intermediateSize: number;
  readonly layers: number;
  readonly attentionHeads: number;
  readonly kvHeads: number;
  /** `head_dim`, by default hidden_size / num_attention_heads. */
  readonly headDim: number;
  /** `max_position_embeddings`: the context length, and the rows of the rotary tables. */
  readonly maxPositions: number;
  readonly rmsNormEpsilon: number;
  readonly ropeTheta: number;
  readonly ropeScaling: RopeScaling;
  /** The LM head reads model.embed_tokens.weight instead of its own lm_head.weight. */
  readonly tieWordEmbeddings: boolean;
  /** Biases of q_proj, k_proj and v_proj (Llama: attention_bias; Qwen2: always; Mistral: never). */
  readonly qkvBias: boolean;
  /** Bias of o_proj (Llama: attention_bias; Qwen2 and Mistral: never). */
  readonly outputBias: boolean;
  /** Biases of gate_proj, up_proj and down_proj (Llama: mlp_bias; the others: never). */
  readonly mlpBias: boolean;
  /** A query sees the keys fewer than this many positions back (itself included); null: the whole context. */
  readonly slidingWindow: number | null;
  readonly bosTokenId: number | null;
  readonly eosTokenIds: readonly number[];
}

export type LlamaArchitecture = 'LlamaForCausalLM' | 'MistralForCausalLM' | 'Qwen2ForCausalLM';
export type LlamaModelType = 'llama' | 'mistral' | 'qwen2';

/** transformers' rope types this family computes (modeling_rope_utils); any other is refused. */
export type RopeScaling =
  | { readonly type: 'default' }
  /** Every inverse frequency divided by `factor` (position interpolation). */
  | { readonly type: 'linear'; readonly factor: number }
  /** Llama 3.1: long wavelengths divided by `factor`, short ones kept, the band between blended. */
  | {
      readonly type: 'llama3';
      readonly factor: number;
      readonly lowFreqFactor: number;
      readonly highFreqFactor: number;
      readonly originalMaxPositions: number;
    };

export const LLAMA_ARCHITECTURES: Readonly<Record<LlamaArchitecture, LlamaModelType>> = {
  LlamaForCausalLM: 'llama',
  MistralForCausalLM: 'mistral',
  Qwen2ForCausalLM: 'qwen2',
};

const SUPPORTED_ROPE_TYPES = ['llama3', 'linear'] as const;

/** The defaults of transformers' LlamaConfig, MistralConfig and Qwen2Config for the fields configs leave out. */
const HF_DEFAULTS: Readonly<Record<LlamaModelType, { maxPositions: number; bosTokenId: number | null; eosTokenId: number | null }>> = {
  llama: { maxPositions: 2048, bosTokenId: 1, eosTokenId: 2 },
  mistral: { maxPositions: 4096 * 32, bosTokenId: 1, eosTokenId: 2 },
  qwen2: { maxPositions: 32768, bosTokenId: null, eosTokenId: null },
};
const HF_DEFAULT_RMS_NORM_EPS = 1e-6;
const HF_DEFAULT_ROPE_THETA = 10_000;
/** MistralConfig's sliding_window when config.json has no such key (null switches it off). */
const HF_DEFAULT_MISTRAL_SLIDING_WINDOW = 4096;

export function isLlamaArchitecture(name: string): name is LlamaArchitecture {
  return Object.hasOwn(LLAMA_ARCHITECTURES, name);
}

/**
 * Parses config.json for `architecture`. Fields that change the math and that this family does
 * not implement are refused by name (hidden_act other than silu, a rope type other than default,
 * linear or llama3, Qwen2's per-layer sliding window, quantized weights); fields that only
 * matter for training or for other runtimes (torch_dtype, attention_dropout, pretraining_tp,
 * initializer_range, use_cache) are ignored, as the forward pass does not read them.
 */
export function parseLlamaConfig(json: Record<string, unknown>, architecture: LlamaArchitecture, source: string): LlamaConfig {
  const fields = new ConfigFields(json, source);
  const modelType = LLAMA_ARCHITECTURES[architecture];
  if (json.model_type !== undefined && json.model_type !== modelType) {
    fields.fail('model_type', `expected ${JSON.stringify(modelType)} for ${architecture}, got ${JSON.stringify(json.model_type)}`);
  }
  const defaults = HF_DEFAULTS[modelType];
  const vocabSize = fields.positiveInteger('vocab_size');
  const hiddenSize = fields.positiveInteger('hidden_size');
  const attentionHeads = fields.positiveInteger('num_attention_heads');
  const kvHeads = fields.optionalPositiveInteger('num_key_value_heads') ?? attentionHeads;
  if (attentionHeads % kvHeads !== 0) fields.fail('num_key_value_heads', `${kvHeads} does not divide num_attention_heads ${attentionHeads}`);
  const headDim = fields.optionalPositiveInteger('head_dim') ?? hiddenSize / attentionHeads;
  if (!Number.isInteger(headDim)) fields.fail('num_attention_heads', `hidden_size ${hiddenSize} is not divisible by ${attentionHeads} (and no head_dim is given)`);
  if (headDim % 2 !== 0) fields.fail('head_dim', `rotary embeddings need an even head size, got ${headDim}`);
  const activation = fields.optionalString('hidden_act') ?? 'silu';
  if (activation !== 'silu') fields.fail('hidden_act', `unsupported ${JSON.stringify(activation)} (silu)`);
  if (json.quantization_config !== undefined && json.quantization_config !== null) {
    fields.fail('quantization_config', 'quantized checkpoints are not supported (give the float weights; the compiler quantizes them itself)');
  }
  const maxPositions = fields.optionalPositiveInteger('max_position_embeddings') ?? defaults.maxPositions;
  const { ropeTheta, ropeScaling } = parseRope(fields);
  const attentionBias = modelType === 'llama' && (fields.optionalBoolean('attention_bias') ?? false);
  const slidingWindow = parseSlidingWindow(fields, modelType);
  return {
    architecture,
    modelType,
    vocabSize,
    hiddenSize,
    intermediateSize: fields.positiveInteger('intermediate_size'),
    layers: fields.positiveInteger('num_hidden_layers'),
    attentionHeads,
    kvHeads,
    headDim,
    maxPositions,
    rmsNormEpsilon: fields.optionalPositiveNumber('rms_norm_eps') ?? HF_DEFAULT_RMS_NORM_EPS,
    ropeTheta,
    ropeScaling,
    tieWordEmbeddings: fields.optionalBoolean('tie_word_embeddings') ?? false,
    qkvBias: modelType === 'qwen2' || attentionBias,
    outputBias: attentionBias,
    mlpBias: modelType === 'llama' && (fields.optionalBoolean('mlp_bias') ?? false),
    // A window at least as long as the context never hides a key.
    slidingWindow: slidingWindow !== null && slidingWindow < maxPositions ? slidingWindow : null,
    bosTokenId: 'bos_token_id' in json ? fields.optionalTokenId('bos_token_id', vocabSize) : defaults.bosTokenId,
    eosTokenIds: 'eos_token_id' in json ? fields.tokenIds('eos_token_id', vocabSize) : defaults.eosTokenId === null ? [] : [defaults.eosTokenId],
  };
}

/** config.json as Hugging Face writes it for `config` (parsing it gives `config` back). */
export function toHfConfigJson(config: LlamaConfig): Record<string, unknown> {
  const json: Record<string, unknown> = {
    architectures: [config.architecture],
    model_type: config.modelType,
    vocab_size: config.vocabSize,
    hidden_size: config.hiddenSize,
    intermediate_size: config.intermediateSize,
    num_hidden_layers: config.layers,
    num_attention_heads: config.attentionHeads,
    num_key_value_heads: config.kvHeads,
    head_dim: config.headDim,
    hidden_act: 'silu',
    max_position_embeddings: config.maxPositions,
    rms_norm_eps: config.rmsNormEpsilon,
    rope_theta: config.ropeTheta,
    rope_scaling: ropeScalingJson(config.ropeScaling),
    tie_word_embeddings: config.tieWordEmbeddings,
    bos_token_id: config.bosTokenId,
    eos_token_id: config.eosTokenIds.length === 1 ? config.eosTokenIds[0] : config.eosTokenIds.length === 0 ? null : [...config.eosTokenIds],
    torch_dtype: 'float32',
  };
  if (config.modelType === 'llama') {
    json.attention_bias = config.qkvBias;
    json.mlp_bias = config.mlpBias;
  }
  if (config.modelType === 'mistral') json.sliding_window = config.slidingWindow;
  if (config.modelType === 'qwen2') json.use_sliding_window = false;
  return json;
}

function ropeScalingJson(scaling: RopeScaling): Record<string, unknown> | null {
  switch (scaling.type) {
    case 'default':
      return null;
    case 'linear':
      return { rope_type: 'linear', factor: scaling.factor };
    case 'llama3':
      return {
        rope_type: 'llama3',
        factor: scaling.factor,
        low_freq_factor: scaling.lowFreqFactor,
        high_freq_factor: scaling.highFreqFactor,
        original_max_position_embeddings: scaling.originalMaxPositions,
      };
  }
}

/**
 * rope_theta and rope_scaling (transformers 4.x; the kind is `rope_type`, or `type` in older
 * configs), or rope_parameters (transformers 5, which moves rope_theta into the same object).
 */
function parseRope(fields: ConfigFields): { ropeTheta: number; ropeScaling: RopeScaling } {
  const objectField = fields.has('rope_parameters') ? 'rope_parameters' : 'rope_scaling';
  const parameters = fields.optionalObject(objectField);
  const nested = parameters === null ? undefined : new ConfigFields(parameters, fields.source, `${objectField}.`);
  const ropeTheta =
    (objectField === 'rope_parameters' ? nested?.optionalPositiveNumber('rope_theta') : undefined) ??
    fields.optionalPositiveNumber('rope_theta') ??
    HF_DEFAULT_ROPE_THETA;
  const partial = fields.optionalPositiveNumber('partial_rotary_factor') ?? nested?.optionalPositiveNumber('partial_rotary_factor') ?? 1;
  if (partial !== 1) fields.fail('partial_rotary_factor', `only 1 (rotary over the whole head) is supported, got ${partial}`);
  if (nested === undefined) return { ropeTheta, ropeScaling: { type: 'default' } };
  const kindField = nested.has('rope_type') ? 'rope_type' : 'type';
  const kind = nested.optionalString(kindField) ?? 'default';
  switch (kind) {
    case 'default':
      return { ropeTheta, ropeScaling: { type: 'default' } };
    case 'linear':
      return { ropeTheta, ropeScaling: { type: 'linear', factor: nested.positiveNumber('factor') } };
    case 'llama3': {
      const lowFreqFactor = nested.positiveNumber('low_freq_factor');
      const highFreqFactor = nested.positiveNumber('high_freq_factor');
      if (!(highFreqFactor > lowFreqFactor)) nested.fail('high_freq_factor', `must exceed low_freq_factor ${lowFreqFactor}, got ${highFreqFactor}`);
      return {
        ropeTheta,
        ropeScaling: {
          type: 'llama3',
          factor: nested.positiveNumber('factor'),
          lowFreqFactor,
          highFreqFactor,
          originalMaxPositions: nested.positiveInteger('original_max_position_embeddings'),
        },
      };
    }
    default:
      return nested.fail(kindField, `unsupported ${JSON.stringify(kind)} (${SUPPORTED_ROPE_TYPES.join(', ')})`);
  }
}

/**
 * Mistral attends within `sliding_window` on every layer (4096 when the key is absent, none when
 * null). Qwen2 ignores its sliding_window unless use_sliding_window is true, and then applies it
 * only to some layers (max_window_layers), which the stage graphs do not implement: refused.
 * Llama has no window.
 */
function parseSlidingWindow(fields: ConfigFields, modelType: LlamaModelType): number | null {
  if (modelType === 'mistral') return fields.has('sliding_window') ? fields.optionalPositiveInteger('sliding_window') : HF_DEFAULT_MISTRAL_SLIDING_WINDOW;
  if (modelType === 'qwen2' && fields.optionalBoolean('use_sliding_window') === true) {
    fields.fail('use_sliding_window', 'true is not supported (Qwen2 applies its window to only some layers)');
  }
  const layerTypes = fields.optionalArray('layer_types');
  const sliding = layerTypes?.findIndex((type) => type !== 'full_attention') ?? -1;
  if (layerTypes !== null && sliding >= 0) {
    fields.fail(`layer_types[${sliding}]`, `unsupported ${JSON.stringify(layerTypes[sliding])} (every layer must be full_attention)`);
  }
  return null;
}

/** Typed reads of one JSON object; every failure names the source and the field. */
class ConfigFields {
  constructor(
    private readonly json: Record<string, unknown>,
    readonly source: string,
    private readonly prefix = '',
  ) {}

  has(name: string): boolean {
    return name in this.json;
  }

  fail(name: string, problem: string): never {
    throw new Error(`${this.source}: field ${this.prefix}${name}: ${problem}`);
  }

  positiveInteger(name: string): number {
    return this.optionalPositiveInteger(name) ?? this.fail(name, 'missing');
  }

  positiveNumber(name: string): number {
    return this.optionalPositiveNumber(name) ?? this.fail(name, 'missing');
  }

  optionalPositiveInteger(name: string): number | null {
    const value = this.json[name];
    if (value === undefined || value === null) return null;
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) this.fail(name, `expected a positive integer, got ${JSON.stringify(value)}`);
    return value;
  }

  optionalPositiveNumber(name: string): number | null {
    const value = this.json[name];
    if (value === undefined || value === null) return null;
    if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) this.fail(name, `expected a positive number, got ${JSON.stringify(value)}`);
    return value;
  }

  optionalBoolean(name: string): boolean | null {
    const value = this.json[name];
    if (value === undefined || value === null) return null;
    if (typeof value !== 'boolean') this.fail(name, `expected true or false, got ${JSON.stringify(value)}`);
    return value;
  }

  optionalString(name: string): string | null {
    const value = this.json[name];
    if (value === undefined || value === null) return null;
    if (typeof value !== 'string') this.fail(name, `expected a string, got ${JSON.stringify(value)}`);
    return value;
  }

  optionalObject(name: string): Record<string, unknown> | null {
    const value = this.json[name];
    if (value === undefined || value === null) return null;
    if (!isPlainObject(value)) this.fail(name, `expected an object, got ${JSON.stringify(value)}`);
    return value;
  }

  optionalArray(name: string): unknown[] | null {
    const value = this.json[name];
    if (value === undefined || value === null) return null;
    if (!Array.isArray(value)) this.fail(name, `expected an array, got ${JSON.stringify(value)}`);
    return value;
  }

  optionalTokenId(name: string, vocabSize: number): number | null {
    const value = this.json[name];
    if (value === undefined || value === null) return null;
    if (!isTokenIdBelow(value, vocabSize)) this.fail(name, `expected a token id below vocab_size ${vocabSize}, got ${JSON.stringify(value)}`);
    return value;
  }

  /** A token id or a list of them (Llama 3 ends on several); null or absent is none. */
  tokenIds(name: string, vocabSize: number): number[] {
    const value = this.json[name];
    if (!Array.isArray(value)) {
      const id = this.optionalTokenId(name, vocabSize);
      return id === null ? [] : [id];
    }
    value.forEach((id, i) => {
      if (!isTokenIdBelow(id, vocabSize)) this.fail(`${name}[${i}]`, `expected a token id below vocab_size ${vocabSize}, got ${JSON.stringify(id)}`);
    });
    return [...new Set(value as number[])];
  }
}

function isTokenIdBelow(value: unknown, vocabSize: number): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 && value < vocabSize;
}
