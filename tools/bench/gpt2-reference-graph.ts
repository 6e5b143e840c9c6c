import type { Weight } from '../../shared/model/weight';
import type { OnnxGraph } from '../compiler/onnx-graph';
import { DecoderGraphBuilder } from './decoder-graph-builder';
import type { Gpt2LmConfig } from './hf-causal-lm-config';
import type { HfCheckpointTensors } from './hf-checkpoint-tensors';

/** Written by GPT2LMHeadModel checkpoints, absent from GPT2Model ones. */
const TRANSFORMER_PREFIX = 'transformer.';
/** The causal-mask buffers older GPT-2 checkpoints saved; the mask is built from attention_mask instead. */
const MASK_BUFFERS = /^(transformer\.)?h\.\d+\.attn\.(bias|masked_bias)$/;
const TIED_HEAD = /^lm_head\.weight$/;
const GELU_TANH_COEFFICIENT = 0.044715;

/**
 * GPT2LMHeadModel as one ONNX graph with Optimum's decoder I/O, written from the Hugging Face
 * modeling code: learned positions added to the token embedding, pre-norm blocks (LayerNorm,
 * fused q|k|v Conv1D, causal attention, Conv1D projection; LayerNorm, Conv1D, gelu, Conv1D),
 * a final LayerNorm and the head (wte unless the config unties it). Conv1D weights are stored
 * [in, out], which is MatMul's layout already.
 */
export async function buildGpt2ReferenceGraph(config: Gpt2LmConfig, tensors: HfCheckpointTensors, name: string): Promise<OnnxGraph> {
  const prefix = tensors.has(`${TRANSFORMER_PREFIX}wte.weight`) ? TRANSFORMER_PREFIX : '';
  const read = (tensor: string, dims: readonly number[]) => tensors.get(`${prefix}${tensor}`, dims);
  const { hiddenSize: e, innerSize: inner, vocabSize, layerNormEpsilon: epsilon } = config;
  const b = new DecoderGraphBuilder({
    name,
    layers: config.layers,
    heads: config.heads,
    kvHeads: config.heads,
    headDim: config.headDim,
    hiddenSize: e,
    vocabSize,
  });
  const g = b.graph;
  const wte = b.weight('wte.weight', await read('wte.weight', [vocabSize, e]));
  const wpe = b.weight('wpe.weight', await read('wpe.weight', [config.maxPositions, e]));
  let hidden = b.add(b.gather(wte, b.inputIds), b.gather(wpe, b.positionIds));
  for (let layer = 0; layer < config.layers; layer++) {
    const p = `h.${layer}.`;
    const norm = async (module: string): Promise<[Weight, Weight]> => [await read(`${p}${module}.weight`, [e]), await read(`${p}${module}.bias`, [e])];
    const conv1d = async (module: string, inputs: number, outputs: number): Promise<[Weight, Weight]> => [
      await read(`${p}${module}.weight`, [inputs, outputs]),
      await read(`${p}${module}.bias`, [outputs]),
    ];
    const w = {
      ln1: await norm('ln_1'),
      qkv: await conv1d('attn.c_attn', e, 3 * e),
      attentionOut: await conv1d('attn.c_proj', e, e),
      ln2: await norm('ln_2'),
      up: await conv1d('mlp.c_fc', e, inner),
      down: await conv1d('mlp.c_proj', inner, e),
    };
    const residual = hidden;
    hidden = g.inScope(`h.${layer}`, () => {
      const qkv = b.linear(`${p}attn.c_attn`, b.layerNorm(`${p}ln_1`, residual, ...w.ln1, epsilon), ...w.qkv);
      const [q, k, v] = b.splitLast(qkv, [e, e, e]);
      const attention = b.attention(layer, q, k, v, { rotary: null, slidingWindow: null });
      const afterAttention = b.add(residual, b.linear(`${p}attn.c_proj`, attention, ...w.attentionOut));
      const up = b.linear(`${p}mlp.c_fc`, b.layerNorm(`${p}ln_2`, afterAttention, ...w.ln2, epsilon), ...w.up);
      const activated = config.activation === 'gelu-tanh' ? geluTanh(b, up) : geluErf(b, up);
      return b.add(afterAttention, b.linear(`${p}mlp.c_proj`, activated, ...w.down));
    });
  }
  hidden = b.layerNorm('ln_f', hidden, await read('ln_f.weight', [e]), await read('ln_f.bias', [e]), epsilon);
  const head = config.tiedHead ? wte : b.weight('lm_head.weight', await tensors.get('lm_head.weight', [vocabSize, e]));
  b.logits(hidden, head);
  tensors.assertAllRead(config.tiedHead ? new RegExp(`${MASK_BUFFERS.source}|${TIED_HEAD.source}`) : MASK_BUFFERS);
  return g;
}

/** gelu_new: x/2 · (1 + tanh(√(2/π) · (x + 0.044715 x³))). */
function geluTanh(b: DecoderGraphBuilder, x: string): string {
  const g = b.graph;
  const cube = b.mul(b.mul(x, x), x);
  const inner = b.mul(b.add(x, b.mul(cube, g.scalar(GELU_TANH_COEFFICIENT))), g.scalar(Math.sqrt(2 / Math.PI)));
  return b.mul(b.mul(x, g.scalar(0.5)), b.add(g.op('Tanh', [inner]), g.scalar(1)));
}

/** Exact gelu: x/2 · (1 + erf(x/√2)). */
function geluErf(b: DecoderGraphBuilder, x: string): string {
  const g = b.graph;
  return b.mul(b.mul(x, g.scalar(0.5)), b.add(g.op('Erf', [b.mul(x, g.scalar(Math.SQRT1_2))]), g.scalar(1)));
}
