import type { Weight } from '../../shared/model/weight';
import type { OnnxGraph } from '../compiler/onnx-graph';
import { DecoderGraphBuilder } from './decoder-graph-builder';
import type { LlamaLmConfig } from './hf-causal-lm-config';
import type { HfCheckpointTensors } from './hf-checkpoint-tensors';

/** Buffers some checkpoints saved; the graph computes the frequencies from the config. */
const ROTARY_BUFFERS = /\.rotary_emb\.inv_freq$/;
/** Saved by some tied checkpoints although the head reads embed_tokens. */
const TIED_HEAD = /^lm_head\.weight$/;

/**
 * LlamaForCausalLM, MistralForCausalLM and Qwen2ForCausalLM as one ONNX graph with Optimum's
 * decoder I/O, written from the Hugging Face modeling code: token embedding, pre-norm blocks
 * (RMSNorm; q/k/v projections, rotary embeddings on q and k, grouped-query causal attention with
 * an optional sliding window, o_proj; RMSNorm, SwiGLU down(silu(gate(x)) · up(x))), a final RMSNorm
 * and the head (embed_tokens when tied). nn.Linear stores [out, in]; the weights are transposed
 * here into MatMul's [in, out].
 */
export async function buildLlamaReferenceGraph(config: LlamaLmConfig, tensors: HfCheckpointTensors, name: string): Promise<OnnxGraph> {
  const { hiddenSize, heads, kvHeads, headDim, intermediateSize, vocabSize, rmsNormEpsilon: epsilon } = config;
  const b = new DecoderGraphBuilder({ name, layers: config.layers, heads, kvHeads, headDim, hiddenSize, vocabSize });
  const g = b.graph;
  const embed = b.weight('model.embed_tokens.weight', await tensors.get('model.embed_tokens.weight', [vocabSize, hiddenSize]));
  const rotary = b.rotaryTables(ropeInverseFrequencies(config));
  let hidden = b.gather(embed, b.inputIds);
  for (let layer = 0; layer < config.layers; layer++) {
    const p = `model.layers.${layer}.`;
    /** nn.Linear(inputs, outputs): weight [outputs, inputs], returned as [inputs, outputs]. */
    const linear = async (module: string, inputs: number, outputs: number, bias: boolean): Promise<[Weight, Weight | null]> => [
      transpose(await tensors.get(`${p}${module}.weight`, [outputs, inputs])),
      bias ? await tensors.get(`${p}${module}.bias`, [outputs]) : null,
    ];
    const w = {
      inputNorm: await tensors.get(`${p}input_layernorm.weight`, [hiddenSize]),
      q: await linear('self_attn.q_proj', hiddenSize, heads * headDim, config.qkvBias),
      k: await linear('self_attn.k_proj', hiddenSize, kvHeads * headDim, config.qkvBias),
      v: await linear('self_attn.v_proj', hiddenSize, kvHeads * headDim, config.qkvBias),
      o: await linear('self_attn.o_proj', heads * headDim, hiddenSize, config.outputBias),
      postNorm: await tensors.get(`${p}post_attention_layernorm.weight`, [hiddenSize]),
      gate: await linear('mlp.gate_proj', hiddenSize, intermediateSize, config.mlpBias),
      up: await linear('mlp.up_proj', hiddenSize, intermediateSize, config.mlpBias),
      down: await linear('mlp.down_proj', intermediateSize, hiddenSize, config.mlpBias),
    };
    const residual = hidden;
    hidden = g.inScope(`layers.${layer}`, () => {
      const x = b.rmsNorm(`${p}input_layernorm`, residual, w.inputNorm, epsilon);
      const q = b.linear(`${p}self_attn.q_proj`, x, ...w.q);
      const k = b.linear(`${p}self_attn.k_proj`, x, ...w.k);
      const v = b.linear(`${p}self_attn.v_proj`, x, ...w.v);
      const attention = b.attention(layer, q, k, v, { rotary, slidingWindow: config.slidingWindow });
      const afterAttention = b.add(residual, b.linear(`${p}self_attn.o_proj`, attention, ...w.o));
      const y = b.rmsNorm(`${p}post_attention_layernorm`, afterAttention, w.postNorm, epsilon);
      const gate = b.linear(`${p}mlp.gate_proj`, y, ...w.gate);
      const silu = b.mul(gate, g.op('Sigmoid', [gate]));
      const product = b.mul(silu, b.linear(`${p}mlp.up_proj`, y, ...w.up));
      return b.add(afterAttention, b.linear(`${p}mlp.down_proj`, product, ...w.down));
    });
  }
  hidden = b.rmsNorm('model.norm', hidden, await tensors.get('model.norm.weight', [hiddenSize]), epsilon);
  const head = config.tiedHead ? embed : b.weight('lm_head.weight', await tensors.get('lm_head.weight', [vocabSize, hiddenSize]));
  b.logits(hidden, head);
  tensors.assertAllRead(config.tiedHead ? new RegExp(`${ROTARY_BUFFERS.source}|${TIED_HEAD.source}`) : ROTARY_BUFFERS);
  return g;
}

/**
 * Hugging Face's rotary inverse frequencies (modeling_rope_utils): θ^(−2i/d) for i < d/2, then
 * `linear` divides all by the factor, and `llama3` divides the long wavelengths (beyond
 * original_max / low_freq_factor) by the factor, keeps the short ones (below
 * original_max / high_freq_factor), and blends the band between.
 */
function ropeInverseFrequencies(config: LlamaLmConfig): Float32Array {
  const half = config.headDim / 2;
  const base = Array.from({ length: half }, (_, i) => 1 / config.ropeTheta ** ((2 * i) / config.headDim));
  const scaling = config.ropeScaling;
  switch (scaling.type) {
    case 'none':
      return Float32Array.from(base);
    case 'linear':
      return Float32Array.from(base, (f) => f / scaling.factor);
    case 'llama3': {
      const lowFreqWavelength = scaling.originalMaxPositions / scaling.lowFreqFactor;
      const highFreqWavelength = scaling.originalMaxPositions / scaling.highFreqFactor;
      return Float32Array.from(base, (f) => {
        const wavelength = (2 * Math.PI) / f;
        if (wavelength > lowFreqWavelength) return f / scaling.factor;
        if (wavelength < highFreqWavelength) return f;
        const smooth = (scaling.originalMaxPositions / wavelength - scaling.lowFreqFactor) / (scaling.highFreqFactor - scaling.lowFreqFactor);
        return (1 - smooth) * (f / scaling.factor) + smooth * f;
      });
    }
  }
}

function transpose(weight: Weight): Weight {
  const [rows, columns] = weight.dims;
  const out = new Float32Array(rows * columns);
  for (let r = 0; r < rows; r++) {
    const from = r * columns;
    for (let c = 0; c < columns; c++) out[c * rows + r] = weight.data[from + c];
  }
  return { dims: [columns, rows], data: out };
}
