import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { writeSafetensors } from '../../shared/model/safetensors';
import type { Weight } from '../../shared/model/weight';
import { loadCheckpoint } from '../../tools/families/checkpoint';
import { parseLlamaConfig, toHfConfigJson, type LlamaConfig } from '../../tools/families/llama/llama-config';
import { llamaShape } from '../../tools/families/llama/llama-family';
import { ropeInverseFrequencies, rotaryCaches } from '../../tools/families/llama/llama-rope';
import { parseModelConfig } from '../../tools/families/model-families';
import { LLAMA_PRESETS } from '../../tools/init/random-llama';
import { LLAMA_VARIANTS } from '../support/llama-variants';
import { writeRandomLlamaCheckpoint } from '../support/random-llama-checkpoint';

/** HuggingFaceTB/SmolLM2-135M's config.json as published (its tokenizer has 49152 ids). */
const SMOLLM2_135M = {
  architectures: ['LlamaForCausalLM'],
  attention_bias: false,
  attention_dropout: 0.0,
  bos_token_id: 0,
  eos_token_id: 0,
  hidden_act: 'silu',
  hidden_size: 576,
  initializer_range: 0.041666666666666664,
  intermediate_size: 1536,
  is_llama_config: true,
  max_position_embeddings: 8192,
  mlp_bias: false,
  model_type: 'llama',
  num_attention_heads: 9,
  num_hidden_layers: 30,
  num_key_value_heads: 3,
  pretraining_tp: 1,
  rms_norm_eps: 1e-5,
  rope_interleaved: false,
  rope_scaling: null,
  rope_theta: 100000,
  tie_word_embeddings: true,
  torch_dtype: 'bfloat16',
  transformers_version: '4.42.3',
  use_cache: true,
  vocab_size: 49152,
};

/** The fields of Llama 3.1 8B's config.json that matter here. */
const LLAMA_3_1_8B = {
  architectures: ['LlamaForCausalLM'],
  model_type: 'llama',
  vocab_size: 128256,
  hidden_size: 4096,
  intermediate_size: 14336,
  num_hidden_layers: 32,
  num_attention_heads: 32,
  num_key_value_heads: 8,
  max_position_embeddings: 131072,
  rms_norm_eps: 1e-5,
  rope_theta: 500000.0,
  rope_scaling: { factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 8192, rope_type: 'llama3' },
  bos_token_id: 128000,
  eos_token_id: [128001, 128008, 128009],
  tie_word_embeddings: false,
  torch_dtype: 'bfloat16',
};

const MISTRAL_7B = {
  architectures: ['MistralForCausalLM'],
  model_type: 'mistral',
  vocab_size: 32000,
  hidden_size: 4096,
  intermediate_size: 14336,
  num_hidden_layers: 32,
  num_attention_heads: 32,
  num_key_value_heads: 8,
  max_position_embeddings: 32768,
  rms_norm_eps: 1e-5,
  rope_theta: 10000.0,
  sliding_window: 4096,
  bos_token_id: 1,
  eos_token_id: 2,
  tie_word_embeddings: false,
};

const QWEN2_0_5B = {
  architectures: ['Qwen2ForCausalLM'],
  model_type: 'qwen2',
  vocab_size: 151936,
  hidden_size: 896,
  intermediate_size: 4864,
  num_hidden_layers: 24,
  num_attention_heads: 14,
  num_key_value_heads: 2,
  max_position_embeddings: 32768,
  max_window_layers: 24,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000.0,
  sliding_window: 32768,
  use_sliding_window: false,
  bos_token_id: 151643,
  eos_token_id: 151643,
  tie_word_embeddings: true,
};

function parse(json: Record<string, unknown>): LlamaConfig {
  const architecture = (json.architectures as string[])[0] as LlamaConfig['architecture'];
  return parseLlamaConfig(json, architecture, 'config.json');
}

describe('Llama-family config.json', () => {
  test("SmolLM2-135M: 9 heads over 3 KV heads of 64, tied head, its ids and rope_theta; training-only fields ignored", () => {
    const config = parse(SMOLLM2_135M);
    expect(config).toMatchObject({ modelType: 'llama', headDim: 64, kvHeads: 3, rmsNormEpsilon: 1e-5, ropeTheta: 100000, tieWordEmbeddings: true });
    expect(config).toMatchObject({ qkvBias: false, outputBias: false, mlpBias: false, slidingWindow: null, ropeScaling: { type: 'default' } });
    expect(llamaShape(config)).toEqual({
      vocabSize: 49152,
      contextLength: 8192,
      hiddenSize: 576,
      layers: 30,
      attentionHeads: 9,
      kvHeads: 3,
      headDim: 64,
      bosTokenId: 0,
      eosTokenIds: [0],
      slidingWindow: null,
    });
  });

  test('Llama 3.1: llama3 rope scaling, and every end-of-sequence id of the list', () => {
    const config = parse(LLAMA_3_1_8B);
    expect(config.ropeScaling).toEqual({ type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192 });
    expect(config.eosTokenIds).toEqual([128001, 128008, 128009]);
    expect(config.headDim).toBe(128);
  });

  test('linear rope scaling under the legacy "type" key, and transformers 5 rope_parameters carrying rope_theta', () => {
    expect(parse({ ...LLAMA_3_1_8B, rope_scaling: { type: 'linear', factor: 4 } }).ropeScaling).toEqual({ type: 'linear', factor: 4 });
    const { rope_theta: _theta, rope_scaling: _scaling, ...rest } = LLAMA_3_1_8B;
    const v5 = parse({ ...rest, rope_parameters: { rope_type: 'default', rope_theta: 123456 } });
    expect(v5).toMatchObject({ ropeTheta: 123456, ropeScaling: { type: 'default' } });
  });

  test('Mistral: sliding_window honoured, 4096 when absent (MistralConfig), none when null or not shorter than the context', () => {
    expect(parse(MISTRAL_7B).slidingWindow).toBe(4096);
    const { sliding_window: _window, ...absent } = MISTRAL_7B;
    expect(parse(absent).slidingWindow).toBe(4096);
    expect(parse({ ...MISTRAL_7B, sliding_window: null }).slidingWindow).toBeNull();
    expect(parse({ ...MISTRAL_7B, sliding_window: 32768 }).slidingWindow).toBeNull();
    // Mistral's projections have no biases whatever the config says (MistralAttention uses bias=False).
    expect(parse({ ...MISTRAL_7B, attention_bias: true })).toMatchObject({ qkvBias: false, outputBias: false, mlpBias: false });
  });

  test('Qwen2: q/k/v biases always, never o_proj or MLP biases, and its sliding_window ignored while use_sliding_window is false', () => {
    expect(parse(QWEN2_0_5B)).toMatchObject({ qkvBias: true, outputBias: false, mlpBias: false, slidingWindow: null, ropeTheta: 1e6, bosTokenId: 151643 });
    expect(parse({ ...QWEN2_0_5B, attention_bias: false }).qkvBias).toBe(true);
  });

  test('Llama: attention_bias adds q/k/v and o_proj biases, mlp_bias the MLP ones', () => {
    expect(parse({ ...SMOLLM2_135M, attention_bias: true })).toMatchObject({ qkvBias: true, outputBias: true, mlpBias: false });
    expect(parse({ ...SMOLLM2_135M, mlp_bias: true })).toMatchObject({ qkvBias: false, outputBias: false, mlpBias: true });
  });

  test('missing optional fields take the Hugging Face config class defaults', () => {
    const minimal = { architectures: ['LlamaForCausalLM'], vocab_size: 100, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4 };
    expect(parse(minimal)).toMatchObject({
      modelType: 'llama',
      kvHeads: 4,
      headDim: 16,
      maxPositions: 2048,
      rmsNormEpsilon: 1e-6,
      ropeTheta: 10000,
      tieWordEmbeddings: false,
      bosTokenId: 1,
      eosTokenIds: [2],
    });
    expect(parse({ ...minimal, architectures: ['Qwen2ForCausalLM'] })).toMatchObject({ maxPositions: 32768, bosTokenId: null, eosTokenIds: [] });
  });

  test.each([
    [{ hidden_act: 'gelu' }, 'config.json: field hidden_act: unsupported "gelu" (silu)'],
    [{ rope_scaling: { rope_type: 'yarn', factor: 4 } }, 'config.json: field rope_scaling.rope_type: unsupported "yarn" (llama3, linear)'],
    [{ rope_scaling: { type: 'dynamic', factor: 2 } }, 'config.json: field rope_scaling.type: unsupported "dynamic" (llama3, linear)'],
    [{ rope_scaling: { rope_type: 'longrope', factor: 2 } }, 'config.json: field rope_scaling.rope_type: unsupported "longrope"'],
    [{ rope_scaling: { rope_type: 'linear' } }, 'config.json: field rope_scaling.factor: missing'],
    [{ rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 4, high_freq_factor: 1, original_max_position_embeddings: 8192 } }, 'field rope_scaling.high_freq_factor: must exceed low_freq_factor 4'],
    [{ num_key_value_heads: 4 }, 'config.json: field num_key_value_heads: 4 does not divide num_attention_heads 9'],
    [{ head_dim: 63 }, 'config.json: field head_dim: rotary embeddings need an even head size, got 63'],
    [{ hidden_size: 100, head_dim: undefined }, 'config.json: field num_attention_heads: hidden_size 100 is not divisible by 9'],
    [{ partial_rotary_factor: 0.5 }, 'config.json: field partial_rotary_factor: only 1'],
    [{ quantization_config: { quant_method: 'gptq', bits: 4 } }, 'config.json: field quantization_config: quantized checkpoints are not supported'],
    [{ model_type: 'mistral' }, 'config.json: field model_type: expected "llama" for LlamaForCausalLM, got "mistral"'],
    [{ eos_token_id: [0, 49152] }, 'config.json: field eos_token_id[1]: expected a token id below vocab_size 49152, got 49152'],
    [{ layer_types: ['full_attention', 'sliding_attention'] }, 'config.json: field layer_types[1]: unsupported "sliding_attention"'],
  ])('refuses %j naming the field', (change, message) => {
    expect(() => parseModelConfig({ ...SMOLLM2_135M, ...change }, 'config.json')).toThrow(message);
  });

  test("refuses Qwen2's per-layer sliding window by name", () => {
    expect(() => parseModelConfig({ ...QWEN2_0_5B, use_sliding_window: true }, 'config.json')).toThrow(
      'config.json: field use_sliding_window: true is not supported (Qwen2 applies its window to only some layers)',
    );
  });

  test('configs without architectures are found by model_type; an unknown architecture lists the supported ones', () => {
    const { architectures: _a, ...mistral } = MISTRAL_7B;
    expect(parseModelConfig(mistral, 'config.json')).toMatchObject({ family: 'llama', architecture: 'MistralForCausalLM' });
    const { architectures: _b, ...qwen2 } = QWEN2_0_5B;
    expect(parseModelConfig(qwen2, 'config.json').architecture).toBe('Qwen2ForCausalLM');
    expect(() => parseModelConfig({ ...SMOLLM2_135M, architectures: ['GemmaForCausalLM'] }, 'config.json')).toThrow(
      'config.json: field architectures: unsupported architecture GemmaForCausalLM (supported: GPT2LMHeadModel, LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)',
    );
  });

  test.each([
    ['llama-small preset', toHfConfigJson(LLAMA_PRESETS.small)],
    ['llama-tiny preset', toHfConfigJson(LLAMA_PRESETS.tiny)],
    ['Llama 3.1', LLAMA_3_1_8B],
    ['Mistral', MISTRAL_7B],
    ['Qwen2', QWEN2_0_5B],
    ...LLAMA_VARIANTS.map((v): [string, Record<string, unknown>] => [v.name, { ...v.config }]),
  ])('%s: toHfConfigJson writes what parses back to the same config', (_name, json) => {
    const config = parse(json);
    expect(parse(toHfConfigJson(config))).toEqual(config);
  });
});

describe('rotary tables', () => {
  const base = { ...LLAMA_PRESETS.tiny, headDim: 64, maxPositions: 64 };

  /** Hugging Face's formulas in float64, written from modeling_rope_utils. */
  function float64Frequencies(theta: number, d: number): number[] {
    return Array.from({ length: d / 2 }, (_, i) => 1 / theta ** ((2 * i) / d));
  }

  test('default: 1 / θ^(2i/d); cos and sin of position × frequency, row 0 all ones and zeros', () => {
    const config = { ...base, ropeTheta: 500000 };
    const expected = float64Frequencies(500000, 64);
    ropeInverseFrequencies(config).forEach((f, i) => expect(Math.abs(f - expected[i])).toBeLessThanOrEqual(1e-6 * expected[i]));
    const { cos, sin } = rotaryCaches(config);
    expect(cos.dims).toEqual([64, 32]);
    expect(Array.from(cos.data.subarray(0, 32))).toEqual(new Array(32).fill(1));
    expect(Array.from(sin.data.subarray(0, 32))).toEqual(new Array(32).fill(0));
    for (const [position, i] of [[1, 0], [63, 0], [40, 5], [63, 31]]) {
      expect(cos.data[position * 32 + i]).toBeCloseTo(Math.cos(position * expected[i]), 5);
      expect(sin.data[position * 32 + i]).toBeCloseTo(Math.sin(position * expected[i]), 5);
    }
  });

  test('linear divides every frequency by the factor', () => {
    const plain = ropeInverseFrequencies(base);
    ropeInverseFrequencies({ ...base, ropeScaling: { type: 'linear', factor: 4 } }).forEach((f, i) => expect(f).toBeCloseTo(plain[i] / 4, 10));
  });

  test('llama3 keeps short wavelengths, divides long ones by the factor, blends the band between', () => {
    const scaling = { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 64 } as const;
    const plain = ropeInverseFrequencies({ ...base, ropeTheta: 500000 });
    const scaled = ropeInverseFrequencies({ ...base, ropeTheta: 500000, ropeScaling: scaling });
    const kinds = new Set<string>();
    plain.forEach((f, i) => {
      const wavelength = (2 * Math.PI) / f;
      let expected: number;
      if (wavelength < 64 / 4) {
        expected = f;
        kinds.add('kept');
      } else if (wavelength > 64 / 1) {
        expected = f / 8;
        kinds.add('divided');
      } else {
        const smooth = (64 / wavelength - 1) / (4 - 1);
        expected = (1 - smooth) * (f / 8) + smooth * f;
        kinds.add('blended');
      }
      expect(Math.abs(scaled[i] - expected)).toBeLessThanOrEqual(1e-6 * expected);
    });
    expect([...kinds].sort()).toEqual(['blended', 'divided', 'kept']);
  });
});

describe('loadCheckpoint (Llama-family folders)', () => {
  /** vocab_size 50257, so the GPT-2 tokenizer the writer adds fits; 16 wide, so the folder stays small. */
  const SMALL = {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    vocab_size: 50257,
    hidden_size: 16,
    intermediate_size: 32,
    num_hidden_layers: 2,
    num_attention_heads: 2,
    num_key_value_heads: 1,
    max_position_embeddings: 32,
    tie_word_embeddings: true,
  };
  let root: string;

  beforeAll(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'llama-checkpoint-'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  function expectSame(loaded: ReadonlyMap<string, Weight>, written: ReadonlyMap<string, Weight>): void {
    expect([...loaded.keys()].sort()).toEqual([...written.keys()].sort());
    for (const [name, weight] of written) {
      expect({ name, dims: loaded.get(name)?.dims }).toEqual({ name, dims: weight.dims });
      expect(Buffer.from((loaded.get(name) as Weight).data.buffer).equals(Buffer.from(weight.data.slice().buffer))).toBe(true);
    }
  }

  test('reads a sharded BF16 Qwen2 checkpoint (q/k/v biases, untied head) as float32', async () => {
    const dir = path.join(root, 'qwen2-sharded');
    const config = { ...SMALL, architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', tie_word_embeddings: false };
    const written = await writeRandomLlamaCheckpoint(dir, config, 3, { shards: 3, dtype: 'BF16' });
    const loaded = await loadCheckpoint(dir);
    expect(loaded.model).toMatchObject({ family: 'llama', architecture: 'Qwen2ForCausalLM' });
    expect(loaded.tensors.has('model.layers.1.self_attn.v_proj.bias')).toBe(true);
    expect(loaded.tensors.has('lm_head.weight')).toBe(true);
    expectSame(loaded.tensors, written);
  });

  test('skips rotary inv_freq buffers and the lm_head.weight a tied checkpoint still stores', async () => {
    const dir = path.join(root, 'tied-extras');
    const written = await writeRandomLlamaCheckpoint(dir, SMALL, 4);
    const stored = new Map(written);
    stored.set('model.layers.0.self_attn.rotary_emb.inv_freq', { dims: [4], data: new Float32Array(4) });
    stored.set('lm_head.weight', written.get('model.embed_tokens.weight') as Weight);
    await writeSafetensors(path.join(dir, 'model.safetensors'), stored, { format: 'pt' });
    expectSame((await loadCheckpoint(dir)).tensors, written);
  });

  test('refuses weights its config does not account for, and a missing head, naming the tensor', async () => {
    const biased = path.join(root, 'unexpected-bias');
    await writeRandomLlamaCheckpoint(biased, { ...SMALL, architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2' }, 5);
    await writeFile(path.join(biased, 'config.json'), JSON.stringify(SMALL));
    await expect(loadCheckpoint(biased)).rejects.toThrow(/unexpected tensor model\.layers\.0\.self_attn\.q_proj\.bias for a LlamaForCausalLM with num_hidden_layers 2 and no biases/);

    const untied = path.join(root, 'missing-head');
    await writeRandomLlamaCheckpoint(untied, SMALL, 6);
    await writeFile(path.join(untied, 'config.json'), JSON.stringify({ ...SMALL, tie_word_embeddings: false }));
    await expect(loadCheckpoint(untied)).rejects.toThrow(/checkpoint is missing tensors: lm_head\.weight/);
  });
});
