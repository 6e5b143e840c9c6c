import { AutoTokenizer, env, type PreTrainedTokenizer } from '@huggingface/transformers';
import { TextTokenizer } from '../../services/tokenizer/text-tokenizer';
import { gpt2TokenizerDir, removeGpt2TokenizerDir } from '../support/gpt2-tokenizer-dir';
import { removeTokenizerFixtures, TOKENIZER_FIXTURE_KINDS, writeTokenizerFixture, type TokenizerFixtureKind } from '../support/tokenizer-fixtures';
import { randomUnicodeStrings, SAMPLE_TEXTS } from '../support/unicode-samples';

/**
 * The tokenizer service moved from @huggingface/transformers (which installs onnxruntime-web and
 * sharp) to @huggingface/tokenizers alone. This keeps the two equal on every tokenizer the tests
 * build, with special tokens parsed and BOS added as transformers does.
 */
const TOKENIZER_LOAD_TIMEOUT_MS = 120_000;
const RANDOM_STRINGS = 200;
const METASPACE = 0x2581;

const kinds = ['gpt2', ...TOKENIZER_FIXTURE_KINDS] as const;

afterAll(async () => {
  await removeGpt2TokenizerDir();
  await removeTokenizerFixtures();
});

describe.each(kinds)('%s: TextTokenizer (@huggingface/tokenizers) and transformers.js', (kind: 'gpt2' | TokenizerFixtureKind) => {
  let ours: TextTokenizer;
  let theirs: PreTrainedTokenizer;
  const texts = [...SAMPLE_TEXTS, ...randomUnicodeStrings(31, RANDOM_STRINGS, { exclude: [METASPACE] })];

  beforeAll(async () => {
    const dir = kind === 'gpt2' ? await gpt2TokenizerDir() : await writeTokenizerFixture(kind);
    ours = await TextTokenizer.load(dir);
    env.allowRemoteModels = false;
    theirs = await AutoTokenizer.from_pretrained(dir, { local_files_only: true });
  }, TOKENIZER_LOAD_TIMEOUT_MS);

  test('encode the same ids', () => {
    for (const text of texts) {
      expect([text, ours.encode(text, { parseSpecialTokens: true })]).toEqual([text, theirs.encode(text)]);
    }
  });

  test('decode the same text, with and without special tokens', () => {
    for (const text of texts) {
      const ids = theirs.encode(text);
      if (ids.length === 0) continue; // transformers.js refuses to decode no ids
      expect([ids, ours.decode(ids)]).toEqual([ids, theirs.decode(ids, { skip_special_tokens: true })]);
      expect([ids, ours.decode(ids, false)]).toEqual([ids, theirs.decode(ids, { skip_special_tokens: false })]);
    }
  });
});
