import { Tokenizer as RustTokenizer } from 'tokenizers';
import { TextTokenizer } from '../../services/tokenizer/text-tokenizer';
import {
  buildTokenizerFixture,
  LLAMA3_SPECIAL_TOKENS,
  QWEN2_SPECIAL_TOKENS,
  QWEN2_TOOL_CALL_TOKEN,
  removeTokenizerFixtures,
  TOKENIZER_FIXTURE_KINDS,
  writeTokenizerFixture,
  type TokenizerFixtureKind,
} from '../support/tokenizer-fixtures';
import { randomUnicodeStrings, SAMPLE_TEXTS } from '../support/unicode-samples';

/**
 * The reference is Hugging Face's own tokenizers library (Rust, through its Node binding
 * `tokenizers`), reading the same tokenizer.json: what transformers and vLLM use. Special-token
 * text kept as text is compared with the Rust tokenizer of the same file without its special added
 * tokens, which is what transformers' `split_special_tokens=True` amounts to.
 */
const RANDOM_STRINGS = 300;
const METASPACE = 0x2581;

interface Loaded {
  readonly tokenizer: TextTokenizer;
  readonly reference: RustTokenizer;
  readonly literalReference: RustTokenizer;
}

const loaded = new Map<TokenizerFixtureKind, Loaded>();

beforeAll(async () => {
  for (const kind of TOKENIZER_FIXTURE_KINDS) {
    const { tokenizerJson } = buildTokenizerFixture(kind);
    const literalJson = { ...tokenizerJson, added_tokens: (tokenizerJson.added_tokens as { special: boolean }[]).filter((token) => !token.special) };
    loaded.set(kind, {
      tokenizer: await TextTokenizer.load(await writeTokenizerFixture(kind)),
      reference: RustTokenizer.fromString(JSON.stringify(tokenizerJson)),
      literalReference: RustTokenizer.fromString(JSON.stringify(literalJson)),
    });
  }
});

afterAll(removeTokenizerFixtures);

function parts(kind: TokenizerFixtureKind): Loaded {
  const found = loaded.get(kind);
  if (found === undefined) throw new Error(`${kind} was not loaded`);
  return found;
}

async function referenceIds(reference: RustTokenizer, text: string, addSpecialTokens: boolean): Promise<number[]> {
  return (await reference.encode(text, null, { addSpecialTokens })).getIds();
}

/** SentencePiece tokenizers spell a space as "▁", so a "▁" of the text comes back as a space: leave it out of random text. */
function randomTextsFor(kind: TokenizerFixtureKind, seed: number): string[] {
  const sentencePiece = kind === 'llama2' || kind === 'mistral';
  return randomUnicodeStrings(seed, RANDOM_STRINGS, { exclude: sentencePiece ? [METASPACE] : [] });
}

/** Samples and random text with the family's special-token text spliced in. */
function textsWithSpecialTokens(kind: TokenizerFixtureKind): string[] {
  const specials = kind === 'llama3' ? LLAMA3_SPECIAL_TOKENS : kind === 'qwen2' ? QWEN2_SPECIAL_TOKENS : ['<s>', '</s>', '<unk>'];
  return [...SAMPLE_TEXTS.slice(0, 6), ...randomTextsFor(kind, 2).slice(0, 50)].map((text, i) => `${text}${specials[i % specials.length]}${text} ${specials[(i + 1) % specials.length]}`);
}

/**
 * What decode(encode(text)) gives back, by what each family's tokenizer.json does on purpose:
 * Qwen2 normalises to NFC; Metaspace with prepend_scheme "first" adds no "▁" to a text that
 * already starts with a space, so one leading space is lost (as in Hugging Face tokenizers).
 */
function roundTripOf(kind: TokenizerFixtureKind, text: string): string {
  if (kind === 'qwen2') return text.normalize('NFC');
  if (kind === 'mistral' && text.startsWith(' ')) return text.slice(1);
  return text;
}

describe.each(TOKENIZER_FIXTURE_KINDS)('TextTokenizer with a %s-style tokenizer.json', (kind) => {
  test('encodes samples, random Unicode and special-token text (as text) exactly as Hugging Face tokenizers (Rust) does, BOS included', async () => {
    const { tokenizer, literalReference } = parts(kind);
    for (const text of [...SAMPLE_TEXTS, ...randomTextsFor(kind, 1), ...textsWithSpecialTokens(kind)]) {
      expect([text, tokenizer.encode(text)]).toEqual([text, await referenceIds(literalReference, text, true)]);
    }
  });

  test('with special tokens parsed, encodes exactly as Hugging Face tokenizers (Rust) does', async () => {
    const { tokenizer, reference } = parts(kind);
    for (const text of textsWithSpecialTokens(kind)) {
      expect([text, tokenizer.encode(text, { parseSpecialTokens: true, addBos: false })]).toEqual([text, await referenceIds(reference, text, false)]);
    }
  });

  test('decodes ids exactly as Hugging Face tokenizers (Rust) does, with and without special tokens', async () => {
    const { tokenizer, reference } = parts(kind);
    for (const text of [...SAMPLE_TEXTS, ...randomTextsFor(kind, 3)]) {
      const ids = await referenceIds(reference, text, true);
      expect([ids, tokenizer.decode(ids)]).toEqual([ids, await reference.decode(ids, true)]);
      expect([ids, tokenizer.decode(ids, false)]).toEqual([ids, await reference.decode(ids, false)]);
    }
  });

  test('decode(encode(text)) gives arbitrary Unicode back: planes, combining marks, emoji, CJK, control characters', () => {
    const { tokenizer } = parts(kind);
    for (const text of [...SAMPLE_TEXTS, ...randomTextsFor(kind, 4)]) {
      expect([text, tokenizer.decode(tokenizer.encode(text))]).toEqual([text, roundTripOf(kind, text)]);
    }
  });

  test('a lone surrogate is encoded as U+FFFD, as TextEncoder does', () => {
    const { tokenizer } = parts(kind);
    for (const [text, wellFormed] of [
      ['a\uD83Db', 'a\uFFFDb'],
      ['\uDE42 low first', '\uFFFD low first'],
      ['high last \uD800', 'high last \uFFFD'],
    ]) {
      expect(tokenizer.encode(text)).toEqual(tokenizer.encode(wellFormed));
      expect(tokenizer.decode(tokenizer.encode(text))).toBe(roundTripOf(kind, wellFormed));
    }
  });

  test('ids outside the vocabulary are refused by index', () => {
    const { tokenizer } = parts(kind);
    expect(tokenizer.indexOfUnknownId([0, 1, tokenizer.vocabSize - 1])).toBe(-1);
    expect(tokenizer.indexOfUnknownId([0, 1, tokenizer.vocabSize])).toBe(2);
    expect(() => tokenizer.decode([0, tokenizer.vocabSize + 7])).toThrow(`token id ${tokenizer.vocabSize + 7} at index 1 is outside the vocabulary`);
  });
});

describe('BOS and special tokens', () => {
  test('Llama 2 (add_bos_token) and Mistral and Llama 3 (post-processor template) start with their BOS; Qwen2 has none', () => {
    expect(parts('llama2').tokenizer.encode('hello world')[0]).toBe(1);
    expect(parts('mistral').tokenizer.encode('hello world')[0]).toBe(1);
    const llama3 = parts('llama3').tokenizer;
    expect(llama3.bosTokenId).toBe(llama3.encode('<|begin_of_text|>', { parseSpecialTokens: true, addBos: false })[0]);
    expect(llama3.encode('hello world')[0]).toBe(llama3.bosTokenId);
    expect(parts('qwen2').tokenizer.bosTokenId).toBeUndefined();
    expect(parts('qwen2').tokenizer.encode('hello world')).toEqual(parts('qwen2').tokenizer.encode('hello world', { addBos: false }));
  });

  test.each(['llama2', 'mistral', 'llama3'] as const)('%s: a text that starts with the BOS token gets it once, not twice', (kind) => {
    const { tokenizer } = parts(kind);
    const bos = kind === 'llama3' ? '<|begin_of_text|>' : '<s>';
    const ids = tokenizer.encode(`${bos}hello`, { parseSpecialTokens: true });
    expect(ids[0]).toBe(tokenizer.bosTokenId);
    expect(ids[1]).not.toBe(tokenizer.bosTokenId);
    expect(ids).toEqual(tokenizer.encode(`${bos}hello`, { parseSpecialTokens: true, addBos: false }));
  });

  test('add_bos_token: false in tokenizer_config.json turns the template BOS off; true turns it on', async () => {
    const off = await TextTokenizer.load(await writeTokenizerFixture('mistral', { add_bos_token: false }));
    expect(off.bosTokenId).toBeUndefined();
    expect(off.encode('hello')).toEqual(parts('mistral').tokenizer.encode('hello', { addBos: false }));
    const on = await TextTokenizer.load(await writeTokenizerFixture('qwen2', { add_bos_token: true, bos_token: '<|endoftext|>' }));
    expect(on.encode('hello')).toEqual([on.encode('<|endoftext|>', { parseSpecialTokens: true, addBos: false })[0], ...on.encode('hello', { addBos: false })]);
  });

  test.each([
    ['llama2', '</s>'],
    ['mistral', '<s>'],
    ['llama3', '<|eot_id|>'],
    ['qwen2', '<|im_end|>'],
  ] as const)('%s: the text %j in a prompt stays text unless special tokens are parsed', (kind, special) => {
    const { tokenizer } = parts(kind);
    const controlId = tokenizer.encode(special, { parseSpecialTokens: true, addBos: false });
    expect(controlId).toHaveLength(1);
    const literal = tokenizer.encode(`say ${special} now`, { addBos: false });
    expect(literal).not.toContain(controlId[0]);
    expect(tokenizer.decode(literal)).toBe(`say ${special} now`);
    expect(tokenizer.encode(`say ${special} now`, { parseSpecialTokens: true, addBos: false })).toContain(controlId[0]);
  });

  test('a non-special added token (Qwen2 <tool_call>) is one token whether or not special tokens are parsed', () => {
    const { tokenizer } = parts('qwen2');
    const [toolCall] = tokenizer.encode(QWEN2_TOOL_CALL_TOKEN, { parseSpecialTokens: true });
    expect(tokenizer.encode(`x${QWEN2_TOOL_CALL_TOKEN}y`)).toContain(toolCall);
    expect(tokenizer.decode(tokenizer.encode(`x${QWEN2_TOOL_CALL_TOKEN}y`))).toBe(`x${QWEN2_TOOL_CALL_TOKEN}y`);
  });

  test('characters outside the SentencePiece vocabulary fall back to byte tokens <0xXX>', () => {
    const { tokenizer } = parts('llama2');
    // ids 3..258 are <0x00>..<0xFF>; 🦀 is not in the corpus the fixture was trained on.
    const ids = tokenizer.encode('🦀', { addBos: false });
    const crab = [...Buffer.from('🦀', 'utf8')].map((byte) => 3 + byte);
    expect(ids.slice(-4)).toEqual(crab);
    expect(tokenizer.decode(ids)).toBe('🦀');
  });
});
