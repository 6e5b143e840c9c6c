import { spawn, type ChildProcess } from 'node:child_process';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import type { ProcessResponse } from '../../services/api/schemas/process-schemas';
import { PROJECT_ROOT } from '../../shared/project-root';
import { childProcesses, peakRssBytes } from '../launcher/process-tree';
import { writeLoopbackConfig, type LoopbackSystem } from '../loopback-config';
import { DelayProxy } from './delay-proxy';

const READY_TIMEOUT_MS = 300_000;
/** The compiled launcher, also when this module runs from its sources (under jest). */
const LAUNCHER_SCRIPT = path.join(PROJECT_ROOT, 'dist', 'tools', 'start.js');
const STOP_GRACE_MS = 15_000;
/** How often a starting system's /ready is asked: the granularity of `readyMs`. */
const READY_POLL_MS = 50;
const METRICS_TIMEOUT_MS = 5_000;

export interface SystemRunnerOptions {
  readonly modelDir: string;
  /** config.json `limits` entries (snake_case). */
  readonly limits?: Readonly<Record<string, number>>;
  /** config.json `runtime` entries (snake_case). */
  readonly runtime?: Readonly<Record<string, number>>;
  /** Replicas of each stage (default one each). */
  readonly replicas?: readonly number[];
  /** With D > 0, a delay proxy in front of every node adds D ms each way to every connection to it. */
  readonly linkDelayMs?: number;
  /** config.json's `security` section (snake_case, as written there). */
  readonly security?: Readonly<Record<string, unknown>>;
  /** `api.api_key`: the runner's own requests carry it. */
  readonly apiKey?: string;
}

/** One streamed generation as a client saw it. */
export interface StreamResult {
  readonly status: number;
  readonly tokens: readonly number[];
  /** When each token event arrived, ms after the request was sent. */
  readonly tokenTimesMs: readonly number[];
  readonly done: boolean;
  readonly error: string | undefined;
  /** The `done` event's per-stage forward time (`timings.nodes`): what the stages spent on this stream's steps. */
  readonly stageTimings: readonly StageTiming[];
}

/**
 * One stage's share of a generation, as the API reports it in `timings.nodes`: `forward_ms` is
 * summed over the steps that carried the stream (a batch's step counts for each of its streams).
 */
export type StageTiming = ProcessResponse['timings']['nodes'][number];

/**
 * The whole system started by the real launcher (dist/tools/start.js) with a config of its own
 * on free loopback ports, so a benchmark or the chaos run measures exactly what `npm start`
 * runs. It knows the launcher's children (for signals and peak RSS) and streams requests over
 * SSE with the arrival time of every token.
 */
export class SystemRunner {
  private constructor(
    private readonly launcher: ChildProcess,
    private readonly dir: string,
    /** The config.json the system runs with (a service started beside it reads the same one). */
    readonly configPath: string,
    readonly config: LoopbackSystem,
    private readonly proxies: readonly DelayProxy[],
    private readonly output: string[],
    private readonly apiKey: string | undefined,
  ) {}

  /** From spawning the launcher to the API's /ready answering 200, in ms; set once it does. */
  private readyAfterMs = 0;

  get readyMs(): number {
    return this.readyAfterMs;
  }

  /**
   * Starts the system; if one of its ports was taken meanwhile (they are chosen free, then
   * released, and other systems may start on the same machine), starts again once on new ports.
   */
  static async start(options: SystemRunnerOptions): Promise<SystemRunner> {
    try {
      return await SystemRunner.startOnce(options);
    } catch (error) {
      if (!/ports already in use|EADDRINUSE/.test(String(error))) throw error;
      return SystemRunner.startOnce(options);
    }
  }

  private static async startOnce(options: SystemRunnerOptions): Promise<SystemRunner> {
    const delay = options.linkDelayMs ?? 0;
    const { dir, configPath, system } = await writeLoopbackConfig({
      modelDir: options.modelDir,
      modelName: path.basename(options.modelDir),
      logLevel: 'warn',
      limits: options.limits,
      runtime: options.runtime,
      replicas: options.replicas,
      separateNodeListenPorts: delay > 0,
      security: options.security,
      apiKey: options.apiKey,
    });
    const proxies: DelayProxy[] = [];
    for (const node of system.nodes) {
      if (node.bind_address === undefined) continue;
      const [, listenPort] = node.address.split(':');
      const [targetHost, targetPort] = node.bind_address.split(':');
      proxies.push(await DelayProxy.start(Number(listenPort), { host: targetHost, port: Number(targetPort) }, delay));
    }
    const launcher = spawn(process.execPath, [LAUNCHER_SCRIPT, '--ready-timeout-ms', String(READY_TIMEOUT_MS)], {
      env: { ...process.env, CONFIG_PATH: configPath },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const output: string[] = [];
    const keep = (chunk: Buffer): void => {
      output.push(chunk.toString());
      if (output.length > 5_000) output.splice(0, output.length - 5_000);
    };
    launcher.stdout?.on('data', keep);
    launcher.stderr?.on('data', keep);
    const runner = new SystemRunner(launcher, dir, configPath, system, proxies, output, options.apiKey);
    const spawned = performance.now();
    const until = Date.now() + READY_TIMEOUT_MS;
    while (Date.now() < until) {
      if (launcher.exitCode !== null) {
        await runner.stop();
        throw new Error(`the system exited with ${launcher.exitCode}:\n${output.join('')}`);
      }
      const ready = await fetch(`${system.apiUrl}/ready`).then((r) => r.status === 200, () => false);
      if (ready) {
        runner.readyAfterMs = performance.now() - spawned;
        return runner;
      }
      await new Promise((r) => setTimeout(r, READY_POLL_MS));
    }
    await runner.stop();
    throw new Error(`the system was not ready after ${READY_TIMEOUT_MS} ms:\n${output.join('')}`);
  }

  get apiUrl(): string {
    return this.config.apiUrl;
  }

  /** What the launcher and its children printed. */
  log(): string {
    return this.output.join('');
  }

  /** Mean time the link proxies really held a chunk since the last reset (undefined without a link delay, or before any chunk). */
  heldLinkDelayMs(): number | undefined {
    const held = this.proxies.map((p) => p.heldDelay());
    const chunks = held.reduce((n, h) => n + h.chunks, 0);
    return chunks === 0 ? undefined : held.reduce((ms, h) => ms + h.meanMs * h.chunks, 0) / chunks;
  }

  resetHeldLinkDelay(): void {
    for (const proxy of this.proxies) proxy.resetHeldDelay();
  }

  /** The launcher's children by service name (`tokenizer`, `coordinator`, `api`, and each node id). */
  services(): Map<string, number> {
    const services = new Map<string, number>();
    for (const child of childProcesses(this.launcher.pid as number)) {
      const nodeFlag = child.args.indexOf('--node-id');
      if (nodeFlag >= 0) services.set(child.args[nodeFlag + 1], child.pid);
      else {
        const script = child.args.find((a) => a.endsWith('main.js'));
        if (script !== undefined) services.set(path.basename(path.dirname(script)), child.pid);
      }
    }
    return services;
  }

  /**
   * How long each stage's replicas took to load their stage (pipeserve_stage_load_seconds from
   * their metrics), in ms, by stage index; several replicas of a stage report their slowest.
   */
  async stageLoadMs(): Promise<number[]> {
    const byStage: number[] = [];
    for (const node of this.config.nodes) {
      const metrics = await fetch(`http://127.0.0.1:${node.metrics_port}/metrics`, { signal: AbortSignal.timeout(METRICS_TIMEOUT_MS) }).then((r) => r.text());
      const match = /^pipeserve_stage_load_seconds(?:\{[^}]*\})? ([\d.e+-]+)$/m.exec(metrics);
      if (match === null) throw new Error(`${node.id}: its metrics hold no pipeserve_stage_load_seconds`);
      byStage[node.model_part] = Math.max(byStage[node.model_part] ?? 0, Number(match[1]) * 1000);
    }
    return byStage;
  }

  /** Peak resident memory of every service so far, in bytes. */
  peakRss(): Map<string, number> {
    const rss = new Map<string, number>();
    for (const [name, pid] of this.services()) {
      const bytes = peakRssBytes(pid);
      if (bytes !== undefined) rss.set(name, bytes);
    }
    return rss;
  }

  /** Sends a signal to one service (SIGKILL, SIGSTOP, SIGCONT); false when it is not running. */
  signal(name: string, signal: NodeJS.Signals): boolean {
    const pid = this.services().get(name);
    if (pid === undefined) return false;
    process.kill(pid, signal);
    return true;
  }

  async process(text: string, maxNewTokens: number): Promise<number> {
    const response = await fetch(`${this.apiUrl}/api/model/process`, {
      method: 'POST',
      headers: this.headers({ 'Content-Type': 'application/json' }),
      body: JSON.stringify({ text, max_new_tokens: maxNewTokens, temperature: 0 }),
    });
    const body = (await response.json()) as { tokens?: { generated: number }; error?: unknown };
    if (response.status !== 200 || body.tokens === undefined) throw new Error(`process answered ${response.status}: ${JSON.stringify(body)}`);
    return body.tokens.generated;
  }

  /** One generation over SSE (`POST /api/model/generate`), every token timed. */
  async stream(body: Readonly<Record<string, unknown>>, options: { signal?: AbortSignal; onToken?: (index: number) => void } = {}): Promise<StreamResult> {
    const started = performance.now();
    const tokens: number[] = [];
    const tokenTimesMs: number[] = [];
    let done = false;
    let error: string | undefined;
    let status = 0;
    let stageTimings: readonly StageTiming[] = [];
    try {
      const response = await fetch(`${this.apiUrl}/api/model/generate`, {
        method: 'POST',
        headers: this.headers({ 'Content-Type': 'application/json', Accept: 'text/event-stream' }),
        body: JSON.stringify(body),
        signal: options.signal,
      });
      status = response.status;
      if (response.body === null || status !== 200) return { status, tokens, tokenTimesMs, done, error: `HTTP ${status}: ${await response.text()}`, stageTimings };
      const decoder = new TextDecoder();
      let buffered = '';
      for await (const chunk of response.body) {
        buffered += decoder.decode(chunk as Uint8Array, { stream: true });
        let end: number;
        while ((end = buffered.indexOf('\n\n')) >= 0) {
          const block = buffered.slice(0, end);
          buffered = buffered.slice(end + 2);
          const event = /^event: ?(.*)$/m.exec(block)?.[1] ?? 'message';
          const data = block
            .split('\n')
            .filter((l) => l.startsWith('data:'))
            .map((l) => l.slice(5).trimStart())
            .join('\n');
          if (event === 'token') {
            tokens.push((JSON.parse(data) as { token_id: number }).token_id);
            tokenTimesMs.push(performance.now() - started);
            options.onToken?.(tokens.length - 1);
          } else if (event === 'done') {
            done = true;
            stageTimings = (JSON.parse(data) as ProcessResponse).timings.nodes;
          } else if (event === 'error') {
            error = data;
          }
        }
      }
    } catch (caught) {
      error = error ?? (caught as Error).message;
    }
    return { status, tokens, tokenTimesMs, done, error, stageTimings };
  }

  /** Request headers, with the API key when the system has one. */
  private headers(headers: Record<string, string>): Record<string, string> {
    return this.apiKey === undefined ? headers : { ...headers, Authorization: `Bearer ${this.apiKey}` };
  }

  async stop(): Promise<void> {
    if (this.launcher.exitCode === null && this.launcher.signalCode === null) {
      await new Promise<void>((resolve) => {
        const kill = setTimeout(() => this.launcher.kill('SIGKILL'), STOP_GRACE_MS);
        this.launcher.once('exit', () => {
          clearTimeout(kill);
          resolve();
        });
        this.launcher.kill('SIGTERM');
      });
    }
    await Promise.all(this.proxies.map((p) => p.close()));
    await rm(this.dir, { recursive: true, force: true });
  }
}
