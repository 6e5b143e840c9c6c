import type { IDescriptorProto, IEnumDescriptorProto, IFileDescriptorProto } from 'protobufjs/ext/descriptor';

/**
 * What a client needs to call a service, independent of how the descriptors were cut into
 * files: its methods, and every message and enum they reach, with type names fully qualified.
 * Two descriptor sources describe the same service exactly when these are equal.
 */
export interface ServiceDescription {
  readonly methods: { name: string; input: string; output: string; clientStreaming: boolean; serverStreaming: boolean }[];
  readonly messages: Record<string, { name: string; number: number; label: unknown; type: unknown; typeName: string; oneof: string }[]>;
  readonly enums: Record<string, { name: string; number: number }[]>;
}

type Symbol = { kind: 'message'; proto: IDescriptorProto } | { kind: 'enum'; proto: IEnumDescriptorProto };

export function describeService(files: readonly IFileDescriptorProto[], serviceName: string): ServiceDescription {
  const symbols = new Map<string, Symbol>();
  const indexMessage = (scope: string, message: IDescriptorProto): void => {
    const name = `${scope}.${message.name}`;
    symbols.set(name, { kind: 'message', proto: message });
    for (const nested of message.nestedType ?? []) indexMessage(name, nested);
    for (const nested of message.enumType ?? []) symbols.set(`${name}.${nested.name}`, { kind: 'enum', proto: nested });
  };
  let service: { scope: string; methods: NonNullable<NonNullable<IFileDescriptorProto['service']>[number]['method']> } | undefined;
  for (const file of files) {
    const scope = file.package ? `.${file.package}` : '';
    for (const message of file.messageType ?? []) indexMessage(scope, message);
    for (const enumType of file.enumType ?? []) symbols.set(`${scope}.${enumType.name}`, { kind: 'enum', proto: enumType });
    for (const declared of file.service ?? []) {
      if (`${scope}.${declared.name}`.slice(1) === serviceName) service = { scope, methods: declared.method ?? [] };
    }
  }
  if (service === undefined) throw new Error(`no service ${serviceName} in ${files.map((f) => f.name).join(', ')}`);

  // A type name is fully qualified (leading dot) or relative to the scope it is written in (descriptor.proto's rule).
  const resolve = (scope: string, ref: string): string => {
    if (ref.startsWith('.')) return ref;
    for (let at = scope; ; at = at.slice(0, Math.max(0, at.lastIndexOf('.')))) {
      if (symbols.has(`${at}.${ref}`)) return `${at}.${ref}`;
      if (at === '') throw new Error(`cannot resolve ${ref} from ${scope}`);
    }
  };

  const description: ServiceDescription = { methods: [], messages: {}, enums: {} };
  const reach = (name: string): void => {
    if (name in description.messages || name in description.enums) return;
    const symbol = symbols.get(name);
    if (symbol === undefined) throw new Error(`${name} is referenced but not described`);
    if (symbol.kind === 'enum') {
      description.enums[name] = (symbol.proto.value ?? []).map((v) => ({ name: v.name ?? '', number: v.number ?? 0 }));
      return;
    }
    const message = symbol.proto;
    const oneofs = (message.oneofDecl ?? []).map((o) => o.name ?? '');
    const fields = (message.field ?? []).map((field) => ({
      name: field.name ?? '',
      number: field.number ?? 0,
      label: field.label,
      type: field.type,
      typeName: field.typeName ? resolve(name, field.typeName) : '',
      oneof: field.oneofIndex === undefined || field.oneofIndex === null ? '' : oneofs[field.oneofIndex],
    }));
    description.messages[name] = fields;
    for (const field of fields) if (field.typeName !== '') reach(field.typeName);
  };
  for (const method of service.methods) {
    const input = resolve(service.scope, method.inputType ?? '');
    const output = resolve(service.scope, method.outputType ?? '');
    description.methods.push({ name: method.name ?? '', input, output, clientStreaming: method.clientStreaming === true, serverStreaming: method.serverStreaming === true });
    reach(input);
    reach(output);
  }
  return description;
}
