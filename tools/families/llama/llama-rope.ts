import type { Weight } from '../../../shared/model/weight';
import type { LlamaConfig } from './llama-config';

/** cos and sin of every position's rotary angles: [positions, headDim / 2] each, as RotaryEmbedding and the plain graphs read them. */
export interface RotaryCaches {
  readonly cos: Weight;
  readonly sin: Weight;
}

const f32 = Math.fround;

/**
 * The inverse frequencies of transformers' modeling_rope_utils, in float32 as it computes them:
 * `_compute_default_rope_parameters` gives 1 / θ^(2i/d) for i < d/2; `linear` divides them all
 * by the factor; `_compute_llama3_parameters` divides those whose wavelength 2π/f exceeds
 * original_max / low_freq_factor, keeps those below original_max / high_freq_factor, and blends
 * the band between with smooth = (original_max / wavelength − low) / (high − low). Each step is
 * rounded to float32 where torch rounds it, so the tables are the ones a Hugging Face model runs with.
 */
export function ropeInverseFrequencies(config: LlamaConfig): Float32Array {
  const d = config.headDim;
  const base = Float32Array.from({ length: d / 2 }, (_, i) => f32(1 / f32(f32(config.ropeTheta) ** f32((2 * i) / d))));
  const scaling = config.ropeScaling;
  switch (scaling.type) {
    case 'default':
      return base;
    case 'linear':
      return base.map((f) => f32(f / f32(scaling.factor)));
    case 'llama3': {
      const { factor, lowFreqFactor: low, highFreqFactor: high, originalMaxPositions: original } = scaling;
      // Python numbers meet float32 tensors here: torch rounds each scalar to float32 first.
      const lowFreqWavelength = f32(original / low);
      const highFreqWavelength = f32(original / high);
      return base.map((f) => {
        const wavelength = f32(f32(2 * Math.PI) / f);
        const kept = wavelength > lowFreqWavelength ? f32(f / f32(factor)) : f;
        if (wavelength < highFreqWavelength || wavelength > lowFreqWavelength) return kept;
        const smooth = f32(f32(f32(f32(original) / wavelength) - f32(low)) / f32(high - low));
        return f32(f32(f32(f32(1 - smooth) * kept) / f32(factor)) + f32(smooth * kept));
      });
    }
  }
}

/**
 * cos and sin tables for positions 0 … maxPositions − 1, computed at compile time as the
 * Hugging Face rotary module does at run time: angle = float32(position × inv_freq), then
 * cos/sin (attention_scaling is 1 for default, linear and llama3). rotate_half pairs dimension
 * i with i + d/2, so one row of d/2 values serves both halves.
 */
export function rotaryCaches(config: LlamaConfig): RotaryCaches {
  const frequencies = ropeInverseFrequencies(config);
  const half = frequencies.length;
  const rows = config.maxPositions;
  const cos = new Float32Array(rows * half);
  const sin = new Float32Array(rows * half);
  for (let position = 0; position < rows; position++) {
    for (let i = 0; i < half; i++) {
      const angle = f32(position * frequencies[i]);
      cos[position * half + i] = Math.cos(angle);
      sin[position * half + i] = Math.sin(angle);
    }
  }
  return { cos: { dims: [rows, half], data: cos }, sin: { dims: [rows, half], data: sin } };
}
