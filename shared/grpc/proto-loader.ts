import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import path from 'node:path';
import type { ProtoGrpcType as CoordinatorProto } from '../../protos/generated/coordinator';
import type { ProtoGrpcType as HealthProto } from '../../protos/generated/health';
import type { ProtoGrpcType as NodeProto } from '../../protos/generated/node';
import type { ProtoGrpcType as TokenizerProto } from '../../protos/generated/tokenizer';
import { PROJECT_ROOT } from '../project-root';
import { withProtocMapEntryNames } from './map-entry-names';

export const PROTOS_DIR = path.join(PROJECT_ROOT, 'protos');

/**
 * Runtime options of @grpc/proto-loader. They must match the flags `npm run protos:gen` passes
 * to proto-loader-gen-types (--keepCase --longs=Number --enums=String --defaults --oneofs),
 * or the generated types would lie about the objects we receive.
 */
export const PROTO_LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTOS_DIR],
};

/**
 * Every .proto a service serves, health included. They are loaded as one package definition
 * because gRPC reflection describes exactly one (it cannot merge several).
 */
const SERVED_PROTO_FILES = ['tokenizer.proto', 'coordinator.proto', 'node.proto', 'grpc/health/v1/health.proto'];

let definition: protoLoader.PackageDefinition | undefined;

/**
 * The package definition of every served .proto, loaded once with PROTO_LOADER_OPTIONS; its file
 * descriptors (what reflection serves) name map entries as protoc does.
 */
export function packageDefinition(): protoLoader.PackageDefinition {
  definition ??= withProtocMapEntryNames(protoLoader.loadSync(SERVED_PROTO_FILES, PROTO_LOADER_OPTIONS));
  return definition;
}

let cache: { tokenizer: TokenizerProto; coordinator: CoordinatorProto; node: NodeProto; health: HealthProto } | undefined;

/** Every service definition of the project, loaded once from protos/. */
export function protos(): NonNullable<typeof cache> {
  if (cache === undefined) {
    // One object holds every file's services and messages: each file's generated type is a view of it.
    const all = grpc.loadPackageDefinition(packageDefinition()) as unknown;
    cache = { tokenizer: all as TokenizerProto, coordinator: all as CoordinatorProto, node: all as NodeProto, health: all as HealthProto };
  }
  return cache;
}
