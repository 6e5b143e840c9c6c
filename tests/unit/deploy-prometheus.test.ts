import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Counter, Gauge, Registry } from 'prom-client';
import YAML from 'yaml';
import { parseConfig } from '../../shared/config';
import {
  metricNamesInPromQL,
  metricNamesUsedByDashboardsAndAlerts,
  type PromSample,
  type RunningPrometheus,
  startPrometheus,
} from '../support/prometheus-server';

const PROMETHEUS_TEST_TIMEOUT_MS = 120_000;
const SCRAPE_WAIT_MS = 60_000;
const SERIES_POLL_MS = 250;
const ROOT = path.resolve(__dirname, '..', '..');
const PROMETHEUS_DIR = path.join(ROOT, 'prometheus');

interface ScrapeConfig {
  job_name: string;
  static_configs?: { targets: string[] }[];
  dns_sd_configs?: { names: string[]; type?: string; port?: number }[];
  relabel_configs?: Record<string, unknown>[];
  [key: string]: unknown;
}

interface PrometheusYml {
  scrape_configs: ScrapeConfig[];
  rule_files: string[];
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
  'pipeserve_api_http_requests_total',
  'pipeserve_api_tokens_total',
  'pipeserve_tokenizer_operations_total',
  'pipeserve_tokenizer_tokens_total',
  'pipeserve_coordinator_queue_depth',
  'pipeserve_coordinator_running_sequences',
  'pipeserve_coordinator_generated_tokens_total',
  'pipeserve_coordinator_requests_finished_total',
  'pipeserve_coordinator_node_up',
  'pipeserve_stage_sent_bytes_total',
  'pipeserve_stage_kv_cache_sequences',
  'pipeserve_stage_kv_cache_bytes',
  'pipeserve_stage_kv_cache_budget_bytes',
  'pipeserve_stage_sessions_refused_total',
  'pipeserve_stage_model_info',
  'pipeserve_stage_load_seconds',
  'pipeserve_process_resident_memory_bytes',
  'pipeserve_nodejs_eventloop_lag_seconds',
  'pipeserve_nodejs_heap_size_used_bytes',
  'up',
];
const CONTRACT_HISTOGRAMS = [
  'pipeserve_api_http_request_duration_seconds',
  'pipeserve_tokenizer_operation_duration_seconds',
  'pipeserve_coordinator_time_to_first_token_seconds',
  'pipeserve_coordinator_inter_token_latency_seconds',
  'pipeserve_coordinator_request_duration_seconds',
  'pipeserve_coordinator_node_step_seconds',
  'pipeserve_stage_forward_seconds',
  'pipeserve_stage_batch_size',
  'pipeserve_coordinator_queue_wait_seconds',
  'pipeserve_coordinator_prompt_tokens',
  'pipeserve_coordinator_generation_tokens',
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

/** A file of prometheus/ as committed: prometheus.yml (compose) or prometheus-k8s.yml (Kubernetes). */
function prometheusConfigFile(file: string): PrometheusYml {
  return YAML.parse(readFileSync(path.join(PROMETHEUS_DIR, file), 'utf8')) as PrometheusYml;
}

function alertRules(): AlertRule[] {
  const file = YAML.parse(readFileSync(path.join(PROMETHEUS_DIR, 'alerts.yml'), 'utf8')) as { groups: { rules: AlertRule[] }[] };
  return file.groups.flatMap((g) => g.rules);
}

interface DnsQuery { job: string; name: string; type?: string; port?: number }

/** Every name the jobs of a configuration ask DNS for, with the record type and the port to scrape. */
function dnsQueries(config: PrometheusYml): DnsQuery[] {
  return config.scrape_configs.flatMap((job) =>
    (job.dns_sd_configs ?? []).flatMap((sd) => sd.names.map((name) => ({ job: job.job_name, name, type: sd.type, port: sd.port }))),
  );
}

/**
 * A prometheus-k8s.yml job with DNS discovery swapped for file discovery: writes `file`, reporting every
 * name of the job at `target`, labelled as DNS discovery labels it (`__meta_dns_name`); the
 * relabelling is the committed one.
 */
function withNamesAt(job: ScrapeConfig, target: string, file: string): ScrapeConfig {
  const { dns_sd_configs: discovery, ...rest } = job;
  const groups = (discovery ?? []).flatMap((sd) => sd.names.map((name) => ({ targets: [target], labels: { __meta_dns_name: name } })));
  writeFileSync(file, JSON.stringify(groups));
  return { ...rest, file_sd_configs: [{ files: [file] }] };
}

const JOB_NAMES = ['api', 'tokenizer', 'coordinator', 'nodes'];
const K8S_NAMESPACE = 'model-inference';
const serviceDns = (service: string): string => `${service}.${K8S_NAMESPACE}.svc.cluster.local`;

const repoConfig = parseConfig(JSON.parse(readFileSync(path.join(ROOT, 'config.json'), 'utf8')), { baseDir: ROOT });

describe('prometheus.yml (compose)', () => {
  test('promtool check config accepts it as committed', () => {
    const checked = promtool(['check', 'config', 'prometheus.yml'], PROMETHEUS_DIR);
    expect(checked.output).toContain('SUCCESS: prometheus.yml is valid prometheus config file syntax');
    expect(checked.ok).toBe(true);
  });

  test('the jobs api, tokenizer, coordinator and nodes scrape the compose service names at the metrics ports of config.json', () => {
    const config = prometheusConfigFile('prometheus.yml');
    expect(config.scrape_configs.map((c) => c.job_name)).toEqual(JOB_NAMES);
    const jobs = new Map(config.scrape_configs.map((c) => [c.job_name, c.static_configs?.flatMap((s) => s.targets) ?? []]));
    expect(jobs.get('api')).toEqual([`api:${repoConfig.api.port}`]);
    expect(jobs.get('tokenizer')).toEqual([`tokenizer:${repoConfig.tokenizer.metricsPort}`]);
    expect(jobs.get('coordinator')).toEqual([`coordinator:${repoConfig.coordinator.metricsPort}`]);
    expect(jobs.get('nodes')).toEqual(repoConfig.nodes.map((n) => `${n.id}:${n.metricsPort}`));
  });

  test('loads alerts.yml as its rule file', () => {
    expect(prometheusConfigFile('prometheus.yml').rule_files).toEqual(['alerts.yml']);
  });
});

describe('prometheus-k8s.yml (Kubernetes)', () => {
  test('promtool check config accepts it as committed', () => {
    const checked = promtool(['check', 'config', 'prometheus-k8s.yml'], PROMETHEUS_DIR);
    expect(checked.output).toContain('SUCCESS: prometheus-k8s.yml is valid prometheus config file syntax');
    expect(checked.ok).toBe(true);
  });

  test("has the compose file's job names and rule file, so one dashboard and one set of alerts fit both", () => {
    const config = prometheusConfigFile('prometheus-k8s.yml');
    expect(config.scrape_configs.map((c) => c.job_name)).toEqual(JOB_NAMES);
    expect(config.rule_files).toEqual(['alerts.yml']);
  });

  test('every job finds its replicas by DNS A records of the Service names, scraped at the metrics ports of config.json', () => {
    const config = prometheusConfigFile('prometheus-k8s.yml');
    expect(config.scrape_configs.filter((c) => c.dns_sd_configs === undefined || c.static_configs !== undefined).map((c) => c.job_name)).toEqual([]);
    expect(dnsQueries(config)).toEqual([
      { job: 'api', name: serviceDns('api-metrics'), type: 'A', port: repoConfig.api.port },
      { job: 'tokenizer', name: serviceDns('tokenizer-metrics'), type: 'A', port: repoConfig.tokenizer.metricsPort },
      { job: 'coordinator', name: serviceDns('coordinator-metrics'), type: 'A', port: repoConfig.coordinator.metricsPort },
      ...repoConfig.nodes.map((n) => ({ job: 'nodes', name: serviceDns(n.id), type: 'A', port: n.metricsPort })),
    ]);
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
    expect(metricNamesInPromQL(nodeDown?.expr ?? '').sort()).toEqual(['pipeserve_coordinator_node_up', 'up']);
  });
});

describe('metric names of dashboards and alerts', () => {
  test('metricNamesInPromQL finds selected metrics and skips functions, labels, keywords and Grafana variables', () => {
    expect(
      metricNamesInPromQL(
        'histogram_quantile(0.95, sum by (le, node_id) (rate(pipeserve_stage_forward_seconds_bucket{stage="0", x=~"a|b"}[$__rate_interval])))',
      ),
    ).toEqual(['pipeserve_stage_forward_seconds_bucket']);
    expect(
      metricNamesInPromQL('sum(rate(a_total{status=~"5.."}[5m])) / ignoring(status) group_left sum(rate(b_total[5m] offset 1h)) > 1e3'),
    ).toEqual(['a_total', 'b_total']);
    expect(metricNamesInPromQL('up{job="nodes"} == 0 or on(instance) node:rule_2 unless bool x')).toEqual(['up', 'node:rule_2', 'x']);
    expect(metricNamesInPromQL('sum(increase(pipeserve_api_tokens_total[$__range])) by (kind)')).toEqual(['pipeserve_api_tokens_total']);
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

/** Polls until `promql` returns `count` series: each target is scraped on its own schedule. */
async function waitForSeries(server: RunningPrometheus, promql: string, count: number): Promise<PromSample[]> {
  const deadline = Date.now() + SCRAPE_WAIT_MS;
  for (;;) {
    const samples = await server.waitForSamples(promql, SCRAPE_WAIT_MS);
    if (samples.length >= count || Date.now() > deadline) return samples;
    await new Promise((resolve) => setTimeout(resolve, SERIES_POLL_MS));
  }
}

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
    'every prometheus-k8s.yml job keeps its job name and names each replica it finds `<service>/<address>`',
    async () => {
      // Prometheus' DNS discovery asks the nameservers of /etc/resolv.conf itself and never reads
      // /etc/hosts, so offline no name resolves to the fixture: file discovery stands in, reporting
      // each name of a job as DNS discovery does (address, __meta_dns_name).
      const dir = mkdtempSync(path.join(os.tmpdir(), 'dns-sd-'));
      try {
        const config = prometheusConfigFile('prometheus-k8s.yml');
        const jobs = config.scrape_configs.map((job) => withNamesAt(job, fixtureTarget, path.join(dir, `${job.job_name}.json`)));
        prometheus = await startPrometheus({ targets: [], scrapeIntervalSeconds: 1, scrapeConfigs: jobs });
        const expected = dnsQueries(config).map(({ job, name }) => ({
          job,
          instance: `${name.slice(0, name.indexOf('.')).replace(/-metrics$/, '')}/${fixtureTarget}`,
        }));
        expect(expected.map((e) => e.instance.split('/')[0])).toEqual(['api', 'tokenizer', 'coordinator', ...repoConfig.nodes.map((n) => n.id)]);
        const events = await waitForSeries(prometheus, 'deploy_test_events_total', expected.length);
        const byLabels = (a: { job: string; instance: string }, b: { job: string; instance: string }): number =>
          `${a.job} ${a.instance}`.localeCompare(`${b.job} ${b.instance}`);
        expect(events.map((e) => ({ job: e.metric.job, instance: e.metric.instance })).sort(byLabels)).toEqual([...expected].sort(byLabels));
        expect(events.map((e) => Object.keys(e.metric).sort())).toEqual(expected.map(() => ['__name__', 'instance', 'job']));
        expect(events.map((e) => e.value)).toEqual(expected.map(() => 3));
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
    PROMETHEUS_TEST_TIMEOUT_MS,
  );
});
