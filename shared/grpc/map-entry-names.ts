import type { AnyDefinition, EnumTypeDefinition, MessageTypeDefinition, PackageDefinition } from '@grpc/proto-loader';
import { FileDescriptorProto, type IDescriptorProto, type IFileDescriptorProto } from 'protobufjs/ext/descriptor';

/** protoc's name for the entry message of a map field: the field name in CamelCase, then "Entry". */
export function mapEntryName(fieldName: string): string {
  return `${fieldName.replace(/(?:^|_+)(.?)/g, (_match, next: string) => next.toUpperCase())}Entry`;
}

/** Messages and enums carry their file descriptors; services do not (grpc-js tells them apart the same way). */
function isTypeDefinition(entry: AnyDefinition): entry is MessageTypeDefinition<object, object> | EnumTypeDefinition {
  return 'format' in entry;
}

function renameMapEntries(message: IDescriptorProto): void {
  for (const nested of message.nestedType ?? []) {
    renameMapEntries(nested);
    if (nested.options?.mapEntry !== true) continue;
    // protobufjs refers to the entry by its bare name, from the map field it made it for.
    const field = (message.field ?? []).find((f) => f.typeName === nested.name);
    if (field?.name == null) continue;
    nested.name = field.typeName = mapEntryName(field.name);
  }
}

/**
 * The package definition with the map entries of its file descriptors named as protoc names
 * them. protobufjs (under proto-loader) calls the entry of `map<…> statuses` "Statuses", and
 * every other descriptor consumer rejects a map entry not called "StatusesEntry": protoc, the
 * C++ and Python descriptor pools, Go's protodesc (grpcurl). Those descriptors are what server
 * reflection serves, so without this grpc.health.v1 (HealthListResponse) could not be described.
 */
export function withProtocMapEntryNames(definition: PackageDefinition): PackageDefinition {
  // proto-loader gives every message of one load the same array of files: fix each array once.
  const fixed = new Map<Buffer[], Buffer[]>();
  const fix = (files: Buffer[]): Buffer[] => {
    let renamed = fixed.get(files);
    if (renamed === undefined) {
      renamed = files.map((bytes) => {
        const file = FileDescriptorProto.decode(bytes) as unknown as IFileDescriptorProto;
        for (const message of file.messageType ?? []) renameMapEntries(message);
        return Buffer.from(FileDescriptorProto.encode(file).finish());
      });
      fixed.set(files, renamed);
    }
    return renamed;
  };
  const result: PackageDefinition = {};
  for (const [name, entry] of Object.entries(definition)) {
    result[name] = isTypeDefinition(entry) ? { ...entry, fileDescriptorProtos: fix(entry.fileDescriptorProtos) } : entry;
  }
  return result;
}
