/**
 * Test fixtures for the compiler tests: seeded random GPT-2 checkpoints held in memory, a plain
 * float64 JavaScript GPT-2 forward pass as the independent reference, and a driver that runs
 * compiled stage graphs over a left-padded batch exactly as docs/stage-graph.md lays it out.
 */
import type { Gpt2Config } from '../../shared/model/gpt2-config';
import type { Gpt2Checkpoint, Gpt2LayerWeights, LayerNormWeights, LinearWeights, Weight } from '../../shared/model/gpt2-weights';
import { float32Tensor, int64Tensor, type Tensor } from '../../shared/tensor';
import type { OnnxSession } from '../../services/node/onnx-session';

export const TINY_CONFIG: Gpt2Config = {
  modelType: 'gpt2',
  vocabSize: 50257,
  nPositions: 256,
  nEmbd: 64,
  nLayer: 6,
  nHead: 4,
  nInner: 256,
  layerNormEpsilon: 1e-5,
  activation: 'gelu_new',
  bosTokenId: 50256,
  eosTokenId: 50256,
};

export const SMALL_CONFIG: Gpt2Config = {
  ...TINY_CONFIG,
  nPositions: 1024,
  nEmbd: 768,
  nLayer: 12,
  nHead: 12,
  nInner: 3072,
};

/** mulberry32 + Box-Muller: reproducible normal samples without a dependency. */
export function normalSampler(seed: number): () => number {
  let state = seed >>> 0;
  const uniform = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  // Box-Muller yields two independent samples per pair of uniforms; keep the second one.
  let spare: number | undefined;
  return () => {
    if (spare !== undefined) {
      const value = spare;
      spare = undefined;
      return value;
    }
    const radius = Math.sqrt(-2 * Math.log(1 - uniform()));
    const angle = 2 * Math.PI * uniform();
    spare = radius * Math.sin(angle);
    return radius * Math.cos(angle);
  };
}

/**
 * Weights with a large std (the brief: 0.2–0.5) so that logits are far from flat and a wrong
 * mask, transpose or bias shows up as a large difference.
 */
export function randomCheckpoint(config: Gpt2Config, seed = 1, std = 0.3): Gpt2Checkpoint {
  const normal = normalSampler(seed);
  const weight = (dims: number[], scale = std, mean = 0): Weight => {
    const data = new Float32Array(dims.reduce((n, d) => n * d, 1));
    for (let i = 0; i < data.length; i++) data[i] = mean + scale * normal();
    return { dims, data };
  };
  const e = config.nEmbd;
  const linear = (inputs: number, outputs: number): LinearWeights => ({
    weight: weight([inputs, outputs], std / Math.sqrt(inputs / 16)),
    bias: weight([outputs], 0.1),
  });
  const norm = (): LayerNormWeights => ({ weight: weight([e], 0.2, 1), bias: weight([e], 0.1) });
  const layers: Gpt2LayerWeights[] = Array.from({ length: config.nLayer }, () => ({
    ln1: norm(),
    attnQkv: linear(e, 3 * e),
    attnProj: linear(e, e),
    ln2: norm(),
    mlpFc: linear(e, config.nInner),
    mlpProj: linear(config.nInner, e),
  }));
  return {
    config,
    weights: { wte: weight([config.vocabSize, e]), wpe: weight([config.nPositions, e], 0.1), layers, lnF: norm() },
  };
}

/** Last-token logits of an unpadded sequence, in float64 with plain loops: the reference. */
export function referenceLastLogits(checkpoint: Gpt2Checkpoint, tokens: readonly number[]): Float64Array {
  const { config, weights } = checkpoint;
  const e = config.nEmbd;
  const n = tokens.length;
  const heads = config.nHead;
  const d = e / heads;
  let x: Float64Array[] = tokens.map((token, pos) => {
    const row = new Float64Array(e);
    for (let i = 0; i < e; i++) row[i] = weights.wte.data[token * e + i] + weights.wpe.data[pos * e + i];
    return row;
  });
  const layerNorm = (v: Float64Array, norm: LayerNormWeights): Float64Array => {
    const mean = v.reduce((a, b) => a + b, 0) / v.length;
    const variance = v.reduce((a, b) => a + (b - mean) ** 2, 0) / v.length;
    const inv = 1 / Math.sqrt(variance + config.layerNormEpsilon);
    return v.map((value, i) => (value - mean) * inv * norm.weight.data[i] + norm.bias.data[i]);
  };
  const linear = (v: Float64Array, lin: LinearWeights): Float64Array => {
    const [inputs, outputs] = lin.weight.dims;
    const out = new Float64Array(outputs);
    for (let o = 0; o < outputs; o++) out[o] = lin.bias.data[o];
    for (let i = 0; i < inputs; i++) {
      const vi = v[i];
      for (let o = 0; o < outputs; o++) out[o] += vi * lin.weight.data[i * outputs + o];
    }
    return out;
  };
  const gelu = (v: number): number =>
    config.activation === 'gelu_new'
      ? 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)))
      : 0.5 * v * (1 + erf(v / Math.SQRT2));
  for (const layer of weights.layers) {
    const qkv = x.map((row) => linear(layerNorm(row, layer.ln1), layer.attnQkv));
    const attended = x.map((_, t) => {
      const out = new Float64Array(e);
      for (let h = 0; h < heads; h++) {
        const scores = Array.from({ length: t + 1 }, (_, j) => {
          let dot = 0;
          for (let c = 0; c < d; c++) dot += qkv[t][h * d + c] * qkv[j][e + h * d + c];
          return dot / Math.sqrt(d);
        });
        const max = Math.max(...scores);
        const exps = scores.map((s) => Math.exp(s - max));
        const sum = exps.reduce((a, b) => a + b, 0);
        for (let j = 0; j <= t; j++) {
          for (let c = 0; c < d; c++) out[h * d + c] += (exps[j] / sum) * qkv[j][2 * e + h * d + c];
        }
      }
      return out;
    });
    x = x.map((row, t) => {
      const projected = linear(attended[t], layer.attnProj);
      const x1 = row.map((v, i) => v + projected[i]);
      const mlp = linear(linear(layerNorm(x1, layer.ln2), layer.mlpFc).map(gelu), layer.mlpProj);
      return x1.map((v, i) => v + mlp[i]);
    });
  }
  const last = layerNorm(x[n - 1], weights.lnF);
  const logits = new Float64Array(config.vocabSize);
  for (let v = 0; v < config.vocabSize; v++) {
    let dot = 0;
    for (let i = 0; i < e; i++) dot += last[i] * weights.wte.data[v * e + i];
    logits[v] = dot;
  }
  return logits;
}

/** Abramowitz–Stegun 7.1.26 is too coarse for 1e-4 checks; this series/continued form is exact enough. */
function erf(x: number): number {
  const sign = Math.sign(x);
  const a = Math.abs(x);
  if (a < 3) {
    let term = a;
    let sum = a;
    for (let k = 1; k < 100; k++) {
      term *= (-a * a) / k;
      sum += term / (2 * k + 1);
    }
    return (sign * 2 * sum) / Math.sqrt(Math.PI);
  }
  let fraction = 0;
  for (let k = 60; k >= 1; k--) fraction = (k / 2) / (a + fraction);
  return sign * (1 - Math.exp(-a * a) / Math.sqrt(Math.PI) / (a + fraction));
}

/** One batch step: per row the real new tokens; rows are left-padded to the longest. */
export interface StepRows {
  readonly newTokens: readonly (readonly number[])[];
}

/** Per layer the present key/value of the previous step, and the mask of its columns. */
export interface PastState {
  readonly keys: Map<number, Tensor<'float32'>>;
  readonly values: Map<number, Tensor<'float32'>>;
  /** [B][P] 0/1 */
  readonly mask: number[][];
}

export interface StepResult {
  readonly logits: Tensor<'float32'>;
  readonly past: PastState;
  /** Per stage, its `hidden_states_out` (absent for the last stage). */
  readonly hiddenOut: Tensor<'float32'>[];
}

/**
 * Runs one step through `stages` in order: left-pads the new tokens, builds position ids and
 * the attention mask from the previous step's mask, and feeds each stage's hidden_states_out to
 * the next. Padding positions use token 0 and position 0 (the contract).
 */
export async function runStep(
  stages: readonly { session: OnnxSession; layerStart: number; layerEnd: number }[],
  config: Gpt2Config,
  rows: StepRows,
  past: PastState | undefined,
): Promise<StepResult> {
  const batch = rows.newTokens.length;
  const seq = Math.max(...rows.newTokens.map((t) => t.length));
  const pastLength = past === undefined ? 0 : past.mask[0].length;
  const heads = config.nHead;
  const d = config.nEmbd / heads;
  const ids: number[] = [];
  const positions: number[] = [];
  const mask: number[][] = [];
  for (let r = 0; r < batch; r++) {
    const tokens = rows.newTokens[r];
    const pastMask = past === undefined ? [] : past.mask[r];
    const realPast = pastMask.reduce((a, b) => a + b, 0);
    const padding = seq - tokens.length;
    for (let i = 0; i < seq; i++) {
      ids.push(i < padding ? 0 : tokens[i - padding]);
      positions.push(i < padding ? 0 : realPast + i - padding);
    }
    mask.push([...pastMask, ...Array.from({ length: seq }, (_, i) => (i < padding ? 0 : 1))]);
  }
  const emptyPast = float32Tensor([batch, heads, 0, d]);
  const keys = new Map<number, Tensor<'float32'>>();
  const values = new Map<number, Tensor<'float32'>>();
  const hiddenOut: Tensor<'float32'>[] = [];
  let hidden: Tensor | undefined;
  let logits: Tensor<'float32'> | undefined;
  for (const stage of stages) {
    const feeds: Record<string, Tensor> = {
      position_ids: int64Tensor([batch, seq], positions),
      attention_mask: int64Tensor([batch, pastLength + seq], mask.flat()),
    };
    if (hidden === undefined) feeds.input_ids = int64Tensor([batch, seq], ids);
    else feeds.hidden_states = hidden;
    for (let layer = stage.layerStart; layer < stage.layerEnd; layer++) {
      feeds[`past_key.${layer}`] = past?.keys.get(layer) ?? emptyPast;
      feeds[`past_value.${layer}`] = past?.values.get(layer) ?? emptyPast;
    }
    const out = await stage.session.run(feeds);
    for (let layer = stage.layerStart; layer < stage.layerEnd; layer++) {
      keys.set(layer, out[`present_key.${layer}`] as Tensor<'float32'>);
      values.set(layer, out[`present_value.${layer}`] as Tensor<'float32'>);
    }
    if ('logits' in out) logits = out.logits as Tensor<'float32'>;
    else {
      hidden = out.hidden_states_out;
      hiddenOut.push(hidden as Tensor<'float32'>);
    }
  }
  if (logits === undefined) throw new Error('no stage produced logits');
  return { logits, past: { keys, values, mask }, hiddenOut };
}

/** The largest |a - b| over two equally long arrays. */
export function maxAbsDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
  return max;
}

/** Row `r` of a [B, N] tensor. */
export function row(t: Tensor<'float32'>, r: number): Float32Array {
  const width = t.dims[1];
  return t.data.subarray(r * width, (r + 1) * width);
}
