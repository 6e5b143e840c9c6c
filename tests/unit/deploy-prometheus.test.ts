import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Counter, Gauge, Registry } from 'prom-client';
import YAML from 'yaml';
import { parseConfig, portOf } from '../../shared/config';
import {
  metricNamesInPromQL,
  metricNamesUsedByDashboardsAndAlerts,
  type RunningPrometheus,
  startPrometheus,
} from '../support/prometheus-server';

const PROMETHEUS_TEST_TIMEOUT_MS = 120_000;
const SCRAPE_WAIT_MS = 60_000;
const ROOT = path.resolve(__dirname, '..', '..');
const PROMETHEUS_DIR = path.join(ROOT, 'prometheus');

interface ScrapeConfig {
  job_name: string;
  static_configs?: { targets: string[] }[];
  kubernetes_sd_configs?: { role: string; namespaces?: { names: string[] } }[];
  relabel_configs?: Record<string, unknown>[];
  [key: string]: unknown;
}

interface AlertRule {
  alert: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

/** The metric names the services promise (the deployment brief), plus Prometheus' own `up`. */
const CONTRACT_COUNTERS_AND_GAUGES = [
  'api_http_requests_total',
  'api_tokens_total',
  'tokenizer_operations_total',
  'tokenizer_tokens_total',
  'coordinator_queue_depth',
  'coordinator_running_sequences',
  'coordinator_generated_tokens_total',
  'coordinator_requests_finished_total',
  'coordinator_node_up',
  'node_sent_bytes_total',
  'node_kv_cache_sequences',
  'node_kv_cache_bytes',
  'node_kv_cache_budget_bytes',
  'node_sessions_refused_total',
  'process_resident_memory_bytes',
  'nodejs_eventloop_lag_seconds',
  'nodejs_heap_size_used_bytes',
  'up',
];
const CONTRACT_HISTOGRAMS = [
  'api_http_request_duration_seconds',
  'tokenizer_operation_duration_seconds',
  'coordinator_time_to_first_token_seconds',
  'coordinator_inter_token_latency_seconds',
  'coordinator_request_duration_seconds',
  'coordinator_node_step_seconds',
  'node_forward_seconds',
  'node_batch_size',
];
const CONTRACT_SERIES = new Set([
  ...CONTRACT_COUNTERS_AND_GAUGES,
  ...CONTRACT_HISTOGRAMS.flatMap((h) => [`${h}_bucket`, `${h}_sum`, `${h}_count`]),
]);

function promtool(args: string[], cwd: string): { ok: boolean; output: string } {
  const result = spawnSync('promtool', args, { cwd, encoding: 'utf8' });
  if (result.error !== undefined) {
    throw new Error(`promtool not found (${result.error.message}): install Debian's prometheus package (apt-get install -y prometheus)`);
  }
  return { ok: result.status === 0, output: `${result.stdout}${result.stderr}` };
}

function prometheusYml(): { scrape_configs: ScrapeConfig[]; rule_files: string[] } {
  return YAML.parse(readFileSync(path.join(PROMETHEUS_DIR, 'prometheus.yml'), 'utf8'));
}

function alertRules(): AlertRule[] {
  const file = YAML.parse(readFileSync(path.join(PROMETHEUS_DIR, 'alerts.yml'), 'utf8')) as { groups: { rules: AlertRule[] }[] };
  return file.groups.flatMap((g) => g.rules);
}

function kubernetesJob(): ScrapeConfig {
  const job = prometheusYml().scrape_configs.find((c) => c.kubernetes_sd_configs !== undefined);
  if (job === undefined) throw new Error('prometheus.yml has no kubernetes_sd_configs job');
  return job;
}

/** The Kubernetes job with pod discovery swapped for file discovery; the relabelling is untouched. */
function withFileDiscovery(job: ScrapeConfig, file: string): ScrapeConfig {
  const { kubernetes_sd_configs: _discovery, ...rest } = job;
  return { ...rest, file_sd_configs: [{ files: [file] }] };
}

const repoConfig = parseConfig(JSON.parse(readFileSync(path.join(ROOT, 'config.json'), 'utf8')), { baseDir: ROOT });

describe('prometheus.yml', () => {
  test('promtool check config accepts it (Kubernetes discovery checked as file discovery where promtool lacks it)', () => {
    const direct = promtool(['check', 'config', 'prometheus.yml'], PROMETHEUS_DIR);
    if (direct.ok) return;
    // Debian builds Prometheus without Kubernetes service discovery; everything else, the
    // relabelling included, is still checked by promtool with file discovery in its place.
    expect(direct.output).toContain('field kubernetes_sd_configs not found');
    const dir = mkdtempSync(path.join(os.tmpdir(), 'promtool-config-'));
    try {
      copyFileSync(path.join(PROMETHEUS_DIR, 'alerts.yml'), path.join(dir, 'alerts.yml'));
      const config = prometheusYml();
      config.scrape_configs = config.scrape_configs.map((job) =>
        job.kubernetes_sd_configs === undefined ? job : withFileDiscovery(job, path.join(dir, 'pods.json')),
      );
      writeFileSync(path.join(dir, 'pods.json'), '[]');
      writeFileSync(path.join(dir, 'prometheus.yml'), YAML.stringify(config));
      const checked = promtool(['check', 'config', 'prometheus.yml'], dir);
      expect(checked.output).toContain('SUCCESS');
      expect(checked.ok).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('the compose jobs scrape the compose service names at the metrics ports of config.json', () => {
    const jobs = new Map(prometheusYml().scrape_configs.map((c) => [c.job_name, c.static_configs?.flatMap((s) => s.targets) ?? []]));
    expect(jobs.get('api')).toEqual([`api:${repoConfig.api.port}`]);
    expect(jobs.get('tokenizer')).toEqual([`tokenizer:${repoConfig.tokenizer.metricsPort}`]);
    expect(jobs.get('coordinator')).toEqual([`coordinator:${repoConfig.coordinator.metricsPort}`]);
    expect(jobs.get('nodes')).toEqual(repoConfig.nodes.map((n) => `${n.id}:${n.metricsPort}`));
  });

  test('the Kubernetes job discovers pods of the model-inference namespace', () => {
    expect(kubernetesJob().kubernetes_sd_configs).toEqual([{ role: 'pod', namespaces: { names: ['model-inference'] } }]);
  });

  test('loads alerts.yml as its rule file', () => {
    expect(prometheusYml().rule_files).toEqual(['alerts.yml']);
  });
});

describe('alerts.yml', () => {
  test('promtool check rules accepts it', () => {
    const checked = promtool(['check', 'rules', 'alerts.yml'], PROMETHEUS_DIR);
    expect(checked.output).toContain('SUCCESS: 4 rules found');
    expect(checked.ok).toBe(true);
  });

  test('the alerts fire and stay quiet as worked out by hand in alerts.test.yml', () => {
    const tested = promtool(['test', 'rules', 'alerts.test.yml'], PROMETHEUS_DIR);
    expect(tested.output).toContain('SUCCESS');
    expect(tested.ok).toBe(true);
  });

  test('defines NodeDown, HighErrorRatio, HighTimeToFirstToken and KvCacheNearlyFull with severity, summary and description', () => {
    const rules = alertRules();
    expect(rules.map((r) => r.alert).sort()).toEqual(['HighErrorRatio', 'HighTimeToFirstToken', 'KvCacheNearlyFull', 'NodeDown']);
    for (const rule of rules) {
      expect([rule.alert, rule.labels?.severity]).toEqual([rule.alert, expect.stringMatching(/^(critical|warning)$/)]);
      expect([rule.alert, rule.annotations?.summary]).toEqual([rule.alert, expect.stringMatching(/\S/)]);
      expect([rule.alert, rule.annotations?.description]).toEqual([rule.alert, expect.stringMatching(/\S/)]);
    }
    const nodeDown = rules.find((r) => r.alert === 'NodeDown');
    expect(nodeDown?.for).toBe('1m');
    expect(metricNamesInPromQL(nodeDown?.expr ?? '').sort()).toEqual(['coordinator_node_up', 'up']);
  });
});

describe('metric names of dashboards and alerts', () => {
  test('metricNamesInPromQL finds selected metrics and skips functions, labels, keywords and Grafana variables', () => {
    expect(
      metricNamesInPromQL(
        'histogram_quantile(0.95, sum by (le, node_id) (rate(node_forward_seconds_bucket{stage="0", x=~"a|b"}[$__rate_interval])))',
      ),
    ).toEqual(['node_forward_seconds_bucket']);
    expect(
      metricNamesInPromQL('sum(rate(a_total{status=~"5.."}[5m])) / ignoring(status) group_left sum(rate(b_total[5m] offset 1h)) > 1e3'),
    ).toEqual(['a_total', 'b_total']);
    expect(metricNamesInPromQL('up{job="nodes"} == 0 or on(instance) node:rule_2 unless bool x')).toEqual(['up', 'node:rule_2', 'x']);
    expect(metricNamesInPromQL('sum(increase(api_tokens_total[$__range])) by (kind)')).toEqual(['api_tokens_total']);
  });

  test('every metric the dashboards and alerts query is one the services promise', async () => {
    const used = await metricNamesUsedByDashboardsAndAlerts();
    expect(used.filter((name) => !CONTRACT_SERIES.has(name))).toEqual([]);
    // Every promised metric family is watched somewhere.
    const families = new Set(used.map((name) => name.replace(/_(bucket|sum|count)$/, '')));
    const unwatched = [...CONTRACT_COUNTERS_AND_GAUGES, ...CONTRACT_HISTOGRAMS].filter((name) => !families.has(name));
    expect(unwatched).toEqual([]);
  });
});

describe('startPrometheus', () => {
  let fixture: http.Server;
  let fixtureTarget: string;
  let prometheus: RunningPrometheus | undefined;

  beforeAll(async () => {
    const registry = new Registry();
    new Counter({ name: 'deploy_test_events_total', help: 'test events', registers: [registry] }).inc(3);
    new Gauge({ name: 'deploy_test_depth', help: 'test depth', labelNames: ['lane'], registers: [registry] }).set({ lane: 'b' }, 42);
    fixture = http.createServer((req, res) => {
      void registry.metrics().then((text) => {
        res.writeHead(req.url === '/metrics' ? 200 : 404, { 'content-type': registry.contentType });
        res.end(req.url === '/metrics' ? text : '');
      });
    });
    await new Promise<void>((resolve) => fixture.listen(0, '127.0.0.1', resolve));
    fixtureTarget = `127.0.0.1:${(fixture.address() as net.AddressInfo).port}`;
  });

  afterEach(async () => {
    await prometheus?.stop();
    prometheus = undefined;
  });

  afterAll(async () => {
    await new Promise<void>((resolve) => fixture.close(() => resolve()));
  });

  test(
    'scrapes a prom-client registry served on loopback and answers queries with its values',
    async () => {
      prometheus = await startPrometheus({ targets: [{ job: 'fixture', targets: [fixtureTarget] }], scrapeIntervalSeconds: 1 });
      const events = await prometheus.waitForSamples('deploy_test_events_total', SCRAPE_WAIT_MS);
      expect(events).toEqual([{ metric: { __name__: 'deploy_test_events_total', job: 'fixture', instance: fixtureTarget }, value: 3 }]);
      const depth = await prometheus.query('sum by (lane) (deploy_test_depth) * 2');
      expect(depth).toEqual([{ metric: { lane: 'b' }, value: 84 }]);
      expect(await prometheus.query('scalar(deploy_test_events_total) / 0')).toEqual([{ metric: {}, value: Number.POSITIVE_INFINITY }]);
    },
    PROMETHEUS_TEST_TIMEOUT_MS,
  );

  test(
    'rejects a malformed query with the error Prometheus gives',
    async () => {
      prometheus = await startPrometheus({ targets: [], scrapeIntervalSeconds: 1 });
      await expect(prometheus.query('sum(')).rejects.toThrow(/bad_data/);
    },
    PROMETHEUS_TEST_TIMEOUT_MS,
  );

  test(
    "the Kubernetes job keeps annotated pods, scrapes their annotated port and names the job after the pod's component",
    async () => {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'k8s-sd-'));
      try {
        const podsFile = path.join(dir, 'pods.json');
        // What Kubernetes pod discovery reports: the pod IP with a declared container port, and
        // the pod's labels and annotations as __meta_ labels.
        const pod = (name: string, component: string, annotations: Record<string, string>) => ({
          targets: [`127.0.0.1:${portOf(repoConfig.nodes[0].address)}`],
          labels: {
            __meta_kubernetes_namespace: 'model-inference',
            __meta_kubernetes_pod_name: name,
            __meta_kubernetes_pod_label_app_kubernetes_io_component: component,
            ...Object.fromEntries(
              Object.entries(annotations).map(([k, v]) => [`__meta_kubernetes_pod_annotation_${k.replace(/[./]/g, '_')}`, v]),
            ),
          },
        });
        writeFileSync(
          podsFile,
          JSON.stringify([
            pod('node1-7d9f', 'node', { 'prometheus.io/scrape': 'true', 'prometheus.io/port': fixtureTarget.split(':')[1], 'prometheus.io/path': '/metrics' }),
            pod('api-5c2a', 'api', {}),
          ]),
        );
        prometheus = await startPrometheus({ targets: [], scrapeIntervalSeconds: 1, scrapeConfigs: [withFileDiscovery(kubernetesJob(), podsFile)] });
        const events = await prometheus.waitForSamples('deploy_test_events_total', SCRAPE_WAIT_MS);
        expect(events).toEqual([
          {
            metric: { __name__: 'deploy_test_events_total', job: 'nodes', instance: fixtureTarget, namespace: 'model-inference', pod: 'node1-7d9f' },
            value: 3,
          },
        ]);
        const targets = (await (await fetch(`${prometheus.url}/api/v1/targets?state=any`)).json()) as {
          data: { activeTargets: unknown[]; droppedTargets: { discoveredLabels: Record<string, string> }[] };
        };
        expect(targets.data.activeTargets).toHaveLength(1);
        expect(targets.data.droppedTargets.map((t) => t.discoveredLabels.__meta_kubernetes_pod_name)).toEqual(['api-5c2a']);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
    PROMETHEUS_TEST_TIMEOUT_MS,
  );
});
