import { status } from '@grpc/grpc-js';
import { z } from 'zod';
import { ServiceError } from '../../shared/errors';

/** Longest rendering of a rejected value quoted back in a message. */
const MAX_QUOTED_CHARS = 40;

/**
 * Parses a request body (or query) with its schema into the typed value, or throws
 * INVALID_ARGUMENT naming the first bad field: "max_new_tokens: must be an integer between 1
 * and 512, got 0", "stop[1]: ...", "unknown field: foo", "body: must be a JSON object". The
 * ZodError is the cause, so that `invalidField` can say which field it was.
 */
export function parseInput<S extends z.ZodType>(schema: S, input: unknown): z.output<S> {
  const result = schema.safeParse(input, { reportInput: true });
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  if (issue.code === 'unrecognized_keys') {
    const field = fieldName([...issue.path, issue.keys[0]]);
    throw new ServiceError(status.INVALID_ARGUMENT, `unknown field: ${field}`, result.error);
  }
  const quoted = issue.path.length > 0 && issue.input !== undefined ? `, got ${quote(issue.input)}` : '';
  throw new ServiceError(status.INVALID_ARGUMENT, `${fieldName(issue.path)}: ${issue.message}${quoted}`, result.error);
}

/**
 * An INVALID_ARGUMENT that another service found in what this request's field became (the
 * coordinator's refusal of a prompt too long for the model's context names the body's `text`).
 */
export class RequestFieldError extends ServiceError {
  constructor(
    readonly field: string,
    problem: string,
    cause?: unknown,
  ) {
    super(status.INVALID_ARGUMENT, `${field}: ${problem}`, cause);
  }
}

/** The field an INVALID_ARGUMENT of `parseInput` names ("stop[1]", "messages[0].role"), or a RequestFieldError's, or null for any other error. */
export function invalidField(error: ServiceError): string | null {
  if (error instanceof RequestFieldError) return error.field;
  if (!(error.cause instanceof z.ZodError)) return null;
  const issue = error.cause.issues[0];
  if (issue === undefined) return null;
  return issue.code === 'unrecognized_keys' ? fieldName([...issue.path, issue.keys[0]]) : fieldName(issue.path);
}

function fieldName(path: readonly PropertyKey[]): string {
  if (path.length === 0) return 'body';
  return path.map((key, i) => (typeof key === 'number' ? `[${key}]` : i === 0 ? String(key) : `.${String(key)}`)).join('');
}

/** Scalars as JSON, cut short; containers by kind only (a deep one must not be walked to say so). */
function quote(value: unknown): string {
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object' && value !== null) return 'an object';
  const text = typeof value === 'number' && !Number.isFinite(value) ? String(value) : (JSON.stringify(value) ?? String(value));
  return text.length > MAX_QUOTED_CHARS ? `${text.slice(0, MAX_QUOTED_CHARS)}…` : text;
}
