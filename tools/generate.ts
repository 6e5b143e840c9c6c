import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { ServiceError, UsageError } from '../shared/errors';
import { InProcessPipeline } from '../services/node/in-process-pipeline';
import { parseGenerationConfig, type GenerationConfig } from '../shared/generation-config';
import { TextTokenizer } from '../services/tokenizer/text-tokenizer';
import { exitWhenDone, parseCliArgs, PROCESS_OUTPUT, runCliTool, type CliOutput } from './cli';

const USAGE =
  'usage: generate --model <dir> --prompt "..." [--max-new-tokens N] [--temperature T] [--top-k K] ' +
  '[--top-p P] [--repetition-penalty R] [--seed S] [--json]';

/** Numeric flags and the generation field each one sets. */
const NUMERIC_FLAGS = {
  'max-new-tokens': 'maxNewTokens',
  temperature: 'temperature',
  'top-k': 'topK',
  'top-p': 'topP',
  'repetition-penalty': 'repetitionPenalty',
  seed: 'seed',
} as const satisfies Record<string, keyof GenerationConfig>;

interface GenerateArgs {
  readonly modelDir: string;
  readonly prompt: string;
  readonly generation: GenerationConfig;
  readonly json: boolean;
}

/**
 * Generates a continuation of a prompt with every stage of a compiled model in this process.
 * Prints the continuation, or with --json one object: token_ids (generated only), text,
 * prompt_token_ids, finish_reason. Returns the exit code: 0, 2 for bad arguments, 1 otherwise.
 */
export function runGenerateCli(argv: readonly string[], output: CliOutput): Promise<number> {
  return runCliTool('generate', output, async () => {
    const args = parseGenerateArgs(argv);
    const tokenizer = await TextTokenizer.load(args.modelDir);
    const promptIds = tokenizer.encode(args.prompt);
    if (promptIds.length === 0) throw new UsageError('--prompt: encodes to no tokens; give some text');
    const pipeline = await InProcessPipeline.load(args.modelDir);
    const result = await pipeline.generate(promptIds, args.generation).finally(() => pipeline.close());
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

function parseGenerateArgs(argv: readonly string[]): GenerateArgs {
  const { values } = parseCliArgs(
    argv,
    {
      options: {
        model: { type: 'string' },
        prompt: { type: 'string' },
        json: { type: 'boolean', default: false },
        'max-new-tokens': { type: 'string' },
        temperature: { type: 'string' },
        'top-k': { type: 'string' },
        'top-p': { type: 'string' },
        'repetition-penalty': { type: 'string' },
        seed: { type: 'string' },
      },
    },
    USAGE,
  );
  const modelDir = values.model;
  if (typeof modelDir !== 'string') throw new UsageError(`--model is required; ${USAGE}`);
  if (!existsSync(path.join(modelDir, 'manifest.json'))) {
    throw new UsageError(`--model: ${modelDir} is not a compiled model folder (no manifest.json)`);
  }
  const prompt = values.prompt;
  if (typeof prompt !== 'string') throw new UsageError(`--prompt is required; ${USAGE}`);

  const fields: Partial<Record<keyof GenerationConfig, number>> = {};
  for (const [flag, field] of Object.entries(NUMERIC_FLAGS)) {
    const text = values[flag as keyof typeof NUMERIC_FLAGS];
    if (typeof text !== 'string') continue;
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
  return { modelDir, prompt, generation, json: values.json === true };
}

/** Config errors name the config field ("topK: …"); a CLI user typed the flag ("--top-k: …"). */
function renameField(message: string): string {
  for (const [flag, field] of Object.entries(NUMERIC_FLAGS)) {
    if (message.startsWith(`${field}:`)) return `--${flag}${message.slice(field.length)}`;
  }
  return message;
}

if (require.main === module) exitWhenDone(runGenerateCli(process.argv.slice(2), PROCESS_OUTPUT));
