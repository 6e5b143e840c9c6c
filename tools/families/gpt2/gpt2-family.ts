import type { ModelShape } from '../../../shared/model/model-shape';
import type { Weight } from '../../../shared/model/weight';
import { attr, MICROSOFT_DOMAIN } from '../../compiler/onnx-graph';
import type { StageBuilder } from '../../compiler/stage-builder';
import { TYPICAL_CONTEXT_TOKENS } from '../../compiler/split-plan';
import type { ModelDefinition, ModelFamily, TensorMap } from '../model-family';
import { GPT2_ARCHITECTURE, headDim, parseGpt2Config, toHfConfigJson, type Gpt2Config } from './gpt2-config';
import type { Checkpoint } from '../checkpoint';
import { gpt2TensorLayout, gpt2Tensors, type Gpt2Checkpoint } from './gpt2-weights';

/**
 * GPT-2 (GPT2LMHeadModel: gpt2, distilgpt2, gpt2-medium/large/xl): learned position
 * embeddings, pre-LayerNorm blocks with a fused q|k|v Conv1D, gelu MLP, final LayerNorm and an
 * LM head tied to the token embedding.
 */
export const gpt2Family: ModelFamily = {
  name: 'gpt2',
  architectures: [GPT2_ARCHITECTURE],
  parseConfig: (json, _architecture, source) => gpt2Definition(parseGpt2Config(json, source)),
};

/** A typed GPT-2 checkpoint as the compiler takes any family's: definition plus tensors by name. */
export function gpt2Checkpoint(checkpoint: Gpt2Checkpoint): Checkpoint {
  return { model: gpt2Definition(checkpoint.config), tensors: gpt2Tensors(checkpoint.weights) };
}

export function gpt2Shape(config: Gpt2Config): ModelShape {
  return {
    vocabSize: config.vocabSize,
    contextLength: config.nPositions,
    hiddenSize: config.nEmbd,
    layers: config.nLayer,
    attentionHeads: config.nHead,
    kvHeads: config.nHead,
    headDim: headDim(config),
    bosTokenId: config.bosTokenId,
    eosTokenIds: [config.eosTokenId],
    slidingWindow: null,
  };
}

export function gpt2Definition(config: Gpt2Config): ModelDefinition {
  const e = config.nEmbd;
  const epsilon = attr.float(config.layerNormEpsilon);
  const context = Math.min(config.nPositions, TYPICAL_CONTEXT_TOKENS);
  return {
    family: gpt2Family.name,
    architecture: GPT2_ARCHITECTURE,
    shape: gpt2Shape(config),
    costs: {
      // Two table lookups and an add.
      embedding: e,
      // q/k/v and output projections (4·E²), the MLP (2·E·inner), and attention over the context (2·T·E).
      layer: 4 * e * e + 2 * e * config.nInner + 2 * context * e,
      // The tied LM head: one [E] x [E, V] product.
      head: config.vocabSize * e,
    },
    tensorLayout: gpt2TensorLayout(config),
    toConfigJson: () => ({ ...toHfConfigJson(config) }),

    embed(stage, tensors) {
      const { graph } = stage;
      return graph.op('Add', [
        stage.embeddingLookup(stage.inputIds, 'wte', weight(tensors, 'wte.weight')),
        stage.embeddingLookup(stage.positionIds, 'wpe', weight(tensors, 'wpe.weight')),
      ]);
    },

    blocks(stage, tensors, hidden) {
      return stage.ops === 'fused' ? fusedBlocks(stage, tensors, hidden, config) : plainBlocks(stage, tensors, hidden, config);
    },

    head(stage, tensors, lastHidden) {
      const normed = stage.graph.op('LayerNormalization', [lastHidden, ...norm(stage, tensors, 'ln_f')], { axis: attr.int(-1), epsilon });
      return stage.headMatmul(normed, 'wte', weight(tensors, 'wte.weight'));
    },
  };
}

function weight(tensors: TensorMap, name: string): Weight {
  const found = tensors.get(name);
  if (found === undefined) throw new Error(`weights: missing ${name}`);
  return found;
}

function norm(stage: StageBuilder, tensors: TensorMap, prefix: string): [string, string] {
  return [stage.weight(`${prefix}.weight`, weight(tensors, `${prefix}.weight`)), stage.weight(`${prefix}.bias`, weight(tensors, `${prefix}.bias`))];
}

/** x·W + b for a Conv1D [in, out] weight. */
function linear(stage: StageBuilder, tensors: TensorMap, x: string, prefix: string): string {
  return stage.graph.op('Add', [stage.matmul(x, `${prefix}.weight`, weight(tensors, `${prefix}.weight`), 'in-out'), stage.weight(`${prefix}.bias`, weight(tensors, `${prefix}.bias`))]);
}

/** Standard ONNX ops only: the reference the fused graphs are tested against. */
function plainBlocks(stage: StageBuilder, tensors: TensorMap, input: string, config: Gpt2Config): string {
  const { graph } = stage;
  const layerNorm = { axis: attr.int(-1), epsilon: attr.float(config.layerNormEpsilon) };
  let x = input;
  for (const index of stage.layers) {
    const p = `h.${index}`;
    x = graph.inScope(p, () => {
      const h1 = graph.op('LayerNormalization', [x, ...norm(stage, tensors, `${p}.ln_1`)], layerNorm);
      const [q, k, v] = graph.node('Split', [linear(stage, tensors, h1, `${p}.attn.c_attn`)], { outputs: 3, attributes: { axis: attr.int(2) } });
      const attention = linear(stage, tensors, stage.attention.attend(index, q, k, v), `${p}.attn.c_proj`);
      const x1 = graph.op('Add', [x, attention]);
      const h2 = graph.op('LayerNormalization', [x1, ...norm(stage, tensors, `${p}.ln_2`)], layerNorm);
      const activated = gelu(stage, linear(stage, tensors, h2, `${p}.mlp.c_fc`), config.activation);
      return graph.op('Add', [x1, linear(stage, tensors, activated, `${p}.mlp.c_proj`)]);
    });
  }
  return x;
}

/**
 * onnxruntime contrib ops: GroupQueryAttention (through StageAttention); SkipLayerNormalization,
 * which adds the projection bias and the residual, normalises for the next sub-block, and gives
 * back the un-normalised sum (output 3) as the new residual; FastGelu (tanh approximation,
 * 'gelu_new') or BiasGelu (erf form, 'gelu') with the fc bias. Each block's closing
 * SkipLayerNormalization already applies the next block's ln_1.
 *
 * A stage boundary computes exactly what the monolithic graph computes there: the stage's last
 * block still closes with the next layer's SkipLayerNormalization and hands on its sum, and the
 * next stage normalises that sum with SkipLayerNormalization over a zero skip (x + 0 = x, then the
 * same kernel's normalisation). An Add then LayerNormalization rounds differently (measured 2.5e-6
 * on the logits), which greedy fp32 shrugs off but int8-quantized activations (MatMulNBits at
 * accuracy level 4) can turn into a different token some dozens of tokens later.
 */
function fusedBlocks(stage: StageBuilder, tensors: TensorMap, input: string, config: Gpt2Config): string {
  const { graph } = stage;
  const epsilon = attr.float(config.layerNormEpsilon);
  // SkipLayerNormalization's outputs are (normalised, mean, inv_std_var, input + skip + bias);
  // the statistics are only for training, so they are left unnamed.
  const skipLayerNormOutputs = (): string[] => [graph.freshName('normed'), '', '', graph.freshName('residual')];
  const bias = (name: string): string => stage.weight(name, weight(tensors, name));

  let x = input;
  let normed: string | undefined;
  stage.layers.forEach((index, position) => {
    const p = `h.${index}`;
    // The next layer of the model, in this stage or the next one.
    const next = index + 1 < config.nLayer ? index + 1 : undefined;
    [x, normed] = graph.inScope(p, (): [string, string | undefined] => {
      const h1 = normed ?? (position === 0 && index > 0 ? normalizeStageInput(stage, tensors, x, `${p}.ln_1`, epsilon) : graph.op('LayerNormalization', [x, ...norm(stage, tensors, `${p}.ln_1`)], { axis: attr.int(-1), epsilon }));
      const [q, k, v] = graph.node('Split', [linear(stage, tensors, h1, `${p}.attn.c_attn`)], { outputs: 3, attributes: { axis: attr.int(2) } });
      const attended = stage.attention.attend(index, q, k, v);
      const [h2, , , x1] = graph.node(
        'SkipLayerNormalization',
        [stage.matmul(attended, `${p}.attn.c_proj.weight`, weight(tensors, `${p}.attn.c_proj.weight`), 'in-out'), x, ...norm(stage, tensors, `${p}.ln_2`), bias(`${p}.attn.c_proj.bias`)],
        { domain: MICROSOFT_DOMAIN, outputs: skipLayerNormOutputs(), attributes: { epsilon } },
      );
      const fc = stage.matmul(h2, `${p}.mlp.c_fc.weight`, weight(tensors, `${p}.mlp.c_fc.weight`), 'in-out');
      const activated = graph.op(config.activation === 'gelu_new' ? 'FastGelu' : 'BiasGelu', [fc, bias(`${p}.mlp.c_fc.bias`)], {}, MICROSOFT_DOMAIN);
      const mlp = stage.matmul(activated, `${p}.mlp.c_proj.weight`, weight(tensors, `${p}.mlp.c_proj.weight`), 'in-out');
      const mlpBias = bias(`${p}.mlp.c_proj.bias`);
      if (next === undefined) return [graph.op('Add', [graph.op('Add', [mlp, mlpBias]), x1]), undefined];
      const [nextNormed, , , x2] = graph.node('SkipLayerNormalization', [mlp, x1, ...norm(stage, tensors, `h.${next}.ln_1`), mlpBias], {
        domain: MICROSOFT_DOMAIN,
        outputs: skipLayerNormOutputs(),
        attributes: { epsilon },
      });
      return [x2, stage.layers.includes(next) ? nextNormed : undefined];
    });
  });
  return x;
}

/** ln_1 of a stage's first block, as the previous block's SkipLayerNormalization would have computed it. */
function normalizeStageInput(stage: StageBuilder, tensors: TensorMap, x: string, prefix: string, epsilon: ReturnType<typeof attr.float>): string {
  const { graph } = stage;
  // x · 0 is ±0 everywhere, and x + ±0 is x exactly.
  const zeros = graph.op('Mul', [x, graph.scalar(0)]);
  const [normed] = graph.node('SkipLayerNormalization', [x, zeros, ...norm(stage, tensors, prefix)], {
    domain: MICROSOFT_DOMAIN,
    outputs: [graph.freshName('normed')],
    attributes: { epsilon },
  });
  return normed;
}

/** 'gelu_new' is the tanh approximation GPT-2 was trained with; 'gelu' is the exact erf form. */
function gelu(stage: StageBuilder, x: string, activation: 'gelu_new' | 'gelu'): string {
  const { graph } = stage;
  const half = graph.op('Mul', [x, graph.scalar(0.5)]);
  const one = graph.scalar(1);
  if (activation === 'gelu') {
    return graph.op('Mul', [half, graph.op('Add', [graph.op('Erf', [graph.op('Mul', [x, graph.scalar(Math.SQRT1_2)])]), one])]);
  }
  const cube = graph.op('Mul', [graph.op('Mul', [x, x]), x]);
  const inner = graph.op('Mul', [graph.op('Add', [x, graph.op('Mul', [cube, graph.scalar(0.044715)])]), graph.scalar(Math.sqrt(2 / Math.PI))]);
  return graph.op('Mul', [half, graph.op('Add', [graph.op('Tanh', [inner]), one])]);
}
