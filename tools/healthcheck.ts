import { Metadata } from '@grpc/grpc-js';
import type { HealthCheckRequest } from '../protos/generated/grpc/health/v1/HealthCheckRequest';
import type { HealthCheckResponse__Output } from '../protos/generated/grpc/health/v1/HealthCheckResponse';
import { ServiceError, UsageError } from '../shared/errors';
import { callOptions, createClient, unary } from '../shared/grpc/channel';
import { protos } from '../shared/grpc/proto-loader';

/** Docker's HEALTHCHECK gives each probe a few seconds; answer well inside that. */
export const HEALTHCHECK_TIMEOUT_MS = 2_000;

const USAGE = 'usage: healthcheck <http://host:port/path | grpc://host:port>';

/**
 * Resolves when the target is healthy: `http(s)://...` answers a GET with 2xx, `grpc://host:port`
 * answers grpc.health.v1 Check (service "") with SERVING. Otherwise rejects with one line saying
 * why; a target that is not such a URL is a UsageError.
 */
export async function checkHealth(target: string, timeoutMs = HEALTHCHECK_TIMEOUT_MS): Promise<void> {
  let url: URL;
  try {
    url = new URL(target);
  } catch {
    throw new UsageError(`target: "${target}" is not a URL; ${USAGE}`);
  }
  if (url.protocol === 'http:' || url.protocol === 'https:') return checkHttp(url, timeoutMs);
  if (url.protocol === 'grpc:') {
    if (url.port === '' || (url.pathname !== '' && url.pathname !== '/')) throw new UsageError(`target: "${target}" must be grpc://host:port; ${USAGE}`);
    return checkGrpc(url.host, timeoutMs);
  }
  throw new UsageError(`target: scheme "${url.protocol}" is not http, https or grpc; ${USAGE}`);
}

async function checkHttp(url: URL, timeoutMs: number): Promise<void> {
  let response: Response;
  try {
    response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  } catch (error) {
    const cause = (error as { cause?: unknown }).cause;
    const reason = cause instanceof Error ? cause.message : (error as Error).message;
    throw new Error(`${url.href}: ${reason}`);
  }
  // Drain the body so the connection closes at once.
  await response.arrayBuffer().catch(() => undefined);
  if (response.status < 200 || response.status > 299) throw new Error(`${url.href}: HTTP ${response.status}`);
}

async function checkGrpc(hostPort: string, timeoutMs: number): Promise<void> {
  const client = createClient(protos().health.grpc.health.v1.Health, hostPort);
  try {
    const response = await unary<HealthCheckRequest, HealthCheckResponse__Output>(
      (argument, metadata, options, callback) => client.Check(argument, metadata, options, callback),
      { service: '' },
      new Metadata(),
      callOptions(timeoutMs),
    );
    if (response.status !== 'SERVING') throw new Error(`grpc://${hostPort}: health status ${response.status}`);
  } catch (error) {
    if (error instanceof ServiceError) throw new Error(`grpc://${hostPort}: ${error.message}`);
    throw error;
  } finally {
    client.close();
  }
}

if (require.main === module) {
  const args = process.argv.slice(2);
  const run = args.length === 1 ? checkHealth(args[0]) : Promise.reject(new UsageError(USAGE));
  run.then(
    () => process.exit(0),
    (error: unknown) => {
      process.stderr.write(`healthcheck: ${error instanceof Error ? error.message : String(error)}\n`);
      process.exit(error instanceof UsageError ? 2 : 1);
    },
  );
}
