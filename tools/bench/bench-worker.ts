import { fork, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { DEFAULT_GENERATION_CONFIG } from '../../shared/generation-config';
import { InProcessPipeline } from '../../services/node/in-process-pipeline';
import { BareOnnxLoop } from './bare-onnx-loop';
import type { BenchSystem, WorkloadRun } from './bench-stats';
import { TransformersJsRunner } from './transformers-js-runner';

/** The systems that run inside one process of their own (the pipeline is its six processes). */
export type InProcessSystem = Exclude<BenchSystem, 'pipeline'>;

export interface WorkerSetup {
  readonly system: InProcessSystem;
  /** bare-onnxruntime: the 1-stage compile; in-process: the model folder; transformers.js: its export. */
  readonly modelDir: string;
}

type Request = { readonly kind: 'run'; readonly prompts: readonly (readonly number[])[]; readonly newTokens: number; readonly measure: boolean } | { readonly kind: 'close' };
type Reply = { readonly kind: 'ready'; readonly loadMs: number } | { readonly kind: 'run'; readonly run: WorkloadRun } | { readonly kind: 'error'; readonly message: string };

const LOAD_TIMEOUT_MS = 600_000;
const RUN_TIMEOUT_MS = 1_800_000;

/**
 * One benchmarked system in a child process of its own, so that its peak RSS is its own and its
 * threads do not share a heap with the benchmark's client. The model is loaded once; each run is
 * timed inside the child, the first token of each stream as soon as it is sampled.
 */
export class BenchWorker {
  private pending: { resolve: (reply: Reply) => void; reject: (error: Error) => void } | undefined;
  private exited: string | undefined;
  /** How long the system took to load its model in the child (sessions ready), in ms; set once it is. */
  private loadedInMs = 0;

  private constructor(
    readonly system: InProcessSystem,
    private readonly child: ChildProcess,
  ) {
    child.on('message', (reply: Reply) => {
      const pending = this.pending;
      this.pending = undefined;
      pending?.resolve(reply);
    });
    child.on('exit', (code, signal) => {
      this.exited = `the ${system} worker exited (${signal ?? code})`;
      this.pending?.reject(new Error(this.exited));
      this.pending = undefined;
    });
  }

  static async start(setup: WorkerSetup): Promise<BenchWorker> {
    const child = fork(workerScript(), [JSON.stringify(setup)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'advanced' });
    const worker = new BenchWorker(setup.system, child);
    const reply = await worker.next(LOAD_TIMEOUT_MS);
    if (reply.kind !== 'ready') throw new Error(`${setup.system}: ${reply.kind === 'error' ? reply.message : 'unexpected reply'}`);
    worker.loadedInMs = reply.loadMs;
    return worker;
  }

  get loadMs(): number {
    return this.loadedInMs;
  }

  /** One run of the workload: `measure` false is a warm-up (onnxruntime plans each new shape once). */
  async run(prompts: readonly (readonly number[])[], newTokens: number, measure: boolean): Promise<WorkloadRun> {
    const reply = await this.ask({ kind: 'run', prompts, newTokens, measure });
    if (reply.kind !== 'run') throw new Error(`${this.system}: ${reply.kind === 'error' ? reply.message : 'unexpected reply'}`);
    return reply.run;
  }

  async close(): Promise<void> {
    if (this.exited !== undefined) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.send({ kind: 'close' } satisfies Request);
    const kill = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(kill);
  }

  private ask(request: Request): Promise<Reply> {
    if (this.exited !== undefined) return Promise.reject(new Error(this.exited));
    const reply = this.next(RUN_TIMEOUT_MS);
    this.child.send(request);
    return reply;
  }

  private next(timeoutMs: number): Promise<Reply> {
    return new Promise<Reply>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending = undefined;
        this.child.kill('SIGKILL');
        reject(new Error(`${this.system}: no answer in ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending = {
        resolve: (reply) => {
          clearTimeout(timer);
          resolve(reply);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
    });
  }
}

function workerScript(): string {
  // Under ts-jest this module is the TypeScript source; the child runs the compiled one.
  return __filename.endsWith('.ts') ? path.join(__dirname, '..', '..', 'dist', 'tools', 'bench', 'bench-worker.js') : __filename;
}

/** A system's generate: each stream's tokens and when each arrived, ms after the call began. */
type Generate = (prompts: readonly (readonly number[])[], newTokens: number) => Promise<{ tokens: number[][]; tokenTimesMs: number[][]; seconds: number }>;

async function loadSystem(setup: WorkerSetup): Promise<{ generate: Generate; close: () => Promise<void> }> {
  switch (setup.system) {
    case 'bare-onnxruntime': {
      const loop = await BareOnnxLoop.open(setup.modelDir);
      return {
        generate: async (prompts, newTokens) => {
          const run = await loop.generate(prompts, newTokens);
          return { tokens: run.tokens, tokenTimesMs: run.tokens.map(() => run.stepTimesMs), seconds: run.seconds };
        },
        close: () => loop.close(),
      };
    }
    case 'in-process': {
      const pipeline = await InProcessPipeline.load(setup.modelDir);
      return {
        generate: async (prompts, newTokens) => {
          const tokenTimesMs: number[][] = prompts.map(() => []);
          const started = performance.now();
          const results = await pipeline.generateBatch(
            prompts,
            { ...DEFAULT_GENERATION_CONFIG, maxNewTokens: newTokens, temperature: 0 },
            { ignoreEos: true, onToken: (stream) => tokenTimesMs[stream].push(performance.now() - started) },
          );
          return { tokens: results.map((r) => r.tokenIds), tokenTimesMs, seconds: (performance.now() - started) / 1000 };
        },
        close: () => pipeline.close(),
      };
    }
    case 'transformers.js': {
      const runner = await TransformersJsRunner.load(setup.modelDir);
      return {
        generate: async (prompts, newTokens) => {
          const run = await runner.generate(prompts, newTokens);
          const tokenTimesMs = run.streams.map((s) => s.interTokenMs.reduce((times, gap) => [...times, times[times.length - 1] + gap], [s.timeToFirstTokenMs]));
          return { tokens: run.streams.map((s) => s.generatedIds), tokenTimesMs, seconds: run.seconds };
        },
        close: () => runner.close(),
      };
    }
  }
}

/** Writing 5 to clear_refs resets a process's VmHWM (Linux ≥ 4.0), so the next reading covers only what follows. */
export function resetPeakRss(pid: number | 'self'): void {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
  } catch {
    // Not Linux, or not allowed: the reading is then the process's lifetime peak.
  }
}

function ownPeakRssBytes(): number {
  const match = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'));
  return match === null ? process.resourceUsage().maxRSS * 1024 : Number(match[1]) * 1024;
}

async function serve(setup: WorkerSetup): Promise<void> {
  const send = (reply: Reply): void => void process.send?.(reply);
  let system: Awaited<ReturnType<typeof loadSystem>>;
  const loadStarted = performance.now();
  try {
    system = await loadSystem(setup);
  } catch (error) {
    send({ kind: 'error', message: `loading ${setup.modelDir}: ${(error as Error).message}` });
    process.exit(1);
  }
  send({ kind: 'ready', loadMs: performance.now() - loadStarted });
  process.on('message', (request: Request) => {
    void (async () => {
      if (request.kind === 'close') {
        await system.close();
        process.exit(0);
      }
      try {
        // The peak of the measured run itself, with the model resident: what serving costs.
        if (request.measure) resetPeakRss('self');
        const cpuBefore = process.cpuUsage();
        const run = await system.generate(request.prompts, request.newTokens);
        const cpu = process.cpuUsage(cpuBefore);
        send({ kind: 'run', run: { ...run, peakRssBytes: { [setup.system]: ownPeakRssBytes() }, cpuSeconds: { [setup.system]: (cpu.user + cpu.system) / 1e6 } } });
      } catch (error) {
        send({ kind: 'error', message: (error as Error).message });
      }
    })();
  });
  // The benchmark died: nothing is left to answer.
  process.on('disconnect', () => process.exit(0));
}

if (require.main === module) void serve(JSON.parse(process.argv[2]) as WorkerSetup);
