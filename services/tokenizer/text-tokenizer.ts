import { access } from 'node:fs/promises';
import * as path from 'node:path';
import { AutoTokenizer, env, type PreTrainedTokenizer } from '@huggingface/transformers';

const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json'] as const;

/**
 * Text ⇄ token ids with the tokenizer files of a model folder, through transformers.js (the
 * only module that imports it). Never reaches the network: a missing file is an error here.
 */
export class TextTokenizer {
  private constructor(private readonly tokenizer: PreTrainedTokenizer) {}

  /** Loads tokenizer.json and tokenizer_config.json from `dir` (a checkpoint or compiled model folder). */
  static async load(dir: string): Promise<TextTokenizer> {
    const root = path.resolve(dir);
    for (const file of TOKENIZER_FILES) {
      try {
        await access(path.join(root, file));
      } catch {
        throw new Error(`${path.join(root, file)}: tokenizer file not found`);
      }
    }
    env.allowRemoteModels = false;
    env.allowLocalModels = true;
    // An absolute path is not a Hub id, so transformers.js reads the folder as it is.
    const tokenizer = await AutoTokenizer.from_pretrained(root, { local_files_only: true });
    return new TextTokenizer(tokenizer);
  }

  /** Token ids of `text`, without special tokens (GPT-2 adds none anyway). */
  encode(text: string): number[] {
    return this.tokenizer.encode(text, { add_special_tokens: false });
  }

  /** Text of `ids`; special tokens such as <|endoftext|> are left out unless `skipSpecialTokens` is false. */
  decode(ids: readonly number[], skipSpecialTokens = true): string {
    return this.tokenizer.decode([...ids], { skip_special_tokens: skipSpecialTokens });
  }
}
