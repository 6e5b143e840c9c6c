import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { writeLoopbackConfig } from '../../tools/loopback-config';
import { PROJECT_DIR } from '../support/system';
import { tinyModel } from '../support/test-models';

const TEST_TIMEOUT_MS = 120_000;

/** Runs one service to its end; its exit code and stderr. */
function runService(script: string, configPath: string): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(PROJECT_DIR, script)], { env: { ...process.env, CONFIG_PATH: configPath, LOG_LEVEL: 'error' }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    });
  });
}

describe('a configuration that cannot work', () => {
  test(
    'a coordinator whose nodes cover fewer stages than the model has exits 2 (the launcher then stops everything instead of restarting it), saying how to fix it',
    async () => {
      const modelDir = await tinyModel({ stages: 3 });
      const { configPath } = await writeLoopbackConfig({ modelDir });
      const config = JSON.parse(await readFile(configPath, 'utf8')) as { nodes: { model_part: number }[] };
      await writeFile(configPath, JSON.stringify({ ...config, nodes: config.nodes.filter((n) => n.model_part < 2) }));
      const { code, stderr } = await runService('dist/services/coordinator/main.js', configPath);
      expect(code).toBe(2);
      expect(stderr).toContain(`coordinator: config nodes cover 2 stages but the model in ${modelDir} has 3: give nodes[] model_part values 0 … 2, or compile the model with --stages 2`);
    },
    TEST_TIMEOUT_MS,
  );
});
