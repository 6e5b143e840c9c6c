import * as grpc from '@grpc/grpc-js';
import type { IFileDescriptorProto } from 'protobufjs/ext/descriptor';
import { findOnPath, protocBuildsDescriptors, protocDescriptorSet, protoFiles } from '../support/proto-toolchain';
import { ReflectionClient, ReflectionError, type ReflectionVersion } from '../support/reflection-client';
import { describeService } from '../support/service-description';
import { RunningSystem, SYSTEM_START_TIMEOUT_MS } from '../support/system';
import { tinyModel } from '../support/test-models';

const HEALTH = 'grpc.health.v1.Health';

let system: RunningSystem;
/** Each gRPC process of the system, with the one service of its own it serves. */
let processes: { name: string; address: string; service: string }[];

beforeAll(async () => {
  system = await RunningSystem.start({ modelDir: await tinyModel({ stages: 3 }) });
  const { config } = system;
  processes = [
    { name: 'tokenizer', address: config.tokenizerAddress, service: 'pipeserve.v1.Tokenizer' },
    { name: 'coordinator', address: config.coordinatorAddress, service: 'pipeserve.v1.Coordinator' },
    ...config.nodes.map((node) => ({ name: node.id, address: node.address, service: 'pipeserve.v1.ModelNode' })),
  ];
}, SYSTEM_START_TIMEOUT_MS * 2);

afterAll(async () => {
  await system?.stop();
});

async function withReflection<T>(address: string, version: ReflectionVersion, use: (client: ReflectionClient) => Promise<T>): Promise<T> {
  const client = new ReflectionClient(address, version);
  try {
    return await use(client);
  } finally {
    client.close();
  }
}

describe('gRPC server reflection on every service', () => {
  it.each<ReflectionVersion>(['v1', 'v1alpha'])('%s: each process lists exactly its own service and health', async (version) => {
    expect(processes).toHaveLength(5);
    for (const { name, address, service } of processes) {
      const listed = await withReflection(address, version, (client) => client.listServices());
      expect({ name, services: listed.sort() }).toEqual({ name, services: [service, HEALTH].sort() });
    }
  });

  it('a file found by symbol is found again by its file name, as grpcurl resolves dependencies', async () => {
    for (const { address, service } of processes) {
      await withReflection(address, 'v1', async (client) => {
        const [file] = await client.fileContainingSymbol(service);
        expect(file.name).toMatch(/\.proto$/);
        const again = await client.fileByFilename(file.name ?? '');
        expect(again[0]).toEqual(file);
      });
    }
  });

  it('an unknown symbol is answered NOT_FOUND in the reflection stream', async () => {
    const error = await withReflection(system.config.tokenizerAddress, 'v1', (client) => client.fileContainingSymbol('pipeserve.v1.NoSuchService')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ReflectionError);
    expect((error as ReflectionError).code).toBe(grpc.status.NOT_FOUND);
  });

  const protoc = findOnPath('protoc');
  (protoc === undefined ? it.skip : it)('describes each service, every message it reaches included, exactly as protoc compiles protos/', async () => {
    const reference: IFileDescriptorProto[] = await protocDescriptorSet(protoc ?? 'protoc', protoFiles());
    for (const { address, service } of processes) {
      const served = await withReflection(address, 'v1', async (client) => [...(await client.fileContainingSymbol(service)), ...(await client.fileContainingSymbol(HEALTH))]);
      const ours = describeService(served, service);
      expect(ours).toEqual(describeService(reference, service));
      expect(Object.keys(ours.messages).length).toBeGreaterThan(3);
      expect(describeService(served, HEALTH)).toEqual(describeService(reference, HEALTH));
    }
  });

  (protoc === undefined ? it.skip : it)('the served descriptors pass protoc\'s descriptor builder, as a C++ or Python descriptor pool requires', async () => {
    for (const { address, service } of processes) {
      const served = await withReflection(address, 'v1', async (client) => [...(await client.fileContainingSymbol(service)), ...(await client.fileContainingSymbol(HEALTH))]);
      await expect(protocBuildsDescriptors(protoc ?? 'protoc', served)).resolves.toBeUndefined();
    }
  });
});
