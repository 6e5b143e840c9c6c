import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { PROTO_LOADER_OPTIONS } from '../../shared/grpc/proto-loader';

const run = promisify(execFile);
const ROOT = path.resolve(__dirname, '../..');
const GENERATE_TIMEOUT_MS = 60_000;

async function listFiles(dir: string, prefix = ''): Promise<string[]> {
  const entries = await readdir(path.join(dir, prefix), { withFileTypes: true });
  const nested = await Promise.all(entries.map((e) => (e.isDirectory() ? listFiles(dir, path.join(prefix, e.name)) : [path.join(prefix, e.name)])));
  return nested.flat().sort();
}

describe('generated gRPC types', () => {
  it(
    'protos/generated is exactly what `npm run protos:gen` makes from the .proto files',
    async () => {
      const out = await mkdtemp(path.join(os.tmpdir(), 'protos-gen-'));
      try {
        const pkg = JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
        const args = pkg.scripts['protos:gen'].split(' ').slice(1).map((a) => (a.startsWith('--outDir=') ? `--outDir=${out}` : a));
        await run(path.join(ROOT, 'node_modules/.bin/proto-loader-gen-types'), args, { cwd: ROOT });
        const expected = await listFiles(out);
        expect(await listFiles(path.join(ROOT, 'protos/generated'))).toEqual(expected);
        for (const file of expected) {
          expect([file, await readFile(path.join(ROOT, 'protos/generated', file), 'utf8')]).toEqual([file, await readFile(path.join(out, file), 'utf8')]);
        }
      } finally {
        await rm(out, { recursive: true, force: true });
      }
    },
    GENERATE_TIMEOUT_MS,
  );

  it('the runtime loader options match the generator flags', async () => {
    const pkg = JSON.parse(await readFile(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    const flags = pkg.scripts['protos:gen'];
    expect(PROTO_LOADER_OPTIONS.keepCase).toBe(flags.includes('--keepCase'));
    expect(PROTO_LOADER_OPTIONS.longs === Number).toBe(flags.includes('--longs=Number'));
    expect(PROTO_LOADER_OPTIONS.enums === String).toBe(flags.includes('--enums=String'));
    expect(PROTO_LOADER_OPTIONS.defaults).toBe(flags.includes('--defaults'));
    expect(PROTO_LOADER_OPTIONS.oneofs).toBe(flags.includes('--oneofs'));
  });
});
