import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { UsageError } from '../shared/errors';
import { readManifest, type ModelManifest } from '../shared/model/manifest';
import { InProcessPipeline } from '../services/node/in-process-pipeline';
import { TextTokenizer } from '../services/tokenizer/text-tokenizer';
import { CliCommand, exitWhenDone, type CliValues } from './cli/cli-command';
import { PROCESS_OUTPUT, type CliOutput } from './cli/cli-output';
import { EVAL_PROMPTS, EVAL_TOKENS_PER_PROMPT, measureAgreement, type AgreementReport, type PromptAgreement } from './eval/model-agreement';

export const EVAL_COMMAND = new CliCommand({
  name: 'eval',
  description:
    'Measures how far a compiled model (typically quantized) is from a reference compile of the same checkpoint (typically fp32): ' +
    'teacher-forced over fixed texts, mean KL(reference || model), top-1 agreement and the largest logit error.',
  options: {
    model: { value: 'dir', required: true, description: 'the compiled model folder to judge' },
    reference: { value: 'dir', required: true, description: 'a compiled folder of the same checkpoint to judge it against' },
    json: { description: 'print the results as one JSON object on the last line' },
  },
  examples: [
    { description: 'int4 against fp32', command: 'npm run eval -- --model models/int4 --reference models/default' },
    { description: 'As JSON', command: 'npm run eval -- --model models/int8 --reference models/default --json' },
  ],
});

interface EvalArgs {
  readonly modelDir: string;
  readonly referenceDir: string;
  readonly json: boolean;
}

/**
 * Measures how far a compiled model (typically quantized) is from a reference compile of the same
 * checkpoint (typically fp32): teacher-forced over EVAL_PROMPTS, the first EVAL_TOKENS_PER_PROMPT
 * tokens of each, it reports mean KL(reference ‖ model), top-1 agreement and the largest logit
 * error, as a table or, with --json, as one JSON object on the last line. Returns the exit code:
 * 0, 2 for bad arguments, 1 otherwise.
 */
export function runEvalCli(argv: readonly string[], output: CliOutput): Promise<number> {
  return EVAL_COMMAND.run(argv, output, async ({ values }) => {
    const args = parseEvalArgs(values);
    const [modelManifest, referenceManifest] = [await readManifest(args.modelDir), await readManifest(args.referenceDir)];
    checkSameTokenizer(modelManifest, referenceManifest);
    const tokenizer = await TextTokenizer.load(args.modelDir);
    const sequences = EVAL_PROMPTS.map((text) => tokenizer.encode(text).slice(0, EVAL_TOKENS_PER_PROMPT));
    const model = await InProcessPipeline.load(args.modelDir);
    let report: AgreementReport;
    try {
      const reference = await InProcessPipeline.load(args.referenceDir);
      try {
        report = await measureAgreement(model, reference, sequences);
      } finally {
        await reference.close();
      }
    } finally {
      await model.close();
    }
    if (args.json) {
      const numbers = (r: PromptAgreement) => ({ positions: r.positions, mean_kl: r.meanKl, top1_agreement: r.top1Agreement, max_logit_error: r.maxLogitError });
      output.stdout(
        `${JSON.stringify({
          model: path.resolve(args.modelDir),
          reference: path.resolve(args.referenceDir),
          model_weights: modelManifest.stages.map((s) => s.weights),
          reference_weights: referenceManifest.stages.map((s) => s.weights),
          ...numbers(report),
          prompts: report.prompts.map(numbers),
        })}\n`,
      );
    } else {
      output.stdout(describeReport(report, args, modelManifest, referenceManifest));
    }
  });
}

function parseEvalArgs(values: CliValues<typeof EVAL_COMMAND.spec.options>): EvalArgs {
  const folder = (flag: 'model' | 'reference'): string => {
    const dir = values[flag];
    if (!existsSync(path.join(dir, 'manifest.json'))) throw new UsageError(`--${flag}: ${dir} is not a compiled model folder (no manifest.json)`);
    return dir;
  };
  return { modelDir: folder('model'), referenceDir: folder('reference'), json: values.json };
}

/** Token ids only compare when both folders carry the same tokenizer. */
function checkSameTokenizer(model: ModelManifest, reference: ModelManifest): void {
  const digests = (m: ModelManifest) => m.tokenizerFiles.map((f) => `${f.path}:${f.sha256}`).sort().join(',');
  if (digests(model) !== digests(reference)) throw new UsageError("--reference: its tokenizer files differ from --model's; compare compiles of one checkpoint");
  if (model.shape.vocabSize !== reference.shape.vocabSize) {
    throw new UsageError(`--reference: a vocabulary of ${reference.shape.vocabSize} tokens, --model has ${model.shape.vocabSize}`);
  }
}

function describeWeights(manifest: ModelManifest): string {
  const { weights } = manifest.stages[0];
  const details = weights.format === 'fp32' ? '' : ` blocks of ${weights.blockSize}${(weights.keptFp32 ?? []).length > 0 ? `, ${(weights.keptFp32 ?? []).join(' + ')} fp32` : ''}`;
  return `${weights.format}${details}, ${manifest.stages.length} stage(s)`;
}

function describeReport(report: AgreementReport, args: EvalArgs, model: ModelManifest, reference: ModelManifest): string {
  const row = (name: string, r: PromptAgreement): string =>
    `${name.padEnd(8)} ${String(r.positions).padStart(9)} ${r.meanKl.toExponential(3).padStart(12)} ${`${(100 * r.top1Agreement).toFixed(1)}%`.padStart(14)} ${r.maxLogitError.toFixed(4).padStart(16)}`;
  const lines = [
    `model     ${path.resolve(args.modelDir)} (${describeWeights(model)})`,
    `reference ${path.resolve(args.referenceDir)} (${describeWeights(reference)})`,
    `teacher-forced, ${report.prompts.length} prompts, up to ${EVAL_TOKENS_PER_PROMPT} tokens each`,
    '',
    `${'prompt'.padEnd(8)} ${'positions'.padStart(9)} ${'mean KL'.padStart(12)} ${'top-1 agree'.padStart(14)} ${'max |logit err|'.padStart(16)}`,
    ...report.prompts.map((p, i) => row(String(i + 1), p)),
    row('all', report),
  ];
  return `${lines.join('\n')}\n`;
}

if (require.main === module) exitWhenDone(runEvalCli(process.argv.slice(2), PROCESS_OUTPUT));
