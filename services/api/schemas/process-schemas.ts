import type { Limits } from '../../../shared/config';
import { DEFAULT_GENERATION_CONFIG } from '../../../shared/generation-config';
import { fields } from './schema-fields';
import { z } from './zod-openapi';

const NODE_TIMING_EXAMPLE = [
  { node_id: 'node1', stage: 0, forward_ms: 41.2, steps: 16 },
  { node_id: 'node2', stage: 1, forward_ms: 39.8, steps: 16 },
  { node_id: 'node3', stage: 2, forward_ms: 52.5, steps: 16 },
];

export const PROCESS_RESPONSE_EXAMPLE = {
  request_id: '5b0f3f0e-6f7c-4a43-9a43-3c1d2b1f8e2a',
  text: ' of the world is a story of',
  token_ids: [286, 262, 995, 318, 257, 1621, 286],
  tokens: { prompt: 4, generated: 7 },
  finish_reason: 'stop_string',
  timings: { tokenize_ms: 0.41, queue_ms: 0.02, time_to_first_token_ms: 18.7, total_ms: 140.3, nodes: NODE_TIMING_EXAMPLE },
  metadata: { user: 'u1' },
};

/**
 * The bodies of `/api/model/process` and `/api/model/generate`, declared once: the parser, the
 * TypeScript types and the OpenAPI document all come from these. `maxNewTokens` is the
 * configured ceiling (`limits.max_new_tokens`).
 */
export function processSchemas(limits: Pick<Limits, 'maxNewTokens'>) {
  const defaultMaxNewTokens = Math.min(DEFAULT_GENERATION_CONFIG.maxNewTokens, limits.maxNewTokens);
  const textProblem = 'must be a non-empty string';
  const sampling = {
    max_new_tokens: fields
      .integer(1, limits.maxNewTokens, `must be an integer between 1 and ${limits.maxNewTokens}`)
      .optional()
      .openapi({ default: defaultMaxNewTokens, description: `Tokens to generate; left out, ${defaultMaxNewTokens} or what the model's context leaves after the prompt if that is fewer` }),
    temperature: fields.temperature(Number.POSITIVE_INFINITY).optional().openapi({ default: 0 }),
    top_k: fields.topK().optional(),
    top_p: fields.topP().optional(),
    repetition_penalty: fields.repetitionPenalty().optional(),
    seed: fields.seed().optional().openapi({ description: 'Makes sampling reproducible (default 0)' }),
    stop: fields.stopList().optional(),
    ignore_eos: fields.ignoreEos().optional().openapi({ default: false }),
    priority: fields.priority().optional().openapi({ default: 'interactive' }),
  };
  const text = z.string({ error: textProblem }).min(1, { error: textProblem }).openapi({ description: 'The prompt', example: 'The history of the world' });

  const ProcessRequest = z
    .strictObject(
      { text, metadata: fields.jsonObject('must be a JSON object').optional().openapi({ description: 'Echoed back untouched' }), ...sampling },
      { error: (issue) => (issue.code === 'invalid_type' ? 'must be a JSON object' : undefined) },
    )
    .openapi('ProcessRequest', {
      description: 'Unknown fields are rejected; so is JSON null for an optional field.',
      example: { text: 'The history of the world', max_new_tokens: 16, temperature: 0.8, top_p: 0.95, seed: 7, stop: ['.'], metadata: { user: 'u1' } },
    });

  /** The same fields as query parameters (GET, for a browser's EventSource); `metadata` has no place in a URL. */
  const GenerateQuery = z.strictObject({ text, ...sampling }, { error: (issue) => (issue.code === 'invalid_type' ? 'must be a query string' : undefined) });

  const NodeTiming = z
    .object({
      node_id: z.string(),
      stage: z.int(),
      forward_ms: z.number().openapi({ description: "Time in this node's forward passes for this request's steps" }),
      steps: z.int(),
    })
    .openapi('NodeTiming');

  const ProcessResponse = z
    .object({
      request_id: z.string(),
      text: z.string().openapi({ description: 'The generated continuation' }),
      token_ids: z.array(z.int()).openapi({ description: 'Generated ids only' }),
      tokens: z.object({ prompt: z.int(), generated: z.int() }),
      finish_reason: z.enum(['stop', 'length', 'stop_string']).openapi({ description: '`stop`: end of text; `length`: max_new_tokens reached; `stop_string`: a stop string matched' }),
      timings: z.object({
        tokenize_ms: z.number().openapi({ description: 'Encoding the prompt, measured by the api' }),
        queue_ms: z.number().openapi({ description: 'Waiting for admission in the coordinator' }),
        time_to_first_token_ms: z.number().openapi({ description: 'From the coordinator receiving the request to the first token' }),
        total_ms: z.number().openapi({ description: 'From the api receiving the request to the answer' }),
        nodes: z.array(NodeTiming).openapi({ description: 'One entry per model node the request went through, in stage order' }),
      }),
      metadata: z.record(z.string(), z.unknown()),
    })
    .openapi('ProcessResponse', { example: PROCESS_RESPONSE_EXAMPLE });

  const TokenEvent = z
    .object({
      index: z.int().openapi({ description: '0 for the first generated token' }),
      token_id: z.int(),
      text: z.string().openapi({ description: 'The text this token completes (empty while a character is incomplete)' }),
    })
    .openapi('TokenEvent', { example: { index: 0, token_id: 286, text: ' of' } });

  return { ProcessRequest, GenerateQuery, ProcessResponse, TokenEvent, NodeTiming };
}

export type ProcessSchemas = ReturnType<typeof processSchemas>;
export type ProcessBody = z.output<ProcessSchemas['ProcessRequest']>;
export type ProcessResponse = z.output<ProcessSchemas['ProcessResponse']>;
export type TokenEventBody = z.output<ProcessSchemas['TokenEvent']>;
