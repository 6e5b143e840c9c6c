import { stat } from 'node:fs/promises';
import * as path from 'node:path';
import { UsageError } from '../shared/errors';
import type { ModelManifest } from '../shared/model/manifest';
import { checkCompileOptions, compileModel, type CompileModelOptions } from './compiler/compile-model';
import { parseSplitSpec, type SplitSpec } from './compiler/split-plan';
import { CliCommand, exitWhenDone, type CliValues } from './cli/cli-command';
import { PROCESS_OUTPUT, type CliOutput } from './cli/cli-output';
import { formatBytes } from './cli/format-bytes';

export const MODEL_COMPILE_COMMAND = new CliCommand({
  name: 'model-compile',
  description:
    'Compiles a Hugging Face checkpoint folder (config.json, safetensors weights, tokenizer files) into one ONNX graph ' +
    "per pipeline stage plus manifest.json, written straight from the weights; --out is written whole or not at all.",
  options: {
    from: { value: 'hf-dir', required: true, description: 'the checkpoint folder, e.g. one written by model:pull' },
    out: { value: 'dir', required: true, description: 'the compiled model folder to write' },
    stages: { value: 'n', required: true, description: 'number of pipeline stages, at most the number of layers' },
    split: {
      value: 'even|balanced|ranges',
      default: 'balanced',
      description:
        'how layers are shared out: even (equal layer counts), balanced (equal cost, counting embeddings and lm_head), ' +
        'or explicit layer ranges like 0-4,4-8,8-12 (one per stage, covering every layer)',
    },
    ops: {
      value: 'plain|fused',
      default: 'fused',
      description: 'fused: onnxruntime contrib ops (attention with past, fused layer norm, FastGelu); plain: standard ONNX ops, the reference',
    },
    force: { description: 'replace an --out folder that is not empty' },
  },
  progress: true,
  examples: [
    { description: 'GPT-2 pulled from the Hub, in 3 balanced stages', command: 'npm run model:compile -- --from models/hf/openai-community/gpt2 --out models/gpt2 --stages 3' },
    { description: 'The monolithic 1-stage reference with plain ops', command: 'npm run model:compile -- --from models/default/checkpoint --out models/mono --stages 1 --ops plain' },
    { description: 'Explicit layer ranges for a 12-layer model', command: 'npm run model:compile -- --from models/default/checkpoint --out models/split --stages 2 --split 0-8,8-12 --force' },
  ],
});

/**
 * Compiles a Hugging Face GPT-2 folder into N ONNX stage graphs plus manifest.json, then prints
 * the plan (layer ranges, files, sizes) and the time taken. Returns the exit code: 0, 2 for bad
 * arguments, 1 when compiling fails; in both failure cases `--out` is left untouched.
 */
export function runModelCompileCli(argv: readonly string[], output: CliOutput): Promise<number> {
  const started = process.hrtime.bigint();
  return MODEL_COMPILE_COMMAND.run(argv, output, async ({ values, progress }) => {
    const options = await parseModelCompileArgs(values);
    const stages = progress.steps('compile', options.stages);
    const manifest = await compileModel({ ...options, onStage: (index, count) => stages.step(`stage ${index} of ${count} written`) });
    stages.finish();
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    output.stdout(describeCompiledModel(manifest, path.resolve(options.out), splitName(options.split), seconds));
  });
}

async function parseModelCompileArgs(values: CliValues<typeof MODEL_COMPILE_COMMAND.spec.options>): Promise<CompileModelOptions> {
  const { from, out, stages: stagesText, split: splitText, ops, force } = values;
  const stages = Number(stagesText);
  if (!/^\d+$/.test(stagesText.trim()) || stages < 1) {
    throw new UsageError(`--stages: expected a positive integer, got '${stagesText}'`);
  }
  if (ops !== 'plain' && ops !== 'fused') throw new UsageError(`--ops: expected plain or fused, got '${ops}'`);
  let split: SplitSpec;
  try {
    split = parseSplitSpec(splitText);
  } catch (error) {
    throw new UsageError(asFlag((error as Error).message));
  }
  const isFolder = await stat(from).then(
    (s) => s.isDirectory(),
    () => false,
  );
  if (!isFolder) throw new UsageError(`--from: ${from} is not a folder`);
  if (path.resolve(from) === path.resolve(out)) throw new UsageError('--out: must differ from --from');
  const options: CompileModelOptions = { from, out, stages, split, ops, force };
  try {
    await checkCompileOptions(options);
  } catch (error) {
    throw new UsageError(asFlag((error as Error).message));
  }
  return options;
}

/** Option errors name the option ("split: …"); a CLI user typed the flag ("--split: …"). */
function asFlag(message: string): string {
  return /^(from|out|split|stages): /.test(message) ? `--${message}` : message;
}

function splitName(split: SplitSpec): string {
  return split.kind === 'explicit' ? split.ranges.map(([a, b]) => `${a}-${b}`).join(',') : split.kind;
}

function describeCompiledModel(manifest: ModelManifest, out: string, split: string, seconds: number): string {
  const lines = [
    `compiled ${manifest.modelName} into ${out}: ${manifest.stages.length} stage(s), split ${split}, ${manifest.ops} ops, ` +
      `in ${seconds.toFixed(1)} s`,
  ];
  for (const stage of manifest.stages) {
    const parts = [stage.isFirst ? 'embeddings' : '', stage.isLast ? 'ln_f + lm_head' : ''].filter((p) => p !== '');
    const extras = parts.length > 0 ? ` + ${parts.join(' + ')}` : '';
    lines.push(`  stage ${stage.index}: layers ${stage.layerStart}-${stage.layerEnd}${extras}`);
    for (const file of stage.files) lines.push(`    ${file.path.padEnd(22)} ${formatBytes(file.bytes)}`);
  }
  for (const file of manifest.tokenizerFiles) lines.push(`  ${file.path.padEnd(24)} ${formatBytes(file.bytes)}`);
  return `${lines.join('\n')}\n`;
}

if (require.main === module) exitWhenDone(runModelCompileCli(process.argv.slice(2), PROCESS_OUTPUT));
