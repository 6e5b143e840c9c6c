import { createPrivateKey, timingSafeEqual, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation, type ServingStatus } from 'grpc-health-check';
import { ConfigError, DEFAULT_LIMITS, type AppConfig, type SecurityConfig } from '../config';
import { ServiceError } from '../errors';
import { callGuard, guardedRegistry } from './call-guard';
import { raiseServerWindows } from './flow-control';
import { packageDefinition } from './proto-loader';

export const MAX_RECONNECT_BACKOFF_MS = 1_000;
/** Default largest message: a prefill chunk of 4096 tokens of a 1024-wide model, with room to spare. */
export const DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024;

export const REQUEST_ID_KEY = 'x-request-id';
const AUTHORIZATION_KEY = 'authorization';

/**
 * How this process's gRPC channels are secured: the message size limit, an optional cluster
 * secret every internal call carries, and optional mutual TLS. Each service's main.ts sets it
 * once from config.json (`useTransport`); the defaults are plaintext with no secret, which is
 * what tests on loopback use.
 */
interface Transport {
  readonly maxMessageBytes: number;
  /** HTTP/2 receive window of clients and servers (`limits.flow_control_window_bytes`). */
  readonly flowControlWindowBytes: number;
  readonly clusterSecret: string | undefined;
  readonly tls: { readonly ca: Buffer; readonly cert: Buffer; readonly key: Buffer } | undefined;
}

let transport: Transport = { maxMessageBytes: DEFAULT_MAX_MESSAGE_BYTES, flowControlWindowBytes: DEFAULT_LIMITS.flowControlWindowBytes, clusterSecret: undefined, tls: undefined };

/**
 * Sets the transport of every client and server this process creates from now on. TLS files
 * that cannot be read, are not PEM, or a key that does not belong to its certificate are a
 * ConfigError naming the key, at start rather than at the first connection.
 */
export function useTransport(config: Pick<AppConfig, 'limits' | 'security'>): void {
  const { tls } = config.security;
  transport = {
    maxMessageBytes: config.limits.maxMessageBytes,
    flowControlWindowBytes: config.limits.flowControlWindowBytes,
    clusterSecret: config.security.clusterSecret,
    tls: tls === undefined ? undefined : readTlsFiles(tls),
  };
}

function readTlsFiles(files: NonNullable<SecurityConfig['tls']>): Transport['tls'] {
  const read = (file: string, key: string): Buffer => {
    try {
      return readFileSync(file);
    } catch (error) {
      throw new ConfigError(key, `cannot read ${file}: ${(error as Error).message}`);
    }
  };
  const ca = read(files.caFile, 'security.tls.ca_file');
  const cert = read(files.certFile, 'security.tls.cert_file');
  const key = read(files.keyFile, 'security.tls.key_file');
  const certificate = parsePem(() => new X509Certificate(cert), 'security.tls.cert_file', `${files.certFile} is not a PEM certificate`);
  parsePem(() => new X509Certificate(ca), 'security.tls.ca_file', `${files.caFile} is not a PEM certificate`);
  const privateKey = parsePem(() => createPrivateKey(key), 'security.tls.key_file', `${files.keyFile} is not a PEM private key`);
  if (!certificate.checkPrivateKey(privateKey)) throw new ConfigError('security.tls.key_file', `${files.keyFile} is not the key of the certificate ${files.certFile}`);
  return { ca, cert, key };
}

function parsePem<T>(parse: () => T, key: string, problem: string): T {
  try {
    return parse();
  } catch (error) {
    throw new ConfigError(key, `${problem} (${(error as Error).message})`);
  }
}

export function maxMessageBytes(): number {
  return transport.maxMessageBytes;
}

function channelOptions(): grpc.ChannelOptions {
  return {
    'grpc.max_receive_message_length': transport.maxMessageBytes,
    'grpc.max_send_message_length': transport.maxMessageBytes,
    'grpc.keepalive_time_ms': 10_000,
    'grpc.keepalive_timeout_ms': 5_000,
    'grpc.keepalive_permit_without_calls': 1,
    'grpc.initial_reconnect_backoff_ms': 200,
    // A restarted stage is found again within a second, and a dead one costs a connection attempt per second on the LAN.
    'grpc.max_reconnect_backoff_ms': MAX_RECONNECT_BACKOFF_MS,
    // Node-to-node streams of one stage pair should not share a connection with unrelated calls.
    'grpc.use_local_subchannel_pool': 1,
    // The receive window this client grants its servers, per stream and per connection (raiseServerWindows for servers).
    'grpc-node.flow_control_window': transport.flowControlWindowBytes,
  };
}

function serverOptions(): grpc.ServerOptions {
  return {
    interceptors: [callGuard(isTrustedCall)],
    'grpc.max_receive_message_length': transport.maxMessageBytes,
    'grpc.max_send_message_length': transport.maxMessageBytes,
    'grpc.keepalive_permit_without_calls': 1,
    'grpc.http2.min_ping_interval_without_data_ms': 5_000,
  };
}

type ClientConstructor<C extends grpc.Client> = new (address: string, credentials: grpc.ChannelCredentials, options?: grpc.ChannelOptions) => C;

/**
 * The one client factory: the project's keepalive and size limits, TLS when configured, and the
 * cluster secret on every call when configured.
 */
export function createClient<C extends grpc.Client>(ctor: ClientConstructor<C>, address: string): C {
  const { tls, clusterSecret } = transport;
  let credentials = tls === undefined ? grpc.credentials.createInsecure() : grpc.credentials.createSsl(tls.ca, tls.key, tls.cert);
  if (clusterSecret !== undefined) {
    const secret = grpc.credentials.createFromMetadataGenerator((_params, callback) => {
      const metadata = new grpc.Metadata();
      metadata.set(AUTHORIZATION_KEY, `Bearer ${clusterSecret}`);
      callback(null, metadata);
    });
    // grpc-js sends call credentials only over a secure channel; on plaintext they ride in every call's metadata (withSecret).
    if (tls !== undefined) credentials = grpc.credentials.combineChannelCredentials(credentials, secret);
  }
  return new ctor(address, credentials, channelOptions());
}

/** Metadata for a call: the request id, and the cluster secret where the channel cannot carry it. */
export function requestMetadata(requestId: string): grpc.Metadata {
  const metadata = new grpc.Metadata();
  if (requestId !== '') metadata.set(REQUEST_ID_KEY, requestId);
  if (transport.clusterSecret !== undefined && transport.tls === undefined) metadata.set(AUTHORIZATION_KEY, `Bearer ${transport.clusterSecret}`);
  return metadata;
}

/** True when a call carries the cluster secret (or none is configured). */
function isTrustedCall(metadata: grpc.Metadata): boolean {
  if (transport.clusterSecret === undefined) return true;
  const value = metadata.get(AUTHORIZATION_KEY)[0];
  return typeof value === 'string' && timingSafeEqualStrings(value, `Bearer ${transport.clusterSecret}`);
}

function timingSafeEqualStrings(a: string, b: string): boolean {
  const left = Buffer.from(a);
  const right = Buffer.from(b);
  return left.length === right.length && timingSafeEqual(left, right);
}

export function callOptions(deadlineMs: number): grpc.CallOptions {
  return { deadline: Date.now() + deadlineMs };
}

/** Call options that end when an absolute deadline (epoch ms) passes: a hop passes on what is left of its caller's. */
export function untilDeadline(deadlineUnixMs: number): grpc.CallOptions {
  return { deadline: new Date(deadlineUnixMs) };
}

/** Request ids are logged and echoed: anything but a short token of safe characters is replaced. */
const REQUEST_ID_PATTERN = /^[A-Za-z0-9._:@/+=-]{1,128}$/;

export function isValidRequestId(value: string): boolean {
  return REQUEST_ID_PATTERN.test(value);
}

/** A request id taken from a message body, for logs and echoes: itself when it is a safe token, else ''. */
export function safeRequestId(value: string): string {
  return isValidRequestId(value) ? value : '';
}

/** The call's request id, or '' when it has none or one that is not a safe token. */
export function requestIdOf(metadata: grpc.Metadata): string {
  const value = metadata.get(REQUEST_ID_KEY)[0];
  return typeof value === 'string' && isValidRequestId(value) ? value : '';
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

const HEALTH_SERVICE = 'grpc.health.v1.Health';

/**
 * The one server factory: registers the given services, grpc.health.v1 and server reflection
 * (v1 and v1alpha, describing exactly those services, from the project's package definition),
 * binds with the configured transport, and reports SERVING for each service name (and "" for
 * the whole server). Every call passes the call guard first: the given services need the
 * cluster secret (when one is configured), health and reflection do not, and a request that
 * does not parse is INVALID_ARGUMENT.
 */
export async function startServer(
  bindAddress: string,
  services: ReadonlyArray<{ readonly name: string; readonly definition: grpc.ServiceDefinition; readonly implementation: grpc.UntypedServiceImplementation }>,
): Promise<RunningServer> {
  const described = packageDefinition();
  // Reflection can describe only what protos/ declares: a service from elsewhere is a mistake.
  const undescribed = services.map((service) => service.name).filter((name) => !(name in described));
  if (undescribed.length > 0) throw new Error(`startServer: ${undescribed.join(', ')} is not a service of protos/`);
  const server = new grpc.Server(serverOptions());
  const registry = guardedRegistry(server);
  const health = new HealthImplementation({ '': 'SERVING' });
  for (const service of services) {
    registry.addService(service.definition, service.implementation);
    health.setStatus(service.name, 'SERVING');
  }
  health.addToServer(registry);
  new ReflectionService(described, { services: [...services.map((service) => service.name), HEALTH_SERVICE] }).addToServer(registry);
  const { tls } = transport;
  const credentials = tls === undefined ? grpc.ServerCredentials.createInsecure() : grpc.ServerCredentials.createSsl(tls.ca, [{ private_key: tls.key, cert_chain: tls.cert }], true);
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(bindAddress, credentials, (error, boundPort) => (error ? reject(error) : resolve(boundPort)));
  });
  raiseServerWindows(server, transport.flowControlWindowBytes);
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

/**
 * Where a server listens for the address it is reached at: a literal IP or a loopback name is
 * bound as given (config saying 127.0.0.1 means loopback only); a DNS name (a Kubernetes Service)
 * binds every interface, since that name's address belongs to a load balancer or the pod.
 */
export function bindAddressFor(address: string): string {
  const host = bindHostFor(address);
  const port = address.slice(address.lastIndexOf(':') + 1);
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}

/** The host part of `bindAddressFor`, for a service's other listeners (its metrics port). */
export function bindHostFor(address: string): string {
  const host = address.slice(0, address.lastIndexOf(':')).replace(/^\[|\]$/g, '');
  if (host === 'localhost') return '127.0.0.1';
  return isIP(host) !== 0 ? host : '0.0.0.0';
}
