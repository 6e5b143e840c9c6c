import { IncrementalDecoder } from '../../services/tokenizer/incremental-decoder';
import { TextTokenizer } from '../../services/tokenizer/text-tokenizer';
import { gpt2TokenizerDir, removeGpt2TokenizerDir } from '../support/gpt2-tokenizer-dir';

const REPLACEMENT = '\uFFFD';
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

afterAll(removeGpt2TokenizerDir);

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
