import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { trainBpe } from './train-bpe';

/**
 * Small but real tokenizers of the families this project serves, as Hugging Face tokenizer.json
 * and tokenizer_config.json files, with vocabularies and merges trained here (tests/support/train-bpe.ts)
 * on a mixed-script corpus:
 * - `llama2`: SentencePiece-style BPE with byte fallback, <unk>/<s>/</s>, the Prepend+Replace
 *   normalizer and Replace/ByteFallback/Fuse/Strip decoder of Llama 2's own file, add_bos_token;
 * - `mistral`: the same model with the Metaspace pre-tokenizer and decoder, BOS from the
 *   post-processor template only, its chat template in the list-of-named-templates form;
 * - `llama3`: byte-level BPE with Llama 3's split regex, ignore_merges, <|begin_of_text|> from the template;
 * - `qwen2`: byte-level BPE with Qwen2's split regex (digits one by one), an NFC normalizer, no
 *   BOS, ChatML control tokens and a non-special added token (<tool_call>).
 */
export const TOKENIZER_FIXTURE_KINDS = ['llama2', 'mistral', 'llama3', 'qwen2'] as const;
export type TokenizerFixtureKind = (typeof TOKENIZER_FIXTURE_KINDS)[number];

export interface TokenizerFixture {
  readonly tokenizerJson: Record<string, unknown>;
  readonly tokenizerConfigJson: Record<string, unknown>;
}

const METASPACE = '\u2581';
const SENTENCEPIECE_MERGES = 400;
const BYTE_LEVEL_MERGES = 500;

/** Llama 3's and Qwen2's pre-tokenizer patterns, as their tokenizer.json files spell them (Oniguruma syntax). */
export const LLAMA3_SPLIT_PATTERN =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
export const QWEN2_SPLIT_PATTERN =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/** Only for cutting the training corpus into words; the tokenizers themselves use the patterns above. */
const TRAINING_WORDS = /'(?:[sStTmMdD]|[rR][eE]|[vV][eE]|[lL][lL])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+/gu;

const CORPUS = [
  'The quick brown fox jumps over the lazy dog. The dog sleeps; the fox runs away.',
  "It's a model's tokenizer: we'll see what they're doing, I'm sure you've read it, he'd know.",
  'Pipeline parallel serving splits a transformer into stages, one process per stage.',
  'Each stage keeps the key and value cache of its own layers for every live sequence.',
  'Numbers like 1, 12, 123, 2024, 3.14159 and 1e10 appear in text; so do dates: 2024-06-01.',
  'function encode(text) { return tokenizer.encode(text).ids; } // returns token ids',
  'const decoded = tokenizer.decode([1, 2, 3], { skip_special_tokens: true });',
  'Ünïcödé àccénts: café, naïve, façade, Zürich, São Paulo, Ångström, Øresund.',
  '中文字符和日本語のテキスト、そして한국어도 있습니다。東京と北京と서울。',
  'Ελληνικά και Русский текст, עברית ועربية, हिन्दी भाषा.',
  'Emoji: 😀 🎉 👍🏽 🙂 and a family 👨‍👩‍👧‍👦 and flags 🇫🇷 🇯🇵.',
  'Tabs\tand\nnew lines\r\nand  double  spaces   and more.',
  'Streaming decode never splits a character that spans two tokens.',
  'hello hello hello world world world tokens tokens tokens',
].join('\n');

/** The fixture of `kind`, built fresh (training takes a few milliseconds). */
export function buildTokenizerFixture(kind: TokenizerFixtureKind): TokenizerFixture {
  switch (kind) {
    case 'llama2':
      return llama2Fixture();
    case 'mistral':
      return mistralFixture();
    case 'llama3':
      return llama3Fixture();
    case 'qwen2':
      return qwen2Fixture();
  }
}

const written: string[] = [];

/** Writes the fixture of `kind` (with `configOverrides` merged into tokenizer_config.json) to a new temporary folder. */
export async function writeTokenizerFixture(kind: TokenizerFixtureKind, configOverrides: Record<string, unknown> = {}): Promise<string> {
  const fixture = buildTokenizerFixture(kind);
  const dir = await mkdtemp(path.join(os.tmpdir(), `tokenizer-${kind}-`));
  written.push(dir);
  await writeFile(path.join(dir, 'tokenizer.json'), JSON.stringify(fixture.tokenizerJson));
  await writeFile(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ ...fixture.tokenizerConfigJson, ...configOverrides }));
  return dir;
}

/** Deletes every folder `writeTokenizerFixture` made in this test file. */
export async function removeTokenizerFixtures(): Promise<void> {
  await Promise.all(written.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
}

function addedToken(id: number, content: string, special = true): Record<string, unknown> {
  return { id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special };
}

function bosTemplate(bos: string, bosId: number): Record<string, unknown> {
  return {
    type: 'TemplateProcessing',
    single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
    pair: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: bos, type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
    special_tokens: { [bos]: { id: bos, ids: [bosId], tokens: [bos] } },
  };
}

function bpeModel(vocab: Record<string, number>, merges: [string, string][], options: { byteFallback: boolean; unk: string | null; ignoreMerges: boolean; mergesAsStrings: boolean }): Record<string, unknown> {
  return {
    type: 'BPE',
    dropout: null,
    unk_token: options.unk,
    continuing_subword_prefix: null,
    end_of_word_suffix: null,
    fuse_unk: options.byteFallback,
    byte_fallback: options.byteFallback,
    ignore_merges: options.ignoreMerges,
    vocab,
    merges: options.mergesAsStrings ? merges.map(([left, right]) => `${left} ${right}`) : merges,
  };
}

/** Vocabulary: the given tokens first, then every merge result in merge order (first occurrence wins). */
function vocabularyOf(base: readonly string[], merges: readonly [string, string][]): Record<string, number> {
  const vocab: Record<string, number> = {};
  let next = 0;
  for (const token of [...base, ...merges.map(([left, right]) => left + right)]) {
    if (!Object.hasOwn(vocab, token)) vocab[token] = next++;
  }
  return vocab;
}

/**
 * The SentencePiece-style model shared by `llama2` and `mistral`: ids 0-2 <unk> <s> </s>,
 * 3-258 the byte tokens <0x00>…<0xFF>, then the corpus's characters and the merges. Words are
 * "▁"-prefixed runs, so no merge crosses a word start, as with SentencePiece.
 */
function sentencePieceModel(): { vocab: Record<string, number>; merges: [string, string][] } {
  const words = new Map<string, { symbols: string[]; count: number }>();
  for (const line of CORPUS.split('\n')) {
    for (const word of (METASPACE + line.replaceAll(' ', METASPACE)).split(new RegExp(`(?=${METASPACE})`, 'u'))) {
      const entry = words.get(word) ?? { symbols: Array.from(word), count: 0 };
      entry.count++;
      words.set(word, entry);
    }
  }
  const characters = [...new Set(Array.from(CORPUS.replaceAll(' ', METASPACE) + METASPACE))].filter((c) => c !== '\n').sort();
  const bytes = Array.from({ length: 256 }, (_, b) => `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
  const merges = trainBpe(words, SENTENCEPIECE_MERGES);
  return { vocab: vocabularyOf(['<unk>', '<s>', '</s>', ...bytes, ...characters], merges), merges };
}

const SENTENCEPIECE_ADDED_TOKENS = [addedToken(0, '<unk>'), addedToken(1, '<s>'), addedToken(2, '</s>')];

const LLAMA2_CHAT_TEMPLATE =
  "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = '<<SYS>>\\n' + messages[0]['content'] + '\\n<</SYS>>\\n\\n' %}" +
  "{% else %}{% set loop_messages = messages %}{% set system_message = '' %}{% endif %}" +
  "{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}" +
  "{% if loop.index0 == 0 %}{% set content = system_message + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}" +
  "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' ' + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

function llama2Fixture(): TokenizerFixture {
  const { vocab, merges } = sentencePieceModel();
  return {
    tokenizerJson: {
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: SENTENCEPIECE_ADDED_TOKENS,
      normalizer: { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: METASPACE }, { type: 'Replace', pattern: { String: ' ' }, content: METASPACE }] },
      pre_tokenizer: null,
      post_processor: bosTemplate('<s>', 1),
      decoder: {
        type: 'Sequence',
        decoders: [{ type: 'Replace', pattern: { String: METASPACE }, content: ' ' }, { type: 'ByteFallback' }, { type: 'Fuse' }, { type: 'Strip', content: ' ', start: 1, stop: 0 }],
      },
      model: bpeModel(vocab, merges, { byteFallback: true, unk: '<unk>', ignoreMerges: false, mergesAsStrings: true }),
    },
    tokenizerConfigJson: {
      tokenizer_class: 'LlamaTokenizer',
      add_bos_token: true,
      add_eos_token: false,
      bos_token: { __type: 'AddedToken', content: '<s>', lstrip: false, normalized: false, rstrip: false, single_word: false },
      eos_token: { __type: 'AddedToken', content: '</s>', lstrip: false, normalized: false, rstrip: false, single_word: false },
      unk_token: { __type: 'AddedToken', content: '<unk>', lstrip: false, normalized: false, rstrip: false, single_word: false },
      pad_token: null,
      clean_up_tokenization_spaces: false,
      legacy: true,
      model_max_length: 4096,
      chat_template: LLAMA2_CHAT_TEMPLATE,
    },
  };
}

const MISTRAL_CHAT_TEMPLATE =
  "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}" +
  "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}" +
  "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}";

function mistralFixture(): TokenizerFixture {
  const { vocab, merges } = sentencePieceModel();
  const metaspace = { replacement: METASPACE, prepend_scheme: 'first', split: false };
  return {
    tokenizerJson: {
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: SENTENCEPIECE_ADDED_TOKENS,
      normalizer: null,
      pre_tokenizer: { type: 'Metaspace', ...metaspace },
      post_processor: bosTemplate('<s>', 1),
      decoder: { type: 'Sequence', decoders: [{ type: 'ByteFallback' }, { type: 'Metaspace', ...metaspace }] },
      model: bpeModel(vocab, merges, { byteFallback: true, unk: '<unk>', ignoreMerges: false, mergesAsStrings: false }),
    },
    tokenizerConfigJson: {
      tokenizer_class: 'LlamaTokenizerFast',
      bos_token: '<s>',
      eos_token: '</s>',
      unk_token: '<unk>',
      clean_up_tokenization_spaces: false,
      model_max_length: 32768,
      chat_template: [
        { name: 'default', template: MISTRAL_CHAT_TEMPLATE },
        { name: 'tool_use', template: "{{ bos_token }}{{ raise_exception('tools are not served here') }}" },
      ],
    },
  };
}

/** GPT-2's reversible map from bytes to printable characters (the "byte-level" alphabet). */
function byteLevelAlphabet(): string[] {
  const printable = new Set<number>();
  for (let b = 0x21; b <= 0x7e; b++) printable.add(b);
  for (let b = 0xa1; b <= 0xac; b++) printable.add(b);
  for (let b = 0xae; b <= 0xff; b++) printable.add(b);
  let shifted = 0;
  return Array.from({ length: 256 }, (_, b) => String.fromCodePoint(printable.has(b) ? b : 256 + shifted++));
}

function byteLevelModel(): { vocab: Record<string, number>; merges: [string, string][] } {
  const alphabet = byteLevelAlphabet();
  const words = new Map<string, { symbols: string[]; count: number }>();
  for (const piece of CORPUS.match(TRAINING_WORDS) ?? []) {
    const symbols = [...Buffer.from(piece, 'utf8')].map((b) => alphabet[b]);
    const key = symbols.join('');
    const entry = words.get(key) ?? { symbols, count: 0 };
    entry.count++;
    words.set(key, entry);
  }
  const merges = trainBpe(words, BYTE_LEVEL_MERGES);
  return { vocab: vocabularyOf(alphabet, merges), merges };
}

function byteLevelSplit(pattern: string): Record<string, unknown> {
  return {
    type: 'Sequence',
    pretokenizers: [
      { type: 'Split', pattern: { Regex: pattern }, behavior: 'Isolated', invert: false },
      { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
    ],
  };
}

const LLAMA3_CHAT_TEMPLATE =
  "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}" +
  "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";

export const LLAMA3_SPECIAL_TOKENS = ['<|begin_of_text|>', '<|end_of_text|>', '<|start_header_id|>', '<|end_header_id|>', '<|eot_id|>'] as const;

function llama3Fixture(): TokenizerFixture {
  const { vocab, merges } = byteLevelModel();
  const first = Object.keys(vocab).length;
  const added = LLAMA3_SPECIAL_TOKENS.map((content, i) => addedToken(first + i, content));
  return {
    tokenizerJson: {
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: added,
      normalizer: null,
      pre_tokenizer: byteLevelSplit(LLAMA3_SPLIT_PATTERN),
      post_processor: {
        type: 'Sequence',
        processors: [{ type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true }, bosTemplate('<|begin_of_text|>', first)],
      },
      decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
      model: bpeModel(vocab, merges, { byteFallback: false, unk: null, ignoreMerges: true, mergesAsStrings: true }),
    },
    tokenizerConfigJson: {
      tokenizer_class: 'PreTrainedTokenizerFast',
      bos_token: '<|begin_of_text|>',
      eos_token: '<|eot_id|>',
      clean_up_tokenization_spaces: false,
      model_max_length: 131072,
      chat_template: LLAMA3_CHAT_TEMPLATE,
    },
  };
}

const QWEN2_CHAT_TEMPLATE =
  "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}" +
  "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

export const QWEN2_SPECIAL_TOKENS = ['<|endoftext|>', '<|im_start|>', '<|im_end|>'] as const;
/** An added token that is not special: it is split out of text even when special tokens stay text. */
export const QWEN2_TOOL_CALL_TOKEN = '<tool_call>';

function qwen2Fixture(): TokenizerFixture {
  const { vocab, merges } = byteLevelModel();
  const first = Object.keys(vocab).length;
  const added = [...QWEN2_SPECIAL_TOKENS.map((content, i) => addedToken(first + i, content)), addedToken(first + QWEN2_SPECIAL_TOKENS.length, QWEN2_TOOL_CALL_TOKEN, false)];
  const byteLevel = { add_prefix_space: false, trim_offsets: false, use_regex: false };
  return {
    tokenizerJson: {
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: added,
      normalizer: { type: 'NFC' },
      pre_tokenizer: byteLevelSplit(QWEN2_SPLIT_PATTERN),
      post_processor: { type: 'ByteLevel', ...byteLevel },
      decoder: { type: 'ByteLevel', ...byteLevel },
      model: bpeModel(vocab, merges, { byteFallback: false, unk: null, ignoreMerges: false, mergesAsStrings: false }),
    },
    tokenizerConfigJson: {
      tokenizer_class: 'Qwen2Tokenizer',
      add_prefix_space: false,
      bos_token: null,
      eos_token: '<|im_end|>',
      pad_token: '<|endoftext|>',
      unk_token: null,
      errors: 'replace',
      clean_up_tokenization_spaces: false,
      model_max_length: 32768,
      chat_template: QWEN2_CHAT_TEMPLATE,
    },
  };
}
