import { OpenAPIRegistry, OpenApiGeneratorV31, type ResponseConfig, type RouteConfig } from '@asteasolutions/zod-to-openapi';
import type { Limits } from '../../shared/config';
import { MAX_JSON_DEPTH } from './json-depth';
import { openAiSchemas } from './schemas/openai-schemas';
import { PROCESS_RESPONSE_EXAMPLE, processSchemas } from './schemas/process-schemas';
import { serviceSchemas } from './schemas/service-schemas';
import { z } from './schemas/zod-openapi';

export interface OpenApiOptions {
  readonly limits: Pick<Limits, 'maxNewTokens' | 'bodyLimitBytes'>;
  readonly modelName: string;
  /** Whether the api runs with an API key: the protected operations then say so. */
  readonly apiKeyRequired: boolean;
}

type Responses = RouteConfig['responses'];

const REQUEST_ID_PATTERN = '^[A-Za-z0-9._:-]{1,128}$';
const REQUEST_ID_EXAMPLE = '5b0f3f0e-6f7c-4a43-9a43-3c1d2b1f8e2a';
const requestIdHeader = { 'X-Request-Id': { schema: { type: 'string' as const }, description: "The request id (the client's own if sane, else a UUID)", example: REQUEST_ID_EXAMPLE } };

/**
 * The OpenAPI 3.1 description of every route of the api, generated from the same zod schemas
 * that parse the bodies (so it states the limits the app runs with). `GET /openapi.json` serves
 * it; the docs at `/docs` render it.
 */
export function openApiDocument(options: OpenApiOptions): Record<string, unknown> {
  const { limits, modelName } = options;
  const processes = processSchemas(limits);
  const openai = openAiSchemas(limits, modelName);
  const service = serviceSchemas();
  const registry = new OpenAPIRegistry();
  // Declared only when the api runs with a key: a scheme no operation uses would only mislead.
  const protectedSecurity = options.apiKeyRequired
    ? [{ [registry.registerComponent('securitySchemes', 'bearerAuth', { type: 'http', scheme: 'bearer', description: 'The API key (config `api.api_key` or env `API_KEY`)' }).name]: [] }]
    : [];

  const json = (schema: z.ZodType, example?: unknown) => ({ 'application/json': { schema, ...(example === undefined ? {} : { example }) } });
  const errorExample = (code: string, message: string) => ({ error: { code, message, request_id: REQUEST_ID_EXAMPLE } });
  const openAiErrorExample = (type: string, code: string, message: string, param: string | null = null) => ({ error: { message, type, param, code } });

  const bodyErrors = (openAi: boolean): Responses => {
    const content = (code: string, message: string, type: string, openAiCode: string, param: string | null = null) =>
      openAi ? json(openai.OpenAiError, openAiErrorExample(type, openAiCode, message, param)) : json(service.ErrorBody, errorExample(code, message));
    return {
      400: {
        description: `Invalid body (the message names the field), a prompt the model cannot take, or a body larger than ${limits.bodyLimitBytes} bytes or nested deeper than ${MAX_JSON_DEPTH} levels`,
        content: content('INVALID_ARGUMENT', 'max_new_tokens: must be an integer between 1 and 512, got 0', 'invalid_request_error', 'invalid_value', openAi ? 'max_tokens' : null),
      },
      ...(options.apiKeyRequired
        ? { 401: { description: 'Missing or wrong API key', content: content('UNAUTHENTICATED', 'authorization: the API key is not valid', 'authentication_error', 'invalid_api_key') } }
        : {}),
      415: {
        description: 'A Content-Encoding other than identity: send the body uncompressed',
        headers: { 'Accept-Encoding': { schema: { type: 'string' }, description: 'identity', example: 'identity' } },
        content: content('INVALID_ARGUMENT', 'content-encoding: "gzip" is not supported; send the body uncompressed', 'invalid_request_error', 'unsupported_content_encoding'),
      },
      429: {
        description: 'The coordinator queue is full; retry after the Retry-After header',
        headers: { 'Retry-After': { schema: { type: 'integer' }, description: 'Seconds to wait', example: 1 } },
        content: content('RESOURCE_EXHAUSTED', 'queue full: 256 requests waiting', 'rate_limit_error', 'rate_limit_exceeded'),
      },
      503: {
        description: 'The tokenizer or coordinator is down, or the request deadline passed (the message says which)',
        content: content('UNAVAILABLE', 'coordinator unavailable: No connection established', 'service_unavailable', 'unavailable'),
      },
    };
  };
  const sse = (description: string, example: string): ResponseConfig => ({
    description,
    headers: requestIdHeader,
    content: { 'text/event-stream': { schema: z.string(), example } },
  });

  const processExample = { text: 'The history of the world', max_new_tokens: 16, temperature: 0.8, seed: 7, metadata: { user: 'u1' } };
  const namedEvents =
    'id: 5b0f3f0e:0\nevent: token\ndata: {"index":0,"token_id":286,"text":" of"}\n\n' + `id: 5b0f3f0e:done\nevent: done\ndata: ${JSON.stringify(PROCESS_RESPONSE_EXAMPLE)}\n\n`;
  const eventsDescription =
    'Named events: `token` (data: TokenEvent) once per generated token, then `done` (data: ProcessResponse). A failure after the first event arrives as an `error` event ' +
    '(data: Error); a failure before it gets the HTTP status of the process route. Closing the connection cancels the generation. In a browser, listen with ' +
    "`addEventListener('token' | 'done' | 'error', ...)`: named events never reach `onmessage`.";

  registry.registerPath({
    method: 'post',
    path: '/api/model/process',
    operationId: 'process',
    tags: ['generation'],
    summary: 'Generate a continuation of the text and answer once with all of it',
    security: protectedSecurity,
    request: { body: { required: true, content: json(processes.ProcessRequest, processExample) } },
    responses: { 200: { description: 'The completion', headers: requestIdHeader, content: json(processes.ProcessResponse) }, ...bodyErrors(false) },
  });
  registry.registerPath({
    method: 'post',
    path: '/api/model/generate',
    operationId: 'generate',
    tags: ['generation'],
    summary: 'Generate a continuation as server-sent events',
    description: eventsDescription,
    security: protectedSecurity,
    request: { body: { required: true, content: json(processes.ProcessRequest, processExample) } },
    responses: { 200: sse('A text/event-stream of token events, then done (or error)', namedEvents.replace(/^id: .*\n/gm, '')), ...bodyErrors(false) },
  });
  registry.registerPath({
    method: 'get',
    path: '/api/model/generate',
    operationId: 'generateFromQuery',
    tags: ['generation'],
    summary: 'The same stream for a browser EventSource: the body fields as query parameters',
    description:
      `${eventsDescription} Events carry ids; an EventSource that reconnects after the stream ended sends Last-Event-ID and gets 204, ` +
      'which stops it (a generation cannot be resumed). `stop` may be repeated; `metadata` has no query form.',
    security: protectedSecurity,
    request: {
      query: processes.GenerateQuery,
      headers: z.object({ 'Last-Event-ID': z.string().optional().openapi({ description: 'Sent by a reconnecting EventSource: answered 204' }) }),
    },
    responses: {
      200: sse('A text/event-stream of token events, then done (or error), each with an id', namedEvents),
      204: { description: 'A reconnecting EventSource (Last-Event-ID): nothing more to send' },
      ...bodyErrors(false),
    },
  });

  const completionEvents =
    `data: ${JSON.stringify({ id: 'cmpl-5b0f3f0e', object: 'text_completion', created: 1767225600, model: modelName, choices: [{ index: 0, text: ' of', logprobs: null, finish_reason: null }] })}\n\n` +
    `data: ${JSON.stringify({ id: 'cmpl-5b0f3f0e', object: 'text_completion', created: 1767225600, model: modelName, choices: [{ index: 0, text: '', logprobs: null, finish_reason: 'length' }] })}\n\n` +
    'data: [DONE]\n\n';
  const chatEvents =
    `data: ${JSON.stringify({ id: 'chatcmpl-5b0f3f0e', object: 'chat.completion.chunk', created: 1767225600, model: modelName, choices: [{ index: 0, delta: { role: 'assistant', content: 'Hel' }, logprobs: null, finish_reason: null }] })}\n\n` +
    `data: ${JSON.stringify({ id: 'chatcmpl-5b0f3f0e', object: 'chat.completion.chunk', created: 1767225600, model: modelName, choices: [{ index: 0, delta: {}, logprobs: null, finish_reason: 'stop' }] })}\n\n` +
    'data: [DONE]\n\n';
  const openAiStreamNote =
    'With `stream: true` the answer is a text/event-stream of unnamed `data:` chunks (a browser EventSource gets them in `onmessage`), a chunk with `finish_reason` ending each choice, ' +
    'a last chunk with `usage` and no choices when `stream_options.include_usage` is set, then `data: [DONE]`. A failure after the first chunk arrives as a `data:` chunk holding an OpenAI error.';
  const modelNotFound = {
    404: {
      description: 'The request names a model this server does not serve',
      content: json(openai.OpenAiError, openAiErrorExample('not_found_error', 'model_not_found', `model: the model \`gpt-4\` is not served here; GET /v1/models lists \`${modelName}\``, 'model')),
    },
  };
  registry.registerPath({
    method: 'post',
    path: '/v1/completions',
    operationId: 'createCompletion',
    tags: ['openai'],
    summary: 'OpenAI-compatible completions: continue a prompt (or several), n choices each',
    description: openAiStreamNote,
    security: protectedSecurity,
    request: { body: { required: true, content: json(openai.CompletionRequest) } },
    responses: {
      200: {
        description: 'The completion (JSON), or its chunks (text/event-stream) with `stream: true`',
        headers: requestIdHeader,
        content: { ...json(openai.Completion), 'text/event-stream': { schema: z.string(), example: completionEvents } },
      },
      ...modelNotFound,
      ...bodyErrors(true),
    },
  });
  registry.registerPath({
    method: 'post',
    path: '/v1/chat/completions',
    operationId: 'createChatCompletion',
    tags: ['openai'],
    summary: "OpenAI-compatible chat completions: the messages rendered by the model's chat template (or ChatML), then continued",
    description: openAiStreamNote,
    security: protectedSecurity,
    request: { body: { required: true, content: json(openai.ChatCompletionRequest) } },
    responses: {
      200: {
        description: 'The chat completion (JSON), or its chunks (text/event-stream) with `stream: true`',
        headers: requestIdHeader,
        content: { ...json(openai.ChatCompletion), 'text/event-stream': { schema: z.string(), example: chatEvents } },
      },
      ...modelNotFound,
      ...bodyErrors(true),
    },
  });
  const authError: Responses = options.apiKeyRequired
    ? { 401: { description: 'Missing or wrong API key', content: json(openai.OpenAiError, openAiErrorExample('authentication_error', 'invalid_api_key', 'authorization: the API key is not valid')) } }
    : {};
  registry.registerPath({
    method: 'get',
    path: '/v1/models',
    operationId: 'listModels',
    tags: ['openai'],
    summary: 'The models this server serves (one)',
    security: protectedSecurity,
    responses: { 200: { description: 'The model list', content: json(openai.ModelList) }, ...authError },
  });
  registry.registerPath({
    method: 'get',
    path: '/v1/models/{model}',
    operationId: 'retrieveModel',
    tags: ['openai'],
    summary: 'One model, by id',
    security: protectedSecurity,
    request: { params: z.object({ model: z.string().openapi({ param: { description: 'The model id' }, example: modelName }) }) },
    responses: { 200: { description: 'The model', content: json(openai.Model) }, ...modelNotFound, ...authError },
  });

  registry.registerPath({
    method: 'get',
    path: '/health',
    operationId: 'health',
    tags: ['operations'],
    summary: 'Liveness: the api process answers',
    security: [],
    responses: { 200: { description: 'Alive', content: json(service.Health) } },
  });
  registry.registerPath({
    method: 'get',
    path: '/ready',
    operationId: 'ready',
    tags: ['operations'],
    summary: 'Readiness: tokenizer, coordinator and a serving replica of every stage',
    security: [],
    responses: {
      200: { description: 'Ready to generate', content: json(service.Ready) },
      503: { description: 'Something is down; `missing` names it', content: json(service.NotReady) },
    },
  });
  registry.registerPath({
    method: 'get',
    path: '/metrics',
    operationId: 'metrics',
    tags: ['operations'],
    summary: 'Prometheus metrics of the api process',
    security: [],
    responses: {
      200: {
        description: 'Prometheus text exposition format',
        content: { 'text/plain': { schema: z.string(), example: '# TYPE pipeserve_api_http_requests_total counter\npipeserve_api_http_requests_total{route="/api/model/process",method="POST",status="200"} 3\n' } },
      },
    },
  });
  registry.registerPath({
    method: 'get',
    path: '/openapi.json',
    operationId: 'openapi',
    tags: ['operations'],
    summary: 'This document',
    security: [],
    responses: { 200: { description: 'OpenAPI 3.1 document', content: { 'application/json': { schema: z.record(z.string(), z.unknown()), example: { openapi: '3.1.0' } } } } },
  });
  const html = (description: string, example: string): Responses => ({ 200: { description, content: { 'text/html': { schema: z.string(), example } } } });
  registry.registerPath({
    method: 'get',
    path: '/',
    operationId: 'playground',
    tags: ['pages'],
    summary: 'The playground: a prompt, sampling controls, the streamed text, per-node timings and the health of every stage',
    security: [],
    responses: html('The playground page', '<!doctype html><title>pipeserve playground</title>'),
  });
  registry.registerPath({
    method: 'get',
    path: '/docs',
    operationId: 'docs',
    tags: ['pages'],
    summary: 'Interactive documentation of this document (Swagger UI)',
    security: [],
    responses: html('The docs page', '<!doctype html><title>pipeserve api docs</title>'),
  });

  const generator = new OpenApiGeneratorV31(registry.definitions);
  return generator.generateDocument({
    openapi: '3.1.0',
    info: {
      title: 'pipeserve api',
      version: '0.1.0',
      description:
        'Text generation with a GPT-2-family model served as a pipeline of ONNX stages: its own REST routes (`/api/model/*`) and OpenAI-compatible ones (`/v1/*`, with OpenAI-shaped errors).',
      license: { name: 'MIT', identifier: 'MIT' },
    },
    // Relative: resolved against where the document was fetched, so it is right behind any host name or proxy.
    servers: [{ url: '/', description: 'The server this document was fetched from' }],
    tags: [
      { name: 'generation', description: "The api's own generation routes" },
      { name: 'openai', description: "OpenAI's API: completions, chat completions, models" },
      { name: 'operations', description: 'Health, readiness, metrics and this document' },
      { name: 'pages', description: 'HTML pages for people' },
    ],
  }) as unknown as Record<string, unknown>;
}
