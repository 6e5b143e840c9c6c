/**
 * The Llama-family configurations the tests compile, as config.json objects (Hugging Face
 * names): one per variant issue 13 names, each small enough to run in milliseconds and each
 * with a vocabulary of 300 ids. Their weights come from tests/support/random-llama-checkpoint.ts
 * (written from the Hugging Face classes, not from the compiler), the reference logits from
 * tests/support/naive-llama.ts.
 */
export const VARIANT_EOS_TOKEN_ID = 2;

const TINY_LLAMA = {
  vocab_size: 300,
  hidden_size: 64,
  intermediate_size: 128,
  num_hidden_layers: 4,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  max_position_embeddings: 64,
  rms_norm_eps: 1e-5,
  hidden_act: 'silu',
  bos_token_id: 1,
  eos_token_id: VARIANT_EOS_TOKEN_ID,
};

export interface LlamaVariant {
  /** Short name, used in folder names. */
  readonly name: string;
  readonly title: string;
  readonly config: Readonly<Record<string, unknown>>;
  /** A config field whose removal changes the reference logits: proof that the variant exercises it. */
  readonly feature?: string;
}

export const LLAMA_VARIANTS: readonly LlamaVariant[] = [
  {
    name: 'llama-gqa',
    title: 'LlamaForCausalLM with GQA (4 query heads over 2 KV heads), untied head',
    config: { ...TINY_LLAMA, architectures: ['LlamaForCausalLM'], model_type: 'llama', tie_word_embeddings: false },
  },
  {
    name: 'llama3-rope',
    title: 'LlamaForCausalLM with llama3 rope scaling, rope_theta 500000, head_dim 32, attention and MLP biases, tied head',
    config: {
      ...TINY_LLAMA,
      architectures: ['LlamaForCausalLM'],
      model_type: 'llama',
      head_dim: 32,
      rope_theta: 500_000,
      // Wavelengths span 2π…1e6: some stay (< 64/8), some blend, most are divided by the factor (> 64/1).
      rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 8, original_max_position_embeddings: 64 },
      attention_bias: true,
      mlp_bias: true,
      tie_word_embeddings: true,
    },
    feature: 'rope_scaling',
  },
  {
    name: 'qwen2',
    title: 'Qwen2ForCausalLM with q/k/v biases, rope_theta 1e6, untied head (its unused sliding_window ignored)',
    config: {
      ...TINY_LLAMA,
      architectures: ['Qwen2ForCausalLM'],
      model_type: 'qwen2',
      rope_theta: 1_000_000,
      use_sliding_window: false,
      sliding_window: 4,
      max_window_layers: 2,
      tie_word_embeddings: false,
    },
    feature: 'rope_theta',
  },
  {
    name: 'mistral-window',
    title: 'MistralForCausalLM with a sliding window of 4 that every test sequence outgrows, untied head',
    config: { ...TINY_LLAMA, architectures: ['MistralForCausalLM'], model_type: 'mistral', sliding_window: 4, tie_word_embeddings: false },
    feature: 'sliding_window',
  },
];
