import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { UsageError } from '../shared/errors';
import { MANIFEST_FILE_NAME, readManifest, verifyStageFiles, type ModelManifest } from '../shared/model/manifest';
import { CliCommand, exitWhenDone, type CliValues } from './cli/cli-command';
import { PROCESS_OUTPUT, type CliOutput } from './cli/cli-output';
import { CHECKPOINT_FOLDER, INIT_DEFAULTS, initDefaultModel, initStepCount, type InitDefaultModelOptions, type InitStep } from './init/init-default-model';
import { MAX_SEED } from './init/random-gpt2';
import { checkOutFlag } from './output-folder';
import { isPresetName, MODEL_PRESETS } from './init/model-presets';

const DEFAULT_OUT = path.join('models', 'default');

export const MODEL_INIT_COMMAND = new CliCommand({
  name: 'model-init',
  description:
    'Writes an offline model: a seeded, randomly initialised checkpoint of a preset shape (GPT-2 or Llama family) with the real GPT-2 ' +
    'tokenizer, saved as a Hugging Face checkpoint in <out>/checkpoint/ and compiled into pipeline stages (balanced split).',
  options: {
    preset: {
      value: 'name',
      default: INIT_DEFAULTS.preset,
      description: `the model's shape: ${Object.entries(MODEL_PRESETS)
        .map(([name, preset]) => `${name} (${preset.description})`)
        .join('; ')}`,
    },
    out: { value: 'dir', default: DEFAULT_OUT, description: 'the model folder to write: manifest.json, one ONNX file per stage, checkpoint/' },
    seed: { value: 'n', default: String(INIT_DEFAULTS.seed), description: `seed of the random weights, 0 to ${MAX_SEED}: the same seed writes the same weights` },
    stages: { value: 'n', default: String(INIT_DEFAULTS.stages), description: "pipeline stages, from 1 to the preset's layer count" },
    ops: {
      value: 'plain|fused',
      default: INIT_DEFAULTS.ops,
      description: 'fused: onnxruntime contrib ops (attention with past, fused layer norm, FastGelu); plain: standard ONNX ops, the reference',
    },
    force: { description: 'replace an --out folder that is not empty' },
    'if-missing': {
      description: 'keep an --out that already holds a complete model (its manifest parses and every stage file matches it), rebuild a broken one',
    },
  },
  progress: true,
  examples: [
    { description: 'The default model (GPT-2 small shape, 3 stages) into models/default', command: 'npm run model:init' },
    { description: 'A tiny 2-stage model for tests, plain ONNX ops', command: 'npm run model:init -- --preset tiny --out models/tiny --stages 2 --ops plain' },
    { description: 'A Llama-family model of SmolLM2-135M\'s shape', command: 'npm run model:init -- --preset llama-small --out models/llama-small' },
    { description: 'In a container that runs it on every start: build only the first time', command: 'node dist/tools/model-init.js --out /models/default --if-missing' },
  ],
});

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
  return MODEL_INIT_COMMAND.run(argv, output, async ({ values, progress }) => {
    const args = parseModelInitArgs(values);
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
    await checkOutFlag(path.resolve(args.out), force);
    const steps = progress.steps('build', initStepCount(args.stages));
    const manifest = await initDefaultModel({ ...args, force, onStep: (step) => steps.step(describeStep(step)) });
    steps.finish();
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    output.stdout(describe(manifest, args, seconds));
  });
}

function parseModelInitArgs(values: CliValues<typeof MODEL_INIT_COMMAND.spec.options>): ModelInitArgs & { readonly stages: number } {
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

function describeStep(step: InitStep): string {
  if (step.kind === 'weights') return 'random weights drawn';
  if (step.kind === 'checkpoint') return 'checkpoint written';
  return `stage ${step.index} of ${step.count} compiled`;
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
