/**
 * The config.json of a Hugging Face causal LM, parsed once into the numbers the transformers.js
 * export needs. This reader is the export's own, kept apart from the compiler's model families so
 * that the export stays an independent second reading of the Hugging Face semantics. Defaults are
 * those of the transformers config classes (GPT2Config, LlamaConfig, MistralConfig, Qwen2Config)
 * for the switches that change the math; size fields must be present.
 */

export type HfCausalLmConfig = Gpt2LmConfig | LlamaLmConfig;

export interface Gpt2LmConfig {
  readonly family: 'gpt2';
  readonly architecture: 'GPT2LMHeadModel';
  readonly vocabSize: number;
  /** `n_positions`: rows of the learned position table. */
  readonly maxPositions: number;
  readonly hiddenSize: number;
  readonly layers: number;
  readonly heads: number;
  readonly headDim: number;
  readonly innerSize: number;
  readonly layerNormEpsilon: number;
  /** gelu_new and gelu_pytorch_tanh are the tanh approximation; gelu is the exact erf form. */
  readonly activation: 'gelu-tanh' | 'gelu-erf';
  /** GPT2LMHeadModel ties lm_head to wte unless tie_word_embeddings is false. */
  readonly tiedHead: boolean;
  readonly bosTokenId: number | null;
  readonly eosTokenId: number | readonly number[] | null;
}

export type LlamaArchitecture = 'LlamaForCausalLM' | 'MistralForCausalLM' | 'Qwen2ForCausalLM';

export type RopeScaling =
  | { readonly type: 'none' }
  | { readonly type: 'linear'; readonly factor: number }
  | {
      readonly type: 'llama3';
      readonly factor: number;
      readonly lowFreqFactor: number;
      readonly highFreqFactor: number;
      readonly originalMaxPositions: number;
    };

export interface LlamaLmConfig {
  readonly family: 'llama';
  readonly architecture: LlamaArchitecture;
  readonly modelType: 'llama' | 'mistral' | 'qwen2';
  readonly vocabSize: number;
  readonly maxPositions: number;
  readonly hiddenSize: number;
  readonly layers: number;
  readonly heads: number;
  readonly kvHeads: number;
  readonly headDim: number;
  readonly intermediateSize: number;
  readonly rmsNormEpsilon: number;
  readonly ropeTheta: number;
  readonly ropeScaling: RopeScaling;
  readonly tiedHead: boolean;
  /** Biases of q_proj, k_proj, v_proj (Llama: attention_bias; Qwen2: always). */
  readonly qkvBias: boolean;
  /** Bias of o_proj (Llama: attention_bias; Qwen2 and Mistral: never). */
  readonly outputBias: boolean;
  /** Biases of gate_proj, up_proj, down_proj (Llama: mlp_bias). */
  readonly mlpBias: boolean;
  /** A key is visible to a query at most this many positions back (itself included), or null. */
  readonly slidingWindow: number | null;
  readonly bosTokenId: number | null;
  readonly eosTokenId: number | readonly number[] | null;
}

const LLAMA_MODEL_TYPES: Record<LlamaArchitecture, LlamaLmConfig['modelType']> = {
  LlamaForCausalLM: 'llama',
  MistralForCausalLM: 'mistral',
  Qwen2ForCausalLM: 'qwen2',
};
const SUPPORTED_ARCHITECTURES = ['GPT2LMHeadModel', ...Object.keys(LLAMA_MODEL_TYPES)];
const GPT2_ACTIVATIONS: Record<string, Gpt2LmConfig['activation']> = {
  gelu_new: 'gelu-tanh',
  gelu_pytorch_tanh: 'gelu-tanh',
  gelu: 'gelu-erf',
};
/** Hugging Face defaults of the fields that change the math. */
const HF_DEFAULTS = {
  gpt2LayerNormEpsilon: 1e-5,
  gpt2Activation: 'gelu_new',
  rmsNormEpsilon: 1e-6,
  ropeTheta: 10_000,
  /** MistralConfig's default when config.json has no sliding_window key at all. */
  mistralSlidingWindow: 4096,
} as const;

export function parseHfCausalLmConfig(json: unknown, source: string): HfCausalLmConfig {
  if (!isPlainObject(json)) throw new Error(`${source}: expected a JSON object`);
  const fields = new ConfigFields(json, source);
  const architectures = json.architectures;
  if (!Array.isArray(architectures) || architectures.length !== 1 || typeof architectures[0] !== 'string') {
    throw new Error(`${source}: field architectures: expected one architecture name, got ${JSON.stringify(architectures)}`);
  }
  const architecture = architectures[0];
  if (architecture === 'GPT2LMHeadModel') return parseGpt2(fields);
  if (architecture in LLAMA_MODEL_TYPES) return parseLlama(fields, architecture as LlamaArchitecture);
  throw new Error(`${source}: field architectures: ${architecture} is not supported (${SUPPORTED_ARCHITECTURES.join(', ')})`);
}

function parseGpt2(fields: ConfigFields): Gpt2LmConfig {
  fields.expectModelType('gpt2');
  const hiddenSize = fields.positiveInteger('n_embd');
  const heads = fields.positiveInteger('n_head');
  if (hiddenSize % heads !== 0) fields.fail('n_head', `n_embd ${hiddenSize} is not divisible by n_head ${heads}`);
  // These switches change the attention math; the export implements the default.
  fields.refuse('scale_attn_weights', false);
  fields.refuse('scale_attn_by_inverse_layer_idx', true);
  fields.refuse('add_cross_attention', true);
  const activationName = fields.optionalString('activation_function') ?? HF_DEFAULTS.gpt2Activation;
  const activation = GPT2_ACTIVATIONS[activationName];
  if (activation === undefined) {
    fields.fail('activation_function', `unsupported activation ${JSON.stringify(activationName)} (${Object.keys(GPT2_ACTIVATIONS).join(', ')})`);
  }
  const vocabSize = fields.positiveInteger('vocab_size');
  return {
    family: 'gpt2',
    architecture: 'GPT2LMHeadModel',
    vocabSize,
    maxPositions: fields.positiveInteger('n_positions'),
    hiddenSize,
    layers: fields.positiveInteger('n_layer'),
    heads,
    headDim: hiddenSize / heads,
    innerSize: fields.optionalPositiveInteger('n_inner') ?? 4 * hiddenSize,
    layerNormEpsilon: fields.optionalPositiveNumber('layer_norm_epsilon') ?? HF_DEFAULTS.gpt2LayerNormEpsilon,
    activation,
    tiedHead: fields.optionalBoolean('tie_word_embeddings') ?? true,
    bosTokenId: fields.optionalTokenId('bos_token_id', vocabSize),
    eosTokenId: fields.optionalTokenIds('eos_token_id', vocabSize),
  };
}

function parseLlama(fields: ConfigFields, architecture: LlamaArchitecture): LlamaLmConfig {
  const modelType = LLAMA_MODEL_TYPES[architecture];
  fields.expectModelType(modelType);
  const hiddenSize = fields.positiveInteger('hidden_size');
  const heads = fields.positiveInteger('num_attention_heads');
  const kvHeads = fields.optionalPositiveInteger('num_key_value_heads') ?? heads;
  if (heads % kvHeads !== 0) fields.fail('num_key_value_heads', `num_attention_heads ${heads} is not a multiple of ${kvHeads}`);
  const headDim = fields.optionalPositiveInteger('head_dim') ?? hiddenSize / heads;
  if (!Number.isInteger(headDim)) fields.fail('num_attention_heads', `hidden_size ${hiddenSize} is not divisible by ${heads}`);
  if (headDim % 2 !== 0) fields.fail('head_dim', `rotary embeddings need an even head_dim, got ${headDim}`);
  const activation = fields.optionalString('hidden_act') ?? 'silu';
  if (activation !== 'silu') fields.fail('hidden_act', `only silu is supported, got ${JSON.stringify(activation)}`);
  const attentionBias = modelType === 'llama' && (fields.optionalBoolean('attention_bias') ?? false);
  const vocabSize = fields.positiveInteger('vocab_size');
  const { ropeTheta, ropeScaling } = parseRope(fields);
  return {
    family: 'llama',
    architecture,
    modelType,
    vocabSize,
    maxPositions: fields.positiveInteger('max_position_embeddings'),
    hiddenSize,
    layers: fields.positiveInteger('num_hidden_layers'),
    heads,
    kvHeads,
    headDim,
    intermediateSize: fields.positiveInteger('intermediate_size'),
    rmsNormEpsilon: fields.optionalPositiveNumber('rms_norm_eps') ?? HF_DEFAULTS.rmsNormEpsilon,
    ropeTheta,
    ropeScaling,
    tiedHead: fields.optionalBoolean('tie_word_embeddings') ?? false,
    qkvBias: modelType === 'qwen2' || attentionBias,
    outputBias: attentionBias,
    mlpBias: modelType === 'llama' && (fields.optionalBoolean('mlp_bias') ?? false),
    slidingWindow: parseSlidingWindow(fields, modelType),
    bosTokenId: fields.optionalTokenId('bos_token_id', vocabSize),
    eosTokenId: fields.optionalTokenIds('eos_token_id', vocabSize),
  };
}

function parseSlidingWindow(fields: ConfigFields, modelType: LlamaLmConfig['modelType']): number | null {
  if (modelType === 'mistral') {
    if (!fields.has('sliding_window')) return HF_DEFAULTS.mistralSlidingWindow;
    return fields.optionalPositiveInteger('sliding_window');
  }
  // Qwen2 applies its window only to some layers, and only with use_sliding_window.
  if (modelType === 'qwen2') fields.refuse('use_sliding_window', true);
  return null;
}

/**
 * rope_theta and rope_scaling (transformers up to 4.x), or rope_parameters (newer releases, which
 * fold theta into the same object). rope_scaling names its kind `rope_type` (or `type`, older).
 */
function parseRope(fields: ConfigFields): { ropeTheta: number; ropeScaling: RopeScaling } {
  const parametersField = fields.has('rope_parameters') ? 'rope_parameters' : 'rope_scaling';
  const parameters = fields.optionalObject(parametersField);
  const nested = parameters === null ? undefined : new ConfigFields(parameters, `${fields.source}: field ${parametersField}`);
  const ropeTheta =
    (parametersField === 'rope_parameters' ? nested?.optionalPositiveNumber('rope_theta') : undefined) ??
    fields.optionalPositiveNumber('rope_theta') ??
    HF_DEFAULTS.ropeTheta;
  if (nested === undefined) return { ropeTheta, ropeScaling: { type: 'none' } };
  const kind = nested.optionalString('rope_type') ?? nested.optionalString('type') ?? 'default';
  switch (kind) {
    case 'default':
      return { ropeTheta, ropeScaling: { type: 'none' } };
    case 'linear':
      return { ropeTheta, ropeScaling: { type: 'linear', factor: nested.positiveNumber('factor') } };
    case 'llama3': {
      const lowFreqFactor = nested.positiveNumber('low_freq_factor');
      const highFreqFactor = nested.positiveNumber('high_freq_factor');
      if (!(highFreqFactor > lowFreqFactor)) nested.fail('high_freq_factor', `must exceed low_freq_factor ${lowFreqFactor}`);
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
      return fields.fail(parametersField, `rope type ${JSON.stringify(kind)} is not supported (default, linear, llama3)`);
  }
}

/** Typed reads of one JSON object; every failure names the source and the field. */
class ConfigFields {
  constructor(
    private readonly json: Record<string, unknown>,
    readonly source: string,
  ) {}

  has(name: string): boolean {
    return name in this.json;
  }

  fail(name: string, problem: string): never {
    throw new Error(`${this.source}: field ${name}: ${problem}`);
  }

  expectModelType(modelType: string): void {
    if (this.json.model_type !== modelType) {
      this.fail('model_type', `expected ${JSON.stringify(modelType)} for this architecture, got ${JSON.stringify(this.json.model_type)}`);
    }
  }

  refuse(name: string, value: unknown): void {
    if (this.json[name] === value) this.fail(name, `${JSON.stringify(value)} is not supported`);
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
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
      this.fail(name, `expected a positive integer, got ${JSON.stringify(value)}`);
    }
    return value;
  }

  optionalPositiveNumber(name: string): number | null {
    const value = this.json[name];
    if (value === undefined || value === null) return null;
    if (typeof value !== 'number' || !(value > 0) || !Number.isFinite(value)) {
      this.fail(name, `expected a positive number, got ${JSON.stringify(value)}`);
    }
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

  optionalTokenId(name: string, vocabSize: number): number | null {
    const value = this.json[name];
    if (value === undefined || value === null) return null;
    if (!isTokenIdBelow(value, vocabSize)) this.fail(name, `expected a token id below vocab_size ${vocabSize}, got ${JSON.stringify(value)}`);
    return value;
  }

  /** Llama 3 lists several end-of-sequence ids. */
  optionalTokenIds(name: string, vocabSize: number): number | readonly number[] | null {
    const value = this.json[name];
    if (Array.isArray(value)) {
      if (value.length === 0 || !value.every((id) => isTokenIdBelow(id, vocabSize))) {
        this.fail(name, `expected token ids below vocab_size ${vocabSize}, got ${JSON.stringify(value)}`);
      }
      return value as number[];
    }
    return this.optionalTokenId(name, vocabSize);
  }
}

function isTokenIdBelow(value: unknown, vocabSize: number): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 && value < vocabSize;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
