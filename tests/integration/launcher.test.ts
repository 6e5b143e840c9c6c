import { spawn } from 'node:child_process';
import { rm } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { postJson } from '../support/http';
import { PROJECT_DIR, SYSTEM_START_TIMEOUT_MS, writeSystemConfig } from '../support/system';
import { tinyModel } from '../support/test-models';

const STOP_TIMEOUT_MS = 20_000;

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
    const { dir, configPath, system: config } = await writeSystemConfig({ modelDir: await tinyModel({ stages: 3 }) });
    const launcher = spawn(process.execPath, [path.join(PROJECT_DIR, 'dist/tools/start.js')], {
      cwd: PROJECT_DIR,
      env: { ...process.env, CONFIG_PATH: configPath },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    launcher.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    launcher.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => launcher.once('exit', (code) => resolve(code)));
    try {
      const until = Date.now() + SYSTEM_START_TIMEOUT_MS;
      while (!output.includes(`pipeserve is ready at ${config.apiUrl}`) && Date.now() < until && launcher.exitCode === null) {
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(output).toContain(`pipeserve is ready at ${config.apiUrl}`);
      // Each child's lines are prefixed with its name.
      expect(output).toMatch(/node2.*node serving/);

      const answer = await postJson(`${config.apiUrl}/api/model/process`, { text: 'Hello, my name is', max_new_tokens: 8 });
      expect(answer.status).toBe(200);
      expect(String(answer.body.text).length).toBeGreaterThan(0);

      const addresses = [config.apiUrl.replace('http://', ''), config.tokenizerAddress, config.coordinatorAddress, ...config.nodes.map((n) => n.address)];
      for (const address of addresses) expect([address, await portOpen(address)]).toEqual([address, true]);

      launcher.kill('SIGTERM');
      const code = await Promise.race([exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), STOP_TIMEOUT_MS))]);
      expect(code).toBe(0);
      for (const address of addresses) expect([address, await portOpen(address)]).toEqual([address, false]);
    } finally {
      if (launcher.exitCode === null) launcher.kill('SIGKILL');
      await rm(dir, { recursive: true, force: true });
    }
  },
  SYSTEM_START_TIMEOUT_MS + STOP_TIMEOUT_MS * 2,
);
