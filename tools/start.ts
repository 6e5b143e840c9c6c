import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { loadConfig, type AppConfig } from '../shared/config';
import { UsageError } from '../shared/errors';
import { watchProcess } from '../shared/shutdown';
import { CliCommand, type CliValues } from './cli/cli-command';
import { PROCESS_OUTPUT, type CliOutput } from './cli/cli-output';
import { listenPorts, takenPorts } from './launcher/port-check';
import { Supervisor, type ChildSpec } from './launcher/supervisor';

/** Loading GPT-2 small into three stages on a busy laptop takes a while; a stuck service should not wait forever. */
const DEFAULT_READY_TIMEOUT_MS = 300_000;
const READY_POLL_INTERVAL_MS = 500;
/** Each /ready probe; the api's own checks use 1 s deadlines. */
const READY_PROBE_TIMEOUT_MS = 3_000;

/** SIGHUP too: a closed terminal must stop the children, which no longer share its session. */
const STOP_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

export const START_COMMAND = new CliCommand({
  name: 'start',
  description:
    'Starts PipeServe on this machine: builds the default model on the first run, then the tokenizer, every model node of the config, ' +
    'the coordinator and the api as child processes; prints the URL once GET /ready answers 200, restarts a service that dies, ' +
    'and stops them all on Ctrl-C, SIGTERM or SIGHUP.',
  options: {
    config: {
      value: 'path',
      description: 'the config.json to read, handed to every service as CONFIG_PATH (default: $CONFIG_PATH, else ./config.json)',
    },
    'ready-timeout-ms': {
      value: 'ms',
      default: String(DEFAULT_READY_TIMEOUT_MS),
      description: 'how long the services may take to be ready before everything is stopped',
    },
  },
  environment: {
    CONFIG_PATH: 'the config.json to read when --config is not given',
    'MODEL_DIR, LOG_LEVEL, …': "override config.json's fields (README, Configuration), here and in every service, which inherits them",
  },
  examples: [
    { description: 'Everything from ./config.json, building models/default on the first run', command: 'npm start' },
    { description: 'Another config file, with more time for a slow machine to load the model', command: 'npm start -- --config /etc/pipeserve/config.json --ready-timeout-ms 600000' },
    { description: 'Without npm, once built', command: 'node dist/tools/start.js --config config.json' },
  ],
});

interface StartOptions {
  /** Absolute; undefined: CONFIG_PATH or ./config.json decide, as in every service. */
  readonly configPath: string | undefined;
  readonly readyTimeoutMs: number;
}

/** Ctrl-C or SIGTERM while starting: a clean stop, not a failure. */
class StopRequested extends Error {}

function parseStartArgs(values: CliValues<typeof START_COMMAND.spec.options>): StartOptions {
  const timeout = values['ready-timeout-ms'];
  const readyTimeoutMs = Number(timeout);
  if (timeout.trim() === '' || !Number.isSafeInteger(readyTimeoutMs) || readyTimeoutMs < 1) {
    throw new UsageError(`--ready-timeout-ms: must be a positive integer, got '${timeout}'`);
  }
  if (values.config !== undefined && values.config.trim() === '') throw new UsageError('--config: must name a file, got an empty path');
  return { configPath: values.config === undefined ? undefined : path.resolve(values.config), readyTimeoutMs };
}

/**
 * `npm start`: starts every service of the config as a supervised child process and runs until a
 * stop signal or a fatal failure. Resolves to the exit code: 0 after a requested stop, 2 for bad
 * arguments, 1 for a bad config or when starting or a service failed.
 */
export function runStartCli(argv: readonly string[], output: CliOutput): Promise<number> {
  return START_COMMAND.run(argv, output, async ({ values }) => startSystem(parseStartArgs(values), output));
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
 * Builds the embedded default model when its folder has no manifest yet (first run). Its output
 * reaches the user through the launcher's pipe, not a terminal, so model-init is asked for its
 * progress as plain lines (one per stage and checkpoint step), not bars.
 */
async function ensureModel(config: AppConfig, group: Supervisor, output: CliOutput): Promise<void> {
  if (existsSync(path.join(config.modelDir, 'manifest.json'))) return;
  output.stdout(`start: no model at ${config.modelDir}; building the default model (about 10 s and 1.1 GB for GPT-2 small)\n`);
  const code = await group.runOnce({ name: 'model-init', script: path.join(__dirname, 'model-init.js'), args: ['--out', config.modelDir, '--progress'] });
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

async function startSystem(options: StartOptions, output: CliOutput): Promise<number> {
  // The services read CONFIG_PATH, and inherit the launcher's environment.
  if (options.configPath !== undefined) process.env.CONFIG_PATH = options.configPath;
  const config = loadConfig();
  const specs = childSpecs(config);
  for (const spec of specs) {
    if (!existsSync(spec.script)) throw new Error(`${spec.name}: ${spec.script} is missing; build first with: npx tsc -p .`);
  }
  const taken = await takenPorts(listenPorts(config));
  if (taken.length > 0) {
    const list = taken.map((p) => `${p.host}:${p.port} (${p.owner})`).join(', ');
    throw new Error(`ports already in use: ${list}. Is pipeserve (or something else) already running? Stop it, or change the ports in ${process.env.CONFIG_PATH ?? 'config.json'}`);
  }

  let reportExit: (message: string) => void = () => undefined;
  const childFailed = new Promise<never>((_resolve, reject) => {
    reportExit = (message) => reject(new Error(message));
  });
  childFailed.catch(() => undefined);
  const group = new Supervisor(['model-init', ...specs.map((s) => s.name)], {
    onFatal: (message) => reportExit(message),
    onNotice: (message) => output.stderr(`start: ${message}\n`),
  });
  process.once('exit', () => group.killRemaining());
  // Under npm, however npm ends (killed with SIGKILL too), the launcher ends with it. Run directly,
  // the shell that started it is no supervisor: `setsid`/`nohup node dist/tools/start.js &` outlives it.
  for (const ancestor of watchedAncestors(process.env, process.ppid, readProcStat)) {
    watchProcess(ancestor, () => reportExit(`parent process ${ancestor} is gone`));
  }

  const stopRequested = new Promise<NodeJS.Signals>((resolve) => {
    // The handlers stay installed: under `npm start` the launcher gets Ctrl-C's SIGINT twice (from
    // the terminal and forwarded by npm), and a signal without a handler would kill the launcher
    // before it stops its children. Repeated signals change nothing; STOP_GRACE_MS bounds the stop.
    for (const signal of STOP_SIGNALS) process.on(signal, () => resolve(signal));
  });
  const interrupted = stopRequested.then((signal) => Promise.reject(new StopRequested(`${signal} received`)));
  interrupted.catch(() => undefined);
  const stop = async (reason: string, code: number): Promise<number> => {
    output.stderr(`start: ${reason}; stopping every service\n`);
    await group.stopAll();
    return code;
  };

  try {
    await Promise.race([ensureModel(config, group, output), childFailed, interrupted]);
    for (const spec of specs) group.start(spec);
    const url = apiUrl(config);
    await Promise.race([waitUntilReady(url, options.readyTimeoutMs, childFailed), childFailed, interrupted]);
    group.markReady();
    // With a key the examples carry its header, never the key itself (stdout ends up in logs).
    const auth = config.api.apiKey === undefined ? '' : ` -H "authorization: Bearer $API_KEY"`;
    output.stdout(
      `\npipeserve is ready at ${url}  (${config.nodes.length} model nodes, model ${config.modelName})\n` +
        `try:${auth === '' ? '' : ' (with API_KEY set to the api key)'}\n` +
        `  curl -s ${url}/api/model/process${auth} -H 'content-type: application/json' -d '{"text": "Hello, my name is", "max_new_tokens": 16}'\n` +
        `  curl -N ${url}/api/model/generate${auth} -H 'content-type: application/json' -d '{"text": "Hello, my name is"}'\n` +
        `API description: ${url}/openapi.json   metrics: ${url}/metrics   Ctrl-C stops everything\n\n`,
    );
  } catch (error) {
    return stop((error as Error).message, error instanceof StopRequested ? 0 : 1);
  }

  const outcome = await Promise.race([stopRequested.then((signal) => ({ signal })), childFailed.catch((error: Error) => ({ error }))]);
  if ('signal' in outcome) return stop(`${outcome.signal} received`, 0);
  return stop(outcome.error.message, 1);
}

/** The launcher's parent and grandparent (npm runs it through a shell), where /proc tells them. */
/**
 * The processes whose end stops the launcher: when npm runs it (`npm start`: npm, then the `sh -c`
 * of the script, then the launcher), its parent and grandparent, so that a killed npm leaves no
 * services behind; run directly, none (Ctrl-C, SIGTERM and SIGHUP still stop it).
 */
export function watchedAncestors(env: NodeJS.ProcessEnv, parent: number, readStat: (pid: number) => string | undefined): number[] {
  if (env.npm_lifecycle_event === undefined) return [];
  const found = [parent];
  const stat = readStat(parent);
  if (stat !== undefined) {
    // Fields after the command (which may hold spaces) start after the last ')': state, ppid, …
    const grandparent = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    if (Number.isSafeInteger(grandparent)) found.push(grandparent);
  }
  return found.filter((pid) => pid > 1);
}

function readProcStat(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    // Not Linux, or no /proc: the parent alone is watched.
    return undefined;
  }
}

if (require.main === module) {
  // process.exit: once every service has stopped there is nothing left to wait for, whatever handles remain.
  void runStartCli(process.argv.slice(2), PROCESS_OUTPUT).then((code) => process.exit(code));
}
