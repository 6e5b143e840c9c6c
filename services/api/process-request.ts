import { ServiceError } from '../../shared/errors';
import { DEFAULT_GENERATION_CONFIG, MAX_STOP_STRINGS } from '../../shared/generation-config';

const MAX_SEED = 2 ** 32 - 1;
const MAX_UINT32 = 2 ** 32 - 1;

/**
 * The body of `POST /api/model/process` and `POST /api/model/generate`, parsed once. Optional
 * sampling fields stay absent when the client left them out, so the coordinator's documented
 * defaults apply (proto3 `optional` keeps presence on the wire).
 */
export interface ProcessRequest {
  readonly text: string;
  /** Echoed back untouched: the client's own correlation data. */
  readonly metadata: Readonly<Record<string, unknown>>;
  readonly maxNewTokens: number;
  /** 0 = greedy. */
  readonly temperature: number;
  readonly topK?: number;
  readonly topP?: number;
  readonly repetitionPenalty?: number;
  readonly seed?: number;
  readonly stop: readonly string[];
}

const FIELDS = ['text', 'metadata', 'max_new_tokens', 'temperature', 'top_k', 'top_p', 'repetition_penalty', 'seed', 'stop'];

/**
 * Parses a JSON body into a ProcessRequest or throws INVALID_ARGUMENT naming the field
 * ("max_new_tokens: must be an integer between 1 and 512", "unknown field: foo").
 * `maxNewTokens` is the configured ceiling (`limits.max_new_tokens`).
 */
export function parseProcessRequest(body: unknown, limits: { readonly maxNewTokens: number }): ProcessRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw ServiceError.invalidArgument('body', 'must be a JSON object');
  }
  const record = body as Record<string, unknown>;
  for (const key of Object.keys(record)) {
    if (!FIELDS.includes(key)) throw ServiceError.invalidArgument('unknown field', key);
  }

  const text = record.text;
  if (typeof text !== 'string' || text.length === 0) throw ServiceError.invalidArgument('text', 'must be a non-empty string');

  const metadata = record.metadata === undefined ? {} : record.metadata;
  if (typeof metadata !== 'object' || metadata === null || Array.isArray(metadata)) {
    throw ServiceError.invalidArgument('metadata', 'must be a JSON object');
  }

  const maxNewTokens = optionalNumber(record, 'max_new_tokens', (n) => Number.isInteger(n) && n >= 1 && n <= limits.maxNewTokens, `must be an integer between 1 and ${limits.maxNewTokens}`);
  const temperature = optionalNumber(record, 'temperature', (n) => n >= 0, 'must be a number >= 0 (0 = greedy)');
  return {
    text,
    metadata: metadata as Record<string, unknown>,
    maxNewTokens: maxNewTokens ?? Math.min(DEFAULT_GENERATION_CONFIG.maxNewTokens, limits.maxNewTokens),
    temperature: temperature ?? 0,
    topK: optionalNumber(record, 'top_k', (n) => Number.isInteger(n) && n >= 0 && n <= MAX_UINT32, 'must be an integer >= 0 (0 = off)'),
    topP: optionalNumber(record, 'top_p', (n) => n > 0 && n <= 1, 'must be a number greater than 0 and at most 1'),
    repetitionPenalty: optionalNumber(record, 'repetition_penalty', (n) => n > 0, 'must be a number > 0 (1 = off)'),
    seed: optionalNumber(record, 'seed', (n) => Number.isInteger(n) && n >= 0 && n <= MAX_SEED, `must be an integer between 0 and ${MAX_SEED}`),
    stop: parseStop(record.stop),
  };
}

/** Absent stays undefined; present must be a finite number that `accept`s. JSON null is not absent. */
function optionalNumber(record: Record<string, unknown>, field: string, accept: (n: number) => boolean, problem: string): number | undefined {
  const value = record[field];
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isFinite(value) || !accept(value)) {
    throw ServiceError.invalidArgument(field, `${problem}, got ${JSON.stringify(value)}`);
  }
  return value;
}

function parseStop(value: unknown): readonly string[] {
  if (value === undefined) return [];
  const problem = `must be an array of at most ${MAX_STOP_STRINGS} non-empty strings`;
  if (!Array.isArray(value) || value.length > MAX_STOP_STRINGS) throw ServiceError.invalidArgument('stop', problem);
  return value.map((entry, i) => {
    if (typeof entry !== 'string' || entry.length === 0) throw ServiceError.invalidArgument(`stop[${i}]`, problem);
    return entry;
  });
}
