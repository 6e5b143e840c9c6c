import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import path from 'node:path';
import type { ProtoGrpcType as CoordinatorProto } from '../../protos/generated/coordinator';
import type { ProtoGrpcType as HealthProto } from '../../protos/generated/health';
import type { ProtoGrpcType as NodeProto } from '../../protos/generated/node';
import type { ProtoGrpcType as TokenizerProto } from '../../protos/generated/tokenizer';
import { PROJECT_ROOT } from '../project-root';

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

function load<T>(file: string): T {
  const definition = protoLoader.loadSync(file, PROTO_LOADER_OPTIONS);
  return grpc.loadPackageDefinition(definition) as unknown as T;
}

let cache: { tokenizer: TokenizerProto; coordinator: CoordinatorProto; node: NodeProto; health: HealthProto } | undefined;

/** Every service definition of the project, loaded once from protos/. */
export function protos(): NonNullable<typeof cache> {
  cache ??= {
    tokenizer: load<TokenizerProto>('tokenizer.proto'),
    coordinator: load<CoordinatorProto>('coordinator.proto'),
    node: load<NodeProto>('node.proto'),
    health: load<HealthProto>('grpc/health/v1/health.proto'),
  };
  return cache;
}
