import { ServiceError } from './errors';

/** How to pick the tokens of one completion. Processors are applied in the order listed. */
export interface GenerationConfig {
  /** Tokens to generate at most (fewer when EOS comes first or the context is full). */
  readonly maxNewTokens: number;
  /** Divides the logits; 0 picks the most likely token (greedy) and ignores topK and topP. */
  readonly temperature: number;
  /** Keeps the K most likely tokens; 0 = off. */
  readonly topK: number;
  /** Keeps the smallest set of most likely tokens whose probability reaches P; 1 = off. */
  readonly topP: number;
  /** Divides positive (multiplies negative) logits of tokens already in the sequence; 1 = off. */
  readonly repetitionPenalty: number;
  /** The draw for generated token n depends only on (seed, n), so a replay reproduces it. */
  readonly seed: number;
}

/**
 * The defaults of every entry point (REST, gRPC, the generate CLI): 32 tokens, greedy, as
 * Hugging Face's `generate` does without `do_sample`, so the same prompt gives the same text
 * until a request asks for sampling.
 */
export const DEFAULT_GENERATION_CONFIG: GenerationConfig = {
  maxNewTokens: 32,
  temperature: 0,
  topK: 0,
  topP: 1,
  repetitionPenalty: 1,
  seed: 0,
};

/** Stop strings one request may give: each generated piece is searched for every one of them. */
export const MAX_STOP_STRINGS = 4;

/** Why a request's new tokens do not fit the model's context, and which of its fields is at fault. */
export interface ContextRefusal {
  readonly field: 'prompt' | 'max_new_tokens';
  readonly problem: string;
}

/**
 * How many new tokens a request gets in the model's context after its prompt: a default
 * (`explicit` false) is lowered to the room the prompt leaves; an explicit number that does not
 * fit, or a prompt that leaves no room at all, is refused, naming which. The coordinator and
 * `npm run generate` both ask this.
 */
export function fitNewTokens(promptTokens: number, maxNewTokens: number, explicit: boolean, contextLength: number): number | ContextRefusal {
  const room = contextLength - promptTokens;
  if (room < 1) return { field: 'prompt', problem: `the prompt is ${promptTokens} tokens: no room for a new token in the model's context of ${contextLength} tokens` };
  if (maxNewTokens <= room) return maxNewTokens;
  if (!explicit) return room;
  return {
    field: 'max_new_tokens',
    problem: `must be at most ${room} for this ${promptTokens}-token prompt (together more than the model's context of ${contextLength} tokens), got ${maxNewTokens}`,
  };
}

const FIELDS = Object.keys(DEFAULT_GENERATION_CONFIG) as (keyof GenerationConfig)[];

/**
 * Parses a partial config (HTTP body, CLI flags) into a full one, filling defaults. Rejects
 * unknown fields and impossible values with an INVALID_ARGUMENT naming the field.
 */
export function parseGenerationConfig(input: unknown): GenerationConfig {
  if (input === undefined || input === null) return DEFAULT_GENERATION_CONFIG;
  if (typeof input !== 'object' || Array.isArray(input)) {
    throw ServiceError.invalidArgument('generation config', 'must be an object');
  }
  const record = input as Record<string, unknown>;
  for (const key of Object.keys(record)) {
    if (!(FIELDS as string[]).includes(key)) {
      throw ServiceError.invalidArgument(key, `unknown generation field; known fields are ${FIELDS.join(', ')}`);
    }
  }
  const pick = (field: keyof GenerationConfig): number => {
    const value = record[field];
    if (value === undefined) return DEFAULT_GENERATION_CONFIG[field];
    if (typeof value !== 'number' || !Number.isFinite(value)) {
      throw ServiceError.invalidArgument(field, `must be a finite number, got ${JSON.stringify(value)}`);
    }
    return value;
  };
  const config: GenerationConfig = {
    maxNewTokens: pick('maxNewTokens'),
    temperature: pick('temperature'),
    topK: pick('topK'),
    topP: pick('topP'),
    repetitionPenalty: pick('repetitionPenalty'),
    seed: pick('seed'),
  };
  if (!Number.isInteger(config.maxNewTokens) || config.maxNewTokens < 1) {
    throw ServiceError.invalidArgument('maxNewTokens', `must be an integer >= 1, got ${config.maxNewTokens}`);
  }
  if (config.temperature < 0) {
    throw ServiceError.invalidArgument('temperature', `must be >= 0 (0 = greedy), got ${config.temperature}`);
  }
  if (!Number.isInteger(config.topK) || config.topK < 0) {
    throw ServiceError.invalidArgument('topK', `must be an integer >= 0 (0 = off), got ${config.topK}`);
  }
  if (!(config.topP > 0 && config.topP <= 1)) {
    throw ServiceError.invalidArgument('topP', `must be in (0, 1] (1 = off), got ${config.topP}`);
  }
  if (!(config.repetitionPenalty > 0)) {
    throw ServiceError.invalidArgument('repetitionPenalty', `must be > 0 (1 = off), got ${config.repetitionPenalty}`);
  }
  if (!Number.isSafeInteger(config.seed) || config.seed < 0) {
    throw ServiceError.invalidArgument('seed', `must be an integer in [0, 2^53), got ${config.seed}`);
  }
  return config;
}
