import * as grpc from '@grpc/grpc-js';
import { DEFAULT_LIMITS } from '../../shared/config';
import { bindAddressFor, createClient, DEFAULT_MAX_MESSAGE_BYTES, startServer, unary, requestMetadata, useTransport, type RunningServer } from '../../shared/grpc/channel';
import { protos } from '../../shared/grpc/proto-loader';
import { ServiceError } from '../../shared/errors';

/**
 * The edges of every gRPC server and client the project creates (shared/grpc/channel.ts): a
 * server listens on the host its config names, not on every interface, and messages above the
 * configured size are refused before any handler sees them, in both directions.
 */
const LIMIT = 64 * 1024;

describe('gRPC transport edges', () => {
  let server: RunningServer;
  let encodeCalls = 0;

  beforeAll(async () => {
    useTransport({ limits: { ...DEFAULT_LIMITS, maxMessageBytes: LIMIT }, security: { clusterSecret: undefined, tls: undefined } });
    const implementation: grpc.UntypedServiceImplementation = {
      Encode: (call: grpc.ServerUnaryCall<{ text: string }, unknown>, callback: grpc.sendUnaryData<unknown>) => {
        encodeCalls++;
        // Answers with as many ids as the request had characters: a short text gives a small answer, a long one a large answer.
        callback(null, { token_ids: Array.from({ length: call.request.text.length }, (_, i) => i + 1) });
      },
    };
    server = await startServer(bindAddressFor('127.0.0.1:0'), [{ name: 'pipeserve.v1.Tokenizer', definition: protos().tokenizer.pipeserve.v1.Tokenizer.service, implementation }]);
  });

  afterAll(async () => {
    await server?.shutdown(100);
    useTransport({ limits: DEFAULT_LIMITS, security: { clusterSecret: undefined, tls: undefined } });
  });

  test('the bind address is the configured host: a literal IP or localhost as given, a DNS name (a Kubernetes Service) every interface', () => {
    expect(bindAddressFor('127.0.0.1:50051')).toBe('127.0.0.1:50051');
    expect(bindAddressFor('localhost:50051')).toBe('127.0.0.1:50051');
    expect(bindAddressFor('10.1.2.3:7000')).toBe('10.1.2.3:7000');
    expect(bindAddressFor('[::1]:50051')).toBe('[::1]:50051');
    expect(bindAddressFor('node1.pipeserve.svc:50051')).toBe('0.0.0.0:50051');
  });

  test('a server configured on 127.0.0.1 answers there and nowhere else (127.0.0.2 is loopback too, but not its address)', async () => {
    const health = protos().health.grpc.health.v1.Health;
    const here = createClient(health, `127.0.0.1:${server.port}`);
    const elsewhere = createClient(health, `127.0.0.2:${server.port}`);
    try {
      const answer = await unary<{ service: string }, { status: string }>(here.Check.bind(here), { service: '' }, requestMetadata(''), { deadline: Date.now() + 5_000 });
      expect(answer.status).toBe('SERVING');
      const refused = await unary<{ service: string }, { status: string }>(elsewhere.Check.bind(elsewhere), { service: '' }, requestMetadata(''), { deadline: Date.now() + 2_000 }).then(
        () => undefined,
        (error: unknown) => error,
      );
      expect(refused).toBeInstanceOf(ServiceError);
      expect([grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED]).toContain((refused as ServiceError).code);
    } finally {
      here.close();
      elsewhere.close();
    }
  });

  test('a request above max_message_bytes is refused RESOURCE_EXHAUSTED by the server before its handler runs, and by our own client before it is sent', async () => {
    const before = encodeCalls;
    const oversized = 'x'.repeat(LIMIT + 1024);
    // A client that is not ours (grpc-js defaults: no send limit) reaches the server's receive limit.
    const Tokenizer = protos().tokenizer.pipeserve.v1.Tokenizer;
    const foreign = new Tokenizer(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
    const ours = createClient(Tokenizer, `127.0.0.1:${server.port}`);
    try {
      const call = (client: typeof foreign, text: string): Promise<unknown> =>
        unary<{ text: string }, unknown>(client.Encode.bind(client), { text }, requestMetadata(''), { deadline: Date.now() + 5_000 });
      await expect(call(foreign, oversized)).rejects.toMatchObject({ code: grpc.status.RESOURCE_EXHAUSTED });
      await expect(call(ours, oversized)).rejects.toMatchObject({ code: grpc.status.RESOURCE_EXHAUSTED });
      expect(encodeCalls).toBe(before);
      // Under the limit it is served; an answer above the limit is refused on the way out.
      await expect(call(ours, 'hello')).resolves.toMatchObject({ token_ids: [1, 2, 3, 4, 5] });
      await expect(call(foreign, 'y'.repeat(LIMIT / 2))).rejects.toMatchObject({ code: grpc.status.RESOURCE_EXHAUSTED });
    } finally {
      foreign.close();
      ours.close();
    }
  });

  test('the default limit fits the largest message the protocol sends: a 4096-token prefill chunk of a 1024-wide model in float32', () => {
    expect(DEFAULT_LIMITS.maxMessageBytes).toBe(DEFAULT_MAX_MESSAGE_BYTES);
    expect(DEFAULT_MAX_MESSAGE_BYTES).toBeGreaterThanOrEqual(4096 * 1024 * 4);
    expect(DEFAULT_MAX_MESSAGE_BYTES).toBeLessThanOrEqual(32 * 1024 * 1024);
  });
});
