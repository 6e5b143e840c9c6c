import { Metadata } from '@grpc/grpc-js';
import type { HealthCheckRequest } from '../protos/generated/grpc/health/v1/HealthCheckRequest';
import type { HealthCheckResponse__Output } from '../protos/generated/grpc/health/v1/HealthCheckResponse';
import { ServiceError, UsageError } from '../shared/errors';
import { callOptions, createClient, unary } from '../shared/grpc/channel';
import { protos } from '../shared/grpc/proto-loader';
import { PROCESS_OUTPUT, type CliOutput } from './cli/cli-output';

/** Docker's HEALTHCHECK gives each probe a few seconds; answer well inside that. */
export const HEALTHCHECK_TIMEOUT_MS = 2_000;

const USAGE = 'usage: healthcheck <http://host:port/path | grpc://host:port>';
const DESCRIPTION = [
  'Exits 0 when the target is healthy: an http(s) URL answers a GET with 2xx, a grpc:// address',
  'answers grpc.health.v1 Check with SERVING; exits 1 (one line on stderr saying why) when it is',
  `not or does not answer within ${HEALTHCHECK_TIMEOUT_MS} ms, and 1 too for a bad argument (Docker reserves 2). The images' HEALTHCHECK runs it.`,
].join('\n');

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

/**
 * The command: `healthcheck <target>` exits 0 when the target is healthy, 1 when it is not or
 * the argument is bad (Docker's HEALTHCHECK reserves 2); `--help` prints the usage and exits 0.
 */
export async function runHealthcheckCli(argv: readonly string[], output: CliOutput, timeoutMs = HEALTHCHECK_TIMEOUT_MS): Promise<number> {
  if (argv.length === 1 && (argv[0] === '--help' || argv[0] === '-h')) {
    output.stdout(`${USAGE}\n\n${DESCRIPTION}\n`);
    return 0;
  }
  try {
    if (argv.length !== 1) throw new UsageError(`expected one target, got ${argv.length}; ${USAGE}`);
    await checkHealth(argv[0], timeoutMs);
    return 0;
  } catch (error) {
    output.stderr(`healthcheck: ${error instanceof Error ? error.message : String(error)}\n`);
    // Docker's HEALTHCHECK reserves exit code 2: a bad argument is unhealthy too (1), its message says why.
    return 1;
  }
}

if (require.main === module) void runHealthcheckCli(process.argv.slice(2), PROCESS_OUTPUT).then((code) => process.exit(code));
