import { mkdtemp, rm } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { decode as referenceDecode, encode as referenceEncode } from 'gpt-3-encoder';
import { TextTokenizer } from '../../services/tokenizer/text-tokenizer';
import { gpt2TokenizerDir, removeGpt2TokenizerDir } from '../support/gpt2-tokenizer-dir';
import { randomUnicodeStrings, SAMPLE_TEXTS } from '../support/unicode-samples';

const END_OF_TEXT_ID = 50256;
const END_OF_TEXT = '<|endoftext|>';
const GPT2_VOCAB_SIZE = 50257;
const RANDOM_STRINGS = 500;
const SAMPLES = [
  'Hello, world!',
  'The quick brown fox jumps over the lazy dog.',
  "  leading spaces, tabs\tand\nnewlines, it's 2024 — ünïcödé and emoji 🙂",
  'x',
];

let tokenizer: TextTokenizer;

beforeAll(async () => {
  tokenizer = await TextTokenizer.load(await gpt2TokenizerDir());
});

afterAll(removeGpt2TokenizerDir);

describe('TextTokenizer', () => {
  test.each(SAMPLES)('encodes %j like the reference GPT-2 BPE (gpt-3-encoder)', (text) => {
    expect(tokenizer.encode(text)).toEqual(referenceEncode(text));
  });

  test.each(SAMPLES)('decodes the ids of %j back to the same text', (text) => {
    const ids = referenceEncode(text);
    expect(tokenizer.decode(ids)).toBe(referenceDecode(ids));
    expect(tokenizer.decode(ids)).toBe(text);
  });

  test('leaves <|endoftext|> out of decoded text', () => {
    const ids = [...referenceEncode('end'), END_OF_TEXT_ID];
    expect(tokenizer.decode(ids)).toBe('end');
  });

  test('keeps <|endoftext|> when asked not to skip special tokens', () => {
    const ids = [...referenceEncode('end'), END_OF_TEXT_ID];
    expect(tokenizer.decode(ids, false)).toBe('end<|endoftext|>');
    expect(tokenizer.decode(ids, true)).toBe('end');
  });

  test('encodes the shared samples and random Unicode (controls, combining marks, emoji, CJK, astral planes) like gpt-3-encoder', () => {
    for (const text of [...SAMPLE_TEXTS, ...randomUnicodeStrings(11, RANDOM_STRINGS)]) {
      expect([text, tokenizer.encode(text)]).toEqual([text, referenceEncode(text)]);
    }
  });

  test('decode(encode(text)) gives random Unicode back unchanged', () => {
    for (const text of randomUnicodeStrings(12, RANDOM_STRINGS)) {
      expect(tokenizer.decode(tokenizer.encode(text))).toBe(text);
    }
  });

  test('the text <|endoftext|> in a prompt is encoded as the plain text it is (as gpt-3-encoder does), not as the control token', () => {
    const text = `before${END_OF_TEXT}after`;
    expect(tokenizer.encode(text)).toEqual(referenceEncode(text));
    expect(tokenizer.encode(text)).not.toContain(END_OF_TEXT_ID);
    expect(tokenizer.decode(tokenizer.encode(text))).toBe(text);
  });

  test('with parseSpecialTokens the text <|endoftext|> becomes the control token 50256', () => {
    expect(tokenizer.encode(`before${END_OF_TEXT}after`, { parseSpecialTokens: true })).toEqual([...referenceEncode('before'), END_OF_TEXT_ID, ...referenceEncode('after')]);
  });

  test('GPT-2 adds no BOS token', () => {
    expect(tokenizer.bosTokenId).toBeUndefined();
    expect(tokenizer.encode('Hello')).toEqual(referenceEncode('Hello'));
    expect(tokenizer.encode('')).toEqual([]);
  });

  test('a lone surrogate is encoded as U+FFFD, as TextEncoder does', () => {
    expect(tokenizer.encode('a\uD83Db')).toEqual(referenceEncode('a\uFFFDb'));
    expect(tokenizer.encode('\uDC00')).toEqual(referenceEncode('\uFFFD'));
    expect(tokenizer.decode(tokenizer.encode('x\uD800'))).toBe('x\uFFFD');
  });

  test('the vocabulary is GPT-2\'s 50257 tokens; an id past it is named by index', () => {
    expect(tokenizer.vocabSize).toBe(GPT2_VOCAB_SIZE);
    expect(tokenizer.indexOfUnknownId([0, END_OF_TEXT_ID])).toBe(-1);
    expect(tokenizer.indexOfUnknownId([0, 1, GPT2_VOCAB_SIZE, 2])).toBe(2);
    expect(tokenizer.indexOfUnknownId([-1])).toBe(0);
    expect(tokenizer.decode([])).toBe('');
  });

  test('a folder without tokenizer files is an error naming the file', async () => {
    const empty = await mkdtemp(path.join(os.tmpdir(), 'text-tokenizer-empty-'));
    try {
      await expect(TextTokenizer.load(empty)).rejects.toThrow(`${path.join(empty, 'tokenizer.json')}: tokenizer file not found`);
    } finally {
      await rm(empty, { recursive: true, force: true });
    }
  });
});
