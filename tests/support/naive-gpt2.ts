import type { Gpt2Checkpoint, LayerNormWeights, LinearWeights } from '../../tools/families/gpt2/gpt2-weights';

/**
 * The reference GPT-2 forward pass other tests compare against: plain TypeScript, float64
 * accumulation, no KV cache, no ONNX, written straight from the GPT-2 equations.
 */

/** Logits for every position of `tokenIds` (one Float32Array of vocabSize per position). */
export function naiveGpt2Logits(checkpoint: Gpt2Checkpoint, tokenIds: readonly number[]): Float32Array[] {
  const hidden = finalHiddenStates(checkpoint, tokenIds);
  return hidden.map((h) => lmHead(checkpoint, h));
}

/** Greedy decoding: `n` new token ids after `promptIds`, recomputing the whole sequence each step. */
export function naiveGreedy(checkpoint: Gpt2Checkpoint, promptIds: readonly number[], n: number): number[] {
  const ids = [...promptIds];
  const generated: number[] = [];
  for (let step = 0; step < n; step++) {
    const hidden = finalHiddenStates(checkpoint, ids);
    const next = argmax(lmHead(checkpoint, hidden[hidden.length - 1]));
    generated.push(next);
    ids.push(next);
  }
  return generated;
}

/** Hidden states after ln_f, one per position. */
function finalHiddenStates(checkpoint: Gpt2Checkpoint, tokenIds: readonly number[]): Float64Array[] {
  const { config, weights } = checkpoint;
  const e = config.nEmbd;
  if (tokenIds.length === 0) throw new RangeError('naive GPT-2 needs at least one token');
  if (tokenIds.length > config.nPositions) {
    throw new RangeError(`naive GPT-2: ${tokenIds.length} tokens exceed n_positions ${config.nPositions}`);
  }
  let h: Float64Array[] = tokenIds.map((id, t) => {
    if (!Number.isInteger(id) || id < 0 || id >= config.vocabSize) throw new RangeError(`naive GPT-2: token id ${id} is outside the vocabulary`);
    const row = new Float64Array(e);
    for (let i = 0; i < e; i++) row[i] = weights.wte.data[id * e + i] + weights.wpe.data[t * e + i];
    return row;
  });
  for (const layer of weights.layers) {
    const attnIn = h.map((x) => layerNorm(x, layer.ln1, config.layerNormEpsilon));
    const attnOut = causalSelfAttention(attnIn, linearAll(attnIn, layer.attnQkv), config.nHead);
    h = h.map((x, t) => add(x, linear(attnOut[t], layer.attnProj)));
    const mlpIn = h.map((x) => layerNorm(x, layer.ln2, config.layerNormEpsilon));
    const gelu = config.activation === 'gelu_new' ? geluTanh : geluErf;
    h = h.map((x, t) => add(x, linear(linear(mlpIn[t], layer.mlpFc).map(gelu), layer.mlpProj)));
  }
  return h.map((x) => layerNorm(x, weights.lnF, config.layerNormEpsilon));
}

/** qkv rows are [q | k | v], each split into heads of width nEmbd / nHead. */
function causalSelfAttention(x: readonly Float64Array[], qkv: readonly Float64Array[], nHead: number): Float64Array[] {
  const e = x[0].length;
  const d = e / nHead;
  const scale = 1 / Math.sqrt(d);
  return qkv.map((_, t) => {
    const out = new Float64Array(e);
    for (let head = 0; head < nHead; head++) {
      const offset = head * d;
      const scores = new Float64Array(t + 1);
      for (let s = 0; s <= t; s++) {
        let dot = 0;
        for (let i = 0; i < d; i++) dot += qkv[t][offset + i] * qkv[s][e + offset + i];
        scores[s] = dot * scale;
      }
      const probs = softmax(scores);
      for (let s = 0; s <= t; s++) {
        for (let i = 0; i < d; i++) out[offset + i] += probs[s] * qkv[s][2 * e + offset + i];
      }
    }
    return out;
  });
}

function layerNorm(x: Float64Array, params: LayerNormWeights, epsilon: number): Float64Array {
  let mean = 0;
  for (const v of x) mean += v;
  mean /= x.length;
  let variance = 0;
  for (const v of x) variance += (v - mean) ** 2;
  variance /= x.length;
  const inv = 1 / Math.sqrt(variance + epsilon);
  return x.map((v, i) => (v - mean) * inv * params.weight.data[i] + params.bias.data[i]);
}

/** Conv1D: weight is [in, out]. */
function linear(x: Float64Array, params: LinearWeights): Float64Array {
  const [inputs, outputs] = params.weight.dims;
  const w = params.weight.data;
  const y = Float64Array.from(params.bias.data);
  for (let i = 0; i < inputs; i++) {
    const xi = x[i];
    if (xi === 0) continue;
    const row = i * outputs;
    for (let o = 0; o < outputs; o++) y[o] += xi * w[row + o];
  }
  return y;
}

function linearAll(xs: readonly Float64Array[], params: LinearWeights): Float64Array[] {
  return xs.map((x) => linear(x, params));
}

/** The LM head is tied to wte: logits[v] = h · wte[v]. */
function lmHead(checkpoint: Gpt2Checkpoint, h: Float64Array): Float32Array {
  const { vocabSize, nEmbd: e } = checkpoint.config;
  const wte = checkpoint.weights.wte.data;
  const logits = new Float32Array(vocabSize);
  for (let v = 0; v < vocabSize; v++) {
    let dot = 0;
    const row = v * e;
    for (let i = 0; i < e; i++) dot += h[i] * wte[row + i];
    logits[v] = dot;
  }
  return logits;
}

function add(a: Float64Array, b: Float64Array): Float64Array {
  return a.map((v, i) => v + b[i]);
}

function softmax(x: Float64Array): Float64Array {
  const max = Math.max(...x);
  const exp = x.map((v) => Math.exp(v - max));
  const sum = exp.reduce((s, v) => s + v, 0);
  return exp.map((v) => v / sum);
}

function argmax(x: Float32Array): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}

/** gelu_new, GPT-2's tanh approximation. */
function geluTanh(x: number): number {
  return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
}

/** Exact gelu: x Φ(x) = x/2 · erfc(-x/√2). */
function geluErf(x: number): number {
  return 0.5 * x * erfc(-x / Math.SQRT2);
}

/** erfc by the Chebyshev fit of Numerical Recipes (erfcc): relative error below 1.2e-7 everywhere. */
function erfc(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const poly =
    -z * z -
    1.26551223 +
    t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 +
      t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
  const result = t * Math.exp(poly);
  return x >= 0 ? result : 2 - result;
}
