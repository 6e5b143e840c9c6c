import type { LogitsProcessor } from './logits-processor';

/**
 * CTRL's repetition penalty (Keskar et al. 2019), as Hugging Face applies it: a token already in
 * the sequence has a positive logit divided by the penalty and a negative one multiplied, so a
 * penalty above 1 always makes it less likely.
 */
export class RepetitionPenaltyProcessor implements LogitsProcessor {
  constructor(private readonly penalty: number) {}

  apply(logits: Float32Array, previousTokenIds: readonly number[]): Float32Array {
    const out = Float32Array.from(logits);
    for (const id of new Set(previousTokenIds)) {
      const logit = logits[id];
      out[id] = logit > 0 ? logit / this.penalty : logit * this.penalty;
    }
    return out;
  }
}
