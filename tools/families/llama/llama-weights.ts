import type { TensorLayout } from '../../../shared/model/checkpoint-folder';
import type { LlamaConfig } from './llama-config';

/** Hugging Face names of one decoder layer's tensors (nn.Linear weights are [out, in]). */
export const llamaTensorNames = {
  embedding: 'model.embed_tokens.weight',
  finalNorm: 'model.norm.weight',
  lmHead: 'lm_head.weight',
  layer: (layer: number) => {
    const p = `model.layers.${layer}.`;
    return {
      inputNorm: `${p}input_layernorm.weight`,
      q: `${p}self_attn.q_proj`,
      k: `${p}self_attn.k_proj`,
      v: `${p}self_attn.v_proj`,
      o: `${p}self_attn.o_proj`,
      postAttentionNorm: `${p}post_attention_layernorm.weight`,
      gate: `${p}mlp.gate_proj`,
      up: `${p}mlp.up_proj`,
      down: `${p}mlp.down_proj`,
      /** Names of the stacked q|k|v and gate|up weights the fused graphs multiply by (not checkpoint names). */
      qkv: `${p}self_attn.qkv_proj`,
      gateUp: `${p}mlp.gate_up_proj`,
    };
  },
} as const;

/** Rotary inverse-frequency buffers that older exports saved; the compiler computes the tables from the config. */
const ROTARY_BUFFER = /^model\.(layers\.\d+\.self_attn\.)?rotary_emb\.inv_freq$/;

/**
 * Which tensors a Llama-family checkpoint holds: the embedding, per layer the two RMSNorm gains,
 * q/k/v/o and gate/up/down projections with the biases its config says exist, the final norm,
 * and lm_head unless the head is tied (a tied checkpoint that still stores lm_head has it skipped).
 */
export function llamaTensorLayout(config: LlamaConfig): TensorLayout {
  return {
    expected: expectedShapes(config),
    canonicalName: (storedName) => (ROTARY_BUFFER.test(storedName) || (config.tieWordEmbeddings && storedName === llamaTensorNames.lmHead) ? null : storedName),
    description: `a ${config.architecture} with num_hidden_layers ${config.layers}${biasDescription(config)}`,
  };
}

function biasDescription(config: LlamaConfig): string {
  const biases = [config.qkvBias ? 'q/k/v' : '', config.outputBias ? 'o_proj' : '', config.mlpBias ? 'MLP' : ''].filter((b) => b !== '');
  return biases.length === 0 ? ' and no biases' : ` and ${biases.join(', ')} biases`;
}

function expectedShapes(config: LlamaConfig): Map<string, number[]> {
  const { hiddenSize: e, intermediateSize: inner, headDim: d } = config;
  const shapes = new Map<string, number[]>([[llamaTensorNames.embedding, [config.vocabSize, e]]]);
  const linear = (name: string, inputs: number, outputs: number, bias: boolean): void => {
    shapes.set(`${name}.weight`, [outputs, inputs]);
    if (bias) shapes.set(`${name}.bias`, [outputs]);
  };
  for (let layer = 0; layer < config.layers; layer++) {
    const names = llamaTensorNames.layer(layer);
    shapes.set(names.inputNorm, [e]);
    linear(names.q, e, config.attentionHeads * d, config.qkvBias);
    linear(names.k, e, config.kvHeads * d, config.qkvBias);
    linear(names.v, e, config.kvHeads * d, config.qkvBias);
    linear(names.o, config.attentionHeads * d, e, config.outputBias);
    shapes.set(names.postAttentionNorm, [e]);
    linear(names.gate, e, inner, config.mlpBias);
    linear(names.up, e, inner, config.mlpBias);
    linear(names.down, inner, e, config.mlpBias);
  }
  shapes.set(llamaTensorNames.finalNorm, [e]);
  if (!config.tieWordEmbeddings) shapes.set(llamaTensorNames.lmHead, [config.vocabSize, e]);
  return shapes;
}
