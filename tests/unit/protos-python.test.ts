import { execFile, spawnSync } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { PROTOS_DIR } from '../../shared/grpc/proto-loader';
import { findOnPath, grpcPython, protoFiles } from '../support/proto-toolchain';

const run = promisify(execFile);
const COMPILE_TIMEOUT_MS = 30_000;

/**
 * The Python toolchains Debian offers for these protos. protobuf-compiler-grpc: protoc 3.21 with
 * grpc_python_plugin (the one the examples use). python3-grpc-tools: grpcio-tools 1.14, whose
 * bundled protoc predates proto3 `optional` and refuses it, so it guards against its return.
 */
const protoc = findOnPath('protoc');
const grpcPythonPlugin = findOnPath('grpc_python_plugin');
const python = grpcPython();
const hasGrpcTools = python !== undefined && spawnSync(python, ['-c', 'import grpc_tools.protoc'], { stdio: 'ignore' }).status === 0;

/**
 * Imports the generated modules of the project's own protos and names the stubs found. The
 * generated grpc/health/v1 modules are compiled but not imported: their package `grpc.health`
 * would sit inside grpcio's own `grpc` package, which is why Python takes health from
 * grpcio-health-checking (`grpc_health.v1`) instead.
 */
const IMPORT_OWN = `
import importlib, pathlib, sys
sys.path.insert(0, sys.argv[1])
stubs = []
for file in sorted(pathlib.Path(sys.argv[1]).glob("*_pb2*.py")):
    module = importlib.import_module(file.stem)
    stubs += [attr for attr in dir(module) if attr.endswith("Stub")]
print(" ".join(sorted(stubs)))
`;

let out: string;

beforeEach(async () => {
  out = await mkdtemp(path.join(os.tmpdir(), 'pipeserve-pyprotos-'));
});

afterEach(async () => {
  await rm(out, { recursive: true, force: true });
});

async function generatedModules(): Promise<string[]> {
  const entries = await readdir(out, { recursive: true });
  return entries.filter((entry) => entry.endsWith('.py')).sort();
}

/** What the generated code must offer: a module pair per proto, and a stub per service of ours. */
async function expectUsableModules(): Promise<void> {
  const expected = protoFiles().flatMap((file) => [file.replace(/\.proto$/, '_pb2.py'), file.replace(/\.proto$/, '_pb2_grpc.py')]);
  expect(await generatedModules()).toEqual(expected.sort());
  const { stdout } = await run(python ?? 'python3', ['-c', IMPORT_OWN, out], { timeout: COMPILE_TIMEOUT_MS });
  expect(stdout.trim().split(' ')).toEqual(['CoordinatorStub', 'ModelNodeStub', 'TokenizerStub']);
}

describe('the protos compile with the Python toolchains Debian ships', () => {
  it('finds every .proto under protos/, in subfolders too', () => {
    expect(protoFiles()).toEqual(expect.arrayContaining(['coordinator.proto', 'grpc/health/v1/health.proto', 'node.proto', 'tensor.proto', 'token_logprob.proto', 'tokenizer.proto']));
  });

  (protoc === undefined || grpcPythonPlugin === undefined || python === undefined ? it.skip : it)(
    'protoc with grpc_python_plugin (protobuf-compiler-grpc) compiles every proto into modules python3-grpcio imports',
    async () => {
      await run(protoc ?? 'protoc', [`-I${PROTOS_DIR}`, `--python_out=${out}`, `--grpc_python_out=${out}`, `--plugin=protoc-gen-grpc_python=${grpcPythonPlugin}`, ...protoFiles()], { timeout: COMPILE_TIMEOUT_MS });
      await expectUsableModules();
    },
    COMPILE_TIMEOUT_MS * 2,
  );

  (hasGrpcTools ? it : it.skip)(
    "python3 -m grpc_tools.protoc (python3-grpc-tools, whose protoc rejects proto3 `optional`) compiles every proto too",
    async () => {
      await run(python ?? 'python3', ['-m', 'grpc_tools.protoc', `-I${PROTOS_DIR}`, `--python_out=${out}`, `--grpc_python_out=${out}`, ...protoFiles()], { timeout: COMPILE_TIMEOUT_MS });
      await expectUsableModules();
    },
    COMPILE_TIMEOUT_MS * 2,
  );
});
