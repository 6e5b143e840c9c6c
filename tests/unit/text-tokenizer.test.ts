import { mkdtemp, rm } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { decode as referenceDecode, encode as referenceEncode } from 'gpt-3-encoder';
import { TextTokenizer } from '../../services/tokenizer/text-tokenizer';
import { gpt2TokenizerDir, removeGpt2TokenizerDir } from '../support/gpt2-tokenizer-dir';

const END_OF_TEXT_ID = 50256;
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

  test('a folder without tokenizer files is an error naming the file', async () => {
    const empty = await mkdtemp(path.join(os.tmpdir(), 'text-tokenizer-empty-'));
    try {
      await expect(TextTokenizer.load(empty)).rejects.toThrow(`${path.join(empty, 'tokenizer.json')}: tokenizer file not found`);
    } finally {
      await rm(empty, { recursive: true, force: true });
    }
  });
});
