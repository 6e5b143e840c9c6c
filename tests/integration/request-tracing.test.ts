import { spawn } from 'node:child_process';
import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { postJson, postSse } from '../support/http';
import { PROJECT_DIR, RunningSystem, SYSTEM_START_TIMEOUT_MS, writeSystemConfig } from '../support/system';
import { tinyModel } from '../support/test-models';

const REQUEST_TIMEOUT_MS = 60_000;
const EXIT_TIMEOUT_MS = 20_000;

let system: RunningSystem;
let modelDir: string;

beforeAll(async () => {
  modelDir = await tinyModel({ stages: 3 });
  system = await RunningSystem.start({ modelDir });
}, SYSTEM_START_TIMEOUT_MS * 2);

afterAll(async () => {
  await system?.stop();
});

it(
  'a request id given by the client comes back and is logged by every service the request touches',
  async () => {
    const requestId = `trace-${Date.now()}`;
    const answer = await postJson(`${system.apiUrl}/api/model/process`, { text: 'Tracing a request', max_new_tokens: 4 }, { headers: { 'Content-Type': 'application/json', 'X-Request-Id': requestId } });
    expect(answer.status).toBe(200);
    expect(answer.body.request_id).toBe(requestId);
    expect(answer.headers.get('x-request-id')).toBe(requestId);
    // Logs are JSON lines; give the last ones a moment to be flushed.
    await new Promise((r) => setTimeout(r, 500));
    for (const service of ['api', 'tokenizer', 'coordinator', 'node1', 'node2', 'node3']) {
      const lines = system
        .logs(service)
        .split('\n')
        .filter((line) => line.includes(requestId));
      expect([service, lines.length > 0]).toEqual([service, true]);
      for (const line of lines) expect((JSON.parse(line) as { request_id?: string }).request_id).toBe(requestId);
    }
  },
  REQUEST_TIMEOUT_MS,
);

it(
  'a stop string ends the text before it, with finish_reason stop_string, in both the JSON and the stream',
  async () => {
    const greedy = await postJson(`${system.apiUrl}/api/model/process`, { text: 'The history of the world', max_new_tokens: 24 });
    const text = String(greedy.body.text);
    // A stop string taken from the middle of the greedy continuation, so it certainly occurs.
    const stop = text.slice(Math.floor(text.length / 2), Math.floor(text.length / 2) + 3);
    const expected = text.slice(0, text.indexOf(stop));
    const stopped = await postJson(`${system.apiUrl}/api/model/process`, { text: 'The history of the world', max_new_tokens: 24, stop: [stop] });
    expect(stopped.status).toBe(200);
    expect(stopped.body.finish_reason).toBe('stop_string');
    expect(stopped.body.text).toBe(expected);
    const ids = stopped.body.token_ids as number[];
    expect(ids).toEqual((greedy.body.token_ids as number[]).slice(0, ids.length));
    expect(ids.length).toBeLessThan(24);

    const streamed = await postSse(`${system.apiUrl}/api/model/generate`, { text: 'The history of the world', max_new_tokens: 24, stop: [stop] });
    const tokens = streamed.events.filter((e) => e.event === 'token');
    const done = streamed.events[streamed.events.length - 1];
    expect(tokens.map((e) => e.data.text as string).join('')).toBe(expected);
    expect(done.event).toBe('done');
    expect(done.data.finish_reason).toBe('stop_string');
    expect(done.data.token_ids).toEqual(ids);
  },
  REQUEST_TIMEOUT_MS,
);

it(
  'a service started with an invalid config.json exits at once with a message naming the key',
  async () => {
    const { dir, configPath } = await writeSystemConfig({ modelDir });
    try {
      const config = JSON.parse(await readFile(configPath, 'utf8')) as { nodes: { address: string }[] };
      config.nodes[1].address = 'no-port-here';
      await writeFile(configPath, JSON.stringify(config));
      for (const script of ['services/tokenizer/main.js', 'services/coordinator/main.js', 'services/api/main.js']) {
        const child = spawn(process.execPath, [path.join(PROJECT_DIR, 'dist', script)], { env: { ...process.env, CONFIG_PATH: configPath }, stdio: ['ignore', 'pipe', 'pipe'] });
        let stderr = '';
        child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
        const code = await new Promise<number | null | 'timeout'>((resolve) => {
          const timer = setTimeout(() => {
            child.kill('SIGKILL');
            resolve('timeout');
          }, EXIT_TIMEOUT_MS);
          child.once('exit', (exitCode) => {
            clearTimeout(timer);
            resolve(exitCode);
          });
        });
        expect([script, code]).toEqual([script, 1]);
        expect(stderr).toContain('config nodes[1].address: "no-port-here" must be host:port');
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  },
  EXIT_TIMEOUT_MS * 4,
);
