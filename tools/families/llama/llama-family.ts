import type { ModelShape } from '../../../shared/model/model-shape';
import type { Weight } from '../../../shared/model/weight';
import { attr, MICROSOFT_DOMAIN } from '../../compiler/onnx-graph';
import { TYPICAL_CONTEXT_TOKENS } from '../../compiler/split-plan';
import type { RotaryTables } from '../../compiler/stage-attention';
import type { StageBuilder } from '../../compiler/stage-builder';
import type { Checkpoint } from '../checkpoint';
import type { ModelDefinition, ModelFamily, TensorMap } from '../model-family';
import { isLlamaArchitecture, LLAMA_ARCHITECTURES, parseLlamaConfig, toHfConfigJson, type LlamaConfig } from './llama-config';
import { rotaryCaches, type RotaryCaches } from './llama-rope';
import { llamaTensorLayout, llamaTensorNames } from './llama-weights';

/**
 * Llama-family decoders (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM), as
 * transformers' modeling_llama / modeling_mistral / modeling_qwen2 compute them: token embedding,
 * pre-norm blocks (RMSNorm; q/k/v projections, rotary embeddings on q and k, grouped-query causal
 * attention, optionally within a sliding window; o_proj; RMSNorm; down(silu(gate(x)) · up(x))),
 * a final RMSNorm and the head (the embedding when tied).
 */
export const llamaFamily: ModelFamily = {
  name: 'llama',
  architectures: Object.keys(LLAMA_ARCHITECTURES),
  parseConfig: (json, architecture, source) => {
    if (!isLlamaArchitecture(architecture)) throw new Error(`${source}: field architectures: ${architecture} is not a Llama-family architecture`);
    return llamaDefinition(parseLlamaConfig(json, architecture, source));
  },
};

/** A checkpoint in memory as the compiler takes any family's. */
export function llamaCheckpoint(config: LlamaConfig, tensors: TensorMap): Checkpoint {
  return { model: llamaDefinition(config), tensors };
}

export function llamaShape(config: LlamaConfig): ModelShape {
  return {
    vocabSize: config.vocabSize,
    contextLength: config.maxPositions,
    hiddenSize: config.hiddenSize,
    layers: config.layers,
    attentionHeads: config.attentionHeads,
    kvHeads: config.kvHeads,
    headDim: config.headDim,
    bosTokenId: config.bosTokenId,
    eosTokenIds: config.eosTokenIds,
    slidingWindow: config.slidingWindow,
  };
}

export function llamaDefinition(config: LlamaConfig): ModelDefinition {
  const e = config.hiddenSize;
  const qWidth = config.attentionHeads * config.headDim;
  const kvWidth = config.kvHeads * config.headDim;
  const context = Math.min(config.maxPositions, config.slidingWindow ?? Infinity, TYPICAL_CONTEXT_TOKENS);
  let caches: RotaryCaches | undefined;
  const rotary = (stage: StageBuilder): RotaryTables => {
    caches ??= rotaryCaches(config);
    return { cos: stage.weight('rotary.cos_cache', caches.cos), sin: stage.weight('rotary.sin_cache', caches.sin) };
  };
  return {
    family: llamaFamily.name,
    architecture: config.architecture,
    shape: llamaShape(config),
    costs: {
      // A table lookup.
      embedding: e,
      // q, k, v and o projections, the three SwiGLU matrices, and attention over the context (scores and values for every query head).
      layer: 2 * e * qWidth + 2 * e * kvWidth + 3 * e * config.intermediateSize + 2 * context * qWidth,
      head: config.vocabSize * e,
    },
    tensorLayout: llamaTensorLayout(config),
    toConfigJson: () => toHfConfigJson(config),

    embed(stage, tensors) {
      return stage.embeddingLookup(stage.inputIds, llamaTensorNames.embedding, weight(tensors, llamaTensorNames.embedding));
    },

    blocks(stage, tensors, hidden) {
      return stage.ops === 'fused' ? fusedBlocks(stage, tensors, hidden, config, rotary(stage)) : plainBlocks(stage, tensors, hidden, config, rotary(stage));
    },

    head(stage, tensors, lastHidden) {
      const normed =
        stage.ops === 'fused'
          ? simplifiedLayerNorm(stage, tensors, lastHidden, llamaTensorNames.finalNorm, config.rmsNormEpsilon)
          : rmsNorm(stage, tensors, lastHidden, llamaTensorNames.finalNorm, config.rmsNormEpsilon);
      const head = config.tieWordEmbeddings ? llamaTensorNames.embedding : llamaTensorNames.lmHead;
      return stage.headMatmul(normed, head, weight(tensors, head));
    },
  };
}

function weight(tensors: TensorMap, name: string): Weight {
  const found = tensors.get(name);
  if (found === undefined) throw new Error(`weights: missing ${name}`);
  return found;
}

/** nn.Linear: x · Wᵀ (+ b). */
function linear(stage: StageBuilder, tensors: TensorMap, x: string, module: string, bias: boolean): string {
  const product = stage.matmul(x, `${module}.weight`, weight(tensors, `${module}.weight`), 'out-in');
  return bias ? stage.graph.op('Add', [product, stage.weight(`${module}.bias`, weight(tensors, `${module}.bias`))]) : product;
}

/** LlamaRMSNorm written out: x / √(mean(x²) + ε) · g. */
function rmsNorm(stage: StageBuilder, tensors: TensorMap, x: string, gain: string, epsilon: number): string {
  const { graph } = stage;
  return graph.inScope('rms_norm', () => {
    const meanSquare = graph.op('ReduceMean', [graph.op('Mul', [x, x])], { axes: attr.ints([-1]), keepdims: attr.int(1) });
    const inverse = graph.op('Reciprocal', [graph.op('Sqrt', [graph.op('Add', [meanSquare, graph.scalar(epsilon)])])]);
    return graph.op('Mul', [graph.op('Mul', [x, inverse]), stage.weight(gain, weight(tensors, gain))]);
  });
}

/** onnxruntime's RMSNorm (registered in the ai.onnx domain, not com.microsoft). */
function simplifiedLayerNorm(stage: StageBuilder, tensors: TensorMap, x: string, gain: string, epsilon: number): string {
  return stage.graph.op('SimplifiedLayerNormalization', [x, stage.weight(gain, weight(tensors, gain))], { axis: attr.int(-1), epsilon: attr.float(epsilon) });
}

/**
 * Several nn.Linear layers reading the same input as one MatMul over their weights stacked along
 * the output (q|k|v, gate|up), then split: one pass over the input and one kernel launch instead
 * of three or two.
 */
function stackedLinear(stage: StageBuilder, tensors: TensorMap, x: string, name: string, modules: readonly string[], bias: boolean): string[] {
  const { graph } = stage;
  const weights = modules.map((module) => weight(tensors, `${module}.weight`));
  const product = stage.matmul(x, `${name}.weight`, stackRows(weights), 'out-in');
  const sum = bias ? graph.op('Add', [product, stage.weight(`${name}.bias`, stackRows(modules.map((module) => weight(tensors, `${module}.bias`))))]) : product;
  return graph.node('Split', [sum, graph.int64s(weights.map((w) => w.dims[0]))], { outputs: modules.length, attributes: { axis: attr.int(-1) } });
}

/** Weights [rows_i, …] with equal trailing dims stacked into [Σ rows_i, …]: their data end to end. */
function stackRows(weights: readonly Weight[]): Weight {
  const data = new Float32Array(weights.reduce((n, w) => n + w.data.length, 0));
  let offset = 0;
  for (const w of weights) {
    data.set(w.data, offset);
    offset += w.data.length;
  }
  return { dims: [weights.reduce((n, w) => n + w.dims[0], 0), ...weights[0].dims.slice(1)], data };
}

/** down(silu(gate(x)) · up(x)), silu(g) = g · σ(g). */
function swiGlu(stage: StageBuilder, tensors: TensorMap, x: string, names: ReturnType<typeof llamaTensorNames.layer>, config: LlamaConfig): string {
  const { graph } = stage;
  const gate = linear(stage, tensors, x, names.gate, config.mlpBias);
  const activated = graph.op('Mul', [graph.op('Mul', [gate, graph.op('Sigmoid', [gate])]), linear(stage, tensors, x, names.up, config.mlpBias)]);
  return stage.matmul(activated, `${names.down}.weight`, weight(tensors, `${names.down}.weight`), 'out-in');
}

/** Standard ONNX ops only: the reference the fused graphs are tested against. */
function plainBlocks(stage: StageBuilder, tensors: TensorMap, input: string, config: LlamaConfig, rotary: RotaryTables): string {
  const { graph } = stage;
  const epsilon = config.rmsNormEpsilon;
  const bias = (name: string): string => stage.weight(name, weight(tensors, name));
  let x = input;
  for (const layer of stage.layers) {
    const names = llamaTensorNames.layer(layer);
    x = graph.inScope(`layers.${layer}`, () => {
      const h = rmsNorm(stage, tensors, x, names.inputNorm, epsilon);
      const q = linear(stage, tensors, h, names.q, config.qkvBias);
      const k = linear(stage, tensors, h, names.k, config.qkvBias);
      const v = linear(stage, tensors, h, names.v, config.qkvBias);
      const attended = linear(stage, tensors, stage.attention.attend(layer, q, k, v, rotary), names.o, config.outputBias);
      const x1 = graph.op('Add', [x, attended]);
      const mlp = swiGlu(stage, tensors, rmsNorm(stage, tensors, x1, names.postAttentionNorm, epsilon), names, config);
      return graph.op('Add', [x1, config.mlpBias ? graph.op('Add', [mlp, bias(`${names.down}.bias`)]) : mlp]);
    });
  }
  return x;
}

/**
 * onnxruntime contrib ops: GroupQueryAttention with RotaryEmbedding (through StageAttention);
 * q|k|v and gate|up each as one stacked MatMul;
 * SkipSimplifiedLayerNormalization, which adds the sub-block's output (and its bias) to the
 * residual, RMS-normalises the sum for the next sub-block, and gives the sum back (output 3) as
 * the new residual. Each block's closing SkipSimplifiedLayerNormalization already applies the
 * next block's input_layernorm; the stage's first block starts with SimplifiedLayerNormalization.
 */
function fusedBlocks(stage: StageBuilder, tensors: TensorMap, input: string, config: LlamaConfig, rotary: RotaryTables): string {
  const { graph } = stage;
  const epsilon = attr.float(config.rmsNormEpsilon);
  // Outputs (normalised, mean, inv_std_var, input + skip + bias): the statistics are only for training.
  const skipNormOutputs = (): string[] => [graph.freshName('normed'), '', '', graph.freshName('residual')];
  const skipNorm = (sum: string, residual: string, gain: string, bias: string | undefined): [string, string] => {
    const inputs = [sum, residual, stage.weight(gain, weight(tensors, gain)), ...(bias === undefined ? [] : [stage.weight(bias, weight(tensors, bias))])];
    const [normed, , , total] = graph.node('SkipSimplifiedLayerNormalization', inputs, { domain: MICROSOFT_DOMAIN, outputs: skipNormOutputs(), attributes: { epsilon } });
    return [normed, total];
  };

  let x = input;
  let normed: string | undefined;
  stage.layers.forEach((layer, position) => {
    const names = llamaTensorNames.layer(layer);
    const next = stage.layers[position + 1];
    [x, normed] = graph.inScope(`layers.${layer}`, (): [string, string | undefined] => {
      const h = normed ?? simplifiedLayerNorm(stage, tensors, x, names.inputNorm, config.rmsNormEpsilon);
      const [q, k, v] = stackedLinear(stage, tensors, h, names.qkv, [names.q, names.k, names.v], config.qkvBias);
      const attended = stage.attention.attend(layer, q, k, v, rotary);
      const projected = stage.matmul(attended, `${names.o}.weight`, weight(tensors, `${names.o}.weight`), 'out-in');
      const [h2, x1] = skipNorm(projected, x, names.postAttentionNorm, config.outputBias ? `${names.o}.bias` : undefined);
      const [gate, up] = stackedLinear(stage, tensors, h2, names.gateUp, [names.gate, names.up], config.mlpBias);
      const activated = graph.op('Mul', [graph.op('Mul', [gate, graph.op('Sigmoid', [gate])]), up]);
      const mlp = stage.matmul(activated, `${names.down}.weight`, weight(tensors, `${names.down}.weight`), 'out-in');
      const mlpBias = config.mlpBias ? `${names.down}.bias` : undefined;
      if (next === undefined) {
        const withBias = mlpBias === undefined ? mlp : graph.op('Add', [mlp, stage.weight(mlpBias, weight(tensors, mlpBias))]);
        return [graph.op('Add', [withBias, x1]), undefined];
      }
      const [nextNormed, x2] = skipNorm(mlp, x1, llamaTensorNames.layer(next).inputNorm, mlpBias);
      return [x2, nextNormed];
    });
  });
  return x;
}
