import type { LogitsProcessor } from './logits-processor';

/**
 * Divides every logit by the temperature (> 0): below 1 sharpens, above 1 flattens. The largest
 * logit is subtracted first, which leaves the distribution as it is and keeps a tiny temperature
 * (1e-40) from overflowing float32 to +Infinity: the best token stays at 0, the others go to
 * -Infinity, and the result is the greedy choice with finite log-probabilities.
 */
export class TemperatureProcessor implements LogitsProcessor {
  constructor(private readonly temperature: number) {}

  apply(logits: Float32Array): Float32Array {
    const max = logits.reduce((best, logit) => Math.max(best, logit), Number.NEGATIVE_INFINITY);
    return logits.map((logit) => (logit - max) / this.temperature);
  }
}
