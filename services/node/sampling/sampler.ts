import type { GenerationConfig } from '../../../shared/generation-config';
import type { LogitsProcessor } from './logits-processor';
import { RepetitionPenaltyProcessor } from './repetition-penalty-processor';
import { seededUniform } from './seeded-uniform';
import { TemperatureProcessor } from './temperature-processor';
import { TopKProcessor } from './top-k-processor';
import { TopPProcessor } from './top-p-processor';

export interface SampledToken {
  readonly tokenId: number;
  /** Log-probability of the token under the processed logits (what the draw actually used). */
  readonly logprob: number;
}

export interface Sampler {
  /**
   * Picks generated token number `n` (0 for the first) from one row of logits [V].
   * `previousTokenIds` is the whole sequence so far (prompt and generated).
   */
  sample(logits: Float32Array, previousTokenIds: readonly number[], n: number): SampledToken;
}

/** Greedy when temperature is 0 (only the repetition penalty applies), multinomial otherwise. */
export function createSampler(config: GenerationConfig): Sampler {
  const processors: LogitsProcessor[] = [];
  if (config.repetitionPenalty !== 1) processors.push(new RepetitionPenaltyProcessor(config.repetitionPenalty));
  if (config.temperature === 0) return new GreedySampler(processors);
  if (config.temperature !== 1) processors.push(new TemperatureProcessor(config.temperature));
  if (config.topK > 0) processors.push(new TopKProcessor(config.topK));
  if (config.topP < 1) processors.push(new TopPProcessor(config.topP));
  return new MultinomialSampler(processors, config.seed);
}

class GreedySampler implements Sampler {
  constructor(private readonly processors: readonly LogitsProcessor[]) {}

  sample(logits: Float32Array, previousTokenIds: readonly number[]): SampledToken {
    const processed = applyAll(this.processors, logits, previousTokenIds);
    const tokenId = argmax(processed);
    return { tokenId, logprob: logSoftmaxAt(processed, tokenId) };
  }
}

class MultinomialSampler implements Sampler {
  constructor(
    private readonly processors: readonly LogitsProcessor[],
    private readonly seed: number,
  ) {}

  sample(logits: Float32Array, previousTokenIds: readonly number[], n: number): SampledToken {
    const processed = applyAll(this.processors, logits, previousTokenIds);
    const tokenId = drawFrom(processed, seededUniform(this.seed, n));
    return { tokenId, logprob: logSoftmaxAt(processed, tokenId) };
  }
}

function applyAll(processors: readonly LogitsProcessor[], logits: Float32Array, previousTokenIds: readonly number[]): Float32Array {
  return processors.reduce((current, processor) => processor.apply(current, previousTokenIds), logits);
}

function argmax(logits: Float32Array): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  return best;
}

/** Inverse-CDF draw: the first token whose cumulative probability exceeds `u`. */
function drawFrom(logits: Float32Array, u: number): number {
  const max = logits[argmax(logits)];
  let total = 0;
  for (const logit of logits) total += Math.exp(logit - max);
  const target = u * total;
  let cumulative = 0;
  let last = 0;
  for (let i = 0; i < logits.length; i++) {
    if (logits[i] === Number.NEGATIVE_INFINITY) continue;
    cumulative += Math.exp(logits[i] - max);
    last = i;
    if (cumulative > target) return i;
  }
  // Rounding can leave the cumulative sum a hair under u·total: the last possible token wins.
  return last;
}

function logSoftmaxAt(logits: Float32Array, index: number): number {
  const max = logits[argmax(logits)];
  let total = 0;
  for (const logit of logits) total += Math.exp(logit - max);
  return logits[index] - max - Math.log(total);
}
