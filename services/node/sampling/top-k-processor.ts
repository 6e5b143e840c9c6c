import type { LogitsProcessor } from './logits-processor';

/**
 * Keeps the K largest logits and sets the rest to -Infinity. Logits tied with the K-th largest
 * are kept too (as Hugging Face does), so the result never depends on index order.
 */
export class TopKProcessor implements LogitsProcessor {
  constructor(private readonly k: number) {}

  apply(logits: Float32Array): Float32Array {
    if (this.k >= logits.length) return Float32Array.from(logits);
    const threshold = Float32Array.from(logits).sort()[logits.length - this.k];
    return logits.map((logit) => (logit >= threshold ? logit : Number.NEGATIVE_INFINITY));
  }
}
