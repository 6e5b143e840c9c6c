import { stat } from 'node:fs/promises';
import * as path from 'node:path';
import { UsageError } from '../shared/errors';
import type { ModelManifest } from '../shared/model/manifest';
import { checkCompileOptions, compileModel, type CompileModelOptions } from './compiler/compile-model';
import { parseSplitSpec, type SplitSpec } from './compiler/split-plan';
import { exitWhenDone, parseCliArgs, PROCESS_OUTPUT, runCliTool, type CliOutput } from './cli';

const USAGE =
  'usage: model-compile --from <hf-dir> --out <dir> --stages N [--split even|balanced|0-4,4-8,8-12] ' +
  '[--ops plain|fused] [--force]';

/**
 * Compiles a Hugging Face GPT-2 folder into N ONNX stage graphs plus manifest.json, then prints
 * the plan (layer ranges, files, sizes) and the time taken. Returns the exit code: 0, 2 for bad
 * arguments, 1 when compiling fails; in both failure cases `--out` is left untouched.
 */
export function runModelCompileCli(argv: readonly string[], output: CliOutput): Promise<number> {
  const started = process.hrtime.bigint();
  return runCliTool('model-compile', output, async () => {
    const options = await parseModelCompileArgs(argv);
    const manifest = await compileModel(options);
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    output.stdout(describeCompiledModel(manifest, path.resolve(options.out), splitName(options.split), seconds));
  });
}

export async function parseModelCompileArgs(argv: readonly string[]): Promise<CompileModelOptions> {
  const { values } = parseCliArgs(
    argv,
    {
      options: {
        from: { type: 'string' },
        out: { type: 'string' },
        stages: { type: 'string' },
        split: { type: 'string', default: 'balanced' },
        ops: { type: 'string', default: 'fused' },
        force: { type: 'boolean', default: false },
      },
    },
    USAGE,
  );
  const { from, out, stages: stagesText, split: splitText, ops, force } = values;
  if (from === undefined) throw new UsageError(`--from is required; ${USAGE}`);
  if (out === undefined) throw new UsageError(`--out is required; ${USAGE}`);
  if (stagesText === undefined) throw new UsageError(`--stages is required; ${USAGE}`);
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

function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 ** 2) return `${(bytes / 1024).toFixed(1)} KiB`;
  if (bytes < 1024 ** 3) return `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
  return `${(bytes / 1024 ** 3).toFixed(2)} GiB`;
}

if (require.main === module) exitWhenDone(runModelCompileCli(process.argv.slice(2), PROCESS_OUTPUT));
