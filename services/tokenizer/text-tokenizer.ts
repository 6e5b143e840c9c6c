import { readFile } from 'node:fs/promises';
import * as path from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { parseTokenizerConfig, type TokenizerConfig } from './tokenizer-config';

const TOKENIZER_FILE = 'tokenizer.json';
const TOKENIZER_CONFIG_FILE = 'tokenizer_config.json';
/** Newer checkpoints keep the chat template in its own file beside tokenizer_config.json. */
const CHAT_TEMPLATE_FILE = 'chat_template.jinja';
/** A UTF-16 surrogate without its other half: no Unicode character, no UTF-8 spelling. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;
const REPLACEMENT_CHARACTER = '\uFFFD';

export interface EncodeOptions {
  /**
   * False (the default): the text of a special token ("<|endoftext|>", "</s>") is encoded as the
   * plain text it is, as Hugging Face's `split_special_tokens` does. True: it becomes the token.
   */
  readonly parseSpecialTokens?: boolean;
  /** Prepend the BOS token when the tokenizer config says so (the default); never twice. */
  readonly addBos?: boolean;
}

/**
 * Text ⇄ token ids with the tokenizer a model folder's tokenizer.json declares (byte-level BPE as
 * GPT-2, Llama 3 and Qwen2 use; SentencePiece-style BPE with byte fallback as Llama 2 and
 * Mistral use; whatever else Hugging Face's tokenizers.js reads), through
 * `@huggingface/tokenizers`: this is the only module that imports it. Never reaches the network.
 *
 * Decoding never applies `clean_up_tokenization_spaces`: that clean-up is lossy (" ." becomes
 * ".") and would make streamed text differ from decoding all ids at once.
 */
export class TextTokenizer {
  private constructor(
    /** Splits special-token text out as control tokens. */
    private readonly parsing: Tokenizer,
    /** Sees only the non-special added tokens: special-token text is encoded as text. */
    private readonly literal: Tokenizer,
    readonly config: TokenizerConfig,
    /** The ids prepended to an encoding (the BOS token, or nothing). */
    private readonly bosPrefix: readonly number[],
    /** One more than the highest token id. */
    readonly vocabSize: number,
  ) {}

  /** Loads tokenizer.json and tokenizer_config.json from `dir` (a checkpoint or compiled model folder). */
  static async load(dir: string): Promise<TextTokenizer> {
    const root = path.resolve(dir);
    const tokenizerFile = path.join(root, TOKENIZER_FILE);
    const configFile = path.join(root, TOKENIZER_CONFIG_FILE);
    const tokenizerJson = parseJsonObject(await readRequired(tokenizerFile), tokenizerFile);
    const configText = await readRequired(configFile);
    const separateTemplate = await readFile(path.join(root, CHAT_TEMPLATE_FILE), 'utf8').catch(() => undefined);
    const config = parseTokenizerConfig(parseJson(configText, configFile), configFile, separateTemplate);

    const addedTokens = parseAddedTokens(tokenizerJson.added_tokens, tokenizerFile);
    const build = (json: Record<string, unknown>): Tokenizer => {
      try {
        return new Tokenizer(json, config.raw);
      } catch (error) {
        throw new Error(`${tokenizerFile}: ${error instanceof Error ? error.message : String(error)}`);
      }
    };
    const parsing = build(tokenizerJson);
    const literal = build({ ...tokenizerJson, added_tokens: addedTokens.filter((token) => token.special !== true) });
    // The vocabulary and merges are the heavy part (tens of MB for a 128k vocabulary) and the same
    // in both: share them. The parsing tokenizer's model knows every added token, the literal one
    // looks special tokens up only for what BPE itself spells, as Hugging Face's tokenizers does.
    literal.model = parsing.model;

    let vocabSize = 0;
    for (const id of parsing.get_vocab(true).values()) vocabSize = Math.max(vocabSize, id + 1);
    const bosPrefix = bosPrefixOf(tokenizerJson, config, (token) => parsing.token_to_id(token), configFile, tokenizerFile);
    return new TextTokenizer(parsing, literal, config, bosPrefix, vocabSize);
  }

  /** The BOS id an encoding starts with, or undefined when this tokenizer adds none. */
  get bosTokenId(): number | undefined {
    return this.bosPrefix[0];
  }

  /**
   * Token ids of `text`. A lone UTF-16 surrogate (no character, so no UTF-8 spelling) is read as
   * U+FFFD, as TextEncoder and a gRPC string field do.
   */
  encode(text: string, options: EncodeOptions = {}): number[] {
    const wellFormed = text.replace(LONE_SURROGATE, REPLACEMENT_CHARACTER);
    const tokenizer = options.parseSpecialTokens === true ? this.parsing : this.literal;
    const ids = wellFormed.length === 0 ? [] : tokenizer.encode(wellFormed, { add_special_tokens: false }).ids;
    if (options.addBos === false || this.bosPrefix.length === 0 || startsWith(ids, this.bosPrefix)) return ids;
    return [...this.bosPrefix, ...ids];
  }

  /** Text of `ids`; special tokens such as <|endoftext|> are left out unless `skipSpecialTokens` is false. */
  decode(ids: readonly number[], skipSpecialTokens = true): string {
    const unknown = this.indexOfUnknownId(ids);
    if (unknown >= 0) throw new RangeError(`token id ${ids[unknown]} at index ${unknown} is outside the vocabulary (size ${this.vocabSize})`);
    if (ids.length === 0) return '';
    return this.parsing.decode([...ids], { skip_special_tokens: skipSpecialTokens, clean_up_tokenization_spaces: false });
  }

  /** Index of the first id that names no token of the vocabulary, or -1. */
  indexOfUnknownId(ids: readonly number[]): number {
    return ids.findIndex((id) => !Number.isInteger(id) || id < 0 || id >= this.vocabSize || this.parsing.id_to_token(id) === undefined);
  }
}

interface AddedTokenJson {
  readonly id: number;
  readonly content: string;
  readonly special?: boolean;
}

function parseAddedTokens(value: unknown, source: string): AddedTokenJson[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw new Error(`${source}: field added_tokens: expected a list`);
  return value.map((token: unknown, i) => {
    if (!isRecord(token) || typeof token.id !== 'number' || typeof token.content !== 'string') {
      throw new Error(`${source}: field added_tokens[${i}]: expected an object with a numeric "id" and a string "content"`);
    }
    return token as unknown as AddedTokenJson;
  });
}

/**
 * tokenizer_config.json's `add_bos_token` decides when it is there (transformers rebuilds the
 * post-processor from it); otherwise the special tokens that tokenizer.json's TemplateProcessing
 * puts before the text ($A) of a single sequence. An EOS after the text is never added: an
 * encoded prompt is to be continued, not ended.
 */
function bosPrefixOf(
  tokenizerJson: Record<string, unknown>,
  config: TokenizerConfig,
  idOf: (token: string) => number | undefined,
  configFile: string,
  tokenizerFile: string,
): number[] {
  if (config.addBosToken === false) return [];
  if (config.addBosToken === true) {
    if (config.bosToken === undefined) throw new Error(`${configFile}: field bos_token: add_bos_token is true but no bos_token is set`);
    const id = idOf(config.bosToken);
    if (id === undefined) throw new Error(`${configFile}: field bos_token: ${JSON.stringify(config.bosToken)} is not in the vocabulary of ${tokenizerFile}`);
    return [id];
  }
  const template = templateProcessingOf(tokenizerJson.post_processor);
  if (template === undefined) return [];
  const prefix: number[] = [];
  for (const piece of template.single) {
    if (!isRecord(piece) || !isRecord(piece.SpecialToken)) break;
    const name = piece.SpecialToken.id;
    const entry = typeof name === 'string' ? template.specialTokens[name] : undefined;
    if (!isRecord(entry) || !Array.isArray(entry.ids) || !entry.ids.every((id) => typeof id === 'number')) {
      throw new Error(`${tokenizerFile}: field post_processor.special_tokens: no ids for ${JSON.stringify(name)}`);
    }
    prefix.push(...(entry.ids as number[]));
  }
  return prefix;
}

function templateProcessingOf(processor: unknown): { single: unknown[]; specialTokens: Record<string, unknown> } | undefined {
  if (!isRecord(processor)) return undefined;
  if (processor.type === 'Sequence' && Array.isArray(processor.processors)) {
    for (const inner of processor.processors) {
      const found = templateProcessingOf(inner);
      if (found !== undefined) return found;
    }
    return undefined;
  }
  if (processor.type !== 'TemplateProcessing' || !Array.isArray(processor.single)) return undefined;
  return { single: processor.single, specialTokens: isRecord(processor.special_tokens) ? processor.special_tokens : {} };
}

function startsWith(ids: readonly number[], prefix: readonly number[]): boolean {
  return prefix.length <= ids.length && prefix.every((id, i) => ids[i] === id);
}

async function readRequired(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch {
    throw new Error(`${file}: tokenizer file not found`);
  }
}

function parseJson(text: string, source: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new Error(`${source}: not valid JSON (${error instanceof Error ? error.message : String(error)})`);
  }
}

function parseJsonObject(text: string, source: string): Record<string, unknown> {
  const json = parseJson(text, source);
  if (!isRecord(json)) throw new Error(`${source}: expected a JSON object`);
  return json;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
