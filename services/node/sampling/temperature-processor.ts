import type { LogitsProcessor } from './logits-processor';

/** Divides every logit by the temperature (> 0): below 1 sharpens, above 1 flattens. */
export class TemperatureProcessor implements LogitsProcessor {
  constructor(private readonly temperature: number) {}

  apply(logits: Float32Array): Float32Array {
    return logits.map((logit) => logit / this.temperature);
  }
}
