import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { UsageError } from '../shared/errors';
import { MANIFEST_FILE_NAME, readManifest, verifyStageFiles, type ModelManifest } from '../shared/model/manifest';
import { exitWhenDone, parseCliArgs, PROCESS_OUTPUT, runCliTool, type CliOutput } from './cli';
import { CHECKPOINT_FOLDER, INIT_DEFAULTS, initDefaultModel, type InitDefaultModelOptions } from './init/init-default-model';
import { MAX_SEED } from './init/random-gpt2';
import { isPresetName, MODEL_PRESETS } from './init/model-presets';

const DEFAULT_OUT = path.join('models', 'default');
const USAGE =
  'usage: model-init [--preset small|tiny|llama-small|llama-tiny] [--out dir] [--seed N] [--stages N] [--ops plain|fused] [--force] [--if-missing]';

export interface ModelInitArgs extends InitDefaultModelOptions {
  /**
   * Keep an `out` that already holds a complete compiled model (any model: the check is that its
   * manifest parses and every stage file matches it); replace one whose manifest or stage files
   * are broken. Containers run model-init on every start, and only the first start should build.
   */
  readonly ifMissing: boolean;
}

/**
 * Writes the offline default model (a seeded random GPT-2 with the real tokenizer, compiled into
 * stages) and prints what it wrote and how long it took. Returns the exit code: 0, 2 for bad
 * arguments, 1 when building fails; on failure `--out` is left as it was.
 */
export function runModelInitCli(argv: readonly string[], output: CliOutput): Promise<number> {
  const started = process.hrtime.bigint();
  return runCliTool('model-init', output, async () => {
    const args = parseModelInitArgs(argv);
    let force = args.force === true;
    if (args.ifMissing && existsSync(path.join(args.out, MANIFEST_FILE_NAME))) {
      const existing = await readVerifiedManifest(args.out).then(
        (manifest) => ({ manifest }),
        (error: unknown) => ({ problem: (error as Error).message.split('\n')[0] }),
      );
      if ('manifest' in existing) {
        output.stdout(`model-init: ${args.out} already holds ${existing.manifest.modelName}; nothing to do\n`);
        return;
      }
      output.stdout(`model-init: ${args.out} holds a broken model (${existing.problem}); rebuilding it\n`);
      force = true;
    }
    const manifest = await initDefaultModel({ ...args, force });
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    output.stdout(describe(manifest, args, seconds));
  });
}

export function parseModelInitArgs(argv: readonly string[]): ModelInitArgs {
  const { values } = parseCliArgs(
    argv,
    {
      options: {
        preset: { type: 'string', default: INIT_DEFAULTS.preset },
        out: { type: 'string', default: DEFAULT_OUT },
        seed: { type: 'string', default: String(INIT_DEFAULTS.seed) },
        stages: { type: 'string', default: String(INIT_DEFAULTS.stages) },
        ops: { type: 'string', default: INIT_DEFAULTS.ops },
        force: { type: 'boolean', default: false },
        'if-missing': { type: 'boolean', default: false },
      },
    },
    USAGE,
  );
  const { preset, out, seed, stages, ops, force } = values;
  if (!isPresetName(preset)) throw new UsageError(`--preset: expected one of ${Object.keys(MODEL_PRESETS).join(', ')}, got '${preset}'`);
  if (out.trim() === '') throw new UsageError('--out: expected a folder path');
  if (ops !== 'plain' && ops !== 'fused') throw new UsageError(`--ops: expected plain or fused, got '${ops}'`);
  const maxStages = MODEL_PRESETS[preset].layers;
  return {
    preset,
    out,
    seed: parseInteger('--seed', seed, 0, MAX_SEED),
    stages: parseInteger('--stages', stages, 1, maxStages),
    ops,
    force,
    ifMissing: values['if-missing'],
  };
}

/** The manifest of the model folder `dir`, once every stage file is checked against it. */
async function readVerifiedManifest(dir: string): Promise<ModelManifest> {
  const manifest = await readManifest(dir);
  for (const stage of manifest.stages) await verifyStageFiles(dir, stage);
  return manifest;
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
  const { shape } = manifest;
  const lines = [
    `wrote ${manifest.modelName} (${options.preset}: ${shape.layers} layers, ${shape.hiddenSize} wide, seed ${options.seed}) ` +
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

if (require.main === module) exitWhenDone(runModelInitCli(process.argv.slice(2), PROCESS_OUTPUT));
