import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

/**
 * Who opens a connection to whom, read from the code rather than written down again. Every gRPC
 * client is made by `createClient(<constructor>, <address>)` (shared/grpc/channel.ts, the one
 * client factory); the calls in the files a service's main.ts imports, directly or not, are the
 * connections that service opens. The constructor names the gRPC service and so the process that
 * registers it in its main.ts; a grpc.health.v1 client, which every process serves, goes to the
 * process whose address it is given: `config.<service>.address`, or a model node's when the file
 * takes its addresses from the NodeDirectory. Anything else fails loudly instead of being guessed.
 */

const ROOT = path.resolve(__dirname, '..', '..');
const SERVICES_DIR = path.join(ROOT, 'services');
const CLIENT_FACTORY = path.join(ROOT, 'shared', 'grpc', 'channel.ts');
const NODE_DIRECTORY_IMPORT = /from '(?:\.\.\/)+shared\/node-directory'/;
/** Ways to open a connection that bypass the client factory, which the derivation would miss. */
const OTHER_CONNECTIONS = /\bfetch\(|\bhttps?\.(?:request|get)\(|\bnet\.(?:connect|createConnection)\(|new grpc\.Client\(|makeGenericClientConstructor\(/;

export interface ServiceConnection {
  /** The service folder under services/ of the caller and the callee: api, tokenizer, coordinator, node. */
  readonly from: string;
  readonly to: string;
  /** Where the client is made, `services/api/main.ts: Tokenizer`. */
  readonly where: string;
}

/** The services, by their folder under services/ (each has a main.ts). */
export function serviceNames(): string[] {
  return readdirSync(SERVICES_DIR).filter((name) => existsSync(path.join(SERVICES_DIR, name, 'main.ts'))).sort();
}

/** Every connection each service opens, one entry per client made (so duplicates are possible). */
export function serviceConnections(): ServiceConnection[] {
  const servedBy = grpcServicesByProcess();
  const connections: ServiceConnection[] = [];
  for (const from of serviceNames()) {
    for (const file of importClosure(path.join(SERVICES_DIR, from, 'main.ts'))) {
      const source = readFileSync(file, 'utf8');
      const relative = path.relative(ROOT, file);
      if (file !== CLIENT_FACTORY && OTHER_CONNECTIONS.test(source)) {
        throw new Error(`${relative} opens a connection without createClient: teach tests/support/service-connections.ts about it`);
      }
      if (file === CLIENT_FACTORY) continue;
      for (const call of source.matchAll(/\bcreateClient\(\s*([^,]+?)\s*,\s*([^)]+?)\s*\)/g)) {
        const [, constructor, address] = call;
        const grpcService = /pipeserve\.v1\.(\w+)$/.exec(constructor)?.[1];
        let to: string | undefined;
        if (grpcService !== undefined) to = servedBy.get(grpcService);
        else if (/grpc\.health\.v1\.Health$/.test(constructor)) to = healthTarget(address, source);
        if (to === undefined) throw new Error(`${relative}: cannot tell whom createClient(${constructor}, ${address}) connects to`);
        connections.push({ from, to, where: `${relative}: ${grpcService ?? 'Health'}` });
      }
    }
  }
  return connections;
}

/** `pipeserve.v1.<Service>` → the service folder whose main.ts registers it. */
function grpcServicesByProcess(): Map<string, string> {
  const servedBy = new Map<string, string>();
  for (const name of serviceNames()) {
    const main = readFileSync(path.join(SERVICES_DIR, name, 'main.ts'), 'utf8');
    for (const match of main.matchAll(/name: 'pipeserve\.v1\.(\w+)'/g)) servedBy.set(match[1], name);
  }
  return servedBy;
}

function healthTarget(address: string, source: string): string | undefined {
  const configured = /^config\.(\w+)\.address$/.exec(address)?.[1];
  if (configured !== undefined) return existsSync(path.join(SERVICES_DIR, configured, 'main.ts')) ? configured : undefined;
  return NODE_DIRECTORY_IMPORT.test(source) ? 'node' : undefined;
}

/** `entry` and every project file it imports, directly or not (relative imports; type-only ones too). */
function importClosure(entry: string): string[] {
  const seen = new Set<string>();
  const pending = [entry];
  while (pending.length > 0) {
    const file = pending.pop() as string;
    if (seen.has(file)) continue;
    seen.add(file);
    const source = readFileSync(file, 'utf8');
    for (const match of source.matchAll(/(?:from|import|require\()\s*'(\.{1,2}\/[^']+)'/g)) {
      const resolved = resolveModule(path.resolve(path.dirname(file), match[1]));
      if (resolved !== undefined && !resolved.includes(`${path.sep}protos${path.sep}generated${path.sep}`)) pending.push(resolved);
    }
  }
  return [...seen].sort();
}

function resolveModule(base: string): string | undefined {
  return [`${base}.ts`, path.join(base, 'index.ts'), base].find((candidate) => candidate.endsWith('.ts') && existsSync(candidate));
}
