import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { PARENT_PID_ENV, RESTARTS_ENV } from '../../shared/shutdown';

export interface ChildSpec {
  readonly name: string;
  readonly script: string;
  readonly args: readonly string[];
}

/** Restart backoff: the first restart after this long, doubling per consecutive crash up to the maximum. */
export const RESTART_BACKOFF = { initialMs: 250, maxMs: 10_000 } as const;
/** A child that ran this long before crashing starts again from the initial backoff. */
const STABLE_AFTER_MS = 30_000;
/** Children get this long after SIGTERM to close their streams before SIGKILL. */
export const STOP_GRACE_MS = 10_000;
/** The exit code services use for a bad config or bad arguments: restarting cannot help. */
const USAGE_EXIT_CODE = 2;

interface Supervised {
  readonly spec: ChildSpec;
  child: ChildProcess | undefined;
  restarts: number;
  /** Consecutive crashes (for the backoff). */
  crashes: number;
  startedAt: number;
  timer: NodeJS.Timeout | undefined;
}

export interface SupervisorEvents {
  /** A child that will not come back: the launcher stops everything. */
  onFatal(message: string): void;
  /** A line for the launcher's own log. */
  onNotice(message: string): void;
}

/**
 * The launcher's children: spawns them with their output prefixed by name and, once the
 * system has been ready, restarts one that dies with exponential backoff while the rest keep
 * serving (a stage with another replica loses nothing; the coordinator routes around the gap).
 * A death before the system was ever ready, or an exit with the usage code (bad config), is
 * fatal: restarting would only repeat it.
 *
 * Each child runs in a process group of its own, so Ctrl-C in a terminal reaches only the
 * launcher and each child gets exactly one signal, the launcher's SIGTERM. Children watch the
 * launcher's pid (PIPESERVE_PARENT_PID) and shut down when it is gone, so even a SIGKILL of the
 * launcher leaves no orphan holding the ports. Each restart is counted in PIPESERVE_RESTARTS,
 * which the restarted service exports as its `pipeserve_service_restarts` metric.
 */
export class Supervisor {
  private readonly children = new Map<string, Supervised>();
  private readonly nameWidth: number;
  private stopping = false;
  private ready = false;

  constructor(
    names: readonly string[],
    private readonly events: SupervisorEvents,
  ) {
    this.nameWidth = Math.max(...names.map((n) => n.length));
  }

  /** From now on a crash restarts the child instead of stopping the system. */
  markReady(): void {
    this.ready = true;
  }

  start(spec: ChildSpec): void {
    const supervised: Supervised = { spec, child: undefined, restarts: 0, crashes: 0, startedAt: 0, timer: undefined };
    this.children.set(spec.name, supervised);
    this.spawn(supervised);
  }

  /** Runs a one-shot child (a build step) to its end; resolves with its exit code. */
  runOnce(spec: ChildSpec): Promise<number | null> {
    const child = this.spawnProcess(spec, 0);
    const supervised: Supervised = { spec, child, restarts: 0, crashes: 0, startedAt: Date.now(), timer: undefined };
    this.children.set(spec.name, supervised);
    return new Promise((resolve) => {
      child.once('exit', (code) => {
        this.children.delete(spec.name);
        resolve(code);
      });
      child.once('error', () => resolve(null));
    });
  }

  /** Pids of the running children, by name (for tests and diagnostics). */
  pids(): Record<string, number | undefined> {
    return Object.fromEntries([...this.children].map(([name, s]) => [name, s.child?.pid]));
  }

  async stopAll(): Promise<void> {
    this.stopping = true;
    for (const supervised of this.children.values()) clearTimeout(supervised.timer);
    await Promise.all([...this.children.values()].map((s) => (s.child === undefined ? Promise.resolve() : this.stopChild(s.spec.name, s.child))));
  }

  /** Last resort when the launcher exits: SIGKILL whatever is still running. */
  killRemaining(): void {
    for (const { child } of this.children.values()) {
      if (child !== undefined && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  }

  private spawn(supervised: Supervised): void {
    const child = this.spawnProcess(supervised.spec, supervised.restarts);
    supervised.child = child;
    supervised.startedAt = Date.now();
    child.once('error', (error) => this.exited(supervised, child, `could not start: ${error.message}`, null));
    child.once('exit', (code, signal) => this.exited(supervised, child, signal !== null ? `was killed by ${signal}` : `exited with code ${code}`, code));
  }

  private spawnProcess(spec: ChildSpec, restarts: number): ChildProcess {
    const child = spawn(process.execPath, [...profilingArgs(process.env), spec.script, ...spec.args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, [PARENT_PID_ENV]: String(process.pid), [RESTARTS_ENV]: String(restarts) },
      detached: true,
    });
    const prefix = `[${spec.name.padEnd(this.nameWidth)}] `;
    createInterface({ input: child.stdout! }).on('line', (line) => process.stdout.write(prefix + line + '\n'));
    createInterface({ input: child.stderr! }).on('line', (line) => process.stderr.write(prefix + line + '\n'));
    return child;
  }

  private exited(supervised: Supervised, child: ChildProcess, how: string, code: number | null): void {
    if (supervised.child !== child) return;
    supervised.child = undefined;
    if (this.stopping) return;
    const { name } = supervised.spec;
    if (!this.ready || code === USAGE_EXIT_CODE) {
      this.events.onFatal(`${name} ${how}`);
      return;
    }
    if (Date.now() - supervised.startedAt >= STABLE_AFTER_MS) supervised.crashes = 0;
    const delay = Math.min(RESTART_BACKOFF.maxMs, RESTART_BACKOFF.initialMs * 2 ** supervised.crashes);
    supervised.crashes += 1;
    supervised.restarts += 1;
    this.events.onNotice(`${name} ${how}; restarting it in ${delay} ms (restart ${supervised.restarts}); the other services keep serving`);
    supervised.timer = setTimeout(() => {
      if (!this.stopping) this.spawn(supervised);
    }, delay);
  }

  private stopChild(name: string, child: ChildProcess): Promise<void> {
    return new Promise<void>((resolve) => {
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
    });
  }
}

/**
 * With PIPESERVE_PROFILE_DIR set, every service writes a V8 CPU profile there when it exits (one
 * file per thread, for Chrome DevTools or speedscope): how a profile of the running system is taken.
 */
export function profilingArgs(env: NodeJS.ProcessEnv): string[] {
  const dir = env.PIPESERVE_PROFILE_DIR;
  return dir === undefined || dir === '' ? [] : ['--cpu-prof', `--cpu-prof-dir=${dir}`];
}
