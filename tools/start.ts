import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { loadConfig, type AppConfig } from '../shared/config';
import { UsageError } from '../shared/errors';

/** Loading GPT-2 small into three stages on a busy laptop takes a while; a stuck service should not wait forever. */
const DEFAULT_READY_TIMEOUT_MS = 300_000;
const READY_POLL_INTERVAL_MS = 500;
/** Each /ready probe; the api's own checks use 1 s deadlines. */
const READY_PROBE_TIMEOUT_MS = 3_000;
/** Children get this long after SIGTERM to close their streams before SIGKILL. */
const STOP_GRACE_MS = 10_000;

/** SIGHUP too: a closed terminal must stop the children, which no longer share its session. */
const STOP_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

const USAGE = 'usage: start [--ready-timeout-ms <ms>]   (reads config.json, or the file named by CONFIG_PATH)';

interface ChildSpec {
  readonly name: string;
  readonly script: string;
  readonly args: readonly string[];
}

/** Ctrl-C or SIGTERM while starting: a clean stop, not a failure. */
class StopRequested extends Error {}

interface StartOptions {
  readonly readyTimeoutMs: number;
}

function parseArgs(argv: readonly string[]): StartOptions {
  let readyTimeoutMs = DEFAULT_READY_TIMEOUT_MS;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--ready-timeout-ms') {
      const value = Number(argv[++i]);
      if (!Number.isSafeInteger(value) || value < 1) throw new UsageError(`--ready-timeout-ms: must be a positive integer, got ${JSON.stringify(argv[i])}`);
      readyTimeoutMs = value;
    } else {
      throw new UsageError(`unknown argument ${JSON.stringify(arg)}; ${USAGE}`);
    }
  }
  return { readyTimeoutMs };
}

/** The compiled entry points sit beside this file in dist/: dist/tools/start.js, dist/services/<name>/main.js. */
function serviceScript(service: string): string {
  return path.join(__dirname, '..', 'services', service, 'main.js');
}

function childSpecs(config: AppConfig): ChildSpec[] {
  return [
    { name: 'tokenizer', script: serviceScript('tokenizer'), args: [] },
    ...config.nodes.map((node) => ({ name: node.id, script: serviceScript('node'), args: ['--node-id', node.id] })),
    { name: 'coordinator', script: serviceScript('coordinator'), args: [] },
    { name: 'api', script: serviceScript('api'), args: [] },
  ];
}

/**
 * The children of this launcher: spawns them with their output prefixed by name, reports the
 * first one that exits on its own, and stops them all (SIGTERM, then SIGKILL after a grace period).
 *
 * Each child runs in a process group of its own (`detached`), so Ctrl-C in a terminal, which
 * signals the whole foreground group, reaches only the launcher, and each child gets exactly one
 * signal: the launcher's SIGTERM. Left in the launcher's group, a child would get the terminal's
 * SIGINT and then the SIGTERM, which it takes as an impatient second signal and exits at once,
 * without a graceful shutdown. The price: a signal sent to the group no longer reaches the
 * children by itself, so the launcher kills whatever is left when it exits (`killRemaining`);
 * only a SIGKILL of the launcher, which no process can intercept, leaves them running.
 */
class ChildGroup {
  private readonly children = new Map<string, ChildProcess>();
  private readonly nameWidth: number;
  private stopping = false;

  constructor(
    names: readonly string[],
    private readonly onUnexpectedExit: (name: string, how: string) => void,
  ) {
    this.nameWidth = Math.max(...names.map((n) => n.length));
  }

  /** A child whose exit is expected (a one-shot build step) is not reported when it exits. */
  start(spec: ChildSpec, exitIsExpected = false): ChildProcess {
    const child = spawn(process.execPath, [spec.script, ...spec.args], { stdio: ['ignore', 'pipe', 'pipe'], env: process.env, detached: true });
    this.children.set(spec.name, child);
    const prefix = `[${spec.name.padEnd(this.nameWidth)}] `;
    createInterface({ input: child.stdout! }).on('line', (line) => process.stdout.write(prefix + line + '\n'));
    createInterface({ input: child.stderr! }).on('line', (line) => process.stderr.write(prefix + line + '\n'));
    child.once('error', (error) => {
      this.children.delete(spec.name);
      if (!this.stopping) this.onUnexpectedExit(spec.name, `could not start: ${error.message}`);
    });
    child.once('exit', (code, signal) => {
      this.children.delete(spec.name);
      if (!this.stopping && !(exitIsExpected && code === 0)) this.onUnexpectedExit(spec.name, signal !== null ? `was killed by ${signal}` : `exited with code ${code}`);
    });
    return child;
  }

  async stopAll(): Promise<void> {
    this.stopping = true;
    await Promise.all(
      [...this.children.entries()].map(
        ([name, child]) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) {
              resolve();
              return;
            }
            const kill = setTimeout(() => {
              process.stderr.write(`start: ${name} did not stop within ${STOP_GRACE_MS} ms; killing it\n`);
              child.kill('SIGKILL');
            }, STOP_GRACE_MS);
            child.once('exit', (code, signal) => {
              clearTimeout(kill);
              process.stderr.write(`start: ${name} stopped ${signal !== null ? `by ${signal}` : `with exit code ${code}`}\n`);
              resolve();
            });
            child.kill('SIGTERM');
          }),
      ),
    );
  }

  /** Last resort when the launcher exits: children in groups of their own would otherwise outlive it. */
  killRemaining(): void {
    for (const child of this.children.values()) {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  }
}

/** Builds the embedded default model when its folder has no manifest yet (first run). */
async function ensureModel(config: AppConfig, group: ChildGroup): Promise<void> {
  if (existsSync(path.join(config.modelDir, 'manifest.json'))) return;
  process.stdout.write(`start: no model at ${config.modelDir}; building the default model (about 10 s and 1.1 GB for GPT-2 small)\n`);
  const init = group.start({ name: 'model-init', script: path.join(__dirname, 'model-init.js'), args: ['--out', config.modelDir] }, true);
  const code = await new Promise<number | null>((resolve) => init.once('exit', (exitCode) => resolve(exitCode)));
  if (code !== 0 || !existsSync(path.join(config.modelDir, 'manifest.json'))) {
    throw new Error(`model-init exited with code ${code} and left no manifest.json in ${config.modelDir}`);
  }
}

/** Where to reach the api from this machine: a wildcard listen address is reached on loopback. */
function apiUrl(config: AppConfig): string {
  const host = config.api.host === '0.0.0.0' || config.api.host === '::' ? '127.0.0.1' : config.api.host;
  return `http://${host.includes(':') ? `[${host}]` : host}:${config.api.port}`;
}

/** Polls GET /ready until 200; on timeout, names what was still down (or that the api itself never answered). */
async function waitUntilReady(url: string, timeoutMs: number, failed: Promise<never>): Promise<void> {
  const giveUpAt = Date.now() + timeoutMs;
  let lastProblem = `api at ${url}: no answer yet`;
  for (;;) {
    try {
      const response = await fetch(`${url}/ready`, { signal: AbortSignal.timeout(READY_PROBE_TIMEOUT_MS) });
      if (response.status === 200) return;
      const body = (await response.json()) as { missing?: unknown };
      lastProblem = Array.isArray(body.missing) ? body.missing.join('; ') : `GET /ready answered ${response.status}`;
    } catch (error) {
      const cause = (error as { cause?: unknown }).cause;
      lastProblem = `api at ${url}: ${cause instanceof Error ? cause.message : (error as Error).message}`;
    }
    if (Date.now() >= giveUpAt) throw new Error(`not ready after ${timeoutMs} ms: ${lastProblem}`);
    await Promise.race([new Promise((resolve) => setTimeout(resolve, READY_POLL_INTERVAL_MS)), failed]);
  }
}

async function main(): Promise<number> {
  const options = parseArgs(process.argv.slice(2));
  const config = loadConfig();
  const specs = childSpecs(config);
  for (const spec of specs) {
    if (!existsSync(spec.script)) throw new Error(`${spec.name}: ${spec.script} is missing; build first with: npx tsc -p .`);
  }

  let reportExit: (message: string) => void = () => undefined;
  const childFailed = new Promise<never>((_resolve, reject) => {
    reportExit = (message) => reject(new Error(message));
  });
  childFailed.catch(() => undefined);
  const group = new ChildGroup(['model-init', ...specs.map((s) => s.name)], (name, how) => reportExit(`${name} ${how}`));
  process.once('exit', () => group.killRemaining());

  const stopRequested = new Promise<NodeJS.Signals>((resolve) => {
    // The handlers stay installed: under `npm start` the launcher gets Ctrl-C's SIGINT twice (from
    // the terminal and forwarded by npm), and a signal without a handler would kill the launcher
    // before it stops its children. Repeated signals change nothing; STOP_GRACE_MS bounds the stop.
    for (const signal of STOP_SIGNALS) process.on(signal, () => resolve(signal));
  });
  const interrupted = stopRequested.then((signal) => Promise.reject(new StopRequested(`${signal} received`)));
  interrupted.catch(() => undefined);
  const stop = async (reason: string, code: number): Promise<number> => {
    process.stderr.write(`start: ${reason}; stopping every service\n`);
    await group.stopAll();
    return code;
  };

  try {
    await Promise.race([ensureModel(config, group), childFailed, interrupted]);
    for (const spec of specs) group.start(spec);
    const url = apiUrl(config);
    await Promise.race([waitUntilReady(url, options.readyTimeoutMs, childFailed), childFailed, interrupted]);
    process.stdout.write(
      `\npipeserve is ready at ${url}  (${config.nodes.length} model nodes, model ${config.modelName})\n` +
        `try:\n  curl -s ${url}/api/model/process -H 'content-type: application/json' -d '{"text": "Hello, my name is", "max_new_tokens": 16}'\n` +
        `  curl -N ${url}/api/model/generate -H 'content-type: application/json' -d '{"text": "Hello, my name is"}'\n` +
        `API description: ${url}/openapi.json   metrics: ${url}/metrics   Ctrl-C stops everything\n\n`,
    );
  } catch (error) {
    return stop((error as Error).message, error instanceof StopRequested ? 0 : 1);
  }

  const outcome = await Promise.race([stopRequested.then((signal) => ({ signal })), childFailed.catch((error: Error) => ({ error }))]);
  if ('signal' in outcome) return stop(`${outcome.signal} received`, 0);
  return stop(outcome.error.message, 1);
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`start: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(error instanceof UsageError ? 2 : 1);
  },
);
