import type { TensorLayout } from '../../../shared/model/checkpoint-folder';
import type { Weight } from '../../../shared/model/weight';
import type { Gpt2Config } from './gpt2-config';


export interface LinearWeights {
  /** [in, out] (Conv1D layout, as stored by Hugging Face GPT-2). */
  readonly weight: Weight;
  /** [out] */
  readonly bias: Weight;
}

export interface LayerNormWeights {
  readonly weight: Weight;
  readonly bias: Weight;
}

export interface Gpt2LayerWeights {
  readonly ln1: LayerNormWeights;
  /** c_attn: [nEmbd, 3 * nEmbd], q|k|v concatenated along out. */
  readonly attnQkv: LinearWeights;
  /** c_proj of attention: [nEmbd, nEmbd]. */
  readonly attnProj: LinearWeights;
  readonly ln2: LayerNormWeights;
  /** c_fc: [nEmbd, nInner]. */
  readonly mlpFc: LinearWeights;
  /** c_proj of the MLP: [nInner, nEmbd]. */
  readonly mlpProj: LinearWeights;
}

/** A whole GPT-2 checkpoint in memory, typed (tests' reference forward pass reads it). The LM head is tied to `wte`. */
export interface Gpt2Weights {
  /** [vocabSize, nEmbd] */
  readonly wte: Weight;
  /** [nPositions, nEmbd] */
  readonly wpe: Weight;
  readonly layers: readonly Gpt2LayerWeights[];
  readonly lnF: LayerNormWeights;
}

export interface Gpt2Checkpoint {
  readonly config: Gpt2Config;
  readonly weights: Gpt2Weights;
}

/** Written by GPT2LMHeadModel checkpoints, absent from GPT2Model ones. */
const TRANSFORMER_PREFIX = 'transformer.';
/** Causal-mask buffers some exports save, and the LM head that GPT-2 ties to wte. */
const IGNORED_TENSOR = /^(h\.\d+\.attn\.(bias|masked_bias)|lm_head\.weight)$/;

/** Which tensors a GPT-2 checkpoint holds, under which names (the `transformer.` prefix dropped). */
export function gpt2TensorLayout(config: Gpt2Config): TensorLayout {
  return {
    expected: expectedShapes(config),
    canonicalName: (storedName) => {
      const name = storedName.startsWith(TRANSFORMER_PREFIX) ? storedName.slice(TRANSFORMER_PREFIX.length) : storedName;
      return IGNORED_TENSOR.test(name) ? null : name;
    },
    description: `a GPT-2 with n_layer ${config.nLayer}`,
  };
}

/** Every tensor a GPT-2 checkpoint must hold, with its shape, in Hugging Face order. */
function expectedShapes(config: Gpt2Config): Map<string, number[]> {
  const { nEmbd: e, nInner: inner } = config;
  const shapes = new Map<string, number[]>([
    ['wte.weight', [config.vocabSize, e]],
    ['wpe.weight', [config.nPositions, e]],
  ]);
  for (let i = 0; i < config.nLayer; i++) {
    const p = `h.${i}.`;
    shapes.set(`${p}ln_1.weight`, [e]).set(`${p}ln_1.bias`, [e]);
    shapes.set(`${p}attn.c_attn.weight`, [e, 3 * e]).set(`${p}attn.c_attn.bias`, [3 * e]);
    shapes.set(`${p}attn.c_proj.weight`, [e, e]).set(`${p}attn.c_proj.bias`, [e]);
    shapes.set(`${p}ln_2.weight`, [e]).set(`${p}ln_2.bias`, [e]);
    shapes.set(`${p}mlp.c_fc.weight`, [e, inner]).set(`${p}mlp.c_fc.bias`, [inner]);
    shapes.set(`${p}mlp.c_proj.weight`, [inner, e]).set(`${p}mlp.c_proj.bias`, [e]);
  }
  shapes.set('ln_f.weight', [e]).set('ln_f.bias', [e]);
  return shapes;
}

/** The typed weights of a tensor map that `gpt2TensorLayout` has checked. */
export function assembleGpt2Weights(config: Gpt2Config, tensors: ReadonlyMap<string, Weight>): Gpt2Weights {
  const get = (name: string): Weight => tensors.get(name) as Weight;
  const linear = (prefix: string): LinearWeights => ({ weight: get(`${prefix}.weight`), bias: get(`${prefix}.bias`) });
  const norm = (prefix: string): LayerNormWeights => ({ weight: get(`${prefix}.weight`), bias: get(`${prefix}.bias`) });
  const layers: Gpt2LayerWeights[] = [];
  for (let i = 0; i < config.nLayer; i++) {
    layers.push({
      ln1: norm(`h.${i}.ln_1`),
      attnQkv: linear(`h.${i}.attn.c_attn`),
      attnProj: linear(`h.${i}.attn.c_proj`),
      ln2: norm(`h.${i}.ln_2`),
      mlpFc: linear(`h.${i}.mlp.c_fc`),
      mlpProj: linear(`h.${i}.mlp.c_proj`),
    });
  }
  return { wte: get('wte.weight'), wpe: get('wpe.weight'), layers, lnF: norm('ln_f') };
}

function flattenWeights(weights: Gpt2Weights): Map<string, Weight> {
  const flat = new Map<string, Weight>([
    ['wte.weight', weights.wte],
    ['wpe.weight', weights.wpe],
  ]);
  weights.layers.forEach((layer, i) => {
    const pairs: [string, LinearWeights | LayerNormWeights][] = [
      ['ln_1', layer.ln1],
      ['attn.c_attn', layer.attnQkv],
      ['attn.c_proj', layer.attnProj],
      ['ln_2', layer.ln2],
      ['mlp.c_fc', layer.mlpFc],
      ['mlp.c_proj', layer.mlpProj],
    ];
    for (const [name, params] of pairs) {
      flat.set(`h.${i}.${name}.weight`, params.weight).set(`h.${i}.${name}.bias`, params.bias);
    }
  });
  flat.set('ln_f.weight', weights.lnF.weight).set('ln_f.bias', weights.lnF.bias);
  return flat;
}

/** Hugging Face names → tensors, as a checkpoint stores them. */
export function gpt2Tensors(weights: Gpt2Weights): Map<string, Weight> {
  const flat = new Map<string, Weight>([
    ['wte.weight', weights.wte],
    ['wpe.weight', weights.wpe],
  ]);
  weights.layers.forEach((layer, i) => {
    const pairs: [string, LinearWeights | LayerNormWeights][] = [
      ['ln_1', layer.ln1],
      ['attn.c_attn', layer.attnQkv],
      ['attn.c_proj', layer.attnProj],
      ['ln_2', layer.ln2],
      ['mlp.c_fc', layer.mlpFc],
      ['mlp.c_proj', layer.mlpProj],
    ];
    for (const [name, params] of pairs) {
      flat.set(`h.${i}.${name}.weight`, params.weight).set(`h.${i}.${name}.bias`, params.bias);
    }
  });
  flat.set('ln_f.weight', weights.lnF.weight).set('ln_f.bias', weights.lnF.bias);
  return flat;
}

