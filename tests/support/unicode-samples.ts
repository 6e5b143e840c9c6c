import { seededUniform } from '../../services/node/sampling/seeded-uniform';

/**
 * Texts for tokenizer tests: fixed samples across scripts, and seeded random strings drawn from
 * every kind of character a tokenizer can trip on (control characters, combining marks, emoji
 * with joiners and modifiers, CJK, astral planes, odd whitespace).
 */
export const SAMPLE_TEXTS = [
  'Hello, world!',
  'The quick brown fox jumps over the lazy dog.',
  "It's a dog's life, isn't it? We'll see; they'd know, you're right, I'M SURE, WE'VE won.",
  'Numbers: 0 1 12 123 1234 12345 3.14159 -42 1e10 2024-06-01',
  '   leading spaces and trailing   ',
  ' one leading space',
  'tabs\tand\nnew\nlines\r\n and  double  spaces',
  'multiple\n\n\nblank lines\n\n',
  'Ünïcödé àccénts: café, naïve, façade, Zürich',
  'combining: e\u0301 a\u0308 o\u0302\u0323 and precomposed é ä ộ',
  'Emoji: 😀🎉👍🏽 and a family 👨‍👩‍👧‍👦 and a flag 🇯🇵',
  '中文字符和日本語のテキスト、한국어도',
  'Ελληνικά και Русский текст',
  'שלום עולם مرحبا بالعالم',
  'control \u0000 \u0001 \u0007 \u001b[31m \u007f chars',
  'Punctuation!!! ??? ... --- ((()))[]{}<>@#$%^&*_+=|\\/~`',
  'code: function f(x) { return x * 2; } // comment',
  'zero\u200bwidth space, non\u00a0breaking, ideographic\u3000space',
  'astral: 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𠀀𠀁 \u{F0000}\u{10FFFD}',
  'x',
  ' ',
  '\n',
];

/** Blocks to draw code points from: [first, last], with a weight. */
const BLOCKS: readonly (readonly [number, number, number])[] = [
  [0x20, 0x7e, 30], // printable ASCII
  [0x00, 0x1f, 3], // C0 controls, tab, newlines
  [0x7f, 0x9f, 1], // DEL and C1 controls
  [0xa0, 0x24f, 6], // Latin-1 and Latin Extended
  [0x300, 0x36f, 4], // combining diacritical marks
  [0x370, 0x52f, 3], // Greek, Cyrillic
  [0x590, 0x6ff, 2], // Hebrew, Arabic
  [0x900, 0x97f, 2], // Devanagari
  [0x2000, 0x206f, 2], // general punctuation: odd spaces, joiners, marks
  [0x3000, 0x30ff, 3], // CJK punctuation, kana
  [0x4e00, 0x9fff, 6], // CJK unified ideographs
  [0xac00, 0xd7a3, 3], // Hangul syllables
  [0xfe00, 0xfe0f, 1], // variation selectors
  [0x1d400, 0x1d7ff, 2], // mathematical alphanumerics (astral letters)
  [0x1f300, 0x1f64f, 6], // emoji
  [0x1f3fb, 0x1f3ff, 1], // skin-tone modifiers
  [0x20000, 0x2a6df, 2], // CJK extension B
  [0xf0000, 0xf00ff, 1], // supplementary private use area
];
const ZERO_WIDTH_JOINER = 0x200d;

export interface RandomTextOptions {
  /** Code points never drawn (a tokenizer may map them on purpose, as SentencePiece does "▁"). */
  readonly exclude?: readonly number[];
  readonly maxLength?: number;
}

/** `count` random strings, the same for the same `seed`; each is well-formed UTF-16 (no lone surrogates). */
export function randomUnicodeStrings(seed: number, count: number, options: RandomTextOptions = {}): string[] {
  let draws = 0;
  const next = (): number => seededUniform(seed, draws++);
  const excluded = new Set(options.exclude ?? []);
  const totalWeight = BLOCKS.reduce((sum, [, , weight]) => sum + weight, 0);
  const maxLength = options.maxLength ?? 40;
  const drawCodePoint = (): number => {
    for (;;) {
      let pick = next() * totalWeight;
      const block = BLOCKS.find(([, , weight]) => (pick -= weight) < 0) ?? BLOCKS[0];
      const codePoint = next() < 0.02 ? ZERO_WIDTH_JOINER : block[0] + Math.floor(next() * (block[1] - block[0] + 1));
      if (!excluded.has(codePoint)) return codePoint;
    }
  };
  return Array.from({ length: count }, () => {
    const length = 1 + Math.floor(next() * maxLength);
    return String.fromCodePoint(...Array.from({ length }, drawCodePoint));
  });
}
