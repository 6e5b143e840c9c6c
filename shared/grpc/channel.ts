import * as grpc from '@grpc/grpc-js';
import { HealthImplementation, type ServingStatus } from 'grpc-health-check';
import { ServiceError } from '../errors';

/** Activations of a long prefill batch are large: allow 256 MiB messages both ways. */
export const MAX_MESSAGE_BYTES = 256 * 1024 * 1024;

export const MAX_RECONNECT_BACKOFF_MS = 1_000;

export const CHANNEL_OPTIONS: grpc.ChannelOptions = {
  'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
  'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
  'grpc.keepalive_time_ms': 10_000,
  'grpc.keepalive_timeout_ms': 5_000,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.initial_reconnect_backoff_ms': 200,
  // A restarted stage is found again within a second (links wait MAX_RECONNECT_BACKOFF_MS + a
  // margin for it), and a dead one costs a connection attempt per second on the LAN.
  'grpc.max_reconnect_backoff_ms': MAX_RECONNECT_BACKOFF_MS,
  // Node-to-node streams of one stage pair should not share a connection with unrelated calls.
  'grpc.use_local_subchannel_pool': 1,
};

const SERVER_OPTIONS: grpc.ServerOptions = {
  'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
  'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.http2.min_ping_interval_without_data_ms': 5_000,
};

export const REQUEST_ID_KEY = 'x-request-id';

type ClientConstructor<C extends grpc.Client> = new (address: string, credentials: grpc.ChannelCredentials, options?: grpc.ChannelOptions) => C;

/** The one client factory: plaintext channel with the project's keepalive and size limits. */
export function createClient<C extends grpc.Client>(ctor: ClientConstructor<C>, address: string): C {
  return new ctor(address, grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
}

export function callOptions(deadlineMs: number): grpc.CallOptions {
  return { deadline: Date.now() + deadlineMs };
}

/** Call options that end when an absolute deadline (epoch ms) passes: a hop passes on what is left of its caller's. */
export function untilDeadline(deadlineUnixMs: number): grpc.CallOptions {
  return { deadline: new Date(deadlineUnixMs) };
}

export function requestMetadata(requestId: string): grpc.Metadata {
  const metadata = new grpc.Metadata();
  if (requestId !== '') metadata.set(REQUEST_ID_KEY, requestId);
  return metadata;
}

export function requestIdOf(metadata: grpc.Metadata): string {
  const value = metadata.get(REQUEST_ID_KEY)[0];
  return typeof value === 'string' ? value : '';
}

/** A unary call as a promise; a failure becomes a ServiceError with its status. */
export function unary<Req, Res>(
  call: (request: Req, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<Res>) => grpc.ClientUnaryCall,
  request: Req,
  metadata: grpc.Metadata,
  options: grpc.CallOptions,
): Promise<Res> {
  return new Promise((resolve, reject) => {
    call(request, metadata, options, (error, response) => {
      if (error) reject(ServiceError.from(error));
      else if (response === undefined) reject(new ServiceError(grpc.status.INTERNAL, 'empty response'));
      else resolve(response);
    });
  });
}

export interface RunningServer {
  readonly server: grpc.Server;
  readonly port: number;
  readonly health: HealthImplementation;
  /** Marks every service NOT_SERVING, then waits for calls to finish (forces them after graceMs). */
  shutdown(graceMs?: number): Promise<void>;
}

/**
 * The one server factory: registers the given services and grpc.health.v1, binds, and reports
 * SERVING for each service name (and "" for the whole server).
 */
export async function startServer(
  bindAddress: string,
  services: ReadonlyArray<{ readonly name: string; readonly definition: grpc.ServiceDefinition; readonly implementation: grpc.UntypedServiceImplementation }>,
): Promise<RunningServer> {
  const server = new grpc.Server(SERVER_OPTIONS);
  const health = new HealthImplementation({ '': 'SERVING' });
  for (const service of services) {
    server.addService(service.definition, service.implementation);
    health.setStatus(service.name, 'SERVING');
  }
  health.addToServer(server);
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(bindAddress, grpc.ServerCredentials.createInsecure(), (error, boundPort) => (error ? reject(error) : resolve(boundPort)));
  });
  const setAll = (status: ServingStatus): void => {
    health.setStatus('', status);
    for (const service of services) health.setStatus(service.name, status);
  };
  return {
    server,
    port,
    health,
    shutdown: (graceMs = 5_000) =>
      new Promise<void>((resolve) => {
        setAll('NOT_SERVING');
        const force = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, graceMs);
        force.unref();
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      }),
  };
}

/** "0.0.0.0:<port of address>": gRPC servers listen on every interface at their configured port. */
export function bindAddressFor(address: string, host = '0.0.0.0'): string {
  return `${host}:${address.slice(address.lastIndexOf(':') + 1)}`;
}
