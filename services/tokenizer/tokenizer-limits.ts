/**
 * Bounds on what one tokenizer request may ask for. Tokenizing is synchronous work on the event
 * loop (about 1.3 µs per character to encode, 1 µs per id to decode on this project's 2-core
 * reference machine), so an unbounded request stalls every other caller: 3 M ids took 7 s.
 * Past a bound the request is refused at once with INVALID_ARGUMENT naming the field.
 */
export interface TokenizerLimits {
  /** UTF-8 bytes of an Encode text, of a RenderChat's contents together, and of the rendered chat. */
  readonly maxTextBytes: number;
  /** Ids in one Decode request. */
  readonly maxDecodeIds: number;
  /** Ids in one DecodeStream message. */
  readonly maxStreamMessageIds: number;
  /** Ids over a whole DecodeStream. */
  readonly maxStreamIds: number;
  /** Messages in one RenderChat request. */
  readonly maxChatMessages: number;
}

/**
 * A token spells about 4 bytes of text on average (English, code; CJK about 3): a text of more than
 * 16 bytes per context position does not fit the context.
 */
export const TEXT_BYTES_PER_CONTEXT_TOKEN = 16;
/** Ceilings, whatever the context: about half a second of encoding, a fifth of a second of decoding. */
export const MAX_TEXT_BYTES_CEILING = 512 * 1024;
export const MAX_IDS_CEILING = 131_072;
/** A generation step pushes a few ids; a replayed history may push more, up to this many at once. */
export const MAX_STREAM_MESSAGE_IDS = 8_192;
export const MAX_CHAT_MESSAGES = 1_024;

/**
 * Limits for a model of `contextTokens` positions: no sequence it runs is longer, so no request
 * needs more ids than that, nor much more text than that many tokens spell.
 */
export function tokenizerLimitsFor(contextTokens: number): TokenizerLimits {
  if (!Number.isSafeInteger(contextTokens) || contextTokens <= 0) throw new RangeError(`contextTokens: expected a positive integer, got ${contextTokens}`);
  const maxIds = Math.min(contextTokens, MAX_IDS_CEILING);
  return {
    maxTextBytes: Math.min(contextTokens * TEXT_BYTES_PER_CONTEXT_TOKEN, MAX_TEXT_BYTES_CEILING),
    maxDecodeIds: maxIds,
    maxStreamMessageIds: Math.min(maxIds, MAX_STREAM_MESSAGE_IDS),
    maxStreamIds: maxIds,
    maxChatMessages: MAX_CHAT_MESSAGES,
  };
}
