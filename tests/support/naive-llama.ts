import type { Weight } from '../../shared/model/weight';

/**
 * The reference forward pass of the Llama family (LlamaForCausalLM, MistralForCausalLM,
 * Qwen2ForCausalLM) that tests compare exported graphs against: plain TypeScript, float64
 * arithmetic, no KV cache, no ONNX, read straight from a Hugging Face config.json object and
 * tensors under their Hugging Face names, following transformers' modeling_llama / mistral /
 * qwen2 and modeling_rope_utils.
 */
export interface NaiveLlamaCheckpoint {
  /** The parsed config.json. */
  readonly config: Readonly<Record<string, unknown>>;
  /** Tensors by Hugging Face name (nn.Linear weights are [out, in]). */
  readonly tensors: ReadonlyMap<string, Weight>;
}

interface Numbers {
  readonly modelType: string;
  readonly hidden: number;
  readonly layers: number;
  readonly heads: number;
  readonly kvHeads: number;
  readonly headDim: number;
  readonly vocab: number;
  readonly epsilon: number;
  readonly tied: boolean;
  readonly qkvBias: boolean;
  readonly outputBias: boolean;
  readonly mlpBias: boolean;
  readonly slidingWindow: number | null;
  readonly inverseFrequencies: Float64Array;
}

/** Logits for every position of `tokenIds` (positions 0, 1, …), one Float32Array of vocab_size each. */
export function naiveLlamaLogits(checkpoint: NaiveLlamaCheckpoint, tokenIds: readonly number[]): Float32Array[] {
  const n = readNumbers(checkpoint.config);
  const tensor = (name: string): Weight => {
    const weight = checkpoint.tensors.get(name);
    if (weight === undefined) throw new Error(`naive Llama: no tensor ${name}`);
    return weight;
  };
  const optional = (name: string, present: boolean): Weight | null => (present ? tensor(name) : null);
  const embed = tensor('model.embed_tokens.weight');
  let h: Float64Array[] = tokenIds.map((id) => {
    if (!Number.isInteger(id) || id < 0 || id >= n.vocab) throw new RangeError(`naive Llama: token id ${id} is outside the vocabulary`);
    return Float64Array.from(embed.data.subarray(id * n.hidden, (id + 1) * n.hidden));
  });
  for (let layer = 0; layer < n.layers; layer++) {
    const p = `model.layers.${layer}.`;
    const linear = (x: Float64Array, module: string, bias: boolean): Float64Array =>
      applyLinear(x, tensor(`${p}${module}.weight`), optional(`${p}${module}.bias`, bias));
    const x = h.map((row) => rmsNorm(row, tensor(`${p}input_layernorm.weight`), n.epsilon));
    const q = x.map((row, t) => rotate(linear(row, 'self_attn.q_proj', n.qkvBias), n.heads, n.headDim, t, n.inverseFrequencies));
    const k = x.map((row, t) => rotate(linear(row, 'self_attn.k_proj', n.qkvBias), n.kvHeads, n.headDim, t, n.inverseFrequencies));
    const v = x.map((row) => linear(row, 'self_attn.v_proj', n.qkvBias));
    const attended = attention(q, k, v, n);
    h = h.map((row, t) => add(row, linear(attended[t], 'self_attn.o_proj', n.outputBias)));
    const y = h.map((row) => rmsNorm(row, tensor(`${p}post_attention_layernorm.weight`), n.epsilon));
    h = h.map((row, t) => {
      const gate = linear(y[t], 'mlp.gate_proj', n.mlpBias);
      const up = linear(y[t], 'mlp.up_proj', n.mlpBias);
      return add(row, linear(gate.map((g, i) => silu(g) * up[i]), 'mlp.down_proj', n.mlpBias));
    });
  }
  const head = n.tied ? embed : tensor('lm_head.weight');
  return h.map((row) => Float32Array.from(applyLinear(rmsNorm(row, tensor('model.norm.weight'), n.epsilon), head, null)));
}

function readNumbers(config: Readonly<Record<string, unknown>>): Numbers {
  const number = (name: string, fallback?: number): number => {
    const value = config[name] ?? fallback;
    if (typeof value !== 'number') throw new Error(`naive Llama: config field ${name} is missing`);
    return value;
  };
  const modelType = String(config.model_type);
  const hidden = number('hidden_size');
  const heads = number('num_attention_heads');
  const headDim = number('head_dim', hidden / heads);
  const attentionBias = modelType === 'llama' && config.attention_bias === true;
  // MistralConfig's sliding_window defaults to 4096 when the key is absent; null turns it off.
  const slidingWindow = modelType === 'mistral' ? ('sliding_window' in config ? (config.sliding_window as number | null) : 4096) : null;
  return {
    modelType,
    hidden,
    layers: number('num_hidden_layers'),
    heads,
    kvHeads: number('num_key_value_heads', heads),
    headDim,
    vocab: number('vocab_size'),
    epsilon: number('rms_norm_eps', 1e-6),
    tied: config.tie_word_embeddings === true,
    qkvBias: modelType === 'qwen2' || attentionBias,
    outputBias: attentionBias,
    mlpBias: modelType === 'llama' && config.mlp_bias === true,
    slidingWindow,
    inverseFrequencies: inverseFrequencies(config, headDim),
  };
}

/** modeling_rope_utils: default, linear and llama3 inverse frequencies. */
function inverseFrequencies(config: Readonly<Record<string, unknown>>, headDim: number): Float64Array {
  const theta = typeof config.rope_theta === 'number' ? config.rope_theta : 10_000;
  const base = new Float64Array(headDim / 2).map((_, i) => 1 / theta ** ((2 * i) / headDim));
  const scaling = config.rope_scaling as Record<string, number | string> | null | undefined;
  const kind = scaling?.rope_type ?? scaling?.type ?? 'default';
  if (scaling === null || scaling === undefined || kind === 'default') return base;
  const factor = scaling.factor as number;
  if (kind === 'linear') return base.map((f) => f / factor);
  if (kind !== 'llama3') throw new Error(`naive Llama: rope type ${String(kind)} is not implemented`);
  const low = scaling.low_freq_factor as number;
  const high = scaling.high_freq_factor as number;
  const oldContext = scaling.original_max_position_embeddings as number;
  // Written as transformers writes it: where(wavelen > low_wavelen, f / factor, f), then the medium band blended.
  return base.map((f) => {
    const wavelength = (2 * Math.PI) / f;
    const scaled = wavelength > oldContext / low ? f / factor : f;
    const medium = !(wavelength < oldContext / high) && !(wavelength > oldContext / low);
    if (!medium) return scaled;
    const smooth = (oldContext / wavelength - low) / (high - low);
    return ((1 - smooth) * scaled) / factor + smooth * scaled;
  });
}

/** Rotary embedding of every head of `x` at `position`: dimension i pairs with i + d/2 (rotate_half). */
function rotate(x: Float64Array, heads: number, headDim: number, position: number, frequencies: Float64Array): Float64Array {
  const out = new Float64Array(x.length);
  const half = headDim / 2;
  for (let head = 0; head < heads; head++) {
    const o = head * headDim;
    for (let i = 0; i < half; i++) {
      const angle = position * frequencies[i];
      const [cos, sin] = [Math.cos(angle), Math.sin(angle)];
      out[o + i] = x[o + i] * cos - x[o + i + half] * sin;
      out[o + i + half] = x[o + i + half] * cos + x[o + i] * sin;
    }
  }
  return out;
}

/** Causal attention; query head h reads KV head ⌊h / (heads / kv_heads)⌋; with a window W, keys t − W < s ≤ t. */
function attention(q: readonly Float64Array[], k: readonly Float64Array[], v: readonly Float64Array[], n: Numbers): Float64Array[] {
  const group = n.heads / n.kvHeads;
  const scale = 1 / Math.sqrt(n.headDim);
  return q.map((query, t) => {
    const out = new Float64Array(n.heads * n.headDim);
    const first = n.slidingWindow === null ? 0 : Math.max(0, t - n.slidingWindow + 1);
    for (let head = 0; head < n.heads; head++) {
      const qo = head * n.headDim;
      const ko = Math.floor(head / group) * n.headDim;
      const scores: number[] = [];
      for (let s = first; s <= t; s++) {
        let dot = 0;
        for (let i = 0; i < n.headDim; i++) dot += query[qo + i] * k[s][ko + i];
        scores.push(dot * scale);
      }
      const max = Math.max(...scores);
      const weights = scores.map((score) => Math.exp(score - max));
      const total = weights.reduce((a, b) => a + b, 0);
      weights.forEach((weight, j) => {
        for (let i = 0; i < n.headDim; i++) out[qo + i] += (weight / total) * v[first + j][ko + i];
      });
    }
    return out;
  });
}

function rmsNorm(x: Float64Array, weight: Weight, epsilon: number): Float64Array {
  let sumSquares = 0;
  for (const value of x) sumSquares += value * value;
  const inverse = 1 / Math.sqrt(sumSquares / x.length + epsilon);
  return x.map((value, i) => value * inverse * weight.data[i]);
}

/** nn.Linear: y = W x + b with W [out, in]. */
function applyLinear(x: Float64Array, weight: Weight, bias: Weight | null): Float64Array {
  const [outputs, inputs] = weight.dims;
  const y = new Float64Array(outputs);
  for (let o = 0; o < outputs; o++) {
    let sum = bias === null ? 0 : bias.data[o];
    const row = o * inputs;
    for (let i = 0; i < inputs; i++) sum += weight.data[row + i] * x[i];
    y[o] = sum;
  }
  return y;
}

function silu(x: number): number {
  return x / (1 + Math.exp(-x));
}

function add(a: Float64Array, b: Float64Array): Float64Array {
  return a.map((value, i) => value + b[i]);
}
