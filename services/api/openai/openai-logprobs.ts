import type { ChoiceToken } from './choice-generations';

/**
 * Log-probabilities in OpenAI's two formats. A token's text is the text it completes, so the
 * texts concatenate to the choice's text (a token inside a UTF-8 character has empty text and
 * the next one carries the whole character); alternatives are named by their own decoding.
 */
export const openAiLogprobs = {
  /** Legacy completions: parallel arrays, `text_offset` counted from `startOffset`. */
  completion(tokens: readonly ChoiceToken[], startOffset: number) {
    let offset = startOffset;
    const textOffset: number[] = [];
    for (const token of tokens) {
      textOffset.push(offset);
      offset += token.text.length;
    }
    return {
      tokens: tokens.map((t) => t.text),
      token_logprobs: tokens.map((t) => t.logprob),
      top_logprobs: tokens.map((t) => alternativesByText(t)),
      text_offset: textOffset,
    };
  },

  /** Chat completions: one entry per token, with its UTF-8 bytes. */
  chat(tokens: readonly ChoiceToken[]) {
    const entry = (text: string, logprob: number) => ({ token: text, logprob, bytes: [...Buffer.from(text, 'utf8')] });
    return { content: tokens.map((t) => ({ ...entry(t.text, t.logprob), top_logprobs: t.alternatives.map((a) => entry(a.text, a.logprob)) })) };
  },
};

/** Best first. Two alternatives can decode to the same text (e.g. both to U+FFFD): the more likely one keeps it. */
function alternativesByText(token: ChoiceToken): Record<string, number> {
  const byText: Record<string, number> = {};
  for (const alternative of token.alternatives) {
    // defineProperty: a token can be any text, "__proto__" included.
    if (!Object.hasOwn(byText, alternative.text)) Object.defineProperty(byText, alternative.text, { value: alternative.logprob, enumerable: true });
  }
  return byText;
}
