import { spawn, spawnSync } from 'node:child_process';
import path from 'node:path';
import type { EncodeResponse__Output } from '../../protos/generated/pipeserve/v1/EncodeResponse';
import { callOptions, createClient, requestMetadata, unary } from '../../shared/grpc/channel';
import { protos } from '../../shared/grpc/proto-loader';
import { postJson } from '../support/http';
import { findOnPath, grpcPython } from '../support/proto-toolchain';
import { PROJECT_DIR, RunningSystem, SYSTEM_START_TIMEOUT_MS } from '../support/system';
import { tinyModel } from '../support/test-models';

const CLIENT = path.join(PROJECT_DIR, 'examples/python/client.py');
const CLIENT_TIMEOUT_MS = 60_000;
const PROMPT = 'The history of the world';
const MAX_NEW_TOKENS = 20;

/** Where Debian's python3-grpcio and a proto compiler for Python (either kind) are installed. */
const python = grpcPython();
const hasCompiler =
  (findOnPath('protoc') !== undefined && findOnPath('grpc_python_plugin') !== undefined) ||
  (python !== undefined && spawnSync(python, ['-c', 'import grpc_tools.protoc'], { stdio: 'ignore' }).status === 0);
const describeWherePythonGrpc = python !== undefined && hasCompiler ? describe : describe.skip;

interface ClientRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  /** Each stdout line with the number of the read that completed it (0 for the first). */
  readonly lines: { text: string; read: number }[];
}

function runClient(args: string[]): Promise<ClientRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(python ?? 'python3', [CLIENT, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PYTHONUNBUFFERED: '1', PYTHONDONTWRITEBYTECODE: '1' } });
    const kill = setTimeout(() => child.kill('SIGKILL'), CLIENT_TIMEOUT_MS);
    let stdout = '';
    let stderr = '';
    let pending = '';
    let reads = 0;
    const lines: { text: string; read: number }[] = [];
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      pending += chunk.toString();
      const complete = pending.split('\n');
      pending = complete.pop() ?? '';
      for (const text of complete) lines.push({ text, read: reads });
      reads++;
    });
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(kill);
      resolve({ code, stdout, stderr, lines });
    });
  });
}

describeWherePythonGrpc('the Python example client (examples/python, Debian python3-grpcio)', () => {
  let system: RunningSystem;
  let addresses: string[];

  beforeAll(async () => {
    system = await RunningSystem.start({ modelDir: await tinyModel({ stages: 3 }) });
    addresses = ['--tokenizer', system.config.tokenizerAddress, '--coordinator', system.config.coordinatorAddress];
  }, SYSTEM_START_TIMEOUT_MS * 2);

  afterAll(async () => {
    await system?.stop();
  });

  async function restGreedy(): Promise<{ token_ids: number[]; text: string; finish_reason: string }> {
    const response = await postJson(`${system.apiUrl}/api/model/process`, { text: PROMPT, max_new_tokens: MAX_NEW_TOKENS, temperature: 0 });
    expect(response.status).toBe(200);
    return response.body as { token_ids: number[]; text: string; finish_reason: string };
  }

  it(
    'streams, token by token, exactly the greedy tokens REST /api/model/process returns, and Process agrees',
    async () => {
      const run = await runClient([...addresses, '--prompt', PROMPT, '--max-new-tokens', String(MAX_NEW_TOKENS), '--jsonl']);
      expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: '' });
      // One JSON object per line, {kind: fields}.
      const records = run.lines.map((line) => {
        const [[kind, fields]] = Object.entries(JSON.parse(line.text) as Record<string, Record<string, unknown>>);
        return { kind, fields, read: line.read };
      });
      const of = (kind: string) => records.filter((r) => r.kind === kind);
      const tokens = of('token').map((r) => r.fields as { index: number; token_id: number; text: string });
      const [summaryRecord] = of('summary');
      const summary = summaryRecord.fields as { token_ids: number[]; text: string };
      const processed = of('processed')[0].fields as { token_ids: number[]; text: string; finish_reason: string; nodes: { node_id: string }[] };
      expect(records.map((r) => r.kind)).toEqual(['encoded', ...tokens.map(() => 'token'), 'summary', 'processed']);

      const rest = await restGreedy();
      expect(rest.token_ids).toHaveLength(MAX_NEW_TOKENS);
      expect(tokens.map((t) => t.token_id)).toEqual(rest.token_ids);
      expect(tokens.map((t) => t.index)).toEqual(rest.token_ids.map((_id, i) => i));
      expect(tokens.map((t) => t.text).join('')).toBe(rest.text);
      expect(summary.token_ids).toEqual(rest.token_ids);
      expect(processed.token_ids).toEqual(rest.token_ids);
      expect(processed.text).toBe(rest.text);
      expect(processed.finish_reason).toBe(rest.finish_reason);
      expect(processed.nodes.map((n) => n.node_id)).toEqual(['node1', 'node2', 'node3']);

      // Printed as it arrived: the first token reached this process in an earlier read than the summary.
      expect(of('token')[0].read).toBeLessThan(summaryRecord.read);

      // Encode's ids are the tokenizer's, as this process's own client gets them.
      const tokenizer = createClient(protos().tokenizer.pipeserve.v1.Tokenizer, system.config.tokenizerAddress);
      try {
        const encoded = await unary<{ text: string }, EncodeResponse__Output>(tokenizer.Encode.bind(tokenizer), { text: PROMPT }, requestMetadata('python-test'), callOptions(10_000));
        expect(of('encoded')[0].fields.token_ids).toEqual(encoded.token_ids);
      } finally {
        tokenizer.close();
      }
    },
    CLIENT_TIMEOUT_MS * 2,
  );

  it(
    'prints the prompt, the streamed text and the Process answer, as its README shows',
    async () => {
      const run = await runClient([...addresses, '--prompt', PROMPT, '--max-new-tokens', String(MAX_NEW_TOKENS)]);
      expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: '' });
      const rest = await restGreedy();
      const ids = rest.token_ids.join(' ');
      expect(run.stdout).toContain(`prompt: '${PROMPT}' (`);
      expect(run.stdout).toContain(`Generate (streamed):\n${rest.text}\n[${MAX_NEW_TOKENS} tokens, finish_reason=${rest.finish_reason}, ids: ${ids}]`);
      expect(run.stdout).toContain(`Process:\n${rest.text}\n[${MAX_NEW_TOKENS} tokens, finish_reason=${rest.finish_reason}, `);
    },
    CLIENT_TIMEOUT_MS * 2,
  );

  it(
    'a coordinator that is not there is one line on stderr and exit code 1',
    async () => {
      const run = await runClient(['--tokenizer', system.config.tokenizerAddress, '--coordinator', '127.0.0.1:1', '--timeout', '5']);
      expect(run.code).toBe(1);
      expect(run.stderr.trim()).toMatch(/^error: UNAVAILABLE: /);
    },
    CLIENT_TIMEOUT_MS,
  );
});
