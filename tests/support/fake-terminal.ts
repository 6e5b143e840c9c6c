import { Writable } from 'node:stream';

/** A stream that says it is a terminal and keeps what is written to it, escape codes included. */
export class FakeTerminal extends Writable {
  readonly isTTY = true;
  readonly columns = 160;
  text = '';

  override _write(chunk: Buffer | string, _encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    this.text += chunk.toString();
    done();
  }

  /** What a person would read: the last drawing of each line, escape sequences removed. */
  get visibleLines(): string[] {
    return (
      this.text
        .replace(/\x1b\[[0-9;?]*[A-Za-z]|\x1b[78]/g, '\r')
        .split('\n')
        .map((line) => line.split('\r').filter((part) => part.trim() !== '').pop() ?? '')
        .filter((line) => line !== '')
    );
  }
}
