import { execFile, spawnSync } from 'node:child_process';
import { accessSync, constants, readdirSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { FileDescriptorSet, type IFileDescriptorProto } from 'protobufjs/ext/descriptor';
import { PROTOS_DIR } from '../../shared/grpc/proto-loader';

const run = promisify(execFile);

/** Every .proto under protos/, as paths relative to it (what protoc's -I protos expects). */
export function protoFiles(dir = PROTOS_DIR, prefix = ''): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .flatMap((entry) => {
      const relative = prefix === '' ? entry.name : `${prefix}/${entry.name}`;
      if (entry.isDirectory()) return entry.name === 'generated' ? [] : protoFiles(path.join(dir, entry.name), relative);
      return entry.name.endsWith('.proto') ? [relative] : [];
    })
    .sort();
}

/** An executable named `name` on PATH, or undefined. */
export function findOnPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir === '') continue;
    const candidate = path.join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

/**
 * A Python 3 that imports grpc and google.protobuf (Debian's python3-grpcio and
 * python3-protobuf), or undefined. Debian's packages belong to /usr/bin/python3, which a
 * pyenv or venv python3 earlier on PATH does not see; $PYTHON overrides.
 */
export function grpcPython(): string | undefined {
  const candidates = [process.env.PYTHON, '/usr/bin/python3', 'python3'].filter((c): c is string => c !== undefined && c !== '');
  return candidates.find((python) => spawnSync(python, ['-c', 'import grpc, google.protobuf'], { stdio: 'ignore' }).status === 0);
}

/** protoc's own compilation of .proto files (with their imports), decoded: the reference a descriptor is compared with. */
export async function protocDescriptorSet(protoc: string, files: readonly string[], includeDir = PROTOS_DIR): Promise<IFileDescriptorProto[]> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pipeserve-protoc-'));
  try {
    const out = path.join(dir, 'protos.pb');
    await run(protoc, [`-I${includeDir}`, `--descriptor_set_out=${out}`, '--include_imports', ...files]);
    const set = FileDescriptorSet.toObject(FileDescriptorSet.decode(await readFile(out)), { enums: String }) as { file: IFileDescriptorProto[] };
    return set.file;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Runs file descriptors (as a reflection client received them) through protoc's descriptor
 * builder, the validation every C++-based pool (Python's included) applies; rejects with
 * protoc's message when it refuses them.
 */
export async function protocBuildsDescriptors(protoc: string, files: readonly IFileDescriptorProto[]): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pipeserve-protoc-'));
  try {
    const set = path.join(dir, 'served.pb');
    await writeFile(set, FileDescriptorSet.encode(FileDescriptorSet.fromObject({ file: files })).finish());
    await run(protoc, [`--descriptor_set_in=${set}`, `--descriptor_set_out=${path.join(dir, 'out.pb')}`, ...files.map((file) => file.name ?? '')]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
