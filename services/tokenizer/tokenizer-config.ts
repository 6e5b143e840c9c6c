/** The name under which a list of named chat templates keeps the one to use. */
const DEFAULT_TEMPLATE_NAME = 'default';

/**
 * What this project reads of a checkpoint's tokenizer_config.json, parsed once at load. The raw
 * object is kept too: the tokenizer library reads a few more fields of it by itself.
 */
export interface TokenizerConfig {
  /** True or false when the file says so; undefined leaves the choice to tokenizer.json's post-processor. */
  readonly addBosToken: boolean | undefined;
  readonly bosToken: string | undefined;
  readonly eosToken: string | undefined;
  readonly unkToken: string | undefined;
  readonly padToken: string | undefined;
  /** The Jinja source of the chat template to use, if the checkpoint has one. */
  readonly chatTemplate: string | undefined;
  readonly raw: Readonly<Record<string, unknown>>;
}

/**
 * Parses tokenizer_config.json. `chat_template` is a string, or a list of `{name, template}` of
 * which the one named "default" is used (as transformers does); `separateChatTemplate` is the
 * text of a chat_template.jinja beside it, which newer checkpoints write instead.
 */
export function parseTokenizerConfig(json: unknown, source: string, separateChatTemplate?: string): TokenizerConfig {
  if (!isRecord(json)) throw new Error(`${source}: expected a JSON object`);
  const field = (name: string): string => `${source}: field ${name}`;
  const addBosToken = json.add_bos_token;
  if (addBosToken !== undefined && addBosToken !== null && typeof addBosToken !== 'boolean') {
    throw new Error(`${field('add_bos_token')}: expected true or false, got ${JSON.stringify(addBosToken)}`);
  }
  return {
    addBosToken: addBosToken ?? undefined,
    bosToken: specialTokenText(json.bos_token, field('bos_token')),
    eosToken: specialTokenText(json.eos_token, field('eos_token')),
    unkToken: specialTokenText(json.unk_token, field('unk_token')),
    padToken: specialTokenText(json.pad_token, field('pad_token')),
    chatTemplate: chatTemplateOf(json.chat_template, field('chat_template')) ?? separateChatTemplate,
    raw: json,
  };
}

/** A special token is written as its text, or as an AddedToken object with a `content`. */
function specialTokenText(value: unknown, field: string): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return value;
  if (isRecord(value) && typeof value.content === 'string') return value.content;
  throw new Error(`${field}: expected a string or an object with a string "content", got ${JSON.stringify(value)}`);
}

function chatTemplateOf(value: unknown, field: string): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return value;
  if (!Array.isArray(value)) throw new Error(`${field}: expected a string or a list of {name, template}, got ${typeof value}`);
  const named = value.map((entry: unknown, i) => {
    if (!isRecord(entry) || typeof entry.name !== 'string' || typeof entry.template !== 'string') {
      throw new Error(`${field}[${i}]: expected {"name": string, "template": string}`);
    }
    return { name: entry.name, template: entry.template };
  });
  const chosen = named.find((entry) => entry.name === DEFAULT_TEMPLATE_NAME);
  if (chosen === undefined) {
    throw new Error(`${field}: no template named "${DEFAULT_TEMPLATE_NAME}" (found ${named.map((entry) => JSON.stringify(entry.name)).join(', ') || 'none'})`);
  }
  return chosen.template;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
