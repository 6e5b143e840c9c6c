import type { Weight } from '../../shared/model/weight';
import type { Checkpoint } from '../families/checkpoint';
import type { LlamaConfig } from '../families/llama/llama-config';
import { llamaCheckpoint } from '../families/llama/llama-family';
import { llamaTensorNames } from '../families/llama/llama-weights';
import { NormalGenerator } from './normal-generator';

const GPT2_VOCAB_SIZE = 50257;
const GPT2_END_OF_TEXT = 50256;

/**
 * Llama-architecture shapes for the offline models, with GPT-2's vocabulary (the only tokenizer
 * reachable offline). `small` is SmolLM2-135M's shape: 30 layers, hidden 576, 9 query heads over
 * 3 KV heads of 64, SwiGLU 1536, tied embeddings, RMSNorm ε 1e-5, 8192 positions (SmolLM2's
 * context), rope_theta 10000 (the number; SmolLM2-135M itself was trained with 100000).
 * `tiny` keeps the 9-over-3 grouping at head size 16 for tests.
 */
export const LLAMA_PRESETS: { readonly small: LlamaConfig; readonly tiny: LlamaConfig } = {
  small: {
    architecture: 'LlamaForCausalLM',
    modelType: 'llama',
    vocabSize: GPT2_VOCAB_SIZE,
    hiddenSize: 576,
    intermediateSize: 1536,
    layers: 30,
    attentionHeads: 9,
    kvHeads: 3,
    headDim: 64,
    maxPositions: 8192,
    rmsNormEpsilon: 1e-5,
    ropeTheta: 10_000,
    ropeScaling: { type: 'default' },
    tieWordEmbeddings: true,
    qkvBias: false,
    outputBias: false,
    mlpBias: false,
    slidingWindow: null,
    bosTokenId: GPT2_END_OF_TEXT,
    eosTokenIds: [GPT2_END_OF_TEXT],
  },
  tiny: {
    architecture: 'LlamaForCausalLM',
    modelType: 'llama',
    vocabSize: GPT2_VOCAB_SIZE,
    hiddenSize: 144,
    intermediateSize: 384,
    layers: 6,
    attentionHeads: 9,
    kvHeads: 3,
    headDim: 16,
    maxPositions: 256,
    rmsNormEpsilon: 1e-5,
    ropeTheta: 10_000,
    ropeScaling: { type: 'default' },
    tieWordEmbeddings: true,
    qkvBias: false,
    outputBias: false,
    mlpBias: false,
    slidingWindow: null,
    bosTokenId: GPT2_END_OF_TEXT,
    eosTokenIds: [GPT2_END_OF_TEXT],
  },
};

/**
 * The random init, in multiples of 1/√fanIn for the projections (a gain of 1 roughly keeps the
 * variance of an RMS-normed input): the gains tools/init/random-gpt2.ts found for GPT-2, which
 * carry over. Measured on llama-tiny, seed 42, with 8 prompts that all end in the same token
 * (" is") so that only the context can tell them apart, 32 greedy tokens each (compiled fused graph):
 * - Hugging Face's own init (every weight N(0, 0.02), norm gains 1): each block is a small
 *   perturbation of the residual stream, and greedy decoding repeats one token: 1.9 distinct ids
 *   in 32, runs of 32.
 * - Projections at 1/√fanIn, embeddings N(0, 1), final norm gains 1: the tied head scores the fed
 *   token's own row highest, so all 8 prompts continue with the same token and repeat it (1.1
 *   distinct ids, runs of 32, logits std 12).
 * - Final norm gains drawn around 0 (std 0.1) turn that self-match into a random-sign sum: 26
 *   distinct ids, but runs of up to 15.
 * - Blocks that outweigh the embeddings (attention and MLP output gains 4, MLP input gain 2) and
 *   sharper attention (q/k gain 3), with norm gains varying around 1 (std 0.2): 31.9 distinct ids
 *   in 32, no token twice in a row, 8 different first tokens, logits std 1.1. llama-small (30
 *   layers) under the same init: 32 distinct in 32, 8 different first tokens, logits std 2.4.
 * The small final gains keep the logits near unit scale, so sampling sees a real distribution
 * and the float32 graphs stay within 1e-4 of the float64 reference.
 */
const INIT = {
  embeddingStd: 1,
  queryKeyGain: 3,
  valueGain: 1,
  outputGain: 4,
  mlpInGain: 2,
  mlpOutGain: 4,
  biasStd: 0.1,
  normGainStd: 0.2,
  finalNormGainMean: 0,
  finalNormGainStd: 0.1,
};

/**
 * A Llama checkpoint with random weights from a seeded generator: the same config and seed give
 * the same bytes on every run.
 */
export function randomLlamaCheckpoint(config: LlamaConfig, seed: number): Checkpoint {
  const random = new NormalGenerator(seed);
  const { hiddenSize: e, intermediateSize: inner, headDim: d } = config;
  const tensors = new Map<string, Weight>();
  const normal = (name: string, dims: number[], std: number, mean = 0): void => {
    tensors.set(name, { dims, data: random.fill(dims, std, mean) });
  };
  /** nn.Linear(inputs, outputs): weight [outputs, inputs], and a bias where the config has one. */
  const linear = (module: string, inputs: number, outputs: number, gain: number, bias = false): void => {
    normal(`${module}.weight`, [outputs, inputs], gain / Math.sqrt(inputs));
    if (bias) normal(`${module}.bias`, [outputs], INIT.biasStd);
  };
  normal(llamaTensorNames.embedding, [config.vocabSize, e], INIT.embeddingStd);
  for (let layer = 0; layer < config.layers; layer++) {
    const names = llamaTensorNames.layer(layer);
    normal(names.inputNorm, [e], INIT.normGainStd, 1);
    linear(names.q, e, config.attentionHeads * d, INIT.queryKeyGain, config.qkvBias);
    linear(names.k, e, config.kvHeads * d, INIT.queryKeyGain, config.qkvBias);
    linear(names.v, e, config.kvHeads * d, INIT.valueGain, config.qkvBias);
    linear(names.o, config.attentionHeads * d, e, INIT.outputGain, config.outputBias);
    normal(names.postAttentionNorm, [e], INIT.normGainStd, 1);
    linear(names.gate, e, inner, INIT.mlpInGain, config.mlpBias);
    linear(names.up, e, inner, INIT.mlpInGain, config.mlpBias);
    linear(names.down, inner, e, INIT.mlpOutGain, config.mlpBias);
  }
  normal(llamaTensorNames.finalNorm, [e], INIT.finalNormGainStd, INIT.finalNormGainMean);
  if (!config.tieWordEmbeddings) linear(llamaTensorNames.lmHead, e, config.vocabSize, 1);
  return llamaCheckpoint(config, tensors);
}
