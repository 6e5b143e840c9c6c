import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { UsageError } from '../shared/errors';
import type { ModelManifest } from '../shared/model/manifest';
import { CHECKPOINT_FOLDER, INIT_DEFAULTS, initDefaultModel, type InitDefaultModelOptions } from './init/init-default-model';
import { GPT2_PRESETS, MAX_SEED } from './init/random-gpt2';
import type { CliOutput } from './model-compile';

const DEFAULT_OUT = path.join('models', 'default');
const USAGE = 'usage: model-init [--preset small|tiny] [--out dir] [--seed N] [--stages N] [--ops plain|fused] [--force]';

/**
 * Writes the offline default model (a seeded random GPT-2 with the real tokenizer, compiled into
 * stages) and prints what it wrote and how long it took. Returns the exit code: 0, 2 for bad
 * arguments, 1 when building fails; on failure `--out` is left as it was.
 */
export async function runModelInitCli(argv: readonly string[], output: CliOutput): Promise<number> {
  const started = process.hrtime.bigint();
  try {
    const options = parseModelInitArgs(argv);
    const manifest = await initDefaultModel(options);
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    output.stdout(describe(manifest, options, seconds));
    return 0;
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    output.stderr(`model-init: ${message.split('\n')[0]}\n`);
    return error instanceof UsageError ? 2 : 1;
  }
}

export function parseModelInitArgs(argv: readonly string[]): InitDefaultModelOptions {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        preset: { type: 'string', default: INIT_DEFAULTS.preset },
        out: { type: 'string', default: DEFAULT_OUT },
        seed: { type: 'string', default: String(INIT_DEFAULTS.seed) },
        stages: { type: 'string', default: String(INIT_DEFAULTS.stages) },
        ops: { type: 'string', default: INIT_DEFAULTS.ops },
        force: { type: 'boolean', default: false },
      },
    }));
  } catch (error) {
    throw new UsageError(`${(error as Error).message.split('\n')[0]}; ${USAGE}`);
  }
  const { preset, out, seed, stages, ops, force } = values;
  if (preset !== 'small' && preset !== 'tiny') throw new UsageError(`--preset: expected small or tiny, got '${preset}'`);
  if (out.trim() === '') throw new UsageError('--out: expected a folder path');
  if (ops !== 'plain' && ops !== 'fused') throw new UsageError(`--ops: expected plain or fused, got '${ops}'`);
  const maxStages = GPT2_PRESETS[preset].nLayer;
  return {
    preset,
    out,
    seed: parseInteger('--seed', seed, 0, MAX_SEED),
    stages: parseInteger('--stages', stages, 1, maxStages),
    ops,
    force,
  };
}

function parseInteger(flag: string, text: string, min: number, max: number): number {
  const value = Number(text);
  if (!/^\d+$/.test(text.trim()) || value < min || value > max) {
    throw new UsageError(`${flag}: expected an integer from ${min} to ${max}, got '${text}'`);
  }
  return value;
}

function describe(manifest: ModelManifest, options: InitDefaultModelOptions, seconds: number): string {
  const out = path.resolve(options.out);
  const { config } = manifest;
  const lines = [
    `wrote ${manifest.modelName} (${options.preset}: ${config.nLayer} layers, ${config.nEmbd} wide, seed ${options.seed}) ` +
      `into ${out} in ${seconds.toFixed(1)} s`,
    `  ${CHECKPOINT_FOLDER}/  Hugging Face checkpoint (config.json, model.safetensors, tokenizer files)`,
    `  manifest.json, ${manifest.ops} ops, ${manifest.stages.length} stage(s):`,
  ];
  for (const stage of manifest.stages) {
    const bytes = stage.files.reduce((sum, file) => sum + file.bytes, 0);
    lines.push(
      `    stage ${stage.index}: layers ${stage.layerStart}-${stage.layerEnd}  ${stage.files.map((f) => f.path).join(', ')}  ` +
        `(${(bytes / 1024 ** 2).toFixed(1)} MiB)`,
    );
  }
  return `${lines.join('\n')}\n`;
}

if (require.main === module) {
  void runModelInitCli(process.argv.slice(2), {
    stdout: (text) => process.stdout.write(text),
    stderr: (text) => process.stderr.write(text),
  }).then((code) => {
    process.exitCode = code;
  });
}
