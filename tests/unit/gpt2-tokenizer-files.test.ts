import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { AutoTokenizer, env, type PreTrainedTokenizer } from '@huggingface/transformers';
import { decode as referenceDecode, encode as referenceEncode } from 'gpt-3-encoder';
import { buildGpt2TokenizerFiles } from '../../tools/init/gpt2-tokenizer-files';

const TOKENIZER_LOAD_TIMEOUT_MS = 120_000;

/** Varied text; the reference is gpt-3-encoder, OpenAI's GPT-2 BPE ported to JavaScript. */
const SAMPLES = [
  'Hello world',
  'The quick brown fox jumps over the lazy dog.',
  "It's a dog's life, isn't it? We'll see; they'd know, you're right, I'm sure, we've won.",
  'Numbers: 0 1 12 123 1234 12345 3.14159 -42 1e10 2024-06-01',
  '   leading spaces and trailing   ',
  'tabs\tand\nnew\nlines\r\n and  double  spaces',
  'multiple\n\n\nblank lines\n\n',
  'Ünïcödé àccénts: café, naïve, façade, Zürich, São Paulo',
  'Emoji: 😀🎉👍🏽 and a family 👨‍👩‍👧‍👦',
  '中文字符和日本語のテキスト、한국어도',
  'Ελληνικά και Русский текст',
  'Punctuation!!! ??? ... --- ((()))[]{}<>@#$%^&*_+=|\\/~`',
  'URLs like https://example.com/path?query=1&x=y#frag',
  'email: someone@example.org',
  'code: function f(x) { return x * 2; } // comment',
  'JSON {"key": [1, 2, 3], "nested": {"a": null}}',
  'MiXeD CaSe WoRdS and ALLCAPS',
  'a',
  ' ',
  '',
  '\n',
  'supercalifragilisticexpialidocious antidisestablishmentarianism',
  'Mr. O\'Neil said: "Don\'t!"',
  'שלום עולם مرحبا بالعالم',
  'ﬁ ligature and ½ fraction and ² superscript',
  'zero\u200bwidth space and non\u00a0breaking',
  '$$$ 100% €50 £20 ¥1000',
  'Tokenization of repeated letters: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',
  '....,,,,;;;;::::',
  '🤗 Transformers and ONNX Runtime',
];

describe('buildGpt2TokenizerFiles', () => {
  let folder: string;
  let tokenizer: PreTrainedTokenizer;

  beforeAll(async () => {
    folder = await mkdtemp(path.join(os.tmpdir(), 'gpt2-tokenizer-'));
    const { tokenizerJson, tokenizerConfigJson } = buildGpt2TokenizerFiles();
    await writeFile(path.join(folder, 'tokenizer.json'), JSON.stringify(tokenizerJson));
    await writeFile(path.join(folder, 'tokenizer_config.json'), JSON.stringify(tokenizerConfigJson));
    env.allowRemoteModels = false;
    tokenizer = await AutoTokenizer.from_pretrained(folder, { local_files_only: true });
  }, TOKENIZER_LOAD_TIMEOUT_MS);

  afterAll(async () => {
    await rm(folder, { recursive: true, force: true });
  });

  test('Hello world encodes to the GPT-2 ids [15496, 995]', () => {
    expect(tokenizer.encode('Hello world')).toEqual([15496, 995]);
  });

  test.each(SAMPLES)('encodes %j exactly as gpt-3-encoder does', (text) => {
    expect(tokenizer.encode(text)).toEqual(referenceEncode(text));
  });

  // transformers.js refuses to decode an empty id list, so '' only takes part in the encode check.
  test.each(SAMPLES.filter((text) => text !== ''))('decoding the ids of %j gives the text back', (text) => {
    const ids = tokenizer.encode(text);
    expect(tokenizer.decode(ids)).toEqual(text);
    expect(referenceDecode(ids)).toEqual(text);
  });

  test('<|endoftext|> is the special token 50256 and is skipped when asked', () => {
    const ids = tokenizer.encode('Hi<|endoftext|>');
    expect(ids).toEqual([...referenceEncode('Hi'), 50256]);
    expect(tokenizer.decode(ids, { skip_special_tokens: true })).toEqual('Hi');
  });

  test('the vocabulary holds 50257 tokens and 50000 merges', () => {
    const { tokenizerJson } = buildGpt2TokenizerFiles() as { tokenizerJson: { model: { vocab: object; merges: string[] } } };
    expect(Object.keys(tokenizerJson.model.vocab)).toHaveLength(50257);
    expect(tokenizerJson.model.merges).toHaveLength(50000);
  });
});
