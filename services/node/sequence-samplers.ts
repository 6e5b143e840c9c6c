import type { SamplingParameters__Output } from '../../protos/generated/pipeserve/v1/SamplingParameters';
import { ServiceError } from '../../shared/errors';
import { parseGenerationConfig } from '../../shared/generation-config';
import { createSampler, MAX_TOP_LOGPROBS, type LogitsSummary, type SampledToken, type Sampler } from './sampling/sampler';

interface SequenceSampling {
  /** Every token the sequence has fed so far: prompt and generated (the repetition penalty's history). */
  readonly history: number[];
  readonly sampler: Sampler;
  readonly topLogprobs: number;
}

/**
 * The last stage's sampling state: per open sequence its history and its sampler, built once
 * from the parameters its open message carried. A replay after failover feeds the whole history
 * again, so the state rebuilds exactly, and seeded draws depend only on (seed, index).
 */
export class SequenceSamplers {
  private readonly sequences = new Map<string, SequenceSampling>();

  /** Checks the parameters (INVALID_ARGUMENT naming the field) and prepares the sequence's sampler. */
  open(sequenceId: string, parameters: SamplingParameters__Output): void {
    if (parameters.top_logprobs > MAX_TOP_LOGPROBS) {
      throw ServiceError.invalidArgument('sampling.top_logprobs', `at most ${MAX_TOP_LOGPROBS}, got ${parameters.top_logprobs}`);
    }
    const sampler = createSampler(
      parseGenerationConfig({
        maxNewTokens: 1,
        temperature: parameters.temperature,
        topK: parameters.top_k,
        // proto3 sends an unset float as 0, which for these two means "off" (NaN is not unset: it is refused).
        topP: parameters.top_p === 0 ? 1 : parameters.top_p,
        repetitionPenalty: parameters.repetition_penalty === 0 ? 1 : parameters.repetition_penalty,
        seed: parameters.seed,
      }),
    );
    this.sequences.set(sequenceId, { history: [], sampler, topLogprobs: parameters.top_logprobs });
  }

  /** Adds a step's tokens to the history; when the row samples, draws generated token `generatedIndex`. */
  feed(sequenceId: string, tokenIds: readonly number[], sample: boolean, generatedIndex: number, logits: Float32Array, summary: LogitsSummary): SampledToken | undefined {
    const state = this.sequences.get(sequenceId);
    if (state === undefined) throw new Error(`sequence ${sequenceId} has no sampler`);
    for (const id of tokenIds) state.history.push(id);
    if (!sample) return undefined;
    return state.sampler.sample(logits, state.history, generatedIndex, summary, state.topLogprobs);
  }

  /** Cuts the history back to its first `length` tokens (a partial replay continues from there). */
  rewind(sequenceId: string, length: number): void {
    const state = this.sequences.get(sequenceId);
    if (state !== undefined && state.history.length > length) state.history.length = length;
  }

  delete(sequenceId: string): void {
    this.sequences.delete(sequenceId);
  }
}
