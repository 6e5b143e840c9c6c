/** The part of a tokenizer the incremental decoder needs. */
export interface Decoder {
  decode(ids: readonly number[]): string;
}

const REPLACEMENT_CHARACTER = '\uFFFD';

/**
 * Turns a growing list of token ids into text pieces whose concatenation equals decoding all
 * ids at once. A byte-level BPE token may end in the middle of a UTF-8 character; such a
 * piece decodes to U+FFFD, so it is held back until a later token completes the character
 * (the approach of Hugging Face's text streamers). Only a window of recent ids is decoded
 * each time, so a long stream costs O(window) per token, not O(length).
 */
export class IncrementalDecoder {
  private readonly ids: number[] = [];
  /** Start of the window: text before it has been emitted and is not decoded again. */
  private prefixOffset = 0;
  /** End of what has been emitted. */
  private readOffset = 0;

  constructor(private readonly decoder: Decoder) {}

  get tokensSeen(): number {
    return this.ids.length;
  }

  /** Adds ids; returns the text they complete ('' while a character is still incomplete). */
  push(ids: readonly number[]): string {
    // One at a time: spreading a long list into push() would overflow the stack.
    for (const id of ids) this.ids.push(id);
    const emitted = this.decodeRange(this.prefixOffset, this.readOffset);
    const window = this.decodeRange(this.prefixOffset, this.ids.length);
    if (window.length <= emitted.length || window.endsWith(REPLACEMENT_CHARACTER)) return '';
    this.prefixOffset = this.readOffset;
    this.readOffset = this.ids.length;
    return window.slice(emitted.length);
  }

  /** Whatever is still held back (an incomplete character comes out as U+FFFD). */
  flush(): string {
    const emitted = this.decodeRange(this.prefixOffset, this.readOffset);
    const window = this.decodeRange(this.prefixOffset, this.ids.length);
    this.prefixOffset = this.readOffset = this.ids.length;
    return window.slice(emitted.length);
  }

  private decodeRange(start: number, end: number): string {
    return end > start ? this.decoder.decode(this.ids.slice(start, end)) : '';
  }
}
