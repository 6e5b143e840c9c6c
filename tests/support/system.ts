import { spawn, type ChildProcess } from 'node:child_process';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { writeLoopbackConfig, type LoopbackSystem } from '../../tools/loopback-config';

export const PROJECT_DIR = path.resolve(__dirname, '../..');
const DIST = path.join(PROJECT_DIR, 'dist');
/** How long the whole system may take to answer /ready (tiny model: a few seconds). */
export const SYSTEM_START_TIMEOUT_MS = 60_000;
const STOP_GRACE_MS = 5_000;


interface ProcessSpec {
  readonly name: string;
  readonly script: string;
  readonly args: readonly string[];
}

export interface SystemOptions {
  readonly modelDir: string;
  readonly limits?: Record<string, number>;
  /** Extra environment for every process. */
  readonly env?: Record<string, string>;
  /** Replicas of each stage (default one each). */
  readonly replicas?: readonly number[];
}

export type SystemConfig = LoopbackSystem;

/**
 * The six services as real processes (node dist/...), on loopback with ephemeral ports, with a
 * config.json of their own. Tests can stop and restart single nodes.
 */
export class RunningSystem {
  private readonly children = new Map<string, ChildProcess>();
  private readonly output = new Map<string, string[]>();

  private constructor(
    readonly dir: string,
    readonly configPath: string,
    readonly config: SystemConfig,
    private readonly specs: readonly ProcessSpec[],
    private readonly env: Record<string, string>,
  ) {}

  /**
   * Starts the system; if a service finds one of its ports taken meanwhile (ports are chosen
   * free, then released), starts again once on new ports.
   */
  static async start(options: SystemOptions): Promise<RunningSystem> {
    try {
      return await RunningSystem.startOnce(options);
    } catch (error) {
      if (!String(error).includes('EADDRINUSE')) throw error;
      return RunningSystem.startOnce(options);
    }
  }

  private static async startOnce(options: SystemOptions): Promise<RunningSystem> {
    const { dir, configPath, system: config } = await writeSystemConfig(options);
    const specs: ProcessSpec[] = [
      { name: 'tokenizer', script: 'services/tokenizer/main.js', args: [] },
      ...config.nodes.map((n) => ({ name: n.id, script: 'services/node/main.js', args: ['--node-id', n.id] })),
      { name: 'coordinator', script: 'services/coordinator/main.js', args: [] },
      { name: 'api', script: 'services/api/main.js', args: [] },
    ];
    const system = new RunningSystem(dir, configPath, config, specs, { ...options.env, CONFIG_PATH: configPath });
    try {
      for (const spec of specs) system.spawn(spec);
      await system.waitReady();
    } catch (error) {
      await system.stop();
      throw error;
    }
    return system;
  }

  get apiUrl(): string {
    return this.config.apiUrl;
  }

  /** Everything a process printed, for failure messages. */
  logs(name: string): string {
    return (this.output.get(name) ?? []).join('');
  }

  async stopProcess(name: string): Promise<void> {
    const child = this.children.get(name);
    if (child === undefined) return;
    this.children.delete(name);
    await terminate(child);
  }

  /** Kills a process without warning (SIGKILL), as a crash would. */
  async killProcess(name: string): Promise<void> {
    const child = this.children.get(name);
    if (child === undefined) return;
    this.children.delete(name);
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGKILL');
    await exited;
  }

  /** SIGSTOP: the process stops answering anything but keeps its connections open, as a hung host would. */
  freezeProcess(name: string): void {
    this.children.get(name)?.kill('SIGSTOP');
  }

  /** SIGCONT after freezeProcess. */
  thawProcess(name: string): void {
    this.children.get(name)?.kill('SIGCONT');
  }

  /** Whether a process started by the system is still running. */
  isRunning(name: string): boolean {
    const child = this.children.get(name);
    return child !== undefined && child.exitCode === null && child.signalCode === null;
  }

  async startProcess(name: string): Promise<void> {
    const spec = this.specs.find((s) => s.name === name);
    if (spec === undefined) throw new Error(`no process named ${name}`);
    this.spawn(spec);
  }

  async waitReady(timeoutMs = SYSTEM_START_TIMEOUT_MS): Promise<void> {
    const until = Date.now() + timeoutMs;
    let last = '';
    while (Date.now() < until) {
      for (const [name, child] of this.children) {
        if (child.exitCode !== null) throw new Error(`${name} exited with ${child.exitCode}:\n${this.logs(name)}`);
      }
      try {
        const response = await fetch(`${this.apiUrl}/ready`, { signal: AbortSignal.timeout(2_000) });
        last = `${response.status} ${await response.text()}`;
        if (response.status === 200) return;
      } catch (error) {
        last = String(error);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error(`the system was not ready after ${timeoutMs} ms (last /ready: ${last})\n${[...this.output.keys()].map((n) => `--- ${n}\n${this.logs(n)}`).join('\n')}`);
  }

  async stop(): Promise<void> {
    await Promise.all([...this.children.values()].map((child) => terminate(child)));
    this.children.clear();
    await rm(this.dir, { recursive: true, force: true });
  }

  private spawn(spec: ProcessSpec): void {
    const child = spawn(process.execPath, [path.join(DIST, spec.script), ...spec.args], {
      cwd: PROJECT_DIR,
      env: { ...process.env, ...this.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const lines = this.output.get(spec.name) ?? [];
    this.output.set(spec.name, lines);
    const keep = (chunk: Buffer): void => {
      lines.push(chunk.toString());
      if (lines.length > 2_000) lines.splice(0, lines.length - 2_000);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    this.children.set(spec.name, child);
  }
}

function terminate(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const kill = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
    child.once('exit', () => {
      clearTimeout(kill);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/** The loopback config of a test system: the tiny model's name, info logs, test-sized limits. */
export function writeSystemConfig(options: SystemOptions): ReturnType<typeof writeLoopbackConfig> {
  return writeLoopbackConfig({
    modelDir: options.modelDir,
    modelName: 'tiny-test',
    replicas: options.replicas,
    limits: { max_new_tokens: 128, request_timeout_ms: 30_000, ...options.limits },
  });
}
