import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as protoLoader from '@grpc/proto-loader';
import { FileDescriptorProto, type IDescriptorProto, type IFileDescriptorProto } from 'protobufjs/ext/descriptor';
import { mapEntryName, withProtocMapEntryNames } from '../../shared/grpc/map-entry-names';
import { PROTO_LOADER_OPTIONS } from '../../shared/grpc/proto-loader';
import { findOnPath, protocDescriptorSet } from '../support/proto-toolchain';

const MAPS_PROTO = `syntax = "proto3";
package maps.v1;
message Value { string text = 1; }
message Outer {
  map<string, Value> statuses = 1;
  map<uint32, string> foo_bar = 2;
  message Inner { map<string, uint32> x1_y = 1; }
  Inner inner = 3;
}
`;

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'pipeserve-maps-'));
  await writeFile(path.join(dir, 'maps.proto'), MAPS_PROTO);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Every map field of every message, as "Message.field -> entry type name". */
function mapFields(messages: readonly IDescriptorProto[], scope = ''): string[] {
  return messages.flatMap((message) => {
    const name = `${scope}${message.name}`;
    const entries = new Set((message.nestedType ?? []).filter((n) => n.options?.mapEntry === true).map((n) => n.name));
    const own = (message.field ?? []).filter((f) => entries.has(f.typeName?.split('.').pop())).map((f) => `${name}.${f.name} -> ${f.typeName?.split('.').pop()}`);
    return [...own, ...mapFields(message.nestedType ?? [], `${name}.`)];
  });
}

function servedFile(definition: protoLoader.PackageDefinition): IFileDescriptorProto {
  const entry = definition['maps.v1.Outer'] as protoLoader.MessageTypeDefinition<object, object>;
  return FileDescriptorProto.toObject(FileDescriptorProto.decode(entry.fileDescriptorProtos[0]), { enums: String }) as IFileDescriptorProto;
}

describe('map entry names in served descriptors', () => {
  it('names an entry as protoc does: the field in CamelCase, then Entry', () => {
    expect(['statuses', 'foo_bar', 'x1_y', 'a__b'].map(mapEntryName)).toEqual(['StatusesEntry', 'FooBarEntry', 'X1YEntry', 'ABEntry']);
  });

  it('renames the entries protobufjs makes, nested messages included, and leaves the rest alone', () => {
    const loaded = protoLoader.loadSync('maps.proto', { ...PROTO_LOADER_OPTIONS, includeDirs: [dir] });
    expect(mapFields(servedFile(loaded).messageType ?? [])).toEqual(['Outer.statuses -> Statuses', 'Outer.foo_bar -> Foo_bar', 'Outer.Inner.x1_y -> X1_y']);
    const renamed = withProtocMapEntryNames(loaded);
    const file = servedFile(renamed);
    expect(mapFields(file.messageType ?? [])).toEqual(['Outer.statuses -> StatusesEntry', 'Outer.foo_bar -> FooBarEntry', 'Outer.Inner.x1_y -> X1YEntry']);
    const namedBack = JSON.stringify(file).replace(/"StatusesEntry"/g, '"Statuses"').replace(/"FooBarEntry"/g, '"Foo_bar"').replace(/"X1YEntry"/g, '"X1_y"');
    expect(JSON.parse(namedBack)).toEqual(servedFile(loaded));
    expect(Object.keys(renamed)).toEqual(Object.keys(loaded));
  });

  const protoc = findOnPath('protoc');
  (protoc === undefined ? it.skip : it)('the renamed entries are the ones protoc writes', async () => {
    const [compiled] = await protocDescriptorSet(protoc ?? 'protoc', ['maps.proto'], dir);
    const renamed = servedFile(withProtocMapEntryNames(protoLoader.loadSync('maps.proto', { ...PROTO_LOADER_OPTIONS, includeDirs: [dir] })));
    expect(mapFields(renamed.messageType ?? [])).toEqual(mapFields(compiled.messageType ?? []));
  });
});
