import { readFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';

const ROOT = path.resolve(__dirname, '..', '..');
const BASE_IMAGE = 'node:20-bookworm-slim';

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
    const instruction = { keyword: line.slice(0, space).toUpperCase(), args: line.slice(space + 1).trim() };
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

const dockerfile = stages(readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8'));
const [build, runtime] = dockerfile;
const dockerignore = readFileSync(path.join(ROOT, '.dockerignore'), 'utf8')
  .split(/\r?\n/)
  .map((l) => l.trim())
  .filter((l) => l !== '' && !l.startsWith('#'));

describe('Dockerfile', () => {
  test(`builds in one ${BASE_IMAGE} stage and runs in another`, () => {
    expect(dockerfile.map((stage) => stage[0].args)).toEqual([`${BASE_IMAGE} AS build`, `${BASE_IMAGE} AS runtime`]);
  });

  test('the build stage installs from the lockfile with .npmrc, then compiles every source folder tsconfig includes', () => {
    const copyManifests = indexOf(build, 'COPY', /^package\.json package-lock\.json \.npmrc /);
    const install = indexOf(build, 'RUN', /^npm ci\b/);
    const compile = indexOf(build, 'RUN', /^npm run build$/);
    expect(copyManifests).toBeGreaterThan(0);
    expect(install).toBeGreaterThan(copyManifests);
    expect(compile).toBeGreaterThan(install);
    const tsconfig = JSON.parse(readFileSync(path.join(ROOT, 'tsconfig.json'), 'utf8')) as { include: string[] };
    const copied = new Set(
      build.slice(0, compile).filter((i) => i.keyword === 'COPY').flatMap((i) => i.args.split(/\s+/).slice(0, -1)),
    );
    const needed = tsconfig.include.filter((dir) => dir !== 'tests').map((dir) => dir.split('/')[0]);
    expect(needed.filter((dir) => !copied.has(dir))).toEqual([]);
    expect(copied.has('tsconfig.json')).toBe(true);
  });

  test('the runtime stage installs production dependencies with .npmrc and copies dist, protos and config.json', () => {
    const copyManifests = indexOf(runtime, 'COPY', /^package\.json package-lock\.json \.npmrc /);
    const install = indexOf(runtime, 'RUN', /^npm ci --omit=dev\b/);
    expect(copyManifests).toBeGreaterThan(0);
    expect(install).toBeGreaterThan(copyManifests);
    expect(runtime.map((i) => `${i.keyword} ${i.args}`)).toEqual(
      expect.arrayContaining(['WORKDIR /app', 'COPY --from=build /app/dist ./dist', 'COPY protos ./protos', 'COPY config.json ./config.json']),
    );
    const env = runtime.filter((i) => i.keyword === 'ENV').map((i) => i.args).join(' ');
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
