import type { LogitsProcessor } from './logits-processor';

/**
 * Nucleus filtering (Holtzman et al. 2019): keeps the most likely tokens, in order, until their
 * probability reaches P, and sets the rest to -Infinity. The most likely token is always kept.
 */
export class TopPProcessor implements LogitsProcessor {
  constructor(private readonly p: number) {}

  apply(logits: Float32Array): Float32Array {
    const order = Array.from(logits.keys())
      .filter((i) => logits[i] !== Number.NEGATIVE_INFINITY)
      .sort((a, b) => logits[b] - logits[a]);
    const max = logits[order[0]];
    let total = 0;
    for (const i of order) total += Math.exp(logits[i] - max);
    const out = new Float32Array(logits.length).fill(Number.NEGATIVE_INFINITY);
    let cumulative = 0;
    for (const i of order) {
      if (cumulative >= this.p) break;
      out[i] = logits[i];
      cumulative += Math.exp(logits[i] - max) / total;
    }
    return out;
  }
}
