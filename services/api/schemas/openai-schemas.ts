import type { Limits } from '../../../shared/config';
import { MAX_STOP_STRINGS } from '../../../shared/generation-config';
import { MAX_TOP_LOGPROBS } from '../generation-settings';
import { fields } from './schema-fields';
import { z } from './zod-openapi';

/** Choices one request may ask for (prompts × n): each is a sequence in the pipeline. */
export const MAX_CHOICES = 16;
/** OpenAI's own defaults for the legacy completions endpoint. */
export const OPENAI_COMPLETION_DEFAULT_MAX_TOKENS = 16;
export const OPENAI_DEFAULT_TEMPERATURE = 1;
const OPENAI_MAX_TEMPERATURE = 2;

const CHAT_ROLES = ['system', 'developer', 'user', 'assistant'] as const;

/** One message for every way a string of a union can be wrong: zod reports the branch that came closest. */
const nonEmptyString = (problem: string) => z.string({ error: problem }).min(1, { error: problem });

const EXAMPLE_ID = 'cmpl-5b0f3f0e-6f7c-4a43-9a43-3c1d2b1f8e2a';
const EXAMPLE_CREATED = 1767225600;
const EXAMPLE_USAGE = { prompt_tokens: 4, completion_tokens: 7, total_tokens: 11 };

/**
 * The OpenAI-compatible bodies (`/v1/completions`, `/v1/chat/completions`, `/v1/models`),
 * declared once for the parser, the types and the OpenAPI document. Fields OpenAI's API has and
 * this server does not implement are rejected as unknown rather than silently ignored. Extensions
 * (as vLLM has them): `top_k`, `repetition_penalty`, `ignore_eos`, `priority`.
 */
export function openAiSchemas(limits: Pick<Limits, 'maxNewTokens'>, modelName: string) {
  const maxTokensProblem = `must be an integer between 1 and ${limits.maxNewTokens}`;
  const nullish = <T extends z.ZodType>(schema: T) => schema.nullish();
  const stopProblem = `must be a non-empty string or an array of at most ${MAX_STOP_STRINGS} non-empty strings`;
  const common = {
    model: z.string({ error: 'must be a string: the id of a model of GET /v1/models' }).openapi({ example: modelName }),
    max_tokens: nullish(fields.integer(1, limits.maxNewTokens, maxTokensProblem)),
    temperature: nullish(fields.temperature(OPENAI_MAX_TEMPERATURE)).openapi({ default: OPENAI_DEFAULT_TEMPERATURE }),
    top_p: nullish(fields.topP()),
    n: nullish(fields.integer(1, MAX_CHOICES, `must be an integer between 1 and ${MAX_CHOICES}`)).openapi({
      default: 1,
      description: 'Choices per prompt. Each one is sampled with its own seed: `seed + i` for choice i when `seed` is given, a random one otherwise',
    }),
    stream: nullish(z.boolean({ error: 'must be a boolean' })).openapi({ default: false }),
    stream_options: nullish(
      z.strictObject({ include_usage: nullish(z.boolean({ error: 'must be a boolean' })) }, { error: (issue) => (issue.code === 'invalid_type' ? 'must be an object' : undefined) }),
    ).openapi({ description: '`include_usage`: a last chunk with `usage` and no choices, before `[DONE]`' }),
    stop: nullish(
      z.union([nonEmptyString(stopProblem), z.array(nonEmptyString(stopProblem), { error: stopProblem }).min(1, { error: stopProblem }).max(MAX_STOP_STRINGS, { error: stopProblem })], { error: stopProblem }),
    ).openapi({ description: 'The text ends before the first match' }),
    seed: nullish(fields.seed()).openapi({ description: 'Makes sampling reproducible' }),
    user: nullish(z.string({ error: 'must be a string' }).max(256, { error: 'must be at most 256 characters' })).openapi({ description: 'Accepted for compatibility; not used' }),
    top_k: nullish(fields.topK()).openapi({ description: 'Extension: keep the K most likely tokens; 0 = off (the default)' }),
    repetition_penalty: nullish(fields.repetitionPenalty()).openapi({ description: 'Extension: 1 = off (the default)' }),
    ignore_eos: nullish(fields.ignoreEos()).openapi({ description: 'Extension: keep generating past the end-of-text token up to max_tokens', default: false }),
    priority: nullish(fields.priority()).openapi({ default: 'interactive' }),
  };
  const objectProblem = { error: (issue: { code: string }) => (issue.code === 'invalid_type' ? 'must be a JSON object' : undefined) };
  const tooManyChoices = (prompts: number, n: number): boolean => prompts * n > MAX_CHOICES;

  const promptProblem = `must be a non-empty string or an array of 1 to ${MAX_CHOICES} non-empty strings`;
  const CompletionRequest = z
    .strictObject(
      {
        ...common,
        prompt: z
          .union([nonEmptyString(promptProblem), z.array(nonEmptyString(promptProblem), { error: promptProblem }).min(1, { error: promptProblem }).max(MAX_CHOICES, { error: promptProblem })], {
            error: promptProblem,
          })
          .openapi({ example: 'The history of the world' }),
        max_tokens: common.max_tokens.openapi({ default: OPENAI_COMPLETION_DEFAULT_MAX_TOKENS }),
        logprobs: nullish(fields.topLogprobs()).openapi({ description: `Report the log-probability of each token and of the ${MAX_TOP_LOGPROBS} at most most likely alternatives` }),
      },
      objectProblem,
    )
    .superRefine((body, context) => {
      const prompts = Array.isArray(body.prompt) ? body.prompt.length : 1;
      if (tooManyChoices(prompts, body.n ?? 1)) context.addIssue({ code: 'custom', path: ['n'], message: `${prompts} prompts × n = ${body.n} is more than ${MAX_CHOICES} choices`, input: body.n });
    })
    .openapi('CompletionRequest', {
      example: { model: modelName, prompt: 'The history of the world', max_tokens: 16, temperature: 0.8, seed: 7, logprobs: 1 },
    });

  const contentProblem = 'must be a string or an array of {"type": "text", "text": "..."} parts';
  const ChatMessage = z
    .strictObject(
      {
        role: z.enum(CHAT_ROLES, { error: `must be one of ${CHAT_ROLES.join(', ')}` }),
        content: z.union([z.string(), z.array(z.strictObject({ type: z.literal('text'), text: z.string() }))], { error: contentProblem }),
      },
      objectProblem,
    )
    .openapi('ChatMessage');
  const ChatCompletionRequest = z
    .strictObject(
      {
        ...common,
        messages: z.array(ChatMessage, { error: 'must be an array of messages' }).min(1, { error: 'must hold at least one message' }),
        max_completion_tokens: nullish(fields.integer(1, limits.maxNewTokens, maxTokensProblem)).openapi({ description: 'Same as max_tokens (the newer name)' }),
        logprobs: nullish(z.boolean({ error: 'must be a boolean' })).openapi({ default: false, description: "Report each token's log-probability" }),
        top_logprobs: nullish(fields.topLogprobs()).openapi({ description: 'With logprobs: the most likely alternatives per token' }),
      },
      objectProblem,
    )
    .superRefine((body, context) => {
      if (tooManyChoices(1, body.n ?? 1)) context.addIssue({ code: 'custom', path: ['n'], message: `must be at most ${MAX_CHOICES}`, input: body.n });
      if ((body.top_logprobs ?? 0) > 0 && body.logprobs !== true) context.addIssue({ code: 'custom', path: ['top_logprobs'], message: 'needs logprobs: true', input: body.top_logprobs });
    })
    .openapi('ChatCompletionRequest', {
      example: { model: modelName, messages: [{ role: 'system', content: 'You are terse.' }, { role: 'user', content: 'Say hello.' }], max_tokens: 16, temperature: 0 },
    });

  const Usage = z.object({ prompt_tokens: z.int(), completion_tokens: z.int(), total_tokens: z.int() }).openapi('Usage', { example: EXAMPLE_USAGE });
  const finishReason = z.enum(['stop', 'length']).openapi({ description: '`stop`: end of text or a stop string; `length`: max_tokens reached' });

  const CompletionLogprobs = z
    .object({
      tokens: z.array(z.string()).openapi({ description: 'The text of each token (they concatenate to the choice text)' }),
      token_logprobs: z.array(z.number()),
      top_logprobs: z.array(z.record(z.string(), z.number())).openapi({ description: 'Per token: the most likely alternatives (text → log-probability), best first' }),
      text_offset: z.array(z.int()).openapi({ description: 'Where each token starts in the choice text' }),
    })
    .openapi('CompletionLogprobs');
  const completionChoice = { index: z.int(), text: z.string(), logprobs: CompletionLogprobs.nullable() };
  const Completion = z
    .object({
      id: z.string(),
      object: z.literal('text_completion'),
      created: z.int().openapi({ description: 'Unix seconds' }),
      model: z.string(),
      choices: z.array(z.object({ ...completionChoice, finish_reason: finishReason })),
      usage: Usage,
    })
    .openapi('Completion', {
      example: {
        id: EXAMPLE_ID,
        object: 'text_completion',
        created: EXAMPLE_CREATED,
        model: modelName,
        choices: [{ index: 0, text: ' of the world is a story of', logprobs: null, finish_reason: 'length' }],
        usage: EXAMPLE_USAGE,
      },
    });
  const CompletionChunk = z
    .object({
      id: z.string(),
      object: z.literal('text_completion'),
      created: z.int(),
      model: z.string(),
      choices: z.array(z.object({ ...completionChoice, finish_reason: finishReason.nullable() })),
      usage: Usage.nullish(),
    })
    .openapi('CompletionChunk', {
      example: { id: EXAMPLE_ID, object: 'text_completion', created: EXAMPLE_CREATED, model: modelName, choices: [{ index: 0, text: ' of', logprobs: null, finish_reason: null }] },
    });

  const ChatTokenLogprob = z.object({ token: z.string(), logprob: z.number(), bytes: z.array(z.int()).nullable() });
  const ChatLogprobs = z
    .object({ content: z.array(ChatTokenLogprob.extend({ top_logprobs: z.array(ChatTokenLogprob) })) })
    .openapi('ChatLogprobs');
  const ChatCompletion = z
    .object({
      id: z.string(),
      object: z.literal('chat.completion'),
      created: z.int(),
      model: z.string(),
      choices: z.array(z.object({ index: z.int(), message: z.object({ role: z.literal('assistant'), content: z.string() }), logprobs: ChatLogprobs.nullable(), finish_reason: finishReason })),
      usage: Usage,
    })
    .openapi('ChatCompletion', {
      example: {
        id: 'chatcmpl-5b0f3f0e-6f7c-4a43-9a43-3c1d2b1f8e2a',
        object: 'chat.completion',
        created: EXAMPLE_CREATED,
        model: modelName,
        choices: [{ index: 0, message: { role: 'assistant', content: 'Hello.' }, logprobs: null, finish_reason: 'stop' }],
        usage: EXAMPLE_USAGE,
      },
    });
  const ChatCompletionChunk = z
    .object({
      id: z.string(),
      object: z.literal('chat.completion.chunk'),
      created: z.int(),
      model: z.string(),
      choices: z.array(
        z.object({
          index: z.int(),
          delta: z.object({ role: z.literal('assistant').optional(), content: z.string().optional() }),
          logprobs: ChatLogprobs.nullable(),
          finish_reason: finishReason.nullable(),
        }),
      ),
      usage: Usage.nullish(),
    })
    .openapi('ChatCompletionChunk', {
      example: {
        id: 'chatcmpl-5b0f3f0e-6f7c-4a43-9a43-3c1d2b1f8e2a',
        object: 'chat.completion.chunk',
        created: EXAMPLE_CREATED,
        model: modelName,
        choices: [{ index: 0, delta: { content: 'Hel' }, logprobs: null, finish_reason: null }],
      },
    });

  const Model = z
    .object({ id: z.string(), object: z.literal('model'), created: z.int(), owned_by: z.string() })
    .openapi('Model', { example: { id: modelName, object: 'model', created: EXAMPLE_CREATED, owned_by: 'pipeserve' } });
  const ModelList = z
    .object({ object: z.literal('list'), data: z.array(Model) })
    .openapi('ModelList', { example: { object: 'list', data: [{ id: modelName, object: 'model', created: EXAMPLE_CREATED, owned_by: 'pipeserve' }] } });

  const OpenAiError = z
    .object({
      error: z.object({
        message: z.string(),
        type: z.string().openapi({ description: 'invalid_request_error, authentication_error, not_found_error, rate_limit_error, server_error, service_unavailable' }),
        param: z.string().nullable().openapi({ description: 'The request field at fault, when there is one' }),
        code: z.string().nullable().openapi({ description: 'Machine-readable: e.g. invalid_value, model_not_found, invalid_api_key, rate_limit_exceeded' }),
      }),
    })
    .openapi('OpenAiError', {
      example: { error: { message: 'max_tokens: must be an integer between 1 and 512, got 0', type: 'invalid_request_error', param: 'max_tokens', code: 'invalid_value' } },
    });

  return { CompletionRequest, ChatCompletionRequest, Completion, CompletionChunk, ChatCompletion, ChatCompletionChunk, Model, ModelList, OpenAiError, Usage };
}

export type OpenAiSchemas = ReturnType<typeof openAiSchemas>;
export type CompletionRequestBody = z.output<OpenAiSchemas['CompletionRequest']>;
export type ChatCompletionRequestBody = z.output<OpenAiSchemas['ChatCompletionRequest']>;
export type CompletionBody = z.output<OpenAiSchemas['Completion']>;
export type CompletionChunkBody = z.output<OpenAiSchemas['CompletionChunk']>;
export type ChatCompletionBody = z.output<OpenAiSchemas['ChatCompletion']>;
export type ChatCompletionChunkBody = z.output<OpenAiSchemas['ChatCompletionChunk']>;
export type UsageBody = z.output<OpenAiSchemas['Usage']>;
export type OpenAiErrorBody = z.output<OpenAiSchemas['OpenAiError']>;
