import { mkdir, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import type { Weight } from '../../shared/model/weight';
import { writeSafetensors } from '../../shared/model/safetensors';
import { buildGpt2TokenizerFiles } from '../../tools/init/gpt2-tokenizer-files';

/**
 * Gains of the random init, in multiples of 1/√fanIn. As for the random GPT-2
 * (tools/init/random-gpt2.ts): blocks outweigh the embeddings and q/k are scaled up so heads
 * pick particular earlier tokens, so that different prompts continue differently under greedy
 * decoding instead of repeating one token; the final norm's gains are drawn around 0, so a tied
 * head does not simply score the last token's own row highest.
 */
const INIT = {
  embeddingStd: 1,
  queryKeyGain: 3,
  valueGain: 1,
  outputGain: 4,
  mlpInGain: 2,
  mlpOutGain: 4,
  headGain: 1,
  biasStd: 0.1,
  normGainStd: 0.2,
  finalNormGainMean: 0,
  finalNormGainStd: 0.3,
};

export interface WriteRandomLlamaOptions {
  /** Split the tensors over this many shards with a model.safetensors.index.json (default: one model.safetensors). */
  readonly shards?: number;
  /** BF16 stores each weight rounded to bfloat16 (as most released Llama-family checkpoints are); the returned tensors hold the rounded values. */
  readonly dtype?: 'F32' | 'BF16';
}

/**
 * Writes a seeded random LlamaForCausalLM / MistralForCausalLM / Qwen2ForCausalLM checkpoint
 * for `config` (a config.json object, Hugging Face names) into `dir`, with the GPT-2 tokenizer
 * files (usable with token ids only when vocab_size is smaller), and returns its tensors. Which
 * biases exist follows the Hugging Face classes: Qwen2 has q/k/v biases, Llama has what
 * attention_bias and mlp_bias say, Mistral none.
 */
export async function writeRandomLlamaCheckpoint(
  dir: string,
  config: Readonly<Record<string, unknown>>,
  seed: number,
  options: WriteRandomLlamaOptions = {},
): Promise<Map<string, Weight>> {
  const bf16 = options.dtype === 'BF16';
  const tensors = bf16 ? new Map([...randomTensors(config, seed)].map(([name, w]) => [name, roundToBf16(w)])) : randomTensors(config, seed);
  const write = bf16 ? writeBf16Safetensors : (file: string, part: ReadonlyMap<string, Weight>) => writeSafetensors(file, part, { format: 'pt' });
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
  const tokenizer = buildGpt2TokenizerFiles();
  await writeFile(path.join(dir, 'tokenizer.json'), JSON.stringify(tokenizer.tokenizerJson));
  await writeFile(path.join(dir, 'tokenizer_config.json'), JSON.stringify(tokenizer.tokenizerConfigJson));
  const shards = options.shards ?? 1;
  if (shards === 1) {
    await write(path.join(dir, 'model.safetensors'), tensors);
    return tensors;
  }
  const names = [...tensors.keys()];
  const perShard = Math.ceil(names.length / shards);
  const weightMap: Record<string, string> = {};
  for (let shard = 0; shard < shards; shard++) {
    const file = `model-${String(shard + 1).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`;
    const part = new Map(names.slice(shard * perShard, (shard + 1) * perShard).map((name) => [name, tensors.get(name) as Weight]));
    for (const name of part.keys()) weightMap[name] = file;
    await write(path.join(dir, file), part);
  }
  await writeFile(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
  return tensors;
}

function randomTensors(config: Readonly<Record<string, unknown>>, seed: number): Map<string, Weight> {
  const random = new SeededNormal(seed);
  const int = (name: string): number => config[name] as number;
  const hidden = int('hidden_size');
  const heads = int('num_attention_heads');
  const kvHeads = (config.num_key_value_heads as number | undefined) ?? heads;
  const headDim = (config.head_dim as number | undefined) ?? hidden / heads;
  const inter = int('intermediate_size');
  const vocab = int('vocab_size');
  const modelType = config.model_type;
  const qkvBias = modelType === 'qwen2' || (modelType === 'llama' && config.attention_bias === true);
  const outputBias = modelType === 'llama' && config.attention_bias === true;
  const mlpBias = modelType === 'llama' && config.mlp_bias === true;

  const tensors = new Map<string, Weight>();
  const normal = (name: string, dims: number[], std: number, mean = 0): void => {
    tensors.set(name, { dims, data: random.fill(dims.reduce((a, b) => a * b, 1), std, mean) });
  };
  const linear = (name: string, inputs: number, outputs: number, gain: number, bias: boolean): void => {
    normal(`${name}.weight`, [outputs, inputs], gain / Math.sqrt(inputs));
    if (bias) normal(`${name}.bias`, [outputs], INIT.biasStd);
  };
  normal('model.embed_tokens.weight', [vocab, hidden], INIT.embeddingStd);
  for (let layer = 0; layer < int('num_hidden_layers'); layer++) {
    const p = `model.layers.${layer}.`;
    normal(`${p}input_layernorm.weight`, [hidden], INIT.normGainStd, 1);
    linear(`${p}self_attn.q_proj`, hidden, heads * headDim, INIT.queryKeyGain, qkvBias);
    linear(`${p}self_attn.k_proj`, hidden, kvHeads * headDim, INIT.queryKeyGain, qkvBias);
    linear(`${p}self_attn.v_proj`, hidden, kvHeads * headDim, INIT.valueGain, qkvBias);
    linear(`${p}self_attn.o_proj`, heads * headDim, hidden, INIT.outputGain, outputBias);
    normal(`${p}post_attention_layernorm.weight`, [hidden], INIT.normGainStd, 1);
    linear(`${p}mlp.gate_proj`, hidden, inter, INIT.mlpInGain, mlpBias);
    linear(`${p}mlp.up_proj`, hidden, inter, INIT.mlpInGain, mlpBias);
    linear(`${p}mlp.down_proj`, inter, hidden, INIT.mlpOutGain, mlpBias);
  }
  normal('model.norm.weight', [hidden], INIT.finalNormGainStd, INIT.finalNormGainMean);
  if (config.tie_word_embeddings !== true) linear('lm_head', hidden, vocab, INIT.headGain, false);
  return tensors;
}

/** The float32 values nearest to bfloat16 (round to nearest even on the dropped 16 bits). */
function roundToBf16(weight: Weight): Weight {
  const bits = new Uint32Array(Float32Array.from(weight.data).buffer);
  for (let i = 0; i < bits.length; i++) bits[i] = ((bits[i] + 0x7fff + ((bits[i] >>> 16) & 1)) >>> 16) << 16;
  return { dims: weight.dims, data: new Float32Array(bits.buffer) };
}

/** A safetensors file with every tensor as BF16 (shared/model/safetensors.ts writes F32 only): the top 16 bits of each float32. */
async function writeBf16Safetensors(file: string, tensors: ReadonlyMap<string, Weight>): Promise<void> {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let offset = 0;
  for (const [name, weight] of tensors) {
    header[name] = { dtype: 'BF16', shape: weight.dims, data_offsets: [offset, offset + 2 * weight.data.length] };
    offset += 2 * weight.data.length;
  }
  const json = Buffer.from(JSON.stringify(header).padEnd(Math.ceil(JSON.stringify(header).length / 8) * 8, ' '));
  const data = Buffer.alloc(offset);
  let at = 0;
  for (const weight of tensors.values()) {
    const bits = new Uint32Array(weight.data.buffer, weight.data.byteOffset, weight.data.length);
    for (const value of bits) at = data.writeUInt16LE(value >>> 16, at);
  }
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  await writeFile(file, Buffer.concat([length, json, data]));
}

/** Standard normal numbers from a seeded mulberry32 and Box–Muller: the same seed gives the same checkpoint. */
class SeededNormal {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  fill(count: number, std: number, mean: number): Float32Array {
    const out = new Float32Array(count);
    for (let i = 0; i < count; i += 2) {
      const u = 1 - this.uniform();
      const v = this.uniform();
      const radius = Math.sqrt(-2 * Math.log(u));
      out[i] = mean + std * radius * Math.cos(2 * Math.PI * v);
      if (i + 1 < count) out[i + 1] = mean + std * radius * Math.sin(2 * Math.PI * v);
    }
    return out;
  }

  /** mulberry32: a uniform number in [0, 1). */
  private uniform(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  }
}
