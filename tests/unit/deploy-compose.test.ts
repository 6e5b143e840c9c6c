import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { ENV_OVERRIDES, parseConfig, portOf } from '../../shared/config';

const ROOT = path.resolve(__dirname, '..', '..');
const IMAGE = 'pipeserve:latest';
const NETWORK = 'model-network';

/** Process entrypoints of the deployment contract, as source paths. */
const ENTRYPOINTS = new Set([
  'services/api/main.ts',
  'services/tokenizer/main.ts',
  'services/coordinator/main.ts',
  'services/node/main.ts',
  'tools/model-init.ts',
  'tools/healthcheck.ts',
]);
const ALLOWED_ENV = new Set([...Object.keys(ENV_OVERRIDES), 'NODE_ID', 'HEALTHCHECK_URL']);

interface ComposeService {
  image?: string;
  build?: unknown;
  command?: string[];
  environment?: Record<string, string>;
  ports?: string[];
  expose?: string[];
  volumes?: string[];
  networks?: string[];
  depends_on?: Record<string, { condition: string }>;
}
interface ComposeFile {
  services: Record<string, ComposeService>;
  networks?: Record<string, { name?: string; external?: boolean } | null>;
  volumes?: Record<string, unknown>;
}

function loadCompose(file: string): ComposeFile {
  // Compose resolves YAML merge keys (<<), so the test must too.
  return YAML.parse(readFileSync(path.join(ROOT, file), 'utf8'), { merge: true }) as ComposeFile;
}

const compose = loadCompose('docker-compose.yml');
const monitoring = loadCompose('docker-compose.monitoring.yml');
const repoConfigJson: unknown = JSON.parse(readFileSync(path.join(ROOT, 'config.json'), 'utf8'));
const repoConfig = parseConfig(repoConfigJson, { baseDir: ROOT });
const ours = Object.entries(compose.services).filter(([, s]) => s.image === IMAGE);
const servers = ours.filter(([name]) => name !== 'model-init');

function entrypointOf(service: ComposeService): string {
  const [program, script] = service.command ?? [];
  if (program !== 'node' || script === undefined) throw new Error(`command ${JSON.stringify(service.command)} is not node <script>`);
  return script.replace(/^dist\//, '').replace(/\.js$/, '.ts');
}

/** The parts of a short-syntax volume entry "source:target[:ro]". */
function volumeParts(entry: string): { source: string; target: string; readOnly: boolean } {
  const [source, target, mode] = entry.split(':');
  return { source, target, readOnly: mode === 'ro' };
}

describe('docker-compose.yml', () => {
  test('runs model-init, api, tokenizer, coordinator and one service per config.json node, all from the one image', () => {
    expect(ours.map(([name]) => name).sort()).toEqual(
      ['model-init', 'api', 'tokenizer', 'coordinator', ...repoConfig.nodes.map((n) => n.id)].sort(),
    );
    expect(Object.keys(compose.services).sort()).toEqual(ours.map(([name]) => name).sort());
    for (const [name, service] of ours) expect([name, service.build]).toEqual([name, '.']);
  });

  test('every command runs a contract entrypoint, each service its own', () => {
    const expected: Record<string, string> = {
      'model-init': 'tools/model-init.ts',
      api: 'services/api/main.ts',
      tokenizer: 'services/tokenizer/main.ts',
      coordinator: 'services/coordinator/main.ts',
      ...Object.fromEntries(repoConfig.nodes.map((n) => [n.id, 'services/node/main.ts'])),
    };
    for (const [name, service] of ours) {
      const entrypoint = entrypointOf(service);
      expect([name, ENTRYPOINTS.has(entrypoint), entrypoint]).toEqual([name, true, expected[name]]);
    }
    for (const node of repoConfig.nodes) {
      const command = compose.services[node.id].command ?? [];
      expect(command.slice(command.indexOf('--node-id'))).toEqual(['--node-id', node.id]);
    }
  });

  test('every environment variable is a config override, NODE_ID or HEALTHCHECK_URL', () => {
    for (const [name, service] of ours) {
      const unknown = Object.keys(service.environment ?? {}).filter((key) => !ALLOWED_ENV.has(key));
      expect([name, unknown]).toEqual([name, []]);
    }
  });

  test('the environment passes parseConfig and points every address at a compose service on its config.json port', () => {
    for (const [name, service] of servers) {
      const env = service.environment ?? {};
      const config = parseConfig(repoConfigJson, { baseDir: '/app', env });
      expect([name, config.tokenizer.address]).toEqual([name, `tokenizer:${portOf(repoConfig.tokenizer.address)}`]);
      expect([name, config.coordinator.address]).toEqual([name, `coordinator:${portOf(repoConfig.coordinator.address)}`]);
      expect([name, config.nodes.map((n) => n.address)]).toEqual([name, repoConfig.nodes.map((n) => `${n.id}:${portOf(n.address)}`)]);
      expect([name, config.api.port]).toEqual([name, repoConfig.api.port]);
      expect([name, env.CONFIG_PATH]).toEqual([name, '/app/config.json']);
    }
    for (const host of ['tokenizer', 'coordinator', ...repoConfig.nodes.map((n) => n.id)]) {
      expect(compose.services[host]).toBeDefined();
    }
  });

  test("each service exposes its gRPC and metrics ports from config.json and health-checks its own port", () => {
    const grpcServers: [string, string, number][] = [
      ['tokenizer', repoConfig.tokenizer.address, repoConfig.tokenizer.metricsPort],
      ['coordinator', repoConfig.coordinator.address, repoConfig.coordinator.metricsPort],
      ...repoConfig.nodes.map((n): [string, string, number] => [n.id, n.address, n.metricsPort]),
    ];
    for (const [name, address, metricsPort] of grpcServers) {
      const service = compose.services[name];
      expect([name, service.expose]).toEqual([name, [String(portOf(address)), String(metricsPort)]]);
      expect([name, service.environment?.HEALTHCHECK_URL]).toEqual([name, `grpc://127.0.0.1:${portOf(address)}`]);
      expect([name, service.ports]).toEqual([name, undefined]);
    }
    const api = compose.services.api;
    expect(api.ports).toEqual([`${repoConfig.api.port}:${repoConfig.api.port}`]);
    expect(api.environment?.HEALTHCHECK_URL).toBe(`http://127.0.0.1:${repoConfig.api.port}/health`);
  });

  test('model-init writes the models volume; every server that reads the model mounts it read-only and starts after model-init succeeded; the api mounts none', () => {
    const init = compose.services['model-init'];
    const command = init.command ?? [];
    const out = command[command.indexOf('--out') + 1];
    expect(command).toContain('--if-missing');
    const initVolume = (init.volumes ?? []).map(volumeParts).find((v) => out.startsWith(`${v.target}/`));
    expect(initVolume).toEqual({ source: 'models', target: '/models', readOnly: false });
    for (const [name, service] of servers) {
      const readsModel = name !== 'api';
      expect([name, (service.volumes ?? []).map(volumeParts)]).toEqual([name, readsModel ? [{ ...initVolume, readOnly: true }] : []]);
      expect([name, service.environment?.MODEL_DIR]).toEqual([name, out]);
      if (readsModel) expect([name, service.depends_on?.['model-init']]).toEqual([name, { condition: 'service_completed_successfully' }]);
    }
    // The api waits for model readers that waited for model-init.
    const apiWaitsFor = Object.entries(compose.services.api.depends_on ?? {});
    expect(apiWaitsFor.map(([name, { condition }]) => [name, condition, compose.services[name].depends_on?.['model-init']?.condition])).toEqual([
      ['tokenizer', 'service_healthy', 'service_completed_successfully'],
      ['coordinator', 'service_healthy', 'service_completed_successfully'],
    ]);
    const namedVolumes = Object.keys(compose.volumes ?? {});
    for (const [name, service] of ours) {
      for (const { source } of (service.volumes ?? []).map(volumeParts)) expect([name, namedVolumes.includes(source)]).toEqual([name, true]);
    }
  });

  test('every service is on model-network, whose fixed name the monitoring file joins as external', () => {
    for (const [name, service] of Object.entries(compose.services)) expect([name, service.networks]).toEqual([name, [NETWORK]]);
    expect(compose.networks?.[NETWORK]?.name).toBe(NETWORK);
    expect(monitoring.networks?.[NETWORK]).toEqual({ name: NETWORK, external: true });
  });
});

describe('docker-compose.monitoring.yml', () => {
  const prometheus = monitoring.services.prometheus;
  const grafana = monitoring.services.grafana;

  test('Prometheus on 9090 loads prometheus/prometheus.yml from the mounted prometheus folder', () => {
    expect(prometheus.ports).toEqual(['9090:9090']);
    const mount = (prometheus.volumes ?? []).map(volumeParts).find((v) => v.source === './prometheus');
    expect(mount).toEqual({ source: './prometheus', target: '/etc/prometheus', readOnly: true });
    expect(prometheus.command).toContain(`--config.file=${mount?.target}/prometheus.yml`);
    expect(existsSync(path.join(ROOT, 'prometheus', 'prometheus.yml'))).toBe(true);
  });

  test('Grafana on 3000 mounts the provisioning and the dashboards where the provisioning looks for them', () => {
    expect(grafana.ports).toEqual(['3000:3000']);
    const mounts = (grafana.volumes ?? []).map(volumeParts);
    expect(mounts).toContainEqual({ source: './grafana/provisioning', target: '/etc/grafana/provisioning', readOnly: true });
    const provider = YAML.parse(readFileSync(path.join(ROOT, 'grafana/provisioning/dashboards/dashboards.yml'), 'utf8')) as {
      providers: { options: { path: string } }[];
    };
    expect(mounts).toContainEqual({ source: './grafana/dashboards', target: provider.providers[0].options.path, readOnly: true });
    const datasources = YAML.parse(readFileSync(path.join(ROOT, 'grafana/provisioning/datasources/prometheus.yml'), 'utf8')) as {
      datasources: { url: string }[];
    };
    // Grafana reaches Prometheus by its compose service name on the shared network.
    expect(datasources.datasources[0].url).toBe(`http://prometheus:${prometheus.ports?.[0].split(':')[1]}`);
    for (const name of ['prometheus', 'grafana']) expect([name, monitoring.services[name].networks]).toEqual([name, [NETWORK]]);
  });

  test('every named volume it mounts is declared', () => {
    const declared = Object.keys(monitoring.volumes ?? {});
    for (const [name, service] of Object.entries(monitoring.services)) {
      for (const { source } of (service.volumes ?? []).map(volumeParts)) {
        if (!source.startsWith('.')) expect([name, source, declared.includes(source)]).toEqual([name, source, true]);
      }
    }
  });
});
