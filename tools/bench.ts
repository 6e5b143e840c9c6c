import { existsSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { DEFAULT_GENERATION_CONFIG } from '../shared/generation-config';
import { readManifest } from '../shared/model/manifest';
import { InProcessPipeline } from '../services/node/in-process-pipeline';
import { TextTokenizer } from '../services/tokenizer/text-tokenizer';
import { bareOnnxLoop } from './bench/bare-onnx-loop';
import { SystemRunner } from './bench/system-runner';
import { ensureTransformersJsExport } from './bench/transformers-js-model-folder';
import { TransformersJsRunner } from './bench/transformers-js-runner';
import { compileModel } from './compiler/compile-model';

/** Prompts of a benchmark batch: different texts, cut to one token length so the baseline needs no padding. */
const PROMPT_TEXTS = [
  'The history of the world is the memory of the past experience of Homo sapiens',
  'Once upon a time, in a kingdom by the sea, there lived a young princess who',
  'The quarterly report shows that revenue grew faster than expected in every',
  'To install the package, run the following command in a terminal and then',
  'Photosynthesis is the process by which green plants use sunlight to make',
  'The committee met on Tuesday to discuss the budget for the coming fiscal year',
  'In mathematics, a prime number is a natural number greater than one that',
  'The recipe calls for two cups of flour, a pinch of salt, and three eggs which',
];
const PROMPT_TOKENS = 12;

interface Measurement {
  readonly label: string;
  readonly tokensPerSecond: number;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string', default: 'models/default' },
      tokens: { type: 'string', default: '48' },
      batch: { type: 'string', default: '16' },
      'skip-system': { type: 'boolean', default: false },
    },
  });
  const modelDir = path.resolve(values.model);
  const newTokens = Number(values.tokens);
  const batch = Number(values.batch);
  if (!existsSync(path.join(modelDir, 'manifest.json'))) throw new Error(`${modelDir}/manifest.json is missing: run npm run model:init first`);
  const manifest = await readManifest(modelDir);
  const monolithic = await ensureMonolithic(modelDir, manifest.ops);
  const transformersJsDir = await ensureTransformersJsExport(modelDir);

  const tokenizer = await TextTokenizer.load(modelDir);
  const prompts = Array.from({ length: batch }, (_, i) => tokenizer.encode(`${PROMPT_TEXTS[i % PROMPT_TEXTS.length]} ${i}`).slice(0, PROMPT_TOKENS));
  const promptTexts = prompts.map((ids) => tokenizer.decode(ids));
  const config = { ...DEFAULT_GENERATION_CONFIG, maxNewTokens: newTokens, temperature: 0 };

  console.log(`model ${manifest.modelName}: ${manifest.shape.layers} layers x ${manifest.shape.hiddenSize}, ${manifest.stages.length} stages (${manifest.ops}); ${newTokens} new tokens, greedy`);
  const rows: { workload: string; results: Measurement[] }[] = [];
  for (const [workload, set] of [
    ['1 stream', prompts.slice(0, 1)],
    [`${batch} streams`, prompts],
  ] as const) {
    const results: Measurement[] = [];
    const bare = await secondRun(async () => {
      const run = await bareOnnxLoop(monolithic, set, newTokens);
      return { tokens: run.generatedTokens, seconds: run.seconds };
    });
    results.push({ label: 'bare onnxruntime loop, 1-stage graph', tokensPerSecond: bare });

    const pipeline = await InProcessPipeline.load(modelDir);
    results.push({
      label: `in-process pipeline, ${manifest.stages.length} stages`,
      tokensPerSecond: await secondRun(async () => {
        const started = performance.now();
        const generated = await pipeline.generateBatch(set, config);
        return { tokens: count(generated.map((g) => g.tokenIds.length)), seconds: (performance.now() - started) / 1000 };
      }),
    });
    await pipeline.close();

    // The outside reference on the same weights: transformers.js, every stream in one batched generate().
    const transformersJs = await TransformersJsRunner.load(transformersJsDir);
    try {
      results.push({
        label: 'transformers.js, batched generate, plain graph',
        tokensPerSecond: await secondRun(async () => {
          const run = await transformersJs.generate(set, newTokens);
          return { tokens: run.generatedTokens, seconds: run.seconds };
        }),
      });
    } finally {
      await transformersJs.close();
    }

    if (!values['skip-system']) {
      const system = await SystemRunner.start({ modelDir });
      try {
        results.push({
          label: `6 processes over gRPC (REST in, ${manifest.stages.length} nodes)`,
          tokensPerSecond: await secondRun(async () => {
            const started = performance.now();
            const counts = await Promise.all(promptTexts.slice(0, set.length).map((text) => system.process(text, newTokens)));
            return { tokens: count(counts), seconds: (performance.now() - started) / 1000 };
          }),
        });
      } finally {
        await system.stop();
      }
    }
    rows.push({ workload, results });
  }

  for (const { workload, results } of rows) {
    const base = results[0].tokensPerSecond;
    console.log(`\n${workload}`);
    for (const r of results) console.log(`  ${r.label.padEnd(48)} ${r.tokensPerSecond.toFixed(1).padStart(8)} tokens/s   ${(r.tokensPerSecond / base).toFixed(2)}x`);
  }
}

/**
 * Runs a workload twice and reports the second run's tokens per second: onnxruntime's first
 * run of each shape allocates and plans, which a long-running server pays once.
 */
async function secondRun(run: () => Promise<{ tokens: number; seconds: number }>): Promise<number> {
  await run();
  const { tokens, seconds } = await run();
  return tokens / seconds;
}

/** The 1-stage compile of the same checkpoint, next to the model folder (made once). */
async function ensureMonolithic(modelDir: string, ops: 'plain' | 'fused'): Promise<string> {
  const out = `${modelDir}-1stage-${ops}`;
  if (!existsSync(path.join(out, 'manifest.json'))) {
    const from = path.join(modelDir, 'checkpoint');
    if (!existsSync(path.join(from, 'config.json'))) throw new Error(`${from} is missing: the baseline is compiled from the model's checkpoint`);
    console.log(`compiling the 1-stage baseline into ${out} ...`);
    await compileModel({ from, out, stages: 1, split: { kind: 'even' }, ops });
  }
  return out;
}

function count(values: readonly number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

main().catch((error: unknown) => {
  process.stderr.write(`bench: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
