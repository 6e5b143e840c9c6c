/** Texts the benchmark prompts are cut from: different subjects, so every stream continues differently. */
export const PROMPT_TEXTS = [
  'The history of the world is the memory of the past experience of Homo sapiens',
  'Once upon a time, in a kingdom by the sea, there lived a young princess who',
  'The quarterly report shows that revenue grew faster than expected in every',
  'To install the package, run the following command in a terminal and then',
  'Photosynthesis is the process by which green plants use sunlight to make',
  'The committee met on Tuesday to discuss the budget for the coming fiscal year',
  'In mathematics, a prime number is a natural number greater than one that',
  'The recipe calls for two cups of flour, a pinch of salt, and three eggs which',
] as const;

/** What the prompts are made with: the model's own tokenizer. */
export interface PromptTokenizer {
  encode(text: string): readonly number[];
  decode(ids: readonly number[]): string;
}

export interface BenchPrompt {
  readonly ids: readonly number[];
  /** Text that encodes to exactly `ids`: what the REST client sends. */
  readonly text: string;
}

/** Attempts that reach the asked length, per stream, before the benchmark gives up on a length. */
const LONG_ENOUGH_ATTEMPTS = 4;

/**
 * `count` distinct prompts of exactly `length` tokens each, so a plain batched loop needs no
 * padding: prompt i is "i." followed by the source texts from text i mod 8 on, repeated until it
 * is long enough, and cut to `length` tokens. Each is also given as text that encodes back to the
 * same ids, so a system that is sent text (the REST API) runs exactly the tokens the others run;
 * a cut whose text re-encodes differently (a word split at the cut) moves to the next start text,
 * then to one more source text, until one round-trips.
 */
export function benchPrompts(tokenizer: PromptTokenizer, count: number, length: number): BenchPrompt[] {
  const prompts: BenchPrompt[] = [];
  for (let i = 0; i < count; i++) {
    let found: BenchPrompt | undefined;
    let longEnough = 0;
    // Every source text is several tokens long, so `length` texts always reach `length` tokens.
    for (let texts = 1; found === undefined && longEnough < LONG_ENOUGH_ATTEMPTS && texts <= length + LONG_ENOUGH_ATTEMPTS; texts++) {
      let reached = false;
      for (let variant = 0; found === undefined && variant < PROMPT_TEXTS.length; variant++) {
        const source = `${i}. ${Array.from({ length: texts }, (_, k) => PROMPT_TEXTS[(i + variant + k) % PROMPT_TEXTS.length]).join(' ')}`;
        const ids = tokenizer.encode(source).slice(0, length);
        if (ids.length < length) continue;
        reached = true;
        const text = tokenizer.decode(ids);
        const again = tokenizer.encode(text);
        if (again.length === ids.length && again.every((id, k) => id === ids[k])) found = { ids, text };
      }
      if (reached) longEnough++;
    }
    if (found === undefined) throw new Error(`no ${length}-token prompt for stream ${i} re-encodes to itself; try another --prompt-tokens`);
    prompts.push(found);
  }
  return prompts;
}
