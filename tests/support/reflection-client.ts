import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { FileDescriptorProto, type IFileDescriptorProto } from 'protobufjs/ext/descriptor';

/** Both published versions of the reflection protocol: grpcurl asks v1 and falls back to v1alpha. */
export type ReflectionVersion = 'v1' | 'v1alpha';

/** The reflection protos as @grpc/reflection ships them (the same files gRPC publishes). */
const REFLECTION_PROTO_ROOT = path.join(path.dirname(require.resolve('@grpc/reflection/package.json')), 'build/proto');

interface ServerReflectionRequest {
  host?: string;
  file_by_filename?: string;
  file_containing_symbol?: string;
  list_services?: string;
}

interface ServerReflectionResponse {
  message_response: 'file_descriptor_response' | 'list_services_response' | 'error_response' | 'all_extension_numbers_response';
  file_descriptor_response?: { file_descriptor_proto: Buffer[] };
  list_services_response?: { service: { name: string }[] };
  error_response?: { error_code: number; error_message: string };
}

type ReflectionStub = grpc.Client & {
  ServerReflectionInfo(metadata: grpc.Metadata, options: grpc.CallOptions): grpc.ClientDuplexStream<ServerReflectionRequest, ServerReflectionResponse>;
};

/** An answer the reflection service gave as an error_response (the stream itself succeeded). */
export class ReflectionError extends Error {
  constructor(
    readonly code: grpc.status,
    message: string,
  ) {
    super(message);
  }
}

/**
 * A reflection client written only from the reflection protocol (what grpcurl does): each
 * question is one request on its own ServerReflectionInfo stream, each file descriptor is
 * decoded from its bytes.
 */
export class ReflectionClient {
  private readonly stub: ReflectionStub;

  constructor(
    address: string,
    version: ReflectionVersion = 'v1',
    private readonly timeoutMs = 10_000,
    credentials: grpc.ChannelCredentials = grpc.credentials.createInsecure(),
  ) {
    const definition = protoLoader.loadSync(`grpc/reflection/${version}/reflection.proto`, { keepCase: true, oneofs: true, includeDirs: [REFLECTION_PROTO_ROOT] });
    const ctor = definition[`grpc.reflection.${version}.ServerReflection`] as grpc.ServiceDefinition;
    const Stub = grpc.makeGenericClientConstructor(ctor, 'ServerReflection');
    this.stub = new Stub(address, credentials) as unknown as ReflectionStub;
  }

  /** Full names of the services the server exposes. */
  async listServices(): Promise<string[]> {
    const response = await this.ask({ list_services: '*' });
    return (response.list_services_response?.service ?? []).map((service) => service.name);
  }

  /** The file that declares a fully qualified symbol, with every file it depends on. */
  async fileContainingSymbol(symbol: string): Promise<IFileDescriptorProto[]> {
    return decodeFiles(await this.ask({ file_containing_symbol: symbol }));
  }

  async fileByFilename(filename: string): Promise<IFileDescriptorProto[]> {
    return decodeFiles(await this.ask({ file_by_filename: filename }));
  }

  close(): void {
    this.stub.close();
  }

  private ask(request: ServerReflectionRequest): Promise<ServerReflectionResponse> {
    return new Promise((resolve, reject) => {
      const call = this.stub.ServerReflectionInfo(new grpc.Metadata(), { deadline: Date.now() + this.timeoutMs });
      let answer: ServerReflectionResponse | undefined;
      call.on('data', (response: ServerReflectionResponse) => {
        answer ??= response;
      });
      call.on('error', reject);
      call.on('end', () => {
        if (answer === undefined) reject(new Error('the reflection stream ended without an answer'));
        else if (answer.message_response === 'error_response') reject(new ReflectionError(answer.error_response?.error_code ?? grpc.status.UNKNOWN, answer.error_response?.error_message ?? ''));
        else resolve(answer);
      });
      call.write({ host: '', ...request });
      call.end();
    });
  }
}

function decodeFiles(response: ServerReflectionResponse): IFileDescriptorProto[] {
  const encoded = response.file_descriptor_response?.file_descriptor_proto ?? [];
  // Plain objects of the fields present only: a decoded message reads unset proto2 fields (oneof_index) as 0.
  return encoded.map((bytes) => FileDescriptorProto.toObject(FileDescriptorProto.decode(bytes), { enums: String }) as IFileDescriptorProto);
}
