import { readFileSync } from 'node:fs';
import * as http2 from 'node:http2';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { DEFAULT_LIMITS, HTTP2_DEFAULT_WINDOW_BYTES, parseConfig } from '../../shared/config';
import { bindAddressFor, createClient, startServer, useTransport, type RunningServer } from '../../shared/grpc/channel';
import { raiseServerWindows } from '../../shared/grpc/flow-control';
import { protos } from '../../shared/grpc/proto-loader';
import { eventually } from '../support/eventually';

/**
 * HTTP/2 receive windows (limits.flow_control_window_bytes): every gRPC server and client the
 * project creates grants its peer the configured window per stream and per connection, instead
 * of HTTP/2's 64 KiB. Checked from the peer's side with Node's own http2, which reports the
 * SETTINGS and WINDOW_UPDATE frames it received.
 */
const WINDOW = 3 * 1024 * 1024 + 17;
const SECURITY = { clusterSecret: undefined, tls: undefined };

function healthService(): { name: string; definition: grpc.ServiceDefinition; implementation: grpc.UntypedServiceImplementation } {
  return { name: 'pipeserve.v1.Tokenizer', definition: protos().tokenizer.pipeserve.v1.Tokenizer.service, implementation: {} };
}

describe('HTTP/2 flow-control windows of gRPC servers and clients', () => {
  afterEach(() => useTransport({ limits: DEFAULT_LIMITS, security: SECURITY }));

  test('the default is 16 MiB, the default largest message: a message that fits is never held back for a WINDOW_UPDATE', () => {
    expect(DEFAULT_LIMITS.flowControlWindowBytes).toBe(DEFAULT_LIMITS.maxMessageBytes);
    const root = path.resolve(__dirname, '../..');
    const shipped = JSON.parse(readFileSync(path.join(root, 'config.json'), 'utf8')) as Record<string, unknown>;
    expect(parseConfig(shipped, { baseDir: root }).limits.flowControlWindowBytes).toBe(16 * 1024 * 1024);
  });

  test('a server started by startServer grants a connecting peer the configured window per stream (SETTINGS) and per connection (WINDOW_UPDATE)', async () => {
    useTransport({ limits: { ...DEFAULT_LIMITS, flowControlWindowBytes: WINDOW }, security: SECURITY });
    let server: RunningServer | undefined;
    let peer: http2.ClientHttp2Session | undefined;
    try {
      server = await startServer(bindAddressFor('127.0.0.1:0'), [healthService()]);
      const session = http2.connect(`http://127.0.0.1:${server.port}`);
      peer = session;
      session.on('error', () => undefined);
      await eventually(() => session.remoteSettings?.initialWindowSize === WINDOW && session.state.remoteWindowSize === WINDOW);
    } finally {
      peer?.destroy();
      await server?.shutdown(100);
    }
  });

  test('a session the server accepted before its windows were raised gets them by a new SETTINGS frame and a WINDOW_UPDATE', async () => {
    const server = new grpc.Server();
    const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', () => undefined);
    try {
      await eventually(() => session.remoteSettings?.initialWindowSize !== undefined);
      expect(session.remoteSettings.initialWindowSize).toBe(HTTP2_DEFAULT_WINDOW_BYTES);
      // The server's side of the session exists once the client's preface arrived.
      const entries = (server as unknown as { http2Servers: Map<unknown, { sessions: Set<unknown> }> }).http2Servers;
      await eventually(() => [...entries.values()].some((entry) => entry.sessions.size > 0));
      raiseServerWindows(server, WINDOW);
      await eventually(() => session.remoteSettings.initialWindowSize === WINDOW && session.state.remoteWindowSize === WINDOW);
    } finally {
      session.destroy();
      server.forceShutdown();
    }
  });

  test('a client made by createClient grants its server the configured window per stream and per connection', async () => {
    useTransport({ limits: { ...DEFAULT_LIMITS, flowControlWindowBytes: WINDOW }, security: SECURITY });
    const raw = http2.createServer();
    const accepted = new Promise<http2.ServerHttp2Session>((resolve) => raw.once('session', resolve));
    await new Promise<void>((resolve) => raw.listen(0, '127.0.0.1', resolve));
    const { port } = raw.address() as AddressInfo;
    const health = protos().health.grpc.health.v1.Health;
    const client = createClient(health, `127.0.0.1:${port}`);
    try {
      const ready = new Promise<void>((resolve) => client.waitForReady(Date.now() + 5_000, () => resolve()));
      const session = await accepted;
      await ready;
      await eventually(() => session.remoteSettings?.initialWindowSize === WINDOW && session.state.remoteWindowSize === WINDOW);
    } finally {
      client.close();
      await new Promise<void>((resolve) => raw.close(() => resolve()));
    }
  });

  test('without the option a peer sees HTTP/2 defaults: what the first tests measure is the option, not Node', async () => {
    const raw = http2.createServer();
    const accepted = new Promise<http2.ServerHttp2Session>((resolve) => raw.once('session', resolve));
    await new Promise<void>((resolve) => raw.listen(0, '127.0.0.1', resolve));
    const { port } = raw.address() as AddressInfo;
    const plain = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    try {
      const ready = new Promise<void>((resolve) => plain.waitForReady(Date.now() + 5_000, () => resolve()));
      const session = await accepted;
      await ready;
      await eventually(() => session.remoteSettings?.initialWindowSize !== undefined);
      expect(session.remoteSettings.initialWindowSize).toBe(HTTP2_DEFAULT_WINDOW_BYTES);
      expect(session.state.remoteWindowSize).toBe(HTTP2_DEFAULT_WINDOW_BYTES);
    } finally {
      plain.close();
      await new Promise<void>((resolve) => raw.close(() => resolve()));
    }
  });
});
