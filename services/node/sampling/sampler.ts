import type { GenerationConfig } from '../../../shared/generation-config';
import type { LogitsProcessor } from './logits-processor';
import { RepetitionPenaltyProcessor } from './repetition-penalty-processor';
import { seededUniform } from './seeded-uniform';
import { TemperatureProcessor } from './temperature-processor';
import { TopKProcessor } from './top-k-processor';
import { TopPProcessor } from './top-p-processor';

/** The most alternatives a caller may ask for with each token (OpenAI's `logprobs` limit). */
export const MAX_TOP_LOGPROBS = 5;

export interface TokenLogprob {
  readonly tokenId: number;
  readonly logprob: number;
}

/** The one sampled-token type of the project: what the last stage draws and the coordinator streams. */
export interface SampledToken {
  readonly tokenId: number;
  /** Log-probability of the token under the processed logits (what the draw actually used). */
  readonly logprob: number;
  /** The most likely tokens under the same distribution, best first (as many as were asked for). */
  readonly topLogprobs: readonly TokenLogprob[];
}

/** What the last stage's graph computed of a row of logits, so the sampler need not scan them again. */
export interface LogitsSummary {
  /** log Σ exp(logits). */
  readonly logsumexp: number;
  /** Index of the largest logit, the first of equal ones (graphs compiled before it existed lack it). */
  readonly argmax?: number;
}

export interface Sampler {
  /**
   * Picks generated token number `n` (0 for the first) from one row of logits [V].
   * `previousTokenIds` is the whole sequence so far (prompt and generated). `summary`, when the
   * graph computed it: with no logits processor in the way, greedy decoding takes its argmax and
   * log-probability without a pass over the vocabulary.
   */
  sample(logits: Float32Array, previousTokenIds: readonly number[], n: number, summary?: LogitsSummary, topLogprobs?: number): SampledToken;
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

  sample(logits: Float32Array, previousTokenIds: readonly number[], _n: number, summary?: LogitsSummary, topLogprobs = 0): SampledToken {
    if (this.processors.length === 0 && summary !== undefined) {
      const tokenId = summary.argmax ?? argmax(logits);
      return { tokenId, logprob: logits[tokenId] - summary.logsumexp, topLogprobs: topAlternatives(logits, summary.logsumexp, topLogprobs) };
    }
    const processed = applyAll(this.processors, logits, previousTokenIds);
    const tokenId = argmax(processed);
    const total = logSumExp(processed);
    return { tokenId, logprob: processed[tokenId] - total, topLogprobs: topAlternatives(processed, total, topLogprobs) };
  }
}

class MultinomialSampler implements Sampler {
  constructor(
    private readonly processors: readonly LogitsProcessor[],
    private readonly seed: number,
  ) {}

  sample(logits: Float32Array, previousTokenIds: readonly number[], n: number, _summary?: LogitsSummary, topLogprobs = 0): SampledToken {
    const processed = applyAll(this.processors, logits, previousTokenIds);
    const tokenId = drawFrom(processed, seededUniform(this.seed, n));
    const total = logSumExp(processed);
    return { tokenId, logprob: processed[tokenId] - total, topLogprobs: topAlternatives(processed, total, topLogprobs) };
  }
}

function applyAll(processors: readonly LogitsProcessor[], logits: Float32Array, previousTokenIds: readonly number[]): Float32Array {
  return processors.reduce((current, processor) => processor.apply(current, previousTokenIds), logits);
}

function argmax(logits: Float32Array): number {
  let best = 0;
  let bestValue = logits[0];
  for (let i = 1; i < logits.length; i++) {
    const value = logits[i];
    if (value > bestValue) {
      best = i;
      bestValue = value;
    }
  }
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

/** log Σ exp(logits), stable: -Infinity entries (filtered tokens) contribute nothing. */
function logSumExp(logits: Float32Array): number {
  const max = logits[argmax(logits)];
  let total = 0;
  for (const logit of logits) total += Math.exp(logit - max);
  return max + Math.log(total);
}

/** The `k` largest logits as log-probabilities, best first; ties keep the lower id first. */
function topAlternatives(logits: Float32Array, logsumexp: number, k: number): TokenLogprob[] {
  const count = Math.min(k, MAX_TOP_LOGPROBS, logits.length);
  if (count <= 0) return [];
  const best: number[] = [];
  for (let i = 0; i < logits.length; i++) {
    const value = logits[i];
    if (best.length === count && value <= logits[best[count - 1]]) continue;
    let at = best.length;
    while (at > 0 && logits[best[at - 1]] < value) at--;
    best.splice(at, 0, i);
    if (best.length > count) best.pop();
  }
  return best.filter((id) => logits[id] !== Number.NEGATIVE_INFINITY).map((tokenId) => ({ tokenId, logprob: logits[tokenId] - logsumexp }));
}
