import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import type { GenerateEvent__Output } from '../../protos/generated/pipeserve/v1/GenerateEvent';
import type { EncodeResponse__Output } from '../../protos/generated/pipeserve/v1/EncodeResponse';
import { callOptions, createClient, requestMetadata, unary } from '../../shared/grpc/channel';
import { protos } from '../../shared/grpc/proto-loader';
import { postJson, postSse } from '../support/http';
import { PROJECT_DIR, RunningSystem, SYSTEM_START_TIMEOUT_MS } from '../support/system';
import { tinyModel } from '../support/test-models';

const run = promisify(execFile);
const REQUEST_TIMEOUT_MS = 60_000;
const PROMPTS = ['The history of the world', 'Once upon a time', 'SELECT * FROM users WHERE', 'In 1998, the company', 'def main():', 'Dear Sir or Madam,', 'The weather today is', 'Breaking news:'];

let system: RunningSystem;
let modelDir: string;

beforeAll(async () => {
  modelDir = await tinyModel({ stages: 3 });
  system = await RunningSystem.start({ modelDir });
}, SYSTEM_START_TIMEOUT_MS * 2);

afterAll(async () => {
  await system?.stop();
});

interface CliResult {
  token_ids: number[];
  text: string;
}

async function generateCli(args: string[]): Promise<CliResult> {
  const { stdout } = await run(process.execPath, [path.join(PROJECT_DIR, 'dist/tools/generate.js'), '--model', modelDir, '--json', ...args], { cwd: PROJECT_DIR });
  return JSON.parse(stdout) as CliResult;
}

async function processText(body: Record<string, unknown>): Promise<Record<string, unknown>> {
  const response = await postJson(`${system.apiUrl}/api/model/process`, body);
  if (response.status !== 200) throw new Error(`process answered ${response.status}: ${JSON.stringify(response.body)}`);
  return response.body;
}

describe('REST and the generate CLI agree', () => {
  it(
    'greedy: the REST answer has exactly the text and token ids of npm run generate',
    async () => {
      const cli = await generateCli(['--prompt', PROMPTS[0], '--max-new-tokens', '24', '--temperature', '0']);
      const rest = await processText({ text: PROMPTS[0], max_new_tokens: 24, temperature: 0, metadata: { test: 'greedy' } });
      expect(rest.token_ids).toEqual(cli.token_ids);
      expect(rest.text).toBe(cli.text);
      expect(cli.token_ids).toHaveLength(24);
      expect(new Set(cli.token_ids).size).toBeGreaterThan(4); // not one token repeated
      expect(rest.metadata).toEqual({ test: 'greedy' });
      expect(rest.finish_reason).toBe('length');
      const timings = rest.timings as { nodes: { node_id: string; steps: number }[] };
      expect(timings.nodes.map((n) => n.node_id)).toEqual(['node1', 'node2', 'node3']);
      expect(timings.nodes.every((n) => n.steps === 24)).toBe(true);
    },
    REQUEST_TIMEOUT_MS,
  );

  it(
    'seeded sampling: the REST answer has exactly the text and token ids of npm run generate',
    async () => {
      const params = { temperature: 0.9, top_k: 40, top_p: 0.95, seed: 7 };
      const cli = await generateCli(['--prompt', PROMPTS[1], '--max-new-tokens', '20', '--temperature', '0.9', '--top-k', '40', '--top-p', '0.95', '--seed', '7']);
      const rest = await processText({ text: PROMPTS[1], max_new_tokens: 20, ...params });
      expect(rest.token_ids).toEqual(cli.token_ids);
      expect(rest.text).toBe(cli.text);
      const otherSeed = await processText({ text: PROMPTS[1], max_new_tokens: 20, ...params, seed: 8 });
      expect(otherSeed.token_ids).not.toEqual(rest.token_ids);
    },
    REQUEST_TIMEOUT_MS,
  );
});

describe('gRPC', () => {
  it(
    'a client using the generated types gets the same tokens from Generate as REST',
    async () => {
      const { tokenizer: tokenizerProto, coordinator: coordinatorProto } = protos();
      const tokenizer = createClient(tokenizerProto.pipeserve.v1.Tokenizer, system.config.tokenizerAddress);
      const coordinator = createClient(coordinatorProto.pipeserve.v1.Coordinator, system.config.coordinatorAddress);
      try {
        const encoded = await unary<{ text: string }, EncodeResponse__Output>(tokenizer.Encode.bind(tokenizer), { text: PROMPTS[2] }, requestMetadata('grpc-test'), callOptions(10_000));
        const events: GenerateEvent__Output[] = [];
        await new Promise<void>((resolve, reject) => {
          const call = coordinator.Generate(
            { request_id: 'grpc-test', prompt_token_ids: encoded.token_ids, parameters: { max_new_tokens: 16, temperature: 0 } },
            requestMetadata('grpc-test'),
            callOptions(REQUEST_TIMEOUT_MS),
          );
          call.on('data', (event: GenerateEvent__Output) => events.push(event));
          call.on('error', reject);
          call.on('end', resolve);
        });
        const tokens = events.filter((e) => e.event === 'token').map((e) => e.token?.token_id);
        const summary = events[events.length - 1].summary;
        expect(events.filter((e) => e.event === 'summary')).toHaveLength(1);
        expect(summary?.token_ids).toEqual(tokens);
        const rest = await processText({ text: PROMPTS[2], max_new_tokens: 16 });
        expect(tokens).toEqual(rest.token_ids);
        expect(summary?.text).toBe(rest.text);
        expect(events.filter((e) => e.event === 'token').map((e) => e.token?.text).join('')).toBe(rest.text);
      } finally {
        tokenizer.close();
        coordinator.close();
      }
    },
    REQUEST_TIMEOUT_MS,
  );

  it('the coordinator rejects an empty prompt with INVALID_ARGUMENT naming the field', async () => {
    const coordinator = createClient(protos().coordinator.pipeserve.v1.Coordinator, system.config.coordinatorAddress);
    try {
      const error = await unary(coordinator.Process.bind(coordinator), { prompt_token_ids: [] }, requestMetadata('bad'), callOptions(10_000)).catch((e: unknown) => e);
      expect(error).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, message: expect.stringContaining('prompt_token_ids') });
    } finally {
      coordinator.close();
    }
  });
});

describe('SSE streaming', () => {
  it(
    'delivers tokens one by one, and their text concatenates to the non-streaming text, multi-byte characters included',
    async () => {
      let sawMultiByte = false;
      for (const seed of [1, 2, 3, 4, 5, 6]) {
        const body = { text: PROMPTS[3], max_new_tokens: 48, temperature: 1, seed };
        const streamed = await postSse(`${system.apiUrl}/api/model/generate`, body);
        expect(streamed.status).toBe(200);
        expect(streamed.contentType).toMatch(/^text\/event-stream/);
        const tokens = streamed.events.filter((e) => e.event === 'token');
        const done = streamed.events[streamed.events.length - 1];
        expect(done.event).toBe('done');
        expect(tokens).toHaveLength(48);
        // Incremental: the first token event arrived in an earlier network read, and earlier in time, than the final event.
        expect(tokens[0].read).toBeLessThan(done.read);
        expect(tokens[0].atMs).toBeLessThan(done.atMs);
        const streamedText = tokens.map((e) => e.data.text as string).join('');
        const whole = await processText(body);
        expect(streamedText).toBe(whole.text);
        expect(done.data.text).toBe(whole.text);
        expect(tokens.map((e) => e.data.token_id)).toEqual(whole.token_ids);
        if (/[^\u0000-\u007f]/.test(streamedText)) sawMultiByte = true;
      }
      expect(sawMultiByte).toBe(true);
    },
    REQUEST_TIMEOUT_MS * 2,
  );
});

describe('concurrency', () => {
  it(
    '16 concurrent requests with different prompts each return what the same request returns alone',
    async () => {
      const bodies = Array.from({ length: 16 }, (_, i) => ({ text: `${PROMPTS[i % PROMPTS.length]} ${i}`, max_new_tokens: 12 + (i % 5), temperature: i % 2 === 0 ? 0 : 0.8, seed: i }));
      const alone: Record<string, unknown>[] = [];
      for (const body of bodies) alone.push(await processText(body));
      const together = await Promise.all(bodies.map((body) => processText(body)));
      together.forEach((result, i) => {
        expect(result.token_ids).toEqual(alone[i].token_ids);
        expect(result.text).toBe(alone[i].text);
      });
      const distinct = new Set(alone.map((r) => JSON.stringify(r.token_ids)));
      expect(distinct.size).toBe(16);
    },
    REQUEST_TIMEOUT_MS * 3,
  );
});

describe('bad input', () => {
  // About 330 tokens: more than the tiny model's 256-token context, fewer bytes than the tokenizer's cap (16 per position).
  const longPrompt = 'lorem ipsum dolor sit amet '.repeat(60);
  const hugeText = 'lorem ipsum dolor sit amet '.repeat(200);
  const halfContextPrompt = 'lorem ipsum dolor sit amet '.repeat(15);
  it.each([
    ['an empty text', { text: '' }, /text/],
    ['a non-string text', { text: 42 }, /text/],
    ['a known field of the wrong type', { text: 'hi', max_new_tokens: 'ten' }, /max_new_tokens/],
    ['an unknown field', { text: 'hi', maxTokens: 5 }, /maxTokens/],
    ['max_new_tokens above the limit', { text: 'hi', max_new_tokens: 100_000 }, /max_new_tokens/],
    ['a negative temperature', { text: 'hi', temperature: -1 }, /temperature/],
    ['top_p out of range', { text: 'hi', top_p: 0 }, /top_p/],
    ['a prompt longer than the context', { text: longPrompt, max_new_tokens: 8 }, /"text: the prompt is \d+ tokens: no room for a new token in the model's context of 256 tokens/],
    // About 150 tokens: the prompt fits, the tokens asked for on top of it do not.
    ['more new tokens than the context leaves', { text: halfContextPrompt, max_new_tokens: 120 }, /"max_new_tokens: must be at most \d+ for this \d+-token prompt \(together more than the model's context of 256 tokens\), got 120/],
    ['a text far beyond any context', { text: hugeText }, /text: is 5400 bytes of UTF-8; the limit is 4096/],
  ])('%s gets 400 with a message naming the field', async (_name, body, message) => {
    const response = await postJson(`${system.apiUrl}/api/model/process`, body);
    expect(response.status).toBe(400);
    expect(JSON.stringify(response.body)).toMatch(message);
  });

  it('a long prompt without max_new_tokens generates what the context leaves, not the default 32; with it, is refused', async () => {
    // About 230 tokens of the tiny model's 256: fewer than the default 32 new tokens fit.
    const text = 'lorem ipsum dolor sit amet '.repeat(23);
    const response = await postJson(`${system.apiUrl}/api/model/process`, { text, ignore_eos: true });
    expect(response.status).toBe(200);
    const body = response.body as { tokens: { prompt: number; generated: number }; finish_reason: string };
    expect(body.tokens.prompt).toBeGreaterThan(256 - 32);
    expect(body.tokens.prompt + body.tokens.generated).toBe(256);
    expect(body.finish_reason).toBe('length');
    const explicit = await postJson(`${system.apiUrl}/api/model/process`, { text, max_new_tokens: 32 });
    expect(explicit.status).toBe(400);
    expect(JSON.stringify(explicit.body)).toMatch(/max_new_tokens: must be at most \d+ for this \d+-token prompt/);

    // npm run generate does the same: the default fits itself (the same tokens as REST), an explicit value that does not fit exits 2.
    const cli = await generateCli(['--prompt', text, '--temperature', '0']);
    const rest = await processText({ text, temperature: 0 });
    expect(cli.token_ids).toEqual(rest.token_ids);
    const refused = await run(process.execPath, [path.join(PROJECT_DIR, 'dist/tools/generate.js'), '--model', modelDir, '--prompt', text, '--max-new-tokens', '32'], { cwd: PROJECT_DIR }).then(
      () => ({ code: 0, stderr: '' }),
      (error: { code: number; stderr: string }) => ({ code: error.code, stderr: error.stderr }),
    );
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/^generate: --max-new-tokens: must be at most \d+ for this \d+-token prompt/);
  });

  it('invalid JSON gets 400', async () => {
    const response = await postJson(`${system.apiUrl}/api/model/process`, '{"text": "unterminated');
    expect(response.status).toBe(400);
    expect(JSON.stringify(response.body)).toMatch(/JSON/);
  });

  it('an oversized body gets 400', async () => {
    const response = await postJson(`${system.apiUrl}/api/model/process`, { text: 'x'.repeat(200_000) });
    expect(response.status).toBe(400);
    expect(JSON.stringify(response.body)).toMatch(/larger than/);
  });

  it(
    'the services keep serving after bad input',
    async () => {
      const response = await processText({ text: PROMPTS[4], max_new_tokens: 4 });
      expect(response.token_ids).toHaveLength(4);
    },
    REQUEST_TIMEOUT_MS,
  );
});
