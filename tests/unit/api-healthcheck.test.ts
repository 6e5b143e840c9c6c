import { createServer, type Server } from 'node:http';
import { UsageError } from '../../shared/errors';
import { startServer, type RunningServer } from '../../shared/grpc/channel';
import { checkHealth, runHealthcheckCli } from '../../tools/healthcheck';

const SERVICE_TEST_TIMEOUT_MS = 30_000;
jest.setTimeout(SERVICE_TEST_TIMEOUT_MS);

/** An HTTP server answering each path with the status written in it: /status/204 → 204. */
async function statusServer(): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    const code = Number(/^\/status\/(\d{3})$/.exec(req.url ?? '')?.[1] ?? 404);
    res.writeHead(code).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no TCP address');
  return { server, url: `http://127.0.0.1:${address.port}` };
}

async function rejection(promise: Promise<void>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }
  throw new Error('the check passed');
}

describe('checkHealth (tools/healthcheck)', () => {
  let http: { server: Server; url: string };
  let grpcServer: RunningServer;
  let closedPort: number;

  beforeAll(async () => {
    http = await statusServer();
    grpcServer = await startServer('127.0.0.1:0', []);
    const closed = await startServer('127.0.0.1:0', []);
    closedPort = closed.port;
    await closed.shutdown(0);
  });

  afterAll(async () => {
    http.server.closeAllConnections();
    await new Promise<void>((resolve) => http.server.close(() => resolve()));
    await grpcServer.shutdown(0);
  });

  test('passes on an HTTP 2xx and fails naming the status otherwise', async () => {
    await expect(checkHealth(`${http.url}/status/200`)).resolves.toBeUndefined();
    await expect(checkHealth(`${http.url}/status/204`)).resolves.toBeUndefined();
    expect((await rejection(checkHealth(`${http.url}/status/503`))).message).toBe(`${http.url}/status/503: HTTP 503`);
    expect((await rejection(checkHealth(`${http.url}/status/302`))).message).toBe(`${http.url}/status/302: HTTP 302`);
  });

  test('fails with one line when nothing listens on the HTTP port', async () => {
    const error = await rejection(checkHealth(`http://127.0.0.1:${closedPort}/health`));
    expect(error.message.startsWith(`http://127.0.0.1:${closedPort}/health: `)).toBe(true);
    expect(error.message).not.toContain('\n');
  });

  test('passes when grpc.health.v1 says SERVING and fails naming the status when NOT_SERVING', async () => {
    await expect(checkHealth(`grpc://127.0.0.1:${grpcServer.port}`)).resolves.toBeUndefined();
    grpcServer.health.setStatus('', 'NOT_SERVING');
    try {
      expect((await rejection(checkHealth(`grpc://127.0.0.1:${grpcServer.port}`))).message).toBe(`grpc://127.0.0.1:${grpcServer.port}: health status NOT_SERVING`);
    } finally {
      grpcServer.health.setStatus('', 'SERVING');
    }
  });

  test('fails when nothing serves gRPC on the port', async () => {
    const error = await rejection(checkHealth(`grpc://127.0.0.1:${closedPort}`));
    expect(error.message.startsWith(`grpc://127.0.0.1:${closedPort}: `)).toBe(true);
  });

  test.each(['not a url', 'ftp://host:21/x', 'grpc://host-without-port', 'grpc://host:1/path'])('rejects the target %s as a usage error', async (target) => {
    expect(await rejection(checkHealth(target))).toBeInstanceOf(UsageError);
  });

  test('the command: --help prints the usage (exit 0), a healthy target exits 0, an unhealthy one or a bad argument 1 (Docker reserves 2)', async () => {
    const run = async (argv: string[]) => {
      let stdout = '';
      let stderr = '';
      const code = await runHealthcheckCli(argv, { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t) });
      return { code, stdout, stderr };
    };
    const help = await run(['--help']);
    expect(help).toMatchObject({ code: 0, stderr: '' });
    expect(help.stdout).toMatch(/^usage: healthcheck <http:\/\/host:port\/path \| grpc:\/\/host:port>\n/);
    expect(await run([`${http.url}/status/204`])).toEqual({ code: 0, stdout: '', stderr: '' });
    const unhealthy = await run([`${http.url}/status/503`]);
    expect(unhealthy.code).toBe(1);
    expect(unhealthy.stderr).toMatch(/^healthcheck: .*503/);
    for (const argv of [[], ['a', 'b'], ['not a url']]) {
      const bad = await run(argv);
      expect(bad.code).toBe(1);
      expect(bad.stderr).toMatch(/^healthcheck: .*usage: healthcheck/);
    }
  });
});
