import { existsSync } from 'node:fs';
import path from 'node:path';
import { UsageError } from '../shared/errors';
import { readManifest } from '../shared/model/manifest';
import { SystemRunner, type StreamResult, type SystemRunnerOptions } from './bench/system-runner';
import { settledKv, type KvReading } from './chaos/settled-kv';
import { CliCommand, exitWhenDone, type CliValues } from './cli/cli-command';
import { PROCESS_OUTPUT, type CliOutput } from './cli/cli-output';
import { describeNode } from './describe-node';
import { childProcesses } from './launcher/process-tree';

/** After the fault run, nodes that all answer get this long to finish releasing before leaked KV is counted. */
const SETTLE_MS = 10_000;
/** A node the launcher restarted late in the run may still be loading its stage: it gets this long to answer. */
const ANSWER_WAIT_MS = 30_000;
const KV_POLL_MS = 250;
/** The longest a client may wait between two tokens while its sequence moves (issue: ≤ 3 s). */
const STALL_LIMIT_MS = 3_000;
/** The default --timeout-ms: starting and stopping the system, settling its KV … */
const TIMEOUT_BASE_MS = 180_000;
/** … and this much per stream and token, for both runs together. */
const TIMEOUT_PER_STREAM_TOKEN_MS = 250;
const MAX_TIMEOUT_MS = 86_400_000;
/** While a run past its deadline is still starting the system, the launcher is told to stop this often (it may not be spawned yet). */
const STOP_STARTING_INTERVAL_MS = 250;
/** The script SystemRunner starts the system with: the only kind of child this tool has. */
const LAUNCHER_SCRIPT = 'start.js';

export const CHAOS_COMMAND = new CliCommand({
  name: 'chaos',
  description:
    'Starts the whole system with --replicas replicas of every stage (through the real launcher, on loopback), runs --streams ' +
    'concurrent generations once without faults (the reference) and once while replicas are killed (SIGKILL, --kill of them) and ' +
    'frozen (SIGSTOP for --freeze-ms, then SIGCONT, --freeze of them) at random moments and --cancel clients leave early, then ' +
    'prints a ledger, with the KV every node still holds. Even streams are greedy, odd ones seeded sampling: both must match the ' +
    `reference. Exits 1 unless nothing failed, nothing differed, every node answered with no KV held and no stall reached ${STALL_LIMIT_MS} ms.`,
  options: {
    model: { value: 'dir', default: path.join('models', 'default'), description: 'the compiled model folder to serve' },
    streams: { value: 'n', default: '16', description: 'concurrent generations in each run, 1 to 256' },
    tokens: { value: 'n', default: '48', description: 'new tokens per stream, 1 to 1024' },
    kill: { value: 'n', default: '1', description: 'replicas killed (SIGKILL) during the fault run, 0 to 100; the launcher restarts them' },
    freeze: { value: 'n', default: '0', description: 'replicas frozen (SIGSTOP, then SIGCONT after --freeze-ms) during the fault run, 0 to 100' },
    'freeze-ms': { value: 'ms', default: '4000', description: 'how long a frozen replica stays frozen, 100 to 60000' },
    cancel: { value: 'n', default: '0', description: 'clients that leave mid-stream during the fault run, 0 to --streams' },
    replicas: { value: 'n', default: '2', description: 'replicas of every stage, 1 to 8 (a fault never takes the last serving replica of a stage)' },
    seed: { value: 'n', default: '1', description: 'seed of the fault schedule (moments, victims, leaving clients): the same seed replays it' },
    'timeout-ms': {
      value: 'ms',
      description:
        'the whole run may take this long, from starting the system to counting its KV; past it the run fails and every process it ' +
        `started is stopped (default: ${TIMEOUT_BASE_MS} + ${TIMEOUT_PER_STREAM_TOKEN_MS} × streams × tokens)`,
    },
    json: { description: "also print the ledger's numbers as one JSON object on the last line of stdout" },
  },
  examples: [
    { description: 'One kill and one freeze among 16 streams on the default model', command: 'npm run chaos -- --streams 16 --kill 1 --freeze 1' },
    { description: 'A replayable schedule on another model, the ledger as JSON', command: 'npm run chaos -- --model models/int8 --streams 8 --tokens 24 --kill 1 --freeze 1 --seed 7 --json' },
    { description: 'Clients leaving early, no replica harmed, within 5 minutes', command: 'npm run chaos -- --kill 0 --cancel 4 --timeout-ms 300000' },
  ],
});

export interface ChaosOptions {
  readonly modelDir: string;
  readonly streams: number;
  readonly tokens: number;
  readonly kills: number;
  readonly freezes: number;
  readonly freezeMs: number;
  readonly cancels: number;
  readonly replicas: number;
  readonly seed: number;
  readonly timeoutMs: number;
  readonly json: boolean;
}

export interface ChaosLedger {
  readonly accepted: number;
  readonly completed: number;
  readonly failed: number;
  readonly cancelled: number;
  readonly mismatched: number;
  /** KV sequences still held by the nodes that answered. */
  readonly kv_leaked: number;
  /** Each node's KV sequences at the end; null when it did not answer. */
  readonly kv_by_node: Readonly<Record<string, number | null>>;
  /** The nodes that did not answer: what they hold is unknown, so the run is not healthy. */
  readonly kv_unknown_nodes: readonly string[];
  readonly stall_ms_p99: number;
  readonly stall_ms_max: number;
  readonly faults: readonly string[];
}

function parseChaosArgs(values: CliValues<typeof CHAOS_COMMAND.spec.options>): ChaosOptions {
  const streams = parseInteger('streams', values.streams, 1, 256);
  const tokens = parseInteger('tokens', values.tokens, 1, 1024);
  const options: ChaosOptions = {
    modelDir: path.resolve(values.model),
    streams,
    tokens,
    kills: parseInteger('kill', values.kill, 0, 100),
    freezes: parseInteger('freeze', values.freeze, 0, 100),
    freezeMs: parseInteger('freeze-ms', values['freeze-ms'], 100, 60_000),
    cancels: parseInteger('cancel', values.cancel, 0, 256),
    replicas: parseInteger('replicas', values.replicas, 1, 8),
    seed: parseInteger('seed', values.seed, 0, 2 ** 31),
    timeoutMs: values['timeout-ms'] === undefined ? TIMEOUT_BASE_MS + TIMEOUT_PER_STREAM_TOKEN_MS * streams * tokens : parseInteger('timeout-ms', values['timeout-ms'], 1_000, MAX_TIMEOUT_MS),
    json: values.json,
  };
  if (options.cancels > options.streams) throw new UsageError(`--cancel: ${options.cancels} is more than the ${options.streams} streams`);
  if (!existsSync(path.join(options.modelDir, 'manifest.json'))) throw new UsageError(`--model: ${options.modelDir} is not a compiled model folder (no manifest.json)`);
  return options;
}

function parseInteger(flag: string, text: string, min: number, max: number): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < min || n > max) throw new UsageError(`--${flag}: expected an integer from ${min} to ${max}, got '${text}'`);
  return n;
}

/** A small seeded generator (mulberry32), so a schedule can be replayed with the same --seed. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

function requestBody(i: number, tokens: number): Record<string, unknown> {
  const text = `Chaos stream ${i}: the ${['quick', 'lazy', 'brave', 'odd', 'tall'][i % 5]} fox`;
  return i % 2 === 0 ? { text, max_new_tokens: tokens } : { text, max_new_tokens: tokens, temperature: 0.9, top_p: 0.95, seed: 7000 + i };
}

function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

/** The run went past --timeout-ms; thrown once whatever was under way has been abandoned. */
function expired(options: ChaosOptions, phase: string): Error {
  return new Error(`the run was still ${phase} after --timeout-ms ${options.timeoutMs} ms; stopped it and every process it started`);
}

export async function runChaos(options: ChaosOptions, log: (line: string) => void): Promise<ChaosLedger> {
  const deadline = AbortSignal.timeout(options.timeoutMs);
  const manifest = await readManifest(options.modelDir);
  const stages = manifest.stages.length;
  const system = await startWithin(
    { modelDir: options.modelDir, replicas: new Array<number>(stages).fill(options.replicas), limits: { max_new_tokens: Math.max(options.tokens, 32) } },
    deadline,
    log,
  );
  if (system === undefined) throw expired(options, 'starting the system');
  const frozen = new Set<string>();
  try {
    if (deadline.aborted) throw expired(options, 'starting the system');
    log(`system ready: ${stages} stages × ${options.replicas} replicas; reference run of ${options.streams} streams`);
    const started = performance.now();
    const reference = await Promise.all(Array.from({ length: options.streams }, (_, i) => system.stream(requestBody(i, options.tokens), { signal: deadline })));
    const referenceMs = performance.now() - started;
    if (deadline.aborted) throw expired(options, 'in the reference run');
    const broken = reference.findIndex((r) => !r.done);
    if (broken >= 0) throw new Error(`the reference run failed on stream ${broken}: ${reference[broken].error}`);

    const rand = random(options.seed);
    const faults: string[] = [];
    const replicas = system.config.nodes.map((n) => ({ id: n.id, stage: n.model_part }));
    const unavailable = new Set<string>();
    /** A replica whose stage keeps another one serving, so a fault never takes a whole stage down. */
    const victim = (): string | undefined => {
      const candidates = replicas.filter((r) => !unavailable.has(r.id) && replicas.some((o) => o.stage === r.stage && o.id !== r.id && !unavailable.has(o.id)));
      return candidates.length === 0 ? undefined : candidates[Math.floor(rand() * candidates.length)].id;
    };
    // Faults land in the first 60 % of what the run took without them, so streams are in flight.
    const window = Math.max(200, referenceMs * 0.6);
    const timers: NodeJS.Timeout[] = [];
    const schedule = (kind: 'kill' | 'freeze', at: number): void => {
      timers.push(
        setTimeout(() => {
          const id = victim();
          if (id === undefined) return;
          if (kind === 'kill') {
            system.signal(id, 'SIGKILL');
            unavailable.add(id);
            // The launcher restarts it; count it usable again once its restart is due.
            timers.push(setTimeout(() => unavailable.delete(id), 5_000));
            faults.push(`SIGKILL ${id} at ${at.toFixed(0)} ms`);
          } else {
            system.signal(id, 'SIGSTOP');
            frozen.add(id);
            unavailable.add(id);
            faults.push(`SIGSTOP ${id} at ${at.toFixed(0)} ms for ${options.freezeMs} ms`);
            timers.push(
              setTimeout(() => {
                thaw(system, frozen, id);
                unavailable.delete(id);
              }, options.freezeMs),
            );
          }
        }, at),
      );
    };
    for (let k = 0; k < options.kills; k++) schedule('kill', window * (0.2 + 0.8 * rand()));
    for (let k = 0; k < options.freezes; k++) schedule('freeze', window * (0.2 + 0.8 * rand()));
    const cancelled = new Set<number>();
    while (cancelled.size < options.cancels) cancelled.add(Math.floor(rand() * options.streams));

    log(`fault run: ${options.kills} kill(s), ${options.freezes} freeze(s), ${options.cancels} cancelled client(s)`);
    const outcomes: StreamResult[] = await Promise.all(
      Array.from({ length: options.streams }, (_, i) => {
        const controller = new AbortController();
        const cancelAt = 1 + Math.floor(rand() * Math.max(1, options.tokens / 2));
        return system.stream(requestBody(i, options.tokens), {
          signal: AbortSignal.any([controller.signal, deadline]),
          onToken: (index) => {
            if (cancelled.has(i) && index + 1 >= cancelAt) controller.abort();
          },
        });
      }),
    );
    for (const timer of timers) clearTimeout(timer);
    if (deadline.aborted) throw expired(options, 'in the fault run');
    // Thaw anything still frozen before counting, so its KV can be read and released.
    for (const id of [...frozen]) thaw(system, frozen, id);

    const readings = await settledKv({
      nodes: system.config.nodes,
      running: () => new Set(system.services().keys()),
      describe: describeNode,
      settleMs: SETTLE_MS,
      answerWaitMs: ANSWER_WAIT_MS,
      pollMs: KV_POLL_MS,
      signal: deadline,
    });
    if (deadline.aborted) throw expired(options, 'counting the KV the nodes hold');
    for (const [id, reading] of readings) if ('unknown' in reading) log(`${id}: KV unknown, ${reading.unknown}`);
    const gaps = outcomes.flatMap((o) => o.tokenTimesMs.slice(1).map((t, k) => t - o.tokenTimesMs[k]));
    const longest = outcomes.map((o) => Math.max(0, ...o.tokenTimesMs.slice(1).map((t, k) => t - o.tokenTimesMs[k])));
    const ledger: ChaosLedger = {
      accepted: outcomes.filter((o) => o.status === 200).length,
      completed: outcomes.filter((o, i) => o.done && !cancelled.has(i)).length,
      failed: outcomes.filter((o, i) => !o.done && !cancelled.has(i)).length,
      cancelled: cancelled.size,
      mismatched: outcomes.filter((o, i) => o.done && !cancelled.has(i) && JSON.stringify(o.tokens) !== JSON.stringify(reference[i].tokens)).length,
      kv_leaked: [...readings.values()].reduce((sum, r) => sum + ('sequences' in r ? r.sequences : 0), 0),
      kv_by_node: Object.fromEntries([...readings].map(([id, r]) => [id, 'sequences' in r ? r.sequences : null])),
      kv_unknown_nodes: [...readings].filter(([, r]) => 'unknown' in r).map(([id]) => id),
      stall_ms_p99: Math.round(percentile(gaps, 99)),
      stall_ms_max: Math.round(Math.max(0, ...longest)),
      faults,
    };
    outcomes.forEach((o, i) => {
      if (!o.done && !cancelled.has(i)) log(`stream ${i} failed: ${o.error ?? `HTTP ${o.status}`}`);
    });
    return ledger;
  } finally {
    // A stopped process would not stop: SIGTERM waits for SIGCONT.
    for (const id of [...frozen]) thaw(system, frozen, id);
    await system.stop();
  }
}

function thaw(system: SystemRunner, frozen: Set<string>, id: string): void {
  frozen.delete(id);
  try {
    system.signal(id, 'SIGCONT');
  } catch {
    // It was killed meanwhile: nothing left to thaw.
  }
}

/**
 * The system, ready; undefined when the deadline passed first. SystemRunner waits for readiness
 * on its own clock, so past the deadline the launcher it is starting (this tool's only kind of
 * child) is told to stop until the start gives up: the launcher stops its services first.
 */
async function startWithin(options: SystemRunnerOptions, deadline: AbortSignal, log: (line: string) => void): Promise<SystemRunner | undefined> {
  let stopping: NodeJS.Timeout | undefined;
  const stopLaunchers = (): void => {
    for (const child of childProcesses(process.pid)) {
      if (path.basename(child.args[1] ?? '') !== LAUNCHER_SCRIPT) continue;
      try {
        process.kill(child.pid, 'SIGTERM');
      } catch {
        // It ended meanwhile.
      }
    }
  };
  const onDeadline = (): void => {
    stopLaunchers();
    stopping = setInterval(stopLaunchers, STOP_STARTING_INTERVAL_MS);
  };
  deadline.addEventListener('abort', onDeadline, { once: true });
  try {
    return await SystemRunner.start(options);
  } catch (error) {
    if (deadline.aborted) return undefined;
    // The first line says what failed; the rest is what the launcher and its services printed.
    const [summary, ...details] = (error instanceof Error ? error.message : String(error)).split('\n');
    if (details.some((line) => line.trim() !== '')) log(`the system's output:\n${details.join('\n').trimEnd()}`);
    throw new Error(summary.replace(/:$/, ''), { cause: error });
  } finally {
    deadline.removeEventListener('abort', onDeadline);
    clearInterval(stopping);
  }
}

/** Why a run is not healthy; none for a healthy one. */
export function ledgerProblems(ledger: ChaosLedger): string[] {
  const problems: string[] = [];
  if (ledger.failed > 0) problems.push(`${ledger.failed} stream(s) failed`);
  if (ledger.mismatched > 0) problems.push(`${ledger.mismatched} output(s) differ from the no-fault run`);
  if (ledger.kv_leaked > 0) problems.push(`${ledger.kv_leaked} KV sequence(s) still held`);
  if (ledger.kv_unknown_nodes.length > 0) problems.push(`KV unknown on ${ledger.kv_unknown_nodes.join(', ')}`);
  if (ledger.stall_ms_max >= STALL_LIMIT_MS) problems.push(`a stall of ${ledger.stall_ms_max} ms (limit ${STALL_LIMIT_MS} ms)`);
  return problems;
}

function printLedger(ledger: ChaosLedger, json: boolean, output: CliOutput): void {
  const rows: [string, string | number][] = [
    ['accepted', ledger.accepted],
    ['completed', ledger.completed],
    ['failed', ledger.failed],
    ['cancelled by the client', ledger.cancelled],
    ['outputs different from the no-fault run', ledger.mismatched],
    [
      'KV sequences still held at the end (all nodes)',
      ledger.kv_unknown_nodes.length === 0 ? ledger.kv_leaked : `${ledger.kv_leaked} + unknown on ${ledger.kv_unknown_nodes.join(', ')}`,
    ],
    ...Object.entries(ledger.kv_by_node).map(([id, held]): [string, string | number] => [`  held by ${id}`, held ?? 'unknown (no answer)']),
    ['p99 inter-token gap (ms)', ledger.stall_ms_p99],
    [`longest stall (ms, limit ${STALL_LIMIT_MS})`, ledger.stall_ms_max],
  ];
  output.stdout(`\nfaults: ${ledger.faults.join('; ') || 'none'}\n`);
  for (const [label, value] of rows) output.stdout(`  ${label.padEnd(48)} ${value}\n`);
  if (json) {
    const { faults: _faults, ...counts } = ledger;
    output.stdout(`${JSON.stringify(counts)}\n`);
  }
}

/** `npm run chaos`: 0 for a healthy run, 1 for an unhealthy or failed one, 2 for bad arguments. */
export function runChaosCli(argv: readonly string[], output: CliOutput): Promise<number> {
  return CHAOS_COMMAND.run(argv, output, async ({ values }) => {
    const options = parseChaosArgs(values);
    const ledger = await runChaos(options, (line) => output.stderr(`chaos: ${line}\n`));
    printLedger(ledger, options.json, output);
    const problems = ledgerProblems(ledger);
    if (problems.length > 0) output.stderr(`chaos: not healthy: ${problems.join('; ')}\n`);
    return problems.length === 0 ? 0 : 1;
  });
}

if (require.main === module) exitWhenDone(runChaosCli(process.argv.slice(2), PROCESS_OUTPUT));
