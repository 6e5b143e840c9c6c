import type { Limits } from '../../shared/config';
import type { GenerationSettings } from './generation-settings';
import { parseInput } from './parse-input';
import { processSchemas, type ProcessBody } from './schemas/process-schemas';

/** The body of `POST /api/model/process` and `/api/model/generate` (or the query of `GET /api/model/generate`), parsed once. */
export interface ProcessRequest extends GenerationSettings {
  readonly text: string;
  /** Echoed back untouched: the client's own correlation data. */
  readonly metadata: Readonly<Record<string, unknown>>;
  /** 0 = greedy (the default here). */
  readonly temperature: number;
}

const schemas = new Map<number, ReturnType<typeof processSchemas>>();

function schemasFor(limits: Pick<Limits, 'maxNewTokens'>): ReturnType<typeof processSchemas> {
  let found = schemas.get(limits.maxNewTokens);
  if (found === undefined) {
    found = processSchemas(limits);
    schemas.set(limits.maxNewTokens, found);
  }
  return found;
}

/**
 * Parses a JSON body into a ProcessRequest or throws INVALID_ARGUMENT naming the field
 * ("max_new_tokens: must be an integer between 1 and 512, got 0", "unknown field: foo").
 * `maxNewTokens` is the configured ceiling (`limits.max_new_tokens`).
 */
export function parseProcessRequest(body: unknown, limits: Pick<Limits, 'maxNewTokens'>): ProcessRequest {
  return toProcessRequest(parseInput(schemasFor(limits).ProcessRequest, body));
}

/**
 * The same from a URL query (GET, for a browser's EventSource): numbers arrive as text, and
 * `stop` may be repeated. A value that is not a number stays text, which the schema rejects
 * naming the field.
 */
export function parseProcessQuery(query: Readonly<Record<string, unknown>>, limits: Pick<Limits, 'maxNewTokens'>): ProcessRequest {
  const schema = schemasFor(limits).GenerateQuery;
  const numeric = new Set(['max_new_tokens', 'temperature', 'top_k', 'top_p', 'repetition_penalty', 'seed']);
  const body: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(query)) {
    if (key === 'stop') body[key] = Array.isArray(value) ? value : [value];
    else if (key === 'ignore_eos' && (value === 'true' || value === 'false')) body[key] = value === 'true';
    else if (numeric.has(key) && typeof value === 'string' && NUMBER_TEXT.test(value)) body[key] = Number(value);
    else body[key] = value;
  }
  return toProcessRequest({ metadata: undefined, ...parseInput(schema, body) });
}

const NUMBER_TEXT = /^-?\d+(\.\d+)?([eE][+-]?\d+)?$/;

function toProcessRequest(body: ProcessBody): ProcessRequest {
  return {
    text: body.text,
    metadata: body.metadata ?? {},
    // Left out, it stays out: the coordinator's default then fits the prompt into the model's context.
    maxNewTokens: body.max_new_tokens,
    temperature: body.temperature ?? 0,
    topK: body.top_k,
    topP: body.top_p,
    repetitionPenalty: body.repetition_penalty,
    seed: body.seed,
    stop: body.stop ?? [],
    topLogprobs: 0,
    ignoreEos: body.ignore_eos ?? false,
    priority: body.priority ?? 'interactive',
  };
}
