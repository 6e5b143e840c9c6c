import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { postJson } from '../support/http';
import { PROJECT_DIR, SYSTEM_START_TIMEOUT_MS, writeSystemConfig, type SystemConfig } from '../support/system';
import { tinyModel } from '../support/test-models';

const STOP_TIMEOUT_MS = 20_000;

/**
 * Starts the launcher on a tiny 3-stage model; `detached` makes it lead a process group, as a
 * terminal's foreground job does. The config file is named by CONFIG_PATH, or with
 * `configVia: 'flag'` by `--config` alone.
 */
async function startLauncher(
  detached: boolean,
  options: { replicas?: number[]; configPath?: string; config?: SystemConfig; dir?: string; configVia?: 'env' | 'flag' } = {},
): Promise<{ launcher: ChildProcess; output: () => string; exited: Promise<number | null>; config: SystemConfig; dir: string; configPath: string }> {
  const written = options.configPath !== undefined ? undefined : await writeSystemConfig({ modelDir: await tinyModel({ stages: 3 }), replicas: options.replicas });
  const configPath = options.configPath ?? (written?.configPath as string);
  const config = options.config ?? (written?.system as SystemConfig);
  const dir = options.dir ?? (written?.dir as string);
  const environment = { ...process.env };
  delete environment.CONFIG_PATH;
  const byFlag = options.configVia === 'flag';
  const launcher = spawn(process.execPath, [path.join(PROJECT_DIR, 'dist/tools/start.js'), ...(byFlag ? ['--config', configPath] : [])], {
    cwd: PROJECT_DIR,
    env: byFlag ? environment : { ...environment, CONFIG_PATH: configPath },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached,
  });
  let output = '';
  launcher.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  launcher.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => launcher.once('exit', (code) => resolve(code)));
  return { launcher, output: () => output, exited, config, dir, configPath };
}

/** Pid of the launcher's child running `--node-id <id>` (from /proc). */
function childPid(launcherPid: number, nodeId: string): number | undefined {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid !== launcherPid) continue;
      const args = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      if (args.includes('--node-id') && args[args.indexOf('--node-id') + 1] === nodeId) return Number(entry);
    } catch {
      // The process ended while we looked.
    }
  }
  return undefined;
}

async function eventually(check: () => Promise<boolean> | boolean, timeoutMs: number): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return check();
}

async function untilReady(launcher: ChildProcess, output: () => string, config: SystemConfig): Promise<void> {
  const until = Date.now() + SYSTEM_START_TIMEOUT_MS;
  while (!output().includes(`pipeserve is ready at ${config.apiUrl}`) && Date.now() < until && launcher.exitCode === null) {
    await new Promise((r) => setTimeout(r, 100));
  }
  expect(output()).toContain(`pipeserve is ready at ${config.apiUrl}`);
}

/** The launcher's exit code, or 'timeout' when it has not exited within STOP_TIMEOUT_MS. */
async function exitOrTimeout(exited: Promise<number | null>): Promise<number | null | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([exited, new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), STOP_TIMEOUT_MS)))]);
  } finally {
    clearTimeout(timer);
  }
}

function portOpen(address: string): Promise<boolean> {
  const [host, port] = [address.slice(0, address.lastIndexOf(':')), Number(address.slice(address.lastIndexOf(':') + 1))];
  return new Promise((resolve) => {
    const socket = net.connect(port, host);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

it(
  'npm start\'s launcher, given --config, starts all six services from that file, prints the URL once ready, and stops every one of them on SIGTERM',
  async () => {
    const { launcher, output, exited, config, dir } = await startLauncher(false, { configVia: 'flag' });
    try {
      await untilReady(launcher, output, config);
      // Each child's lines are prefixed with its name.
      expect(output()).toMatch(/node2.*node serving/);

      const answer = await postJson(`${config.apiUrl}/api/model/process`, { text: 'Hello, my name is', max_new_tokens: 8 });
      expect(answer.status).toBe(200);
      expect(String(answer.body.text).length).toBeGreaterThan(0);

      const addresses = [config.apiUrl.replace('http://', ''), config.tokenizerAddress, config.coordinatorAddress, ...config.nodes.map((n) => n.address)];
      for (const address of addresses) expect([address, await portOpen(address)]).toEqual([address, true]);

      launcher.kill('SIGTERM');
      const code = await exitOrTimeout(exited);
      expect(code).toBe(0);
      for (const address of addresses) expect([address, await portOpen(address)]).toEqual([address, false]);
    } finally {
      if (launcher.exitCode === null) launcher.kill('SIGKILL');
      await rm(dir, { recursive: true, force: true });
    }
  },
  SYSTEM_START_TIMEOUT_MS + STOP_TIMEOUT_MS * 2,
);

it(
  'Ctrl-C on the launcher\'s process group stops every service gracefully, each once, and the launcher exits 0',
  async () => {
    const { launcher, output, exited, config, dir } = await startLauncher(true);
    const pid = launcher.pid as number;
    try {
      await untilReady(launcher, output, config);
      // What a terminal does on Ctrl-C: SIGINT to every process of the foreground group.
      process.kill(-pid, 'SIGINT');
      const code = await exitOrTimeout(exited);
      expect(code).toBe(0);
      const children = ['tokenizer', ...config.nodes.map((n) => n.id), 'coordinator', 'api'];
      for (const name of children) {
        const lines = output().split('\n');
        const graceful = lines.filter((line) => new RegExp(`^\\[${name} *\\] .*"message":"(shutting down|stopping)"`).test(line));
        expect([name, graceful.length]).toEqual([name, 1]);
        expect([name, lines.filter((line) => line.startsWith(`start: ${name} stopped `))]).toEqual([name, [`start: ${name} stopped with exit code 0`]]);
      }
      expect(output()).not.toContain('second signal');
    } finally {
      if (launcher.exitCode === null) process.kill(-pid, 'SIGKILL');
      await rm(dir, { recursive: true, force: true });
    }
  },
  SYSTEM_START_TIMEOUT_MS + STOP_TIMEOUT_MS * 2,
);

it(
  'a service that dies is restarted with backoff while the others keep serving; its restart is counted in pipeserve_service_restarts',
  async () => {
    const { launcher, output, exited, config, dir } = await startLauncher(false, { replicas: [1, 2, 1] });
    try {
      await untilReady(launcher, output, config);
      const victim = childPid(launcher.pid as number, 'node2a');
      expect(victim).toBeDefined();
      process.kill(victim as number, 'SIGKILL');
      // The other replica of stage 1 keeps the system serving while node2a comes back.
      for (let i = 0; i < 5; i++) {
        const answer = await postJson(`${config.apiUrl}/api/model/process`, { text: `Still serving ${i}`, max_new_tokens: 6 });
        expect(answer.status).toBe(200);
      }
      expect(await eventually(() => output().includes('node2a was killed by SIGKILL; restarting it'), 5_000)).toBe(true);
      const node = config.nodes.find((n) => n.id === 'node2a');
      const restarted = await eventually(async () => {
        const text = await fetch(`http://127.0.0.1:${node?.metrics_port}/metrics`).then((r) => r.text(), () => '');
        return /^pipeserve_service_restarts\{[^}]*\} 1$/m.test(text);
      }, 20_000);
      expect(restarted).toBe(true);
      expect(childPid(launcher.pid as number, 'node2a')).not.toBe(victim);
      expect(launcher.exitCode).toBeNull();
      launcher.kill('SIGTERM');
      expect(await exitOrTimeout(exited)).toBe(0);
    } finally {
      if (launcher.exitCode === null) launcher.kill('SIGKILL');
      await rm(dir, { recursive: true, force: true });
    }
  },
  SYSTEM_START_TIMEOUT_MS + STOP_TIMEOUT_MS * 3,
);

it(
  'a second start while one runs refuses at once, naming the ports in use; SIGKILL of the launcher leaves no service behind',
  async () => {
    const first = await startLauncher(false);
    try {
      await untilReady(first.launcher, first.output, first.config);
      const second = await startLauncher(false, { configPath: first.configPath, config: first.config, dir: first.dir, configVia: 'flag' });
      expect(await exitOrTimeout(second.exited)).toBe(1);
      expect(second.output()).toMatch(/ports already in use: 127\.0\.0\.1:\d+ \(api\)/);
      expect(second.output()).toContain(`change the ports in ${first.configPath}`);
      expect(second.output()).not.toContain('is ready at');

      first.launcher.kill('SIGKILL');
      const addresses = [first.config.tokenizerAddress, first.config.coordinatorAddress, ...first.config.nodes.map((n) => n.address), first.config.apiUrl.replace('http://', '')];
      const allClosed = await eventually(async () => (await Promise.all(addresses.map((a) => portOpen(a)))).every((open) => !open), 15_000);
      expect(allClosed).toBe(true);
    } finally {
      if (first.launcher.exitCode === null) first.launcher.kill('SIGKILL');
      await rm(first.dir, { recursive: true, force: true });
    }
  },
  SYSTEM_START_TIMEOUT_MS + STOP_TIMEOUT_MS * 3,
);
