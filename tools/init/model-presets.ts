import type { Checkpoint } from '../families/checkpoint';
import { gpt2Checkpoint } from '../families/gpt2/gpt2-family';
import { GPT2_PRESETS, randomGpt2Checkpoint } from './random-gpt2';
import { LLAMA_PRESETS, randomLlamaCheckpoint } from './random-llama';

/** A random model `model:init` can write: its family's checkpoint from a seed. */
export interface ModelPreset {
  /** Part of the model's name: `<stem>-random-seed<seed>`. */
  readonly stem: string;
  readonly description: string;
  readonly layers: number;
  build(seed: number): Checkpoint;
}

/**
 * The offline models: random, prompt-sensitive checkpoints of real shapes with the real GPT-2
 * tokenizer (the only one reachable without the Hub), GPT-2's and a Llama's. `small` is the
 * default model.
 */
export const MODEL_PRESETS = {
  small: {
    stem: 'gpt2-small',
    description: 'GPT-2 small shape: 12 layers, 768 wide, 12 heads, 50257-token vocabulary',
    layers: GPT2_PRESETS.small.nLayer,
    build: (seed: number) => gpt2Checkpoint(randomGpt2Checkpoint(GPT2_PRESETS.small, seed)),
  },
  tiny: {
    stem: 'gpt2-tiny',
    description: 'a tiny GPT-2 for tests: 6 layers, 64 wide, 4 heads',
    layers: GPT2_PRESETS.tiny.nLayer,
    build: (seed: number) => gpt2Checkpoint(randomGpt2Checkpoint(GPT2_PRESETS.tiny, seed)),
  },
  'llama-small': {
    stem: 'llama-small',
    description: "SmolLM2-135M's Llama shape: 30 layers, 576 wide, 9 heads over 3 KV heads, SwiGLU 1536, 8192 positions, GPT-2's 50257-token vocabulary",
    layers: LLAMA_PRESETS.small.layers,
    build: (seed: number) => randomLlamaCheckpoint(LLAMA_PRESETS.small, seed),
  },
  'llama-tiny': {
    stem: 'llama-tiny',
    description: 'a tiny Llama for tests: 6 layers, 144 wide, 9 heads over 3 KV heads of 16',
    layers: LLAMA_PRESETS.tiny.layers,
    build: (seed: number) => randomLlamaCheckpoint(LLAMA_PRESETS.tiny, seed),
  },
} as const satisfies Record<string, ModelPreset>;

export type PresetName = keyof typeof MODEL_PRESETS;

export function isPresetName(name: string): name is PresetName {
  return Object.hasOwn(MODEL_PRESETS, name);
}
