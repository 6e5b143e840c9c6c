import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { ServiceError, UsageError } from '../shared/errors';
import { InProcessPipeline } from '../services/node/in-process-pipeline';
import { DEFAULT_GENERATION_CONFIG, fitNewTokens, parseGenerationConfig, type GenerationConfig } from '../shared/generation-config';
import { readManifest } from '../shared/model/manifest';
import { TextTokenizer } from '../services/tokenizer/text-tokenizer';
import { CliCommand, exitWhenDone, type CliValues } from './cli/cli-command';
import { PROCESS_OUTPUT, type CliOutput } from './cli/cli-output';

/** Numeric flags and the generation field each one sets. */
const NUMERIC_FLAGS = {
  'max-new-tokens': 'maxNewTokens',
  temperature: 'temperature',
  'top-k': 'topK',
  'top-p': 'topP',
  'repetition-penalty': 'repetitionPenalty',
  seed: 'seed',
} as const satisfies Record<string, keyof GenerationConfig>;

const DEFAULTS = DEFAULT_GENERATION_CONFIG;

export const GENERATE_COMMAND = new CliCommand({
  name: 'generate',
  description:
    'Generates a continuation of a prompt with every stage of a compiled model in this process (no services needed), ' +
    'and prints it; with --json, one object: token_ids (generated only), text, prompt_token_ids, finish_reason.',
  options: {
    model: { value: 'dir', required: true, description: 'a compiled model folder (manifest.json and stage files), e.g. models/default' },
    prompt: { value: 'text', required: true, description: 'the text to continue' },
    'max-new-tokens': {
      value: 'n',
      description: `tokens to generate at most, fewer when the end-of-text token comes first (default ${DEFAULTS.maxNewTokens}, or what the model's context leaves after the prompt; a larger value than that is refused)`,
    },
    temperature: { value: 't', default: String(DEFAULTS.temperature), description: 'divides the logits; 0 is greedy and ignores --top-k and --top-p' },
    'top-k': { value: 'k', default: String(DEFAULTS.topK), description: 'samples among the K most likely tokens; 0 = off' },
    'top-p': { value: 'p', default: String(DEFAULTS.topP), description: 'samples among the most likely tokens whose probability adds up to P, in (0, 1]; 1 = off' },
    'repetition-penalty': { value: 'r', default: String(DEFAULTS.repetitionPenalty), description: 'penalises tokens already in the sequence; 1 = off' },
    seed: { value: 's', default: String(DEFAULTS.seed), description: 'seed of the sampler: the same seed gives the same sampled text' },
    json: { description: 'print one JSON object instead of the text' },
  },
  examples: [
    { description: 'Greedy, 16 tokens, on the default model', command: 'npm run generate -- --model models/default --prompt "Hello, my name is" --max-new-tokens 16' },
    {
      description: 'Sampled and reproducible, as JSON',
      command: 'npm run generate -- --model models/default --prompt "Once upon a time" --temperature 0.8 --top-k 50 --seed 3 --json',
    },
  ],
});

interface GenerateArgs {
  readonly modelDir: string;
  readonly prompt: string;
  readonly generation: GenerationConfig;
  /** Whether --max-new-tokens was given (else the default, which fits itself to the context). */
  readonly maxNewTokensGiven: boolean;
  readonly json: boolean;
}

/**
 * Generates a continuation of a prompt with every stage of a compiled model in this process.
 * Prints the continuation, or with --json one object: token_ids (generated only), text,
 * prompt_token_ids, finish_reason. Returns the exit code: 0, 2 for bad arguments, 1 otherwise.
 */
export function runGenerateCli(argv: readonly string[], output: CliOutput): Promise<number> {
  return GENERATE_COMMAND.run(argv, output, async ({ values }) => {
    const args = parseGenerateArgs(values);
    const tokenizer = await TextTokenizer.load(args.modelDir);
    const promptIds = tokenizer.encode(args.prompt);
    if (promptIds.length === 0) throw new UsageError('--prompt: encodes to no tokens; give some text');
    // Checked against the manifest before any session loads.
    const generation = fitToContext(args, promptIds.length, (await readManifest(args.modelDir)).shape.contextLength);
    const pipeline = await InProcessPipeline.load(args.modelDir);
    const result = await pipeline.generate(promptIds, generation).finally(() => pipeline.close());
    const text = tokenizer.decode(result.tokenIds);
    if (args.json) {
      output.stdout(
        `${JSON.stringify({ token_ids: result.tokenIds, text, prompt_token_ids: promptIds, finish_reason: result.finishReason })}\n`,
      );
    } else {
      output.stdout(`${text}\n`);
    }
  });
}

/**
 * As the coordinator does: the default number of new tokens is lowered to what the context leaves
 * after the prompt; an explicit --max-new-tokens that does not fit, or a prompt that leaves no
 * room at all, is refused (exit 2) rather than silently cut short.
 */
function fitToContext(args: GenerateArgs, promptTokens: number, contextLength: number): GenerationConfig {
  const fit = fitNewTokens(promptTokens, args.generation.maxNewTokens, args.maxNewTokensGiven, contextLength);
  if (typeof fit !== 'number') throw new UsageError(`--${fit.field === 'prompt' ? 'prompt' : 'max-new-tokens'}: ${fit.problem}`);
  return { ...args.generation, maxNewTokens: fit };
}

function parseGenerateArgs(values: CliValues<typeof GENERATE_COMMAND.spec.options>): GenerateArgs {
  const { model: modelDir, prompt } = values;
  if (!existsSync(path.join(modelDir, 'manifest.json'))) {
    throw new UsageError(`--model: ${modelDir} is not a compiled model folder (no manifest.json)`);
  }

  const fields: Partial<Record<keyof GenerationConfig, number>> = {};
  for (const [flag, field] of Object.entries(NUMERIC_FLAGS)) {
    const text = values[flag as keyof typeof NUMERIC_FLAGS] ?? String(DEFAULTS[field]);
    const value = Number(text);
    if (text.trim() === '' || !Number.isFinite(value)) throw new UsageError(`--${flag}: expected a number, got '${text}'`);
    fields[field] = value;
  }
  let generation: GenerationConfig;
  try {
    generation = parseGenerationConfig(fields);
  } catch (error) {
    throw new UsageError(renameField(ServiceError.from(error).message));
  }
  return { modelDir, prompt, generation, maxNewTokensGiven: values['max-new-tokens'] !== undefined, json: values.json };
}

/** Config errors name the config field ("topK: …"); a CLI user typed the flag ("--top-k: …"). */
function renameField(message: string): string {
  for (const [flag, field] of Object.entries(NUMERIC_FLAGS)) {
    if (message.startsWith(`${field}:`)) return `--${flag}${message.slice(field.length)}`;
  }
  return message;
}

if (require.main === module) exitWhenDone(runGenerateCli(process.argv.slice(2), PROCESS_OUTPUT));
