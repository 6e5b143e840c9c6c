import { spawn, type ChildProcess } from 'node:child_process';
import { rm } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { postJson } from '../support/http';
import { PROJECT_DIR, SYSTEM_START_TIMEOUT_MS, writeSystemConfig, type SystemConfig } from '../support/system';
import { tinyModel } from '../support/test-models';

const STOP_TIMEOUT_MS = 20_000;

/** Starts the launcher on a tiny 3-stage model; `detached` makes it lead a process group, as a terminal's foreground job does. */
async function startLauncher(detached: boolean): Promise<{ launcher: ChildProcess; output: () => string; exited: Promise<number | null>; config: SystemConfig; dir: string }> {
  const { dir, configPath, system: config } = await writeSystemConfig({ modelDir: await tinyModel({ stages: 3 }) });
  const launcher = spawn(process.execPath, [path.join(PROJECT_DIR, 'dist/tools/start.js')], {
    cwd: PROJECT_DIR,
    env: { ...process.env, CONFIG_PATH: configPath },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached,
  });
  let output = '';
  launcher.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  launcher.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => launcher.once('exit', (code) => resolve(code)));
  return { launcher, output: () => output, exited, config, dir };
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
  'npm start\'s launcher starts all six services, prints the URL once ready, and stops every one of them on SIGTERM',
  async () => {
    const { launcher, output, exited, config, dir } = await startLauncher(false);
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
