import path from 'node:path';
import { parseArgs } from 'node:util';
import { UsageError } from '../shared/errors';
import { readManifest } from '../shared/model/manifest';
import { SystemRunner, type StreamResult } from './bench/system-runner';
import { describeNode } from './describe-node';

const USAGE = `usage: chaos [--model models/default] [--streams 16] [--tokens 48] [--kill 1] [--freeze 0] [--freeze-ms 4000] [--cancel 0] [--replicas 2] [--seed 1] [--json]

Starts the whole system with --replicas replicas of every stage (through the real launcher, on
loopback), runs --streams concurrent generations once without faults (the reference) and once
while replicas are killed (SIGKILL, --kill of them) and frozen (SIGSTOP for --freeze-ms, then
SIGCONT, --freeze of them) at random moments and --cancel clients leave early, then prints a
ledger. Even streams are greedy, odd ones seeded sampling: both must match the reference.

example: npm run chaos -- --streams 16 --kill 1 --freeze 1`;

/** After the fault run, nodes get this long to finish releasing before leaked KV is counted. */
const SETTLE_MS = 10_000;
/** The longest a client may wait between two tokens while its sequence moves (issue: ≤ 3 s). */
const STALL_LIMIT_MS = 3_000;

interface ChaosOptions {
  readonly modelDir: string;
  readonly streams: number;
  readonly tokens: number;
  readonly kills: number;
  readonly freezes: number;
  readonly freezeMs: number;
  readonly cancels: number;
  readonly replicas: number;
  readonly seed: number;
  readonly json: boolean;
}

export interface ChaosLedger {
  readonly accepted: number;
  readonly completed: number;
  readonly failed: number;
  readonly cancelled: number;
  readonly mismatched: number;
  readonly kv_leaked: number;
  readonly stall_ms_p99: number;
  readonly stall_ms_max: number;
  readonly faults: readonly string[];
}

function parseOptions(argv: readonly string[]): ChaosOptions {
  const { values } = parseArgs({
    args: [...argv],
    strict: true,
    options: {
      model: { type: 'string', default: 'models/default' },
      streams: { type: 'string', default: '16' },
      tokens: { type: 'string', default: '48' },
      kill: { type: 'string', default: '1' },
      freeze: { type: 'string', default: '0' },
      'freeze-ms': { type: 'string', default: '4000' },
      cancel: { type: 'string', default: '0' },
      replicas: { type: 'string', default: '2' },
      seed: { type: 'string', default: '1' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  const int = (flag: string, text: string, min: number, max: number): number => {
    const n = Number(text);
    if (!/^\d+$/.test(text) || n < min || n > max) throw new UsageError(`--${flag}: expected an integer from ${min} to ${max}, got '${text}'`);
    return n;
  };
  const options: ChaosOptions = {
    modelDir: path.resolve(values.model),
    streams: int('streams', values.streams, 1, 256),
    tokens: int('tokens', values.tokens, 1, 1024),
    kills: int('kill', values.kill, 0, 100),
    freezes: int('freeze', values.freeze, 0, 100),
    freezeMs: int('freeze-ms', values['freeze-ms'], 100, 60_000),
    cancels: int('cancel', values.cancel, 0, 256),
    replicas: int('replicas', values.replicas, 1, 8),
    seed: int('seed', values.seed, 0, 2 ** 31),
    json: values.json,
  };
  if (options.cancels > options.streams) throw new UsageError(`--cancel: ${options.cancels} is more than the ${options.streams} streams`);
  return options;
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

export async function runChaos(options: ChaosOptions, log: (line: string) => void): Promise<ChaosLedger> {
  const manifest = await readManifest(options.modelDir);
  const stages = manifest.stages.length;
  const system = await SystemRunner.start({ modelDir: options.modelDir, replicas: new Array<number>(stages).fill(options.replicas), limits: { max_new_tokens: Math.max(options.tokens, 32) } });
  try {
    log(`system ready: ${stages} stages × ${options.replicas} replicas; reference run of ${options.streams} streams`);
    const started = performance.now();
    const reference = await Promise.all(Array.from({ length: options.streams }, (_, i) => system.stream(requestBody(i, options.tokens))));
    const referenceMs = performance.now() - started;
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
            unavailable.add(id);
            faults.push(`SIGSTOP ${id} at ${at.toFixed(0)} ms for ${options.freezeMs} ms`);
            timers.push(
              setTimeout(() => {
                system.signal(id, 'SIGCONT');
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
          signal: controller.signal,
          onToken: (index) => {
            if (cancelled.has(i) && index + 1 >= cancelAt) controller.abort();
          },
        });
      }),
    );
    for (const timer of timers) clearTimeout(timer);
    // Thaw anything still frozen before counting, so its KV can be read and released.
    for (const fault of faults) if (fault.startsWith('SIGSTOP')) system.signal(fault.split(' ')[1], 'SIGCONT');

    const kvLeaked = await settledKv(system);
    const gaps = outcomes.flatMap((o) => o.tokenTimesMs.slice(1).map((t, k) => t - o.tokenTimesMs[k]));
    const longest = outcomes.map((o) => Math.max(0, ...o.tokenTimesMs.slice(1).map((t, k) => t - o.tokenTimesMs[k])));
    const ledger: ChaosLedger = {
      accepted: outcomes.filter((o) => o.status === 200).length,
      completed: outcomes.filter((o, i) => o.done && !cancelled.has(i)).length,
      failed: outcomes.filter((o, i) => !o.done && !cancelled.has(i)).length,
      cancelled: cancelled.size,
      mismatched: outcomes.filter((o, i) => o.done && !cancelled.has(i) && JSON.stringify(o.tokens) !== JSON.stringify(reference[i].tokens)).length,
      kv_leaked: kvLeaked,
      stall_ms_p99: Math.round(percentile(gaps, 99)),
      stall_ms_max: Math.round(Math.max(0, ...longest)),
      faults,
    };
    outcomes.forEach((o, i) => {
      if (!o.done && !cancelled.has(i)) log(`stream ${i} failed: ${o.error ?? `HTTP ${o.status}`}`);
    });
    return ledger;
  } finally {
    await system.stop();
  }
}

/** KV sequences still held by every running replica once releases have had time to land. */
async function settledKv(system: SystemRunner): Promise<number> {
  const until = Date.now() + SETTLE_MS;
  let held = Number.POSITIVE_INFINITY;
  while (Date.now() < until) {
    const running = system.services();
    const counts = await Promise.all(
      system.config.nodes.filter((n) => running.has(n.id)).map((n) => describeNode(n.address).then((d) => d.kv_sequences, () => 0)),
    );
    held = counts.reduce((a, b) => a + b, 0);
    if (held === 0) return 0;
    await new Promise((r) => setTimeout(r, 250));
  }
  return held;
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  const log = (line: string): void => {
    process.stderr.write(`chaos: ${line}\n`);
  };
  const ledger = await runChaos(options, log);
  const rows: [string, string | number][] = [
    ['accepted', ledger.accepted],
    ['completed', ledger.completed],
    ['failed', ledger.failed],
    ['cancelled by the client', ledger.cancelled],
    ['outputs different from the no-fault run', ledger.mismatched],
    ['KV sequences still held at the end (all nodes)', ledger.kv_leaked],
    ['p99 inter-token gap (ms)', ledger.stall_ms_p99],
    [`longest stall (ms, limit ${STALL_LIMIT_MS})`, ledger.stall_ms_max],
  ];
  process.stdout.write(`\nfaults: ${ledger.faults.join('; ') || 'none'}\n`);
  for (const [label, value] of rows) process.stdout.write(`  ${label.padEnd(48)} ${value}\n`);
  if (options.json) {
    const { faults: _faults, ...numbers } = ledger;
    process.stdout.write(`${JSON.stringify(numbers)}\n`);
  }
  const healthy = ledger.failed === 0 && ledger.mismatched === 0 && ledger.kv_leaked === 0 && ledger.stall_ms_max < STALL_LIMIT_MS;
  process.exitCode = healthy ? 0 : 1;
}

if (require.main === module) {
  main().catch((error: unknown) => {
    process.stderr.write(`chaos: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(error instanceof UsageError ? 2 : 1);
  });
}
