import { Metadata, status } from '@grpc/grpc-js';

/** Trailing metadata of a RESOURCE_EXHAUSTED answer: milliseconds until a retry has a fair chance. */
export const RETRY_AFTER_KEY = 'retry-after-ms';

const NETWORK_ERROR_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTFOUND', 'EPIPE']);

/**
 * The one error type that crosses module and process boundaries: a gRPC status code, a message
 * for humans, and the cause. `ServiceError.from` normalises anything thrown.
 */
export class ServiceError extends Error {
  readonly code: status;
  override readonly cause?: unknown;
  /** With RESOURCE_EXHAUSTED: when a retry has a fair chance (crosses gRPC as `retry-after-ms` metadata). */
  readonly retryAfterMs?: number;

  constructor(code: status, message: string, cause?: unknown, retryAfterMs?: number) {
    super(message);
    this.name = 'ServiceError';
    this.code = code;
    this.cause = cause;
    if (retryAfterMs !== undefined) this.retryAfterMs = retryAfterMs;
  }

  static invalidArgument(field: string, problem: string): ServiceError {
    return new ServiceError(status.INVALID_ARGUMENT, `${field}: ${problem}`);
  }

  static resourceExhausted(message: string, retryAfterMs: number): ServiceError {
    return new ServiceError(status.RESOURCE_EXHAUSTED, message, undefined, retryAfterMs);
  }

  /** The status as a grpc-js handler reports it, the retry hint in its trailers. */
  toStatusObject(): { code: status; details: string; metadata: Metadata } {
    const metadata = new Metadata();
    if (this.retryAfterMs !== undefined) metadata.set(RETRY_AFTER_KEY, String(this.retryAfterMs));
    return { code: this.code, details: this.message, metadata };
  }

  /**
   * Normalises an error of a call to another service. grpc-js reports CANCELLED both for our
   * own cancel() and for a peer that force-closes its calls while shutting down: unless we
   * cancelled, it is the peer going away (UNAVAILABLE, retryable), not a client leaving.
   */
  static fromCall(error: unknown, peer: string, cancelledHere: boolean): ServiceError {
    const received = ServiceError.from(error);
    if (received.code !== status.CANCELLED || cancelledHere) return received;
    return new ServiceError(status.UNAVAILABLE, `the ${peer} closed the call (${received.message})`, received);
  }

  static from(error: unknown): ServiceError {
    if (error instanceof ServiceError) return error;
    if (isGrpcStatusError(error)) return new ServiceError(error.code, tidyGrpcDetails(error.details || error.message), error, retryAfterOf(error));
    if (error instanceof Error) {
      const errno = (error as NodeJS.ErrnoException).code;
      if (errno !== undefined && NETWORK_ERROR_CODES.has(errno)) {
        return new ServiceError(status.UNAVAILABLE, error.message, error);
      }
      return new ServiceError(status.INTERNAL, error.message, error);
    }
    return new ServiceError(status.UNKNOWN, String(error), error);
  }
}

function retryAfterOf(error: Error): number | undefined {
  const metadata = (error as { metadata?: unknown }).metadata;
  if (!(metadata instanceof Metadata)) return undefined;
  const value = Number(metadata.get(RETRY_AFTER_KEY)[0]);
  return Number.isFinite(value) && value >= 0 ? value : undefined;
}

/** grpc-js ends connection errors with an empty "Resolution note: " that only confuses a reader. */
function tidyGrpcDetails(details: string): string {
  return details.replace(/\.?\s*Resolution note:\s*$/, '');
}

function isGrpcStatusError(error: unknown): error is Error & { code: status; details: string } {
  return (
    error instanceof Error &&
    typeof (error as { code?: unknown }).code === 'number' &&
    typeof (error as { details?: unknown }).details === 'string'
  );
}

/** The only mapping from gRPC status to HTTP status. */
export function httpStatusOf(code: status): number {
  switch (code) {
    case status.OK:
      return 200;
    case status.INVALID_ARGUMENT:
    case status.OUT_OF_RANGE:
    case status.FAILED_PRECONDITION:
      return 400;
    case status.NOT_FOUND:
      return 404;
    case status.RESOURCE_EXHAUSTED:
      return 429;
    case status.CANCELLED:
      return 499;
    case status.UNAVAILABLE:
    case status.DEADLINE_EXCEEDED:
      return 503;
    case status.UNIMPLEMENTED:
      return 501;
    default:
      return 500;
  }
}

/** Errors of a command-line tool: printed without a stack, exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}
