import { existsSync, readFileSync, statSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import path from 'node:path';
import { UsageError } from '../shared/errors';
import { readManifest, type ModelManifest } from '../shared/model/manifest';
import { TextTokenizer } from '../services/tokenizer/text-tokenizer';
import { benchPrompts, type BenchPrompt } from './bench/bench-prompts';
import { resultsMarkdown, systemLabel, type BenchContext } from './bench/bench-report';
import { BENCH_SYSTEMS, medianRun, summarize, withLoadRatios, withRatios, type BenchSystem, type LoadSummary, type WorkloadRun, type WorkloadSummary } from './bench/bench-stats';
import { BenchWorker, type InProcessSystem } from './bench/bench-worker';
import { PipelineWorkload, type PipelineSettings } from './bench/pipeline-workload';
import { ensureTransformersJsExport } from './bench/transformers-js-model-folder';
import { CliCommand, exitWhenDone, type CliValues } from './cli/cli-command';
import { PROCESS_OUTPUT, type CliOutput } from './cli/cli-output';
import { compileModel } from './compiler/compile-model';

const MAX_STREAMS = 256;
const README = 'README.md';
const README_START = '<!-- bench:results:start -->';
const README_END = '<!-- bench:results:end -->';

export const BENCH_COMMAND = new CliCommand({
  name: 'bench',
  description:
    'Runs the same greedy workloads, side by side in one run on the same weights, through a bare onnxruntime loop on the ' +
    '1-stage compile, transformers.js, the in-process pipeline and the whole system over REST (every stage its own process); ' +
    'reports tokens/s, time to first token, inter-token latency and peak RSS, with ratios to the bare loop and to transformers.js.',
  options: {
    model: {
      value: 'dirs',
      default: path.join('models', 'default'),
      description: 'compiled model folders, comma-separated (e.g. fp32, int8 and int4 compiles of one checkpoint); the first is the reference of vs_reference_bare',
    },
    checkpoint: { value: 'dir', description: "the Hugging Face checkpoint the models were compiled from (default: each model's checkpoint/, as model:init writes it)" },
    streams: { value: 'list', default: '1,16,64', description: `concurrent streams of each workload, comma-separated, each 1 to ${MAX_STREAMS}` },
    tokens: { value: 'n', default: '48', description: 'new tokens per stream (EOS does not end a stream)' },
    'prompt-tokens': { value: 'n', default: '12', description: 'prompt length in tokens (every prompt has this length)' },
    systems: { value: 'list', default: BENCH_SYSTEMS.join(','), description: `which systems to run, of ${BENCH_SYSTEMS.join(', ')}` },
    'link-delay-ms': { value: 'ms', default: '0', description: 'also run the pipeline with this delay added each way on every link to a node (a userspace proxy)' },
    config: {
      value: 'file',
      default: 'config.json',
      description: "the pipeline runs with this config's limits and runtime sections, as npm start does (its addresses and model are the benchmark's own)",
    },
    rounds: { value: 'n', default: '1', description: 'measured runs of every workload per system; the median one is reported' },
    out: { value: 'file', default: path.join('bench', 'results.md'), description: 'where the markdown table is written' },
    'update-readme': { description: `also put the table into ${README}, between its bench markers` },
    json: { description: 'print the results as one JSON object on the last line' },
  },
  progress: true,
  examples: [
    { description: 'The default workloads on the default model', command: 'npm run bench' },
    { description: 'What a 2 ms link costs', command: 'npm run bench -- --streams 1,64 --link-delay-ms 2' },
    { description: 'Only the in-process systems, as JSON', command: 'npm run bench -- --systems bare-onnxruntime,in-process --streams 16 --json' },
    {
      description: 'fp32, int8 and int4 side by side (compiled with model:compile --weights)',
      command: 'npm run bench -- --model models/default,models/int8,models/int4 --checkpoint models/default/checkpoint --streams 1,16',
    },
  ],
});

export interface BenchArgs {
  readonly modelDirs: readonly string[];
  readonly checkpointDir: string | undefined;
  readonly streams: readonly number[];
  readonly newTokens: number;
  readonly promptTokens: number;
  readonly systems: readonly BenchSystem[];
  readonly linkDelayMs: number;
  /** config.json's `limits` and `runtime`, for the pipeline. */
  readonly pipelineSettings: PipelineSettings;
  readonly rounds: number;
  readonly out: string;
  readonly updateReadme: boolean;
  readonly json: boolean;
}

export function parseBenchArgs(argv: readonly string[]): BenchArgs {
  return toBenchArgs(BENCH_COMMAND.parse(argv).values);
}

/** The `limits` and `runtime` sections of a config file (the services validate their entries). */
function readPipelineSettings(file: string): PipelineSettings {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    throw new UsageError(`--config: cannot read ${file}: ${(error as Error).message}`);
  }
  const section = (name: string): Readonly<Record<string, number>> | undefined => {
    const value = (json as Record<string, unknown>)[name];
    if (value === undefined) return undefined;
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new UsageError(`--config: ${file}: ${name} must be an object`);
    return value as Record<string, number>;
  };
  if (typeof json !== 'object' || json === null) throw new UsageError(`--config: ${file} is not a JSON object`);
  return { limits: section('limits'), runtime: section('runtime') };
}

function toBenchArgs(values: CliValues<typeof BENCH_COMMAND.spec.options>): BenchArgs {
  const modelDirs = values.model.split(',').map((dir) => dir.trim());
  if (modelDirs.some((dir) => dir === '')) throw new UsageError('--model: expected folder paths, comma-separated');
  if (new Set(modelDirs.map((dir) => path.resolve(dir))).size !== modelDirs.length) throw new UsageError('--model: a folder is named twice');
  const systems = values.systems.split(',').map((name) => name.trim());
  for (const name of systems) {
    if (!(BENCH_SYSTEMS as readonly string[]).includes(name)) throw new UsageError(`--systems: unknown system '${name}'; the systems are ${BENCH_SYSTEMS.join(', ')}`);
  }
  const linkDelayMs = parseInteger('--link-delay-ms', values['link-delay-ms'], 0, 1_000);
  if (linkDelayMs > 0 && !systems.includes('pipeline')) throw new UsageError('--link-delay-ms: only the pipeline has links; add it to --systems');
  return {
    modelDirs: modelDirs.map((dir) => path.resolve(dir)),
    checkpointDir: values.checkpoint === undefined ? undefined : path.resolve(values.checkpoint),
    streams: [...new Set(values.streams.split(',').map((part) => parseInteger('--streams', part, 1, MAX_STREAMS)))],
    newTokens: parseInteger('--tokens', values.tokens, 1, 4_096),
    promptTokens: parseInteger('--prompt-tokens', values['prompt-tokens'], 1, 1_024),
    // In the order of BENCH_SYSTEMS, so that tables and ratios read the same way every run.
    systems: BENCH_SYSTEMS.filter((s) => systems.includes(s)),
    linkDelayMs,
    pipelineSettings: readPipelineSettings(values.config),
    rounds: parseInteger('--rounds', values.rounds, 1, 20),
    out: values.out,
    updateReadme: values['update-readme'],
    json: values.json,
  };
}

/** A system as the benchmark drives it: a worker process, or the pipeline's processes. */
interface Contender {
  readonly system: BenchSystem;
  /** The model folder's name. */
  readonly model: string;
  readonly linkDelayMs: number;
  /** How long it took to load the model. */
  readonly load: Pick<LoadSummary, 'load_ms' | 'stage_load_ms' | 'ready_ms'>;
  run(prompts: readonly BenchPrompt[], newTokens: number, measure: boolean): Promise<WorkloadRun>;
  close(): Promise<void>;
}

interface BenchModel {
  readonly dir: string;
  readonly name: string;
  readonly manifest: ModelManifest;
}

export function runBenchCli(argv: readonly string[], output: CliOutput): Promise<number> {
  return BENCH_COMMAND.run(argv, output, async ({ values, progress }) => {
    const args = toBenchArgs(values);
    const models: BenchModel[] = [];
    for (const dir of args.modelDirs) {
      if (!existsSync(path.join(dir, 'manifest.json'))) throw new Error(`${dir}/manifest.json is missing: run npm run model:init first`);
      models.push({ dir, name: path.basename(dir), manifest: await readManifest(dir) });
    }
    const [first] = models;
    for (const model of models.slice(1)) {
      if (model.manifest.shape.vocabSize !== first.manifest.shape.vocabSize) throw new UsageError(`--model: ${model.name} and ${first.name} have different vocabularies`);
    }
    for (const model of models) {
      const { contextLength } = model.manifest.shape;
      if (args.promptTokens + args.newTokens > contextLength) {
        throw new UsageError(`--prompt-tokens ${args.promptTokens} + --tokens ${args.newTokens} exceed ${model.name}'s context length of ${contextLength} tokens`);
      }
    }
    const tokenizer = await TextTokenizer.load(first.dir);
    const prompts = benchPrompts(tokenizer, Math.max(...args.streams), args.promptTokens);
    const say = (line: string): void => (args.json ? output.stderr : output.stdout)(`${line}\n`);
    for (const { manifest } of models) {
      say(
        `bench: ${manifest.modelName} (${manifest.architecture}, ${manifest.shape.layers} layers x ${manifest.shape.hiddenSize}, ${manifest.stages.length} stages, ` +
          `${manifest.ops} ops, ${manifest.stages[0].weights.format})`,
      );
    }
    say(`  ${args.promptTokens}-token prompts, ${args.newTokens} new tokens, greedy; streams ${args.streams.join(', ')}`);

    const contenders: Contender[] = [];
    try {
      for (const [m, model] of models.entries()) {
        const checkpointDir = args.checkpointDir ?? path.join(model.dir, 'checkpoint');
        for (const system of args.systems) {
          // transformers.js runs the checkpoint itself, the same for every compile of it: once.
          if (system === 'transformers.js' && m > 0) continue;
          const label = systemLabel({ system, link_delay_ms: 0, model: model.name }, models.length > 1);
          say(`  starting ${label} ...`);
          if (system === 'pipeline') {
            for (const delay of args.linkDelayMs > 0 ? [0, args.linkDelayMs] : [0]) {
              const pipeline = await PipelineWorkload.start(model.dir, delay, args.pipelineSettings);
              const stageLoadMs = pipeline.stageLoadMs.map(Math.round);
              const load = { load_ms: Math.max(...stageLoadMs), stage_load_ms: stageLoadMs, ready_ms: Math.round(pipeline.readyMs) };
              contenders.push({ system, model: model.name, linkDelayMs: delay, load, run: (p, n, measure) => pipeline.run(p, n, measure), close: () => pipeline.stop() });
              say(`  ${systemLabel({ system, link_delay_ms: delay, model: model.name }, models.length > 1)}: stages loaded in ${stageLoadMs.join(' / ')} ms, ready after ${load.ready_ms} ms`);
            }
          } else {
            const dir = await systemModelDir(system, model, checkpointDir, say);
            const worker = await BenchWorker.start({ system, modelDir: dir });
            const load = { load_ms: Math.round(worker.loadMs), stage_load_ms: null, ready_ms: null };
            contenders.push({ system, model: model.name, linkDelayMs: 0, load, run: (p, n, measure) => worker.run(p.map((x) => x.ids), n, measure), close: () => worker.close() });
            say(`  ${label}: loaded in ${load.load_ms} ms`);
          }
        }
      }

      const several = models.length > 1;
      const labelOf = (c: Contender): string => systemLabel({ system: c.system, link_delay_ms: c.linkDelayMs, model: c.model }, several);
      const steps = progress.steps('workloads', args.streams.length * contenders.length * (args.rounds + 1));
      const workloads: WorkloadSummary[] = [];
      for (const streams of args.streams) {
        const set = prompts.slice(0, streams);
        const runs = contenders.map((): WorkloadRun[] => []);
        // Warm-up: onnxruntime sizes its buffers on the first runs of a shape, which a server pays once.
        for (const contender of contenders) {
          steps.step(`${streams} streams: warm-up ${labelOf(contender)}`);
          await contender.run(set, args.newTokens, false);
        }
        // Rounds interleave the systems, so a slow spell on a shared machine hits all of them alike.
        for (let round = 0; round < args.rounds; round++) {
          for (const [i, contender] of contenders.entries()) {
            steps.step(`${streams} streams: ${labelOf(contender)}`);
            runs[i].push(await contender.run(set, args.newTokens, true));
          }
        }
        const medians = runs.map(medianRun);
        const bareOf = (model: string): WorkloadRun | undefined => medians[contenders.findIndex((c) => c.system === 'bare-onnxruntime' && c.model === model)];
        const systems = withRatios(contenders.map((c, i) => summarize(c.system, c.model, c.linkDelayMs, medians[i], bareOf(c.model))));
        workloads.push({ streams, systems });
        for (const s of systems) {
          say(
            `  ${String(streams).padStart(3)} streams  ${systemLabel(s, several).padEnd(several ? 48 : 34)} ${s.tokens_per_second.toFixed(1).padStart(7)} tok/s` +
              `  TTFT p50 ${s.ttft_ms_p50.toFixed(0).padStart(5)} ms  ITL p50 ${s.itl_ms_p50.toFixed(1).padStart(6)} ms` +
              (s.vs_bare === null ? '' : `  ${s.vs_bare.toFixed(2)}x bare`) +
              (s.vs_transformers_js === null ? '' : `  ${s.vs_transformers_js.toFixed(2)}x transformers.js`) +
              (several && s.vs_reference_bare !== null ? `  ${s.vs_reference_bare.toFixed(2)}x ${first.name} bare` : ''),
          );
        }
      }
      steps.finish();

      const loads = withLoadRatios(
        contenders.map((c) => ({ system: c.system, model: c.model, link_delay_ms: c.linkDelayMs, ...c.load })),
        first.name,
      );
      const markdown = resultsMarkdown(benchContext(args, models, argv), workloads, loads);
      await mkdir(path.dirname(path.resolve(args.out)), { recursive: true });
      await writeFile(args.out, markdown);
      say(`wrote ${args.out}`);
      if (args.updateReadme) {
        await updateReadme(markdown);
        say(`updated ${README}`);
      }
      if (args.json) output.stdout(`${JSON.stringify({ workloads, loads })}\n`);
    } finally {
      for (const contender of contenders) await contender.close();
    }
  });
}

/** The folder a worker loads: the 1-stage baseline, the transformers.js export, or the model itself. */
async function systemModelDir(system: InProcessSystem, model: BenchModel, checkpointDir: string, say: (line: string) => void): Promise<string> {
  if (system === 'in-process') return model.dir;
  if (!existsSync(path.join(checkpointDir, 'config.json'))) {
    throw new UsageError(`--checkpoint: ${checkpointDir} holds no checkpoint (config.json): the ${system} system runs ${model.name}'s checkpoint; name it with --checkpoint`);
  }
  if (system === 'transformers.js') return ensureTransformersJsExport(checkpointDir);
  return ensureBaseline(model, checkpointDir, say);
}

/**
 * The 1-stage compile of the model's checkpoint with the model's own ops and weight format, beside
 * the model folder; compiled again when the model was (a new `model:init` replaces the weights).
 */
async function ensureBaseline(model: BenchModel, checkpointDir: string, say: (line: string) => void): Promise<string> {
  const out = `${model.dir}-1stage`;
  const built = path.join(out, 'manifest.json');
  if (existsSync(built) && statSync(built).mtimeMs >= statSync(path.join(model.dir, 'manifest.json')).mtimeMs) return out;
  say(`  compiling the 1-stage baseline into ${out} ...`);
  const { manifest } = model;
  await compileModel({ from: checkpointDir, out, stages: 1, split: { kind: 'even' }, ops: manifest.ops, attention: manifest.attention, weights: manifest.stages[0].weights, force: true });
  return out;
}

function benchContext(args: BenchArgs, models: readonly BenchModel[], argv: readonly string[]): BenchContext {
  const cpu = cpus();
  return {
    command: ['npm run bench', ...(argv.length > 0 ? ['--', ...argv] : [])].join(' '),
    date: new Date().toISOString().slice(0, 10),
    cpu: cpu[0]?.model.trim() ?? 'unknown CPU',
    cores: cpu.length,
    node: process.versions.node,
    onnxruntime: (require('onnxruntime-node/package.json') as { version: string }).version,
    model: models
      .map(({ name, manifest }) => `${name} = ${manifest.modelName} (${manifest.architecture}, ${manifest.shape.layers} layers x ${manifest.shape.hiddenSize}, ${manifest.stages.length} stages, ${manifest.ops} ops, ${manifest.stages[0].weights.format})`)
      .join('; '),
    promptTokens: args.promptTokens,
    newTokens: args.newTokens,
    rounds: args.rounds,
    pipelineSettings: Object.entries(args.pipelineSettings)
      .filter(([, section]) => section !== undefined && Object.keys(section).length > 0)
      .map(([name, section]) => `config.json's ${name} \`${JSON.stringify(section)}\``)
      .join(' and '),
  };
}

async function updateReadme(markdown: string): Promise<void> {
  const readme = await readFile(README, 'utf8');
  const start = readme.indexOf(README_START);
  const end = readme.indexOf(README_END);
  if (start < 0 || end < start) throw new Error(`${README} has no ${README_START} … ${README_END} section`);
  // The table and its notes, without the file's own title.
  const body = markdown.replace(/^# .*\n\n/, '');
  await writeFile(README, `${readme.slice(0, start + README_START.length)}\n${body}${readme.slice(end)}`);
}

function parseInteger(flag: string, text: string, min: number, max: number): number {
  const value = Number(text);
  if (!/^\d+$/.test(text.trim()) || value < min || value > max) throw new UsageError(`${flag}: expected an integer from ${min} to ${max}, got '${text}'`);
  return value;
}

if (require.main === module) exitWhenDone(runBenchCli(process.argv.slice(2), PROCESS_OUTPUT));
