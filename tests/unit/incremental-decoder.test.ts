import { IncrementalDecoder } from '../../services/tokenizer/incremental-decoder';
import { TextTokenizer } from '../../services/tokenizer/text-tokenizer';
import { seededUniform } from '../../services/node/sampling/seeded-uniform';
import { gpt2TokenizerDir, removeGpt2TokenizerDir } from '../support/gpt2-tokenizer-dir';
import { removeTokenizerFixtures, TOKENIZER_FIXTURE_KINDS, writeTokenizerFixture, type TokenizerFixtureKind } from '../support/tokenizer-fixtures';
import { randomUnicodeStrings, SAMPLE_TEXTS } from '../support/unicode-samples';

const REPLACEMENT = '\uFFFD';
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const RANDOM_STRINGS = 150;
/** Streamed text is compared with the whole decode, so U+FFFD (which the decoder holds back) is left out of random text, and "▁" (a space to SentencePiece). */
const EXCLUDED_CODE_POINTS = [0xfffd, 0x2581];
const TEXTS = [
  'plain ascii text, with punctuation!',
  'emoji 🙂🎉 and CJK 漢字かな and accents ünïcödé',
  '🧑‍🚀 astronaut (a ZWJ sequence)',
  'tabs\tand\nnewlines  double  spaces',
];

let tokenizer: TextTokenizer;

beforeAll(async () => {
  tokenizer = await TextTokenizer.load(await gpt2TokenizerDir());
});

afterAll(async () => {
  await removeGpt2TokenizerDir();
  await removeTokenizerFixtures();
});

/** Pushes `ids` in chunks of random sizes (1 to 4), then flushes; returns every piece. */
function streamInChunks(decoder: IncrementalDecoder, ids: readonly number[], seed: number): string[] {
  const pieces: string[] = [];
  let draws = 0;
  for (let start = 0; start < ids.length; ) {
    const size = 1 + Math.floor(seededUniform(seed, draws++) * 4);
    pieces.push(decoder.push(ids.slice(start, start + size)));
    start += size;
  }
  pieces.push(decoder.flush());
  return pieces;
}

function expectWholeCharacters(pieces: readonly string[]): void {
  for (const piece of pieces) {
    expect(piece).not.toMatch(LONE_SURROGATE);
    expect(piece).not.toContain(REPLACEMENT);
  }
}

describe('IncrementalDecoder with the GPT-2 tokenizer', () => {
  it.each(TEXTS)('token-by-token pieces concatenate to the text and never hold half a character: %s', (text) => {
    const ids = tokenizer.encode(text);
    const decoder = new IncrementalDecoder(tokenizer);
    const pieces = ids.map((id) => decoder.push([id]));
    pieces.push(decoder.flush());
    expect(pieces.join('')).toBe(text);
    for (const piece of pieces) expect(piece).not.toContain(REPLACEMENT);
  });

  it('an emoji split over byte-level tokens arrives in one piece, after its last token', () => {
    const ids = tokenizer.encode('🙂');
    expect(ids.length).toBeGreaterThan(1); // GPT-2 spells this emoji with several byte tokens
    const decoder = new IncrementalDecoder(tokenizer);
    const pieces = ids.map((id) => decoder.push([id]));
    expect(pieces.slice(0, -1).every((p) => p === '')).toBe(true);
    expect(pieces[pieces.length - 1]).toBe('🙂');
  });

  it('flush gives what is held back of an unfinished character, as decoding all ids does', () => {
    const ids = tokenizer.encode('a🙂');
    const cut = ids.slice(0, -1);
    const decoder = new IncrementalDecoder(tokenizer);
    const shown = cut.map((id) => decoder.push([id])).join('') + decoder.flush();
    expect(shown).toBe(tokenizer.decode(cut));
    expect(shown.startsWith('a')).toBe(true);
  });

  it('pushing several ids at once gives the same text as one by one', () => {
    const ids = tokenizer.encode(TEXTS[1]);
    const decoder = new IncrementalDecoder(tokenizer);
    const chunked = [decoder.push(ids.slice(0, 5)), decoder.push(ids.slice(5, 6)), decoder.push(ids.slice(6)), decoder.flush()].join('');
    expect(chunked).toBe(TEXTS[1]);
  });
});

describe.each(['gpt2', ...TOKENIZER_FIXTURE_KINDS] as const)('IncrementalDecoder with a %s tokenizer', (kind: 'gpt2' | TokenizerFixtureKind) => {
  let model: TextTokenizer;

  beforeAll(async () => {
    model = await TextTokenizer.load(kind === 'gpt2' ? await gpt2TokenizerDir() : await writeTokenizerFixture(kind));
  });

  it('streamed pieces of random Unicode, token by token, concatenate to the whole decode and never split a character', () => {
    for (const text of [...SAMPLE_TEXTS, ...randomUnicodeStrings(21, RANDOM_STRINGS, { exclude: EXCLUDED_CODE_POINTS })]) {
      const ids = model.encode(text);
      const decoder = new IncrementalDecoder(model);
      const pieces = ids.map((id) => decoder.push([id]));
      pieces.push(decoder.flush());
      expect([text, pieces.join('')]).toEqual([text, model.decode(ids)]);
      expectWholeCharacters(pieces);
    }
  });

  it('pushing random Unicode in chunks of random sizes gives the same text as the whole decode', () => {
    randomUnicodeStrings(22, RANDOM_STRINGS, { exclude: EXCLUDED_CODE_POINTS }).forEach((text, i) => {
      const ids = model.encode(text);
      const pieces = streamInChunks(new IncrementalDecoder(model), ids, i);
      expect([text, pieces.join('')]).toEqual([text, model.decode(ids)]);
      expectWholeCharacters(pieces);
    });
  });

  it('a stream cut inside a character holds it back, and flush shows what decoding the cut ids does', () => {
    const ids = model.encode('ab🦀');
    const cut = ids.slice(0, -1);
    const decoder = new IncrementalDecoder(model);
    const held = cut.map((id) => decoder.push([id])).join('');
    expect(held).not.toContain(REPLACEMENT);
    expect(held + decoder.flush()).toBe(model.decode(cut));
  });
});
