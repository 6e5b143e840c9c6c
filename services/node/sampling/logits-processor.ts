/**
 * One step of turning raw logits into the distribution a token is drawn from. Implementations
 * return a new array and leave their input untouched.
 */
export interface LogitsProcessor {
  /** `previousTokenIds` is the whole sequence so far: prompt and generated tokens. */
  apply(logits: Float32Array, previousTokenIds: readonly number[]): Float32Array;
}
