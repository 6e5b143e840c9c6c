/**
 * Accumulates generated text and cuts it before the first stop string. Text that could still
 * turn out to be the start of a stop string is held back, so a client never sees part of a
 * stop string that is later removed.
 */
export class StopStringMatcher {
  private text = '';
  private emitted = 0;
  private stoppedAt = -1;
  private readonly holdBack: number;

  constructor(private readonly stops: readonly string[]) {
    this.holdBack = stops.reduce((n, s) => Math.max(n, s.length - 1), 0);
  }

  get stopped(): boolean {
    return this.stoppedAt >= 0;
  }

  /** The text so far, cut before a stop string if one was found. */
  get fullText(): string {
    return this.stopped ? this.text.slice(0, this.stoppedAt) : this.text;
  }

  /** Adds a piece; returns the text that is now safe to show. */
  push(piece: string): string {
    if (this.stopped) return '';
    const searchFrom = Math.max(0, this.text.length - this.holdBack);
    this.text += piece;
    let first = -1;
    for (const stop of this.stops) {
      const at = this.text.indexOf(stop, searchFrom);
      if (at >= 0 && (first < 0 || at < first)) first = at;
    }
    if (first >= 0) {
      this.stoppedAt = first;
      return this.take(first);
    }
    return this.take(this.text.length - this.holdBack);
  }

  /** At the end of generation: everything not yet shown. */
  finish(): string {
    return this.take(this.fullText.length);
  }

  private take(end: number): string {
    // A piece that ends on a lone high surrogate is not valid UTF-16; protobuf would turn it into
    // a replacement character and the streamed pieces would no longer add up to the final text.
    if (end > 0 && end < this.text.length && isHighSurrogate(this.text.charCodeAt(end - 1))) end -= 1;
    if (end <= this.emitted) return '';
    const out = this.text.slice(this.emitted, end);
    this.emitted = end;
    return out;
  }
}

function isHighSurrogate(codeUnit: number): boolean {
  return codeUnit >= 0xd800 && codeUnit <= 0xdbff;
}
