import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { decode as referenceDecode, encode as referenceEncode } from 'gpt-3-encoder';
import { TextTokenizer } from '../../services/tokenizer/text-tokenizer';
import { buildGpt2TokenizerFiles } from '../../tools/init/gpt2-tokenizer-files';

const END_OF_TEXT_ID = 50256;
const SAMPLES = [
  'Hello, world!',
  'The quick brown fox jumps over the lazy dog.',
  "  leading spaces, tabs\tand\nnewlines, it's 2024 — ünïcödé and emoji 🙂",
  'x',
];

let dir: string;
let tokenizer: TextTokenizer;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'text-tokenizer-'));
  const files = buildGpt2TokenizerFiles();
  await writeFile(path.join(dir, 'tokenizer.json'), JSON.stringify(files.tokenizerJson));
  await writeFile(path.join(dir, 'tokenizer_config.json'), JSON.stringify(files.tokenizerConfigJson));
  tokenizer = await TextTokenizer.load(dir);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

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

  test('a folder without tokenizer files is an error naming the file', async () => {
    const empty = await mkdtemp(path.join(os.tmpdir(), 'text-tokenizer-empty-'));
    try {
      await expect(TextTokenizer.load(empty)).rejects.toThrow(`${path.join(empty, 'tokenizer.json')}: tokenizer file not found`);
    } finally {
      await rm(empty, { recursive: true, force: true });
    }
  });
});
