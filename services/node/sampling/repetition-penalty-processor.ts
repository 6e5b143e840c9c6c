import type { LogitsProcessor } from './logits-processor';

/** The largest finite float32. */
const FLOAT32_MAX = 3.4028234663852886e38;

/**
 * CTRL's repetition penalty (Keskar et al. 2019), as Hugging Face applies it: a token already in
 * the sequence has a positive logit divided by the penalty and a negative one multiplied, so a
 * penalty above 1 always makes it less likely. The result stays a finite float32: an extreme
 * penalty (1e-40, 1e38) makes a token very likely or unlikely, never an infinite logit that
 * would turn the log-probabilities into NaN.
 */
export class RepetitionPenaltyProcessor implements LogitsProcessor {
  constructor(private readonly penalty: number) {}

  apply(logits: Float32Array, previousTokenIds: readonly number[]): Float32Array {
    const out = Float32Array.from(logits);
    for (const id of new Set(previousTokenIds)) {
      const logit = logits[id];
      const penalized = logit > 0 ? logit / this.penalty : logit * this.penalty;
      out[id] = Math.min(FLOAT32_MAX, Math.max(-FLOAT32_MAX, penalized));
    }
    return out;
  }
}
