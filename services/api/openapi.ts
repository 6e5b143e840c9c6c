import type { Limits } from '../../shared/config';
import { DEFAULT_GENERATION_CONFIG, MAX_STOP_STRINGS } from '../../shared/generation-config';

const json = (schemaRef: string) => ({ 'application/json': { schema: { $ref: `#/components/schemas/${schemaRef}` } } });

const errorResponse = (description: string) => ({ description, content: json('Error') });

const generationErrors = {
  '400': errorResponse('Invalid body (the message names the field), or a prompt the model cannot take'),
  '429': {
    description: 'The coordinator queue is full; retry after the Retry-After header',
    headers: { 'Retry-After': { schema: { type: 'integer' }, description: 'Seconds to wait' } },
    content: json('Error'),
  },
  '503': errorResponse('The tokenizer or coordinator is down, or the request deadline passed (the message says which)'),
};

const requestIdHeader = { 'X-Request-Id': { schema: { type: 'string' }, description: 'The request id (the client\'s own if sane, else a UUID)' } };

/**
 * The OpenAPI 3.1 description of every route of the api, written by hand so that it says what
 * the parser accepts (the limits come from the configuration the app runs with).
 */
export function openApiDocument(limits: Pick<Limits, 'maxNewTokens' | 'bodyLimitBytes'>): Record<string, unknown> {
  return {
    openapi: '3.1.0',
    info: {
      title: 'pipeserve api',
      version: '0.1.0',
      description: 'Text generation with a GPT-2-family model served as a pipeline of ONNX stages.',
    },
    paths: {
      '/api/model/process': {
        post: {
          operationId: 'process',
          summary: 'Generate a continuation of the text and answer once with all of it',
          parameters: [{ name: 'X-Request-Id', in: 'header', required: false, schema: { type: 'string', pattern: '^[A-Za-z0-9._:-]{1,128}$' } }],
          requestBody: { required: true, content: json('ProcessRequest') },
          responses: {
            '200': { description: 'The completion', headers: requestIdHeader, content: json('ProcessResponse') },
            ...generationErrors,
          },
        },
      },
      '/api/model/generate': {
        post: {
          operationId: 'generate',
          summary: 'Generate a continuation as server-sent events',
          description:
            'Events: `token` (data: TokenEvent) once per generated token, then `done` (data: ProcessResponse). ' +
            'A failure after the first event arrives as an `error` event (data: Error); a failure before it gets the HTTP status of the process route. ' +
            'Closing the connection cancels the generation.',
          parameters: [{ name: 'X-Request-Id', in: 'header', required: false, schema: { type: 'string', pattern: '^[A-Za-z0-9._:-]{1,128}$' } }],
          requestBody: { required: true, content: json('ProcessRequest') },
          responses: {
            '200': {
              description: 'A text/event-stream of token events, then done (or error)',
              headers: requestIdHeader,
              content: {
                'text/event-stream': {
                  schema: { type: 'string', description: 'event: token | done | error, data: TokenEvent | ProcessResponse | Error as one JSON line' },
                },
              },
            },
            ...generationErrors,
          },
        },
      },
      '/health': {
        get: {
          operationId: 'health',
          summary: 'Liveness: the api process answers',
          responses: { '200': { description: 'Alive', content: json('Health') } },
        },
      },
      '/ready': {
        get: {
          operationId: 'ready',
          summary: 'Readiness: tokenizer, coordinator and every model node are serving',
          responses: {
            '200': { description: 'Ready to generate', content: json('Ready') },
            '503': { description: 'Something is down; `missing` names it', content: json('NotReady') },
          },
        },
      },
      '/metrics': {
        get: {
          operationId: 'metrics',
          summary: 'Prometheus metrics of the api process',
          responses: { '200': { description: 'Prometheus text exposition format', content: { 'text/plain': { schema: { type: 'string' } } } } },
        },
      },
      '/openapi.json': {
        get: {
          operationId: 'openapi',
          summary: 'This document',
          responses: { '200': { description: 'OpenAPI 3.1 document', content: { 'application/json': { schema: { type: 'object' } } } } },
        },
      },
    },
    components: {
      schemas: {
        ProcessRequest: {
          type: 'object',
          description: `Unknown fields are rejected. The body may be at most ${limits.bodyLimitBytes} bytes of application/json.`,
          required: ['text'],
          additionalProperties: false,
          properties: {
            text: { type: 'string', minLength: 1, description: 'The prompt' },
            metadata: { type: 'object', description: 'Echoed back untouched' },
            max_new_tokens: { type: 'integer', minimum: 1, maximum: limits.maxNewTokens, default: Math.min(DEFAULT_GENERATION_CONFIG.maxNewTokens, limits.maxNewTokens) },
            temperature: { type: 'number', minimum: 0, default: 0, description: '0 = greedy' },
            top_k: { type: 'integer', minimum: 0, description: '0 = off (the default)' },
            top_p: { type: 'number', exclusiveMinimum: 0, maximum: 1, description: '1 = off (the default)' },
            repetition_penalty: { type: 'number', exclusiveMinimum: 0, description: '1 = off (the default)' },
            seed: { type: 'integer', minimum: 0, maximum: 2 ** 32 - 1, description: 'Makes sampling reproducible (default 0)' },
            stop: { type: 'array', maxItems: MAX_STOP_STRINGS, items: { type: 'string', minLength: 1 }, description: 'The text ends before the first match' },
          },
        },
        ProcessResponse: {
          type: 'object',
          required: ['request_id', 'text', 'token_ids', 'tokens', 'finish_reason', 'timings', 'metadata'],
          properties: {
            request_id: { type: 'string' },
            text: { type: 'string', description: 'The generated continuation' },
            token_ids: { type: 'array', items: { type: 'integer' }, description: 'Generated ids only' },
            tokens: {
              type: 'object',
              required: ['prompt', 'generated'],
              properties: { prompt: { type: 'integer' }, generated: { type: 'integer' } },
            },
            finish_reason: { type: 'string', enum: ['stop', 'length', 'stop_string'] },
            timings: {
              type: 'object',
              required: ['tokenize_ms', 'queue_ms', 'time_to_first_token_ms', 'total_ms', 'nodes'],
              properties: {
                tokenize_ms: { type: 'number', description: 'Encoding the prompt, measured by the api' },
                queue_ms: { type: 'number', description: 'Waiting for admission in the coordinator' },
                time_to_first_token_ms: { type: 'number', description: 'From the coordinator receiving the request to the first token' },
                total_ms: { type: 'number', description: 'From the api receiving the request to the answer' },
                nodes: {
                  type: 'array',
                  items: {
                    type: 'object',
                    required: ['node_id', 'stage', 'forward_ms', 'steps'],
                    properties: {
                      node_id: { type: 'string' },
                      stage: { type: 'integer' },
                      forward_ms: { type: 'number', description: "Time in this node's forward passes for this request's steps" },
                      steps: { type: 'integer' },
                    },
                  },
                },
              },
            },
            metadata: { type: 'object' },
          },
        },
        TokenEvent: {
          type: 'object',
          required: ['index', 'token_id', 'text'],
          properties: {
            index: { type: 'integer', description: '0 for the first generated token' },
            token_id: { type: 'integer' },
            text: { type: 'string', description: 'The text this token completes (empty while a character is incomplete)' },
          },
        },
        Error: {
          type: 'object',
          required: ['error'],
          properties: {
            error: {
              type: 'object',
              required: ['code', 'message', 'request_id'],
              properties: {
                code: { type: 'string', description: 'gRPC status name, e.g. INVALID_ARGUMENT' },
                message: { type: 'string' },
                request_id: { type: 'string' },
              },
            },
          },
        },
        Health: { type: 'object', required: ['status'], properties: { status: { const: 'ok' } } },
        Ready: {
          type: 'object',
          required: ['ready', 'model_name', 'stages', 'nodes', 'degraded'],
          properties: {
            ready: { const: true },
            model_name: { type: 'string' },
            stages: { type: 'integer' },
            degraded: {
              type: 'array',
              items: { type: 'string' },
              description: 'Replicas that are down while their stage still has a serving one: one line each, with address and reason',
            },
            nodes: {
              type: 'array',
              items: {
                type: 'object',
                required: ['node_id', 'stage', 'address', 'serving'],
                properties: { node_id: { type: 'string' }, stage: { type: 'integer' }, address: { type: 'string' }, serving: { type: 'boolean' } },
              },
            },
          },
        },
        NotReady: {
          type: 'object',
          required: ['ready', 'missing'],
          properties: {
            ready: { const: false },
            missing: { type: 'array', items: { type: 'string' }, description: 'One line per service or node that is down, with its address and the reason' },
          },
        },
      },
    },
  };
}
