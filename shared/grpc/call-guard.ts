import * as grpc from '@grpc/grpc-js';

/**
 * Services any caller may reach without the cluster secret: health probes (kubelet, Docker,
 * load balancers carry no secret) and server reflection (it describes the protos, which are
 * public). Every other method of every server needs the secret.
 */
const OPEN_SERVICE_PREFIXES = ['/grpc.health.v1.Health/', '/grpc.reflection.v1.ServerReflection/', '/grpc.reflection.v1alpha.ServerReflection/'];

/** What a request deserializer yields for bytes that are not a message of its type. */
class MalformedMessage {
  constructor(readonly reason: string) {}
}

/**
 * A service definition whose request deserializers never throw: grpc-js answers a throwing one
 * with INTERNAL, though bytes that do not parse are the caller's fault. The guard below turns
 * what they yield instead into INVALID_ARGUMENT before a handler sees it.
 */
function parsingLeniently(definition: grpc.ServiceDefinition): grpc.ServiceDefinition {
  const lenient = Object.entries(definition).map(([name, method]) => [
    name,
    {
      ...method,
      requestDeserialize: (bytes: Buffer): unknown => {
        try {
          return method.requestDeserialize(bytes);
        } catch (error) {
          return new MalformedMessage(error instanceof Error ? error.message : String(error));
        }
      },
    },
  ]);
  return Object.fromEntries(lenient) as grpc.ServiceDefinition;
}

/** `server.addService` for a server guarded by `callGuard`; handed to grpc-health-check and reflection too. */
export function guardedRegistry(server: grpc.Server): Pick<grpc.Server, 'addService'> {
  return { addService: (definition, implementation) => server.addService(parsingLeniently(definition), implementation) };
}

/**
 * The server interceptor every project server runs (grpc-node's auth interceptor example is the
 * model): a call to a protected method without the cluster secret ends UNAUTHENTICATED before
 * its handler starts, and a request message that does not parse ends the call INVALID_ARGUMENT.
 */
export function callGuard(isTrusted: (metadata: grpc.Metadata) => boolean): grpc.ServerInterceptor {
  return (method, call) => {
    const open = OPEN_SERVICE_PREFIXES.some((prefix) => method.path.startsWith(prefix));
    const listener = new grpc.ServerListenerBuilder()
      .withOnReceiveMetadata((metadata, next) => {
        if (open || isTrusted(metadata)) next(metadata);
        else call.sendStatus({ code: grpc.status.UNAUTHENTICATED, details: `${method.path}: the call does not carry the cluster secret` });
      })
      .withOnReceiveMessage((message, next) => {
        if (message instanceof MalformedMessage) call.sendStatus({ code: grpc.status.INVALID_ARGUMENT, details: `${method.path}: the request is not a valid protobuf message (${message.reason})` });
        else next(message);
      })
      .build();
    return new grpc.ServerInterceptingCall(call, new grpc.ResponderBuilder().withStart((next) => next(listener)).build());
  };
}
