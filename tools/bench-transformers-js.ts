import * as path from 'node:path';
import { UsageError } from '../shared/errors';
import { benchPrompts } from './bench/bench-prompts';
import { TextTokenizer } from '../services/tokenizer/text-tokenizer';
import { ensureTransformersJsExport } from './bench/transformers-js-model-folder';
import { TransformersJsRunner, type TransformersJsRun } from './bench/transformers-js-runner';
import { CliCommand, exitWhenDone, type CliValues } from './cli/cli-command';
import { PROCESS_OUTPUT, type CliOutput } from './cli/cli-output';

const DEFAULTS = { model: path.join('models', 'default'), streams: '1,16', tokens: '32', promptTokens: '12', threads: '0' } as const;
const MAX_STREAMS = 256;

export const BENCH_TRANSFORMERS_JS_COMMAND = new CliCommand({
  name: 'bench-transformers-js',
  description:
    "Measures greedy generation with transformers.js on a model's checkpoint (exported for it once, beside the model " +
    'folder): per stream count a warm-up run, then the measured one; prints tokens/s, time to first token, inter-token latency and peak RSS.',
  options: {
    model: { value: 'dir', default: DEFAULTS.model, description: 'a model folder written by model:init (its checkpoint/ is exported)' },
    streams: { value: 'list', default: DEFAULTS.streams, description: `stream counts to measure, comma-separated, each 1 to ${MAX_STREAMS}` },
    tokens: { value: 'n', default: DEFAULTS.tokens, description: 'new tokens per stream' },
    'prompt-tokens': { value: 'n', default: DEFAULTS.promptTokens, description: 'prompt length in tokens' },
    threads: { value: 'n', default: DEFAULTS.threads, description: "onnxruntime's intra-op threads; 0 uses every core" },
    'no-spinning': { description: 'idle onnxruntime threads sleep instead of spinning for work' },
    json: { description: 'print the results as JSON' },
  },
  examples: [
    { description: '1 and 16 streams on the default model', command: 'npm run bench:transformers-js' },
    { description: 'Two threads, no spinning, as JSON', command: 'npm run bench:transformers-js -- --streams 1,4 --threads 2 --no-spinning --json' },
  ],
});

interface BenchArgs {
  readonly modelDir: string;
  readonly streams: readonly number[];
  readonly newTokens: number;
  readonly promptTokens: number;
  readonly intraOpThreads: number;
  readonly allowSpinning: boolean;
  readonly json: boolean;
}

/**
 * Greedy generation with transformers.js on a model's checkpoint (exported for it once, beside
 * the model folder), for each stream count: one warm-up run of the workload, then the measured
 * run (onnxruntime plans each new shape on its first run, which a server pays once). Prints
 * tokens/s, time to first token, inter-token latency and the run's peak RSS per workload.
 */
export function runBenchTransformersJsCli(argv: readonly string[], output: CliOutput): Promise<number> {
  return BENCH_TRANSFORMERS_JS_COMMAND.run(argv, output, async ({ values }) => {
    const args = toBenchArgs(values);
    const exportDir = await ensureTransformersJsExport(args.modelDir);
    const tokenizer = await TextTokenizer.load(exportDir);
    const runner = await TransformersJsRunner.load(exportDir, { intraOpThreads: args.intraOpThreads, allowSpinning: args.allowSpinning });
    const results: { streams: number; run: TransformersJsRun }[] = [];
    try {
      for (const streams of args.streams) {
        const prompts = benchPrompts(tokenizer, streams, args.promptTokens).map((p) => p.ids);
        await runner.generate(prompts, args.newTokens);
        results.push({ streams, run: await runner.generate(prompts, args.newTokens) });
      }
    } finally {
      await runner.close();
    }
    if (args.json) {
      output.stdout(`${JSON.stringify({ exportDir, newTokens: args.newTokens, promptTokens: args.promptTokens, results }, null, 2)}\n`);
      return;
    }
    output.stdout(`transformers.js on ${exportDir}: ${args.promptTokens}-token prompts, ${args.newTokens} new tokens, greedy, one batched generate call\n`);
    for (const { streams, run } of results) output.stdout(`${describe(streams, run)}\n`);
  });
}

export function parseBenchArgs(argv: readonly string[]): BenchArgs {
  return toBenchArgs(BENCH_TRANSFORMERS_JS_COMMAND.parse(argv).values);
}

function toBenchArgs(values: CliValues<typeof BENCH_TRANSFORMERS_JS_COMMAND.spec.options>): BenchArgs {
  if (values.model.trim() === '') throw new UsageError('--model: expected a folder path');
  return {
    modelDir: values.model,
    streams: values.streams.split(',').map((part) => parseInteger('--streams', part, 1, MAX_STREAMS)),
    newTokens: parseInteger('--tokens', values.tokens, 1, 4096),
    promptTokens: parseInteger('--prompt-tokens', values['prompt-tokens'], 1, 1024),
    intraOpThreads: parseInteger('--threads', values.threads, 0, 1024),
    allowSpinning: !values['no-spinning'],
    json: values.json,
  };
}

function describe(streams: number, run: TransformersJsRun): string {
  const gaps = run.streams.flatMap((s) => s.interTokenMs).sort((a, b) => a - b);
  const percentile = (p: number): number => (gaps.length === 0 ? 0 : gaps[Math.min(gaps.length - 1, Math.floor(p * gaps.length))]);
  const firstToken = run.streams.map((s) => s.timeToFirstTokenMs);
  return (
    `  ${String(streams).padStart(3)} stream(s): ${run.tokensPerSecond.toFixed(1).padStart(7)} tokens/s` +
    `   first token ${Math.max(...firstToken).toFixed(0)} ms` +
    `   inter-token p50 ${percentile(0.5).toFixed(1)} ms, p95 ${percentile(0.95).toFixed(1)} ms` +
    `   peak RSS ${(run.peakRss.bytes / 2 ** 20).toFixed(0)} MiB (${run.peakRss.scope})`
  );
}

function parseInteger(flag: string, text: string, min: number, max: number): number {
  const value = Number(text);
  if (!/^\d+$/.test(text.trim()) || value < min || value > max) {
    throw new UsageError(`${flag}: expected an integer from ${min} to ${max}, got '${text}'`);
  }
  return value;
}

if (require.main === module) exitWhenDone(runBenchTransformersJsCli(process.argv.slice(2), PROCESS_OUTPUT));
