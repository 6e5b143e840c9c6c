import type { Weight } from '../../shared/model/weight';
import type { Gpt2Config } from '../families/gpt2/gpt2-config';
import type { Gpt2Checkpoint, Gpt2LayerWeights, LayerNormWeights, LinearWeights } from '../families/gpt2/gpt2-weights';
import { NormalGenerator } from './normal-generator';

const GPT2_VOCAB_SIZE = 50257;
const GPT2_END_OF_TEXT = 50256;
export { MAX_SEED } from './normal-generator';

export const GPT2_PRESETS: { readonly small: Gpt2Config; readonly tiny: Gpt2Config } = {
  small: {
    modelType: 'gpt2',
    vocabSize: GPT2_VOCAB_SIZE,
    nPositions: 1024,
    nEmbd: 768,
    nLayer: 12,
    nHead: 12,
    nInner: 3072,
    layerNormEpsilon: 1e-5,
    activation: 'gelu_new',
    bosTokenId: GPT2_END_OF_TEXT,
    eosTokenId: GPT2_END_OF_TEXT,
  },
  tiny: {
    modelType: 'gpt2',
    vocabSize: GPT2_VOCAB_SIZE,
    nPositions: 256,
    nEmbd: 64,
    nLayer: 6,
    nHead: 4,
    nInner: 256,
    layerNormEpsilon: 1e-5,
    activation: 'gelu_new',
    bosTokenId: GPT2_END_OF_TEXT,
    eosTokenId: GPT2_END_OF_TEXT,
  },
};

/**
 * The random init, in multiples of 1/√fanIn for the linear layers (so a gain of 1 roughly keeps
 * the variance of a layer-normed input).
 *
 * GPT-2's own init (every weight N(0, 0.02), biases 0, layer-norm gains 1) makes each block a
 * small perturbation of the residual stream, so the final hidden state is mostly wte[last token]
 * and the tied LM head scores that same token highest: greedy decoding repeats one token whatever
 * the prompt. Measured with the naive forward pass (tests/support/naive-gpt2.ts):
 * - Blocks must outweigh the embeddings: attention and MLP output gains of 4 make the residual
 *   stream ~20× the embedding's norm, so it carries context rather than the last token.
 * - q/k gain 3 gives attention scores with a std of ~9, so heads pick particular earlier tokens
 *   (a prompt-dependent choice) instead of averaging everything.
 * - Even then GPT-2 small (768 wide) doubled tokens ("a a b b") in about one step in four: the
 *   fed-back token's own embedding, still in the residual, matches its own row of the tied head
 *   with weight ~nEmbd / |h|. Final layer-norm gains drawn around 0 instead of around 1 turn that
 *   self-match into a random-sign sum, and doubling became rare.
 * - The final layer norm is then scaled down (gain std 0.1, bias std 0.01), which leaves greedy
 *   output unchanged but keeps logits at a std of ~3 (unit gains gave ~28): sampling sees a real
 *   distribution rather than a one-hot, and the compiled float32 graphs stay within 1e-4 of the
 *   float64 reference (measured 4e-5 for small, 4e-6 for tiny; the error grows with the logits).
 * Result (seed 42, four English prompts): tiny gives 12–16 distinct ids in 16 greedy tokens, small
 * 7–8 distinct in 8, and every prompt continues differently.
 */
const INIT = {
  tokenEmbeddingStd: 1,
  positionEmbeddingStd: 1,
  queryKeyGain: 3,
  valueGain: 1,
  outputGain: 4,
  /** A gain above 1 drives gelu into its non-linear range. */
  mlpInGain: 2,
  mlpOutGain: 4,
  biasStd: 0.1,
  /** Gains vary around 1 so channels differ in scale, as in trained models. */
  layerNormGainStd: 0.2,
  finalNormGainMean: 0,
  finalNormGainStd: 0.1,
  finalNormBiasStd: 0.01,
};

/**
 * A GPT-2 checkpoint with random weights from a seeded generator: the same config and seed give
 * the same bytes on every run. 124M weights (small) take a few seconds.
 */
export function randomGpt2Checkpoint(config: Gpt2Config, seed: number): Gpt2Checkpoint {
  const random = new NormalGenerator(seed);
  const { nEmbd: e, nInner: inner } = config;
  const normal = (dims: number[], std: number, mean = 0): Weight => ({ dims, data: random.fill(dims, std, mean) });
  /** A Conv1D [fanIn, outputs] whose equal column blocks (q | k | v for c_attn) get their own gain. */
  const linear = (fanIn: number, outputs: number, blockGains: readonly number[]): LinearWeights => {
    const weight = normal([fanIn, outputs], 1 / Math.sqrt(fanIn));
    const blockWidth = outputs / blockGains.length;
    for (let row = 0; row < fanIn; row++) {
      blockGains.forEach((gain, block) => {
        const start = row * outputs + block * blockWidth;
        for (let i = start; i < start + blockWidth; i++) weight.data[i] *= gain;
      });
    }
    return { weight, bias: normal([outputs], INIT.biasStd) };
  };
  const layerNorm = (gainMean: number, gainStd: number, biasStd = INIT.biasStd): LayerNormWeights => ({
    weight: normal([e], gainStd, gainMean),
    bias: normal([e], biasStd),
  });
  const wte = normal([config.vocabSize, e], INIT.tokenEmbeddingStd);
  const wpe = normal([config.nPositions, e], INIT.positionEmbeddingStd);
  const layers: Gpt2LayerWeights[] = [];
  for (let l = 0; l < config.nLayer; l++) {
    layers.push({
      ln1: layerNorm(1, INIT.layerNormGainStd),
      attnQkv: linear(e, 3 * e, [INIT.queryKeyGain, INIT.queryKeyGain, INIT.valueGain]),
      attnProj: linear(e, e, [INIT.outputGain]),
      ln2: layerNorm(1, INIT.layerNormGainStd),
      mlpFc: linear(e, inner, [INIT.mlpInGain]),
      mlpProj: linear(inner, e, [INIT.mlpOutGain]),
    });
  }
  const lnF = layerNorm(INIT.finalNormGainMean, INIT.finalNormGainStd, INIT.finalNormBiasStd);
  return { config, weights: { wte, wpe, layers, lnF } };
}

/** GPT-2's own initializer range: the std of every weight matrix and embedding table. */
const GPT2_INITIALIZER_RANGE = 0.02;

/**
 * A seeded GPT-2 checkpoint initialised at GPT-2's own scale: every weight and embedding N(0, 0.02),
 * biases 0, layer-norm gains 1. Its greedy text is degenerate (see INIT), but its logits respond
 * smoothly to small weight changes, unlike the default model whose chaotic blocks turn any
 * perturbation into different tokens: quantization quality is measured on this one.
 */
export function gpt2ScaleCheckpoint(config: Gpt2Config, seed: number): Gpt2Checkpoint {
  const random = new NormalGenerator(seed);
  const { nEmbd: e, nInner: inner } = config;
  const normal = (dims: number[]): Weight => ({ dims, data: random.fill(dims, GPT2_INITIALIZER_RANGE, 0) });
  const constant = (dims: number[], value: number): Weight => ({ dims, data: new Float32Array(dims.reduce((n, d) => n * d, 1)).fill(value) });
  const linear = (fanIn: number, outputs: number): LinearWeights => ({ weight: normal([fanIn, outputs]), bias: constant([outputs], 0) });
  const layerNorm = (): LayerNormWeights => ({ weight: constant([e], 1), bias: constant([e], 0) });
  const wte = normal([config.vocabSize, e]);
  const wpe = normal([config.nPositions, e]);
  const layers: Gpt2LayerWeights[] = [];
  for (let l = 0; l < config.nLayer; l++) {
    layers.push({ ln1: layerNorm(), attnQkv: linear(e, 3 * e), attnProj: linear(e, e), ln2: layerNorm(), mlpFc: linear(e, inner), mlpProj: linear(inner, e) });
  }
  return { config, weights: { wte, wpe, layers, lnF: layerNorm() } };
}

