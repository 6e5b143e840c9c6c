import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { writeLoopbackConfig } from '../loopback-config';

const READY_TIMEOUT_MS = 300_000;
const STOP_GRACE_MS = 10_000;

/**
 * The whole system started by the real launcher (dist/tools/start.js) with a config of its own
 * on free loopback ports, so a benchmark measures exactly what `npm start` runs.
 */
export class SystemRunner {
  private constructor(
    private readonly child: ChildProcess,
    private readonly dir: string,
    readonly apiUrl: string,
  ) {}

  static async start(modelDir: string, baseConfigPath: string): Promise<SystemRunner> {
    const base = JSON.parse(await readFile(baseConfigPath, 'utf8')) as { limits?: Record<string, number> };
    const { dir, configPath, system } = await writeLoopbackConfig({ modelDir, modelName: 'bench', logLevel: 'warn', limits: base.limits });
    const child = spawn(process.execPath, [path.join(__dirname, '..', 'start.js'), '--ready-timeout-ms', String(READY_TIMEOUT_MS)], {
      env: { ...process.env, CONFIG_PATH: configPath },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const runner = new SystemRunner(child, dir, system.apiUrl);
    const output: string[] = [];
    child.stdout?.on('data', (chunk: Buffer) => output.push(chunk.toString()));
    child.stderr?.on('data', (chunk: Buffer) => output.push(chunk.toString()));
    const until = Date.now() + READY_TIMEOUT_MS;
    while (Date.now() < until) {
      if (child.exitCode !== null) throw new Error(`the system exited with ${child.exitCode}:\n${output.join('')}`);
      const ready = await fetch(`${runner.apiUrl}/ready`).then((r) => r.status === 200, () => false);
      if (ready) return runner;
      await new Promise((r) => setTimeout(r, 500));
    }
    await runner.stop();
    throw new Error(`the system was not ready after ${READY_TIMEOUT_MS} ms:\n${output.join('')}`);
  }

  async process(text: string, maxNewTokens: number): Promise<number> {
    const response = await fetch(`${this.apiUrl}/api/model/process`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ text, max_new_tokens: maxNewTokens, temperature: 0 }),
    });
    const body = (await response.json()) as { tokens?: { generated: number }; error?: unknown };
    if (response.status !== 200 || body.tokens === undefined) throw new Error(`process answered ${response.status}: ${JSON.stringify(body)}`);
    return body.tokens.generated;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      await new Promise<void>((resolve) => {
        const kill = setTimeout(() => this.child.kill('SIGKILL'), STOP_GRACE_MS);
        this.child.once('exit', () => {
          clearTimeout(kill);
          resolve();
        });
        this.child.kill('SIGTERM');
      });
    }
    await rm(this.dir, { recursive: true, force: true });
  }
}
