import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import { postJson } from '../support/http';
import { RunningSystem, SYSTEM_START_TIMEOUT_MS } from '../support/system';
import { tinyModel } from '../support/test-models';

/** The official `openai` npm client against the real six processes, with an API key set. */
const REQUEST_TIMEOUT_MS = 60_000;
const API_KEY = 'test-key-3f9c';
const MODEL = 'tiny-test';
const PROMPT = 'The history of the world';

let system: RunningSystem;
let client: OpenAI;

beforeAll(async () => {
  system = await RunningSystem.start({ modelDir: await tinyModel({ stages: 3 }), env: { API_KEY } });
  // No retries: a 429 or 503 here is a failure to see, not to hide.
  client = new OpenAI({ baseURL: `${system.apiUrl}/v1`, apiKey: API_KEY, maxRetries: 0, timeout: REQUEST_TIMEOUT_MS });
}, SYSTEM_START_TIMEOUT_MS * 2);

afterAll(async () => {
  await system?.stop();
});

jest.setTimeout(REQUEST_TIMEOUT_MS);

/** The api's own non-streaming route: an independent path to the same pipeline. */
async function processRoute(body: Record<string, unknown>): Promise<{ text: string; token_ids: number[]; tokens: { prompt: number; generated: number }; finish_reason: string }> {
  const response = await postJson(`${system.apiUrl}/api/model/process`, body, { headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${API_KEY}` } });
  if (response.status !== 200) throw new Error(`process answered ${response.status}: ${JSON.stringify(response.body)}`);
  return response.body as never;
}

/** ChatML as the tokenizer renders it for a checkpoint without a chat template (the tiny model's GPT-2 tokenizer has none). */
function chatml(messages: ReadonlyArray<{ role: string; content: string }>): string {
  return `${messages.map((m) => `<|im_start|>${m.role}\n${m.content}<|im_end|>\n`).join('')}<|im_start|>assistant\n`;
}

describe('the openai client against a running system', () => {
  test('models.list names the served model; retrieving another is a 404 model_not_found', async () => {
    const models = await client.models.list();
    expect(models.data.map((m) => [m.id, m.object, m.owned_by])).toEqual([[MODEL, 'model', 'pipeserve']]);
    expect((await client.models.retrieve(MODEL)).id).toBe(MODEL);
    const missing = await client.models.retrieve('gpt-4').catch((error: unknown) => error);
    expect(missing).toBeInstanceOf(OpenAI.NotFoundError);
    expect(missing).toMatchObject({ status: 404, code: 'model_not_found', param: 'model', type: 'not_found_error' });
  });

  test('a greedy completion has the text and usage of the process route, and logprobs that spell it', async () => {
    const completion = await client.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 12, temperature: 0, logprobs: 2 });
    const reference = await processRoute({ text: PROMPT, max_new_tokens: 12, temperature: 0 });
    expect(completion.object).toBe('text_completion');
    expect(completion.model).toBe(MODEL);
    expect(completion.choices).toHaveLength(1);
    const [choice] = completion.choices;
    expect(choice.text).toBe(reference.text);
    expect(choice.finish_reason).toBe('length');
    expect(completion.usage).toEqual({ prompt_tokens: reference.tokens.prompt, completion_tokens: 12, total_tokens: reference.tokens.prompt + 12 });
    const logprobs = choice.logprobs;
    expect(logprobs?.tokens).toHaveLength(12);
    expect(logprobs?.tokens?.join('')).toBe(choice.text);
    expect(logprobs?.token_logprobs?.every((lp) => Number.isFinite(lp) && lp <= 0)).toBe(true);
    expect(logprobs?.text_offset).toEqual((logprobs?.tokens ?? []).map((_t, i, all) => all.slice(0, i).join('').length));
  });

  test('a streamed completion arrives in chunks that concatenate to the non-streamed text, then usage, then the end', async () => {
    const body = { model: MODEL, prompt: PROMPT, max_tokens: 10, temperature: 0 };
    const whole = await client.completions.create(body);
    const stream = await client.completions.create({ ...body, stream: true, stream_options: { include_usage: true } });
    const chunks: OpenAI.Completions.Completion[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    const texts = chunks.flatMap((c) => c.choices.map((choice) => choice.text));
    expect(texts.join('')).toBe(whole.choices[0].text);
    expect(chunks.filter((c) => c.choices.some((choice) => choice.text !== '')).length).toBeGreaterThan(1);
    const finishes = chunks.flatMap((c) => c.choices.filter((choice) => choice.finish_reason !== null).map((choice) => choice.finish_reason));
    expect(finishes).toEqual(['length']);
    const last = chunks[chunks.length - 1];
    expect(last.choices).toEqual([]);
    expect(last.usage).toEqual(whole.usage);
  });

  test('n choices sample with seed + i: each equals a one-choice request with that seed, and equal seeds repeat', async () => {
    const sampling = { model: MODEL, prompt: PROMPT, max_tokens: 10, temperature: 1, top_k: 50 };
    const three = await client.completions.create({ ...sampling, n: 3, seed: 11 });
    expect(three.choices.map((c) => c.index)).toEqual([0, 1, 2]);
    for (let i = 0; i < 3; i++) {
      const single = await client.completions.create({ ...sampling, seed: 11 + i });
      expect(three.choices[i].text).toBe(single.choices[0].text);
    }
    expect(new Set(three.choices.map((c) => c.text)).size).toBeGreaterThan(1);
    expect(three.usage?.completion_tokens).toBe(30);
    const again = await client.completions.create({ ...sampling, n: 3, seed: 11 });
    expect(again.choices.map((c) => c.text)).toEqual(three.choices.map((c) => c.text));
  });

  test('top_p reaches the sampler: a nucleus that holds only the likeliest token is greedy, and top_p with a seed matches the process route', async () => {
    const base = { model: MODEL, prompt: PROMPT, max_tokens: 10 };
    const greedy = await client.completions.create({ ...base, temperature: 0 });
    // Hot sampling (temperature 2 flattens the tiny model's logits) with the same seed, with and without a nucleus.
    const wide = await client.completions.create({ ...base, temperature: 2, seed: 5 });
    const narrow = await client.completions.create({ ...base, temperature: 2, top_p: 1e-6, seed: 5 });
    expect(narrow.choices[0].text).toBe(greedy.choices[0].text);
    expect(wide.choices[0].text).not.toBe(greedy.choices[0].text);
    const nucleus = await client.completions.create({ ...base, temperature: 2, top_p: 0.5, seed: 5 });
    const reference = await processRoute({ text: PROMPT, max_new_tokens: 10, temperature: 2, top_p: 0.5, seed: 5 });
    expect(nucleus.choices[0].text).toBe(reference.text);
  });

  test('an array of prompts gives n choices per prompt, indexed prompt by prompt, with usage counting each prompt once', async () => {
    const prompts = [PROMPT, 'Once upon a time'];
    const both = await client.completions.create({ model: MODEL, prompt: prompts, n: 2, max_tokens: 6, temperature: 0.9, seed: 5 });
    expect(both.choices.map((c) => c.index)).toEqual([0, 1, 2, 3]);
    const second = await client.completions.create({ model: MODEL, prompt: prompts[1], n: 2, max_tokens: 6, temperature: 0.9, seed: 5 });
    expect(both.choices.slice(2).map((c) => c.text)).toEqual(second.choices.map((c) => c.text));
    const promptTokens = (await processRoute({ text: prompts[0], max_new_tokens: 1 })).tokens.prompt + (await processRoute({ text: prompts[1], max_new_tokens: 1 })).tokens.prompt;
    expect(both.usage?.prompt_tokens).toBe(promptTokens);
  });

  test('a stop string ends the text before it, as the process route does', async () => {
    const greedy = await processRoute({ text: PROMPT, max_new_tokens: 24, temperature: 0 });
    // A piece from the middle of the greedy text: generation must end right before its first occurrence.
    const stop = greedy.text.slice(Math.floor(greedy.text.length / 2), Math.floor(greedy.text.length / 2) + 3);
    const stopped = await client.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 24, temperature: 0, stop: [stop] });
    expect(stopped.choices[0].text).toBe(greedy.text.slice(0, greedy.text.indexOf(stop)));
    expect(stopped.choices[0].finish_reason).toBe('stop');
  });

  test('a chat completion continues the ChatML rendering of the messages, streamed or not', async () => {
    const messages = [
      { role: 'system' as const, content: 'You are terse.' },
      { role: 'user' as const, content: 'Say hello.' },
    ];
    const chat = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 10, temperature: 0 });
    const reference = await processRoute({ text: chatml(messages), max_new_tokens: 10, temperature: 0 });
    expect(chat.object).toBe('chat.completion');
    expect(chat.choices[0].message).toMatchObject({ role: 'assistant', content: reference.text });
    expect(chat.usage?.prompt_tokens).toBe(reference.tokens.prompt);

    const stream = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 10, temperature: 0, stream: true, logprobs: true });
    const deltas: OpenAI.Chat.Completions.ChatCompletionChunk.Choice[] = [];
    for await (const chunk of stream) deltas.push(...chunk.choices);
    expect(deltas[0].delta.role).toBe('assistant');
    expect(deltas.map((d) => d.delta.content ?? '').join('')).toBe(reference.text);
    const tokenLogprobs = deltas.flatMap((d) => d.logprobs?.content ?? []);
    expect(tokenLogprobs).toHaveLength(10);
    expect(tokenLogprobs.map((t) => t.token).join('')).toBe(reference.text);
    expect(tokenLogprobs.every((t) => t.logprob <= 0 && Buffer.from(t.token, 'utf8').equals(Buffer.from(t.bytes ?? [])))).toBe(true);
    expect(deltas[deltas.length - 1].finish_reason).toBe('length');
  });

  test("a chat without max_tokens whose prompt leaves fewer than the default 32 tokens of the context generates what is left", async () => {
    // About 230 of the tiny model's 256 positions (ignore_eos, vLLM's extension, keeps it going to the end).
    const messages = [{ role: 'user' as const, content: 'lorem ipsum dolor sit amet '.repeat(22) }];
    const chat = await client.chat.completions.create({ model: MODEL, messages, temperature: 0, ignore_eos: true } as OpenAI.Chat.Completions.ChatCompletionCreateParamsNonStreaming);
    expect(chat.usage?.prompt_tokens).toBeGreaterThan(256 - 32);
    expect((chat.usage?.prompt_tokens ?? 0) + (chat.usage?.completion_tokens ?? 0)).toBe(256);
    expect(chat.choices[0].finish_reason).toBe('length');
  });

  test('bad input is a 400 naming the field, a wrong key a 401, both in the shapes the client parses', async () => {
    const bad = await client.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 0 }).catch((error: unknown) => error);
    expect(bad).toBeInstanceOf(OpenAI.BadRequestError);
    expect(bad).toMatchObject({ status: 400, param: 'max_tokens', code: 'invalid_value', type: 'invalid_request_error' });
    expect((bad as Error).message).toMatch(/max_tokens: must be an integer between 1 and 128/);

    const badChat = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'tool' as never, content: 'x' }] }).catch((error: unknown) => error);
    expect(badChat).toMatchObject({ status: 400, param: 'messages[0].role' });

    const stranger = new OpenAI({ baseURL: `${system.apiUrl}/v1`, apiKey: 'wrong', maxRetries: 0 });
    const refused = await stranger.models.list().catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(OpenAI.AuthenticationError);
    expect(refused).toMatchObject({ status: 401, code: 'invalid_api_key', type: 'authentication_error' });
  });
});

/**
 * A checkpoint with its own `chat_template` (tokenizer_config.json): /v1/chat/completions renders
 * it with @huggingface/jinja instead of ChatML, as transformers' apply_chat_template would.
 */
describe('the openai client against a model with its own chat template', () => {
  const TEMPLATE = "{% for m in messages %}### {{ m['role'] | upper }}: {{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}### ASSISTANT:{% endif %}";
  let templated: RunningSystem;
  let templatedClient: OpenAI;
  let modelDir: string;

  beforeAll(async () => {
    modelDir = await mkdtemp(path.join(os.tmpdir(), 'pipeserve-chat-template-'));
    await cp(await tinyModel({ stages: 3 }), modelDir, { recursive: true });
    const configFile = path.join(modelDir, 'tokenizer_config.json');
    const tokenizerConfig = JSON.parse(await readFile(configFile, 'utf8')) as Record<string, unknown>;
    await writeFile(configFile, JSON.stringify({ ...tokenizerConfig, chat_template: TEMPLATE }, null, 2));
    templated = await RunningSystem.start({ modelDir });
    templatedClient = new OpenAI({ baseURL: `${templated.apiUrl}/v1`, apiKey: 'unused', maxRetries: 0, timeout: REQUEST_TIMEOUT_MS });
  }, SYSTEM_START_TIMEOUT_MS * 2);

  afterAll(async () => {
    await templated?.stop();
    if (modelDir !== undefined) await rm(modelDir, { recursive: true, force: true });
  });

  test('a chat completion continues the checkpoint template\'s rendering of the messages, streamed or not', async () => {
    const messages = [
      { role: 'system' as const, content: 'You are terse.' },
      { role: 'user' as const, content: 'Say hello.' },
    ];
    const rendered = '### SYSTEM: You are terse.\n### USER: Say hello.\n### ASSISTANT:';
    const answer = await postJson(`${templated.apiUrl}/api/model/process`, { text: rendered, max_new_tokens: 8, temperature: 0 });
    expect(answer.status).toBe(200);
    const chat = await templatedClient.chat.completions.create({ model: MODEL, messages, max_tokens: 8, temperature: 0 });
    expect(chat.choices[0].message.content).toBe(answer.body.text);
    expect(chat.usage?.prompt_tokens).toBe((answer.body.tokens as { prompt: number }).prompt);
    // Not ChatML: the same messages rendered that way are another prompt, of another length.
    const asChatml = await postJson(`${templated.apiUrl}/api/model/process`, { text: chatml(messages), max_new_tokens: 1 });
    expect(chat.usage?.prompt_tokens).not.toBe((asChatml.body.tokens as { prompt: number }).prompt);
    const stream = await templatedClient.chat.completions.create({ model: MODEL, messages, max_tokens: 8, temperature: 0, stream: true });
    let content = '';
    for await (const chunk of stream) content += chunk.choices[0]?.delta.content ?? '';
    expect(content).toBe(answer.body.text);
  });
});

