import { stat } from 'node:fs/promises';
import * as path from 'node:path';
import { UsageError } from '../shared/errors';
import { ATTENTION_KERNELS, WEIGHT_FORMATS, type AttentionKernel, type ModelManifest, type WeightFormat, type WeightFormatName } from '../shared/model/manifest';
import { BLOCK_SIZES, isValidBlockSize } from './compiler/block-quantize';
import { checkCompileOptions, compileModel, type CompileModelOptions } from './compiler/compile-model';
import { parseSplitSpec, type SplitSpec } from './compiler/split-plan';
import { DEFAULT_BLOCK_SIZE, WEIGHT_KINDS, type WeightKind } from './compiler/weight-quantization';
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
    attention: {
      value: ATTENTION_KERNELS.join('|'),
      description:
        'fused only: the attention kernel (default split under multi-head attention, gqa under grouped-query). split: new and past keys scored apart, the past never copied; ' +
        "gqa: onnxruntime's GroupQueryAttention, which copies each row's past on every step",
    },
    weights: { value: 'fp32|int8|int4', default: 'fp32', description: 'weight format: int8 and int4 store block-quantized matmul and embedding weights (MatMulNBits, GatherBlockQuantized)' },
    'block-size': { value: 'n', description: `int8/int4 only: weights per quantization block, one of ${BLOCK_SIZES.join(', ')} (default ${DEFAULT_BLOCK_SIZE})` },
    'keep-fp32': { value: 'kinds', description: `int8/int4 only: tensor kinds left in fp32, a comma list of ${WEIGHT_KINDS.join(', ')}` },
    name: { value: 'name', description: "the model's name in its manifest, metrics and logs (default: the --from folder's name; for a model folder's checkpoint/, that model's name)" },
    force: { description: 'replace an --out folder that is not empty' },
  },
  progress: true,
  examples: [
    { description: 'GPT-2 pulled from the Hub, in 3 balanced stages', command: 'npm run model:compile -- --from models/hf/openai-community/gpt2 --out models/gpt2 --stages 3' },
    { description: 'The monolithic 1-stage reference with plain ops', command: 'npm run model:compile -- --from models/default/checkpoint --out models/mono --stages 1 --ops plain' },
    { description: 'Explicit layer ranges for a 12-layer model', command: 'npm run model:compile -- --from models/default/checkpoint --out models/split --stages 2 --split 0-8,8-12 --force' },
    { description: "onnxruntime's GroupQueryAttention instead of the split kernel", command: 'npm run model:compile -- --from models/default/checkpoint --out models/gqa --stages 3 --attention gqa' },
    { description: 'int4 weights, the LM head kept in fp32', command: 'npm run model:compile -- --from models/default/checkpoint --out models/int4 --stages 3 --weights int4 --keep-fp32 lm_head' },
  ],
});

/**
 * Compiles a Hugging Face checkpoint folder (GPT-2 or Llama family) into N ONNX stage graphs plus manifest.json, then prints
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
  const weights = parseWeightFlags(values.weights, values['block-size'], values['keep-fp32']);
  const stages = Number(stagesText);
  if (!/^\d+$/.test(stagesText.trim()) || stages < 1) {
    throw new UsageError(`--stages: expected a positive integer, got '${stagesText}'`);
  }
  if (ops !== 'plain' && ops !== 'fused') throw new UsageError(`--ops: expected plain or fused, got '${ops}'`);
  const attention = parseAttentionFlag(values.attention, ops);
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
  const options: CompileModelOptions = { from, out, stages, split, ops, ...(attention === undefined ? {} : { attention }), weights, force, ...(values.name === undefined ? {} : { name: values.name }) };
  try {
    await checkCompileOptions(options);
  } catch (error) {
    throw new UsageError(asFlag((error as Error).message));
  }
  return options;
}

/** `--attention split|gqa`, for fused graphs only. */
function parseAttentionFlag(text: string | undefined, ops: 'plain' | 'fused'): AttentionKernel | undefined {
  if (text === undefined) return undefined;
  if (!ATTENTION_KERNELS.includes(text as AttentionKernel)) throw new UsageError(`--attention: expected ${ATTENTION_KERNELS.join(' or ')}, got '${text}'`);
  if (ops !== 'fused') throw new UsageError('--attention: applies only to --ops fused (plain graphs attend in standard ops)');
  return text as AttentionKernel;
}

/**
 * `--weights fp32|int8|int4` (default fp32); for int8 / int4 only, `--block-size N` (16, 32, 64,
 * 128 or 256, default 32) and `--keep-fp32 kind,...` (kinds of WEIGHT_KINDS left unquantized).
 */
function parseWeightFlags(formatText: string, blockSizeText: string | undefined, keepText: string | undefined): WeightFormat {
  if (!WEIGHT_FORMATS.includes(formatText as WeightFormatName)) {
    throw new UsageError(`--weights: expected ${WEIGHT_FORMATS.join(', ')}, got '${formatText}'`);
  }
  const format = formatText as WeightFormatName;
  if (format === 'fp32') {
    if (blockSizeText !== undefined) throw new UsageError('--block-size: applies only to --weights int8 or int4');
    if (keepText !== undefined) throw new UsageError('--keep-fp32: applies only to --weights int8 or int4');
    return { format };
  }
  let blockSize = DEFAULT_BLOCK_SIZE;
  if (blockSizeText !== undefined) {
    blockSize = /^\d+$/.test(blockSizeText.trim()) ? Number(blockSizeText) : Number.NaN;
    if (!isValidBlockSize(blockSize)) {
      throw new UsageError(`--block-size: expected a power of two from 16 to 256 (${BLOCK_SIZES.join(', ')}: what MatMulNBits takes), got '${blockSizeText}'`);
    }
  }
  const keptFp32: WeightKind[] = [];
  for (const kind of keepText === undefined ? [] : keepText.split(',').map((k) => k.trim())) {
    if (!(WEIGHT_KINDS as readonly string[]).includes(kind)) {
      throw new UsageError(`--keep-fp32: unknown tensor kind '${kind}'; expected a comma list of ${WEIGHT_KINDS.join(', ')}`);
    }
    if (!keptFp32.includes(kind as WeightKind)) keptFp32.push(kind as WeightKind);
  }
  return { format, blockSize, keptFp32 };
}

/** Option errors name the option ("split: …"); a CLI user typed the flag ("--split: …"). */
function asFlag(message: string): string {
  const weightField = /^weights\.(format|blockSize|keptFp32): /.exec(message);
  if (weightField !== null) {
    const flag = { format: 'weights', blockSize: 'block-size', keptFp32: 'keep-fp32' }[weightField[1] as 'format' | 'blockSize' | 'keptFp32'];
    return `--${flag}: ${message.slice(weightField[0].length)}`;
  }
  return /^(from|out|split|stages|name): /.test(message) ? `--${message}` : message;
}

function splitName(split: SplitSpec): string {
  return split.kind === 'explicit' ? split.ranges.map(([a, b]) => `${a}-${b}`).join(',') : split.kind;
}

function describeCompiledModel(manifest: ModelManifest, out: string, split: string, seconds: number): string {
  const lines = [
    `compiled ${manifest.modelName} into ${out}: ${manifest.stages.length} stage(s), split ${split}, ${manifest.ops} ops${manifest.attention === undefined ? '' : ` (${manifest.attention} attention)`}, ` +
      describeWeights(manifest.stages[0].weights) +
      `in ${seconds.toFixed(1)} s`,
  ];
  for (const stage of manifest.stages) {
    const parts = [stage.isFirst ? 'embeddings' : '', stage.isLast ? 'final norm + lm_head' : ''].filter((p) => p !== '');
    const extras = parts.length > 0 ? ` + ${parts.join(' + ')}` : '';
    lines.push(`  stage ${stage.index}: layers ${stage.layerStart}-${stage.layerEnd}${extras}`);
    for (const file of stage.files) lines.push(`    ${file.path.padEnd(22)} ${formatBytes(file.bytes)}`);
  }
  for (const file of manifest.tokenizerFiles) lines.push(`  ${file.path.padEnd(24)} ${formatBytes(file.bytes)}`);
  return `${lines.join('\n')}\n`;
}

/** '' for fp32 (the line reads as before quantization existed), else e.g. 'int4 weights (blocks of 32, lm_head kept fp32), '. */
function describeWeights(weights: WeightFormat): string {
  if (weights.format === 'fp32') return '';
  const kept = weights.keptFp32 ?? [];
  return `${weights.format} weights (blocks of ${weights.blockSize ?? DEFAULT_BLOCK_SIZE}${kept.length > 0 ? `, ${kept.join(' + ')} kept fp32` : ''}), `;
}

if (require.main === module) exitWhenDone(runModelCompileCli(process.argv.slice(2), PROCESS_OUTPUT));
