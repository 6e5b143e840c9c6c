import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { metricNamesUsedByDashboardsAndAlerts, withGrafanaIntervals } from '../support/prometheus-server';

const ROOT = path.resolve(__dirname, '..', '..');
const DASHBOARD_DIR = path.join(ROOT, 'grafana', 'dashboards');

interface Target { datasource?: unknown; expr?: string; refId?: string }
interface Panel {
  id: number;
  type: string;
  title: string;
  datasource?: unknown;
  gridPos?: { x: number; y: number; w: number; h: number };
  targets?: Target[];
  panels?: Panel[];
}
interface Dashboard { uid: string; title: string; schemaVersion: number; panels: Panel[] }

const dashboards = readdirSync(DASHBOARD_DIR)
  .filter((f) => f.endsWith('.json'))
  .map((file) => ({ file, dashboard: JSON.parse(readFileSync(path.join(DASHBOARD_DIR, file), 'utf8')) as Dashboard }));
const provisioned = (
  YAML.parse(readFileSync(path.join(ROOT, 'grafana/provisioning/datasources/prometheus.yml'), 'utf8')) as {
    datasources: { type: string; uid: string }[];
  }
).datasources;

/** Top-level panels and those nested in collapsed rows. */
function panelsOf(dashboard: Dashboard): Panel[] {
  return dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
}

function datasourceRefs(value: unknown, out: unknown[] = []): unknown[] {
  if (Array.isArray(value)) value.forEach((item) => datasourceRefs(item, out));
  else if (typeof value === 'object' && value !== null) {
    for (const [key, item] of Object.entries(value)) {
      if (key === 'datasource') out.push(item);
      else datasourceRefs(item, out);
    }
  }
  return out;
}

describe('grafana provisioning', () => {
  test('provisions one Prometheus datasource with uid "prometheus" and a file dashboard provider', () => {
    expect(provisioned).toEqual([expect.objectContaining({ type: 'prometheus', uid: 'prometheus' })]);
    const providers = (
      YAML.parse(readFileSync(path.join(ROOT, 'grafana/provisioning/dashboards/dashboards.yml'), 'utf8')) as {
        providers: { type: string; options: { path: string } }[];
      }
    ).providers;
    expect(providers).toEqual([expect.objectContaining({ type: 'file', options: expect.objectContaining({ path: expect.any(String) }) })]);
  });
});

describe('grafana dashboards', () => {
  test('there is a PipeServe dashboard', () => {
    expect(dashboards.map((d) => d.file)).toContain('pipeserve.json');
  });

  test.each(dashboards)('$file has a schemaVersion, a uid, unique panel ids and a grid position for every panel', ({ dashboard }) => {
    expect(dashboard.schemaVersion).toEqual(expect.any(Number));
    expect(dashboard.uid).toMatch(/^[a-zA-Z0-9_-]{1,40}$/);
    const panels = panelsOf(dashboard);
    const ids = panels.map((p) => p.id);
    expect(ids.every((id) => Number.isInteger(id))).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
    for (const panel of panels) {
      expect([panel.title, panel.gridPos]).toEqual([panel.title, { x: expect.any(Number), y: expect.any(Number), w: expect.any(Number), h: expect.any(Number) }]);
      expect([panel.title, (panel.gridPos?.x ?? 0) + (panel.gridPos?.w ?? 0) <= 24]).toEqual([panel.title, true]);
    }
  });

  test.each(dashboards)('$file: every datasource reference is the provisioned Prometheus datasource', ({ dashboard }) => {
    const refs = datasourceRefs(dashboard.panels);
    expect(refs.length).toBeGreaterThan(0);
    const [datasource] = provisioned;
    expect(refs.filter((ref) => JSON.stringify(ref) !== JSON.stringify({ type: datasource.type, uid: datasource.uid }))).toEqual([]);
  });

  test.each(dashboards)('$file: every panel but rows has targets, each with a non-empty expr', ({ dashboard }) => {
    for (const panel of panelsOf(dashboard).filter((p) => p.type !== 'row')) {
      expect([panel.title, panel.type, (panel.targets ?? []).length > 0]).toEqual([panel.title, expect.stringMatching(/^(timeseries|stat|table)$/), true]);
      for (const target of panel.targets ?? []) expect([panel.title, target.expr?.trim()]).toEqual([panel.title, expect.stringMatching(/\S/)]);
    }
  });

  test.each(dashboards)('$file: promtool parses every expression', ({ dashboard }) => {
    // Recording rules are the one thing promtool parses PromQL for; Grafana's interval
    // variables become plain durations first.
    const rules = panelsOf(dashboard).flatMap((panel) =>
      (panel.targets ?? []).map((target) => ({
        record: `dashboard:panel_${panel.id}_${target.refId ?? 'A'}`,
        expr: withGrafanaIntervals(target.expr ?? '', { rate: '1m', range: '1h' }),
      })),
    );
    const dir = mkdtempSync(path.join(os.tmpdir(), 'dashboard-promql-'));
    try {
      writeFileSync(path.join(dir, 'rules.yml'), YAML.stringify({ groups: [{ name: 'dashboard', rules }] }));
      const result = spawnSync('promtool', ['check', 'rules', 'rules.yml'], { cwd: dir, encoding: 'utf8' });
      if (result.error !== undefined) {
        throw new Error(`promtool not found (${result.error.message}): install Debian's prometheus package (apt-get install -y prometheus)`);
      }
      expect(`${result.stdout}${result.stderr}`).toContain(`SUCCESS: ${rules.length} rules found`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('the panels watch latency, first token, inter-token, throughput, nodes, tokenizer, memory, errors, health, queue, queue wait, prompt and generation length, batch, the model and KV cache', async () => {
    const used = await metricNamesUsedByDashboardsAndAlerts();
    expect(used).toEqual(
      expect.arrayContaining([
        'pipeserve_api_http_request_duration_seconds_bucket',
        'pipeserve_coordinator_time_to_first_token_seconds_bucket',
        'pipeserve_coordinator_inter_token_latency_seconds_bucket',
        'pipeserve_coordinator_generated_tokens_total',
        'pipeserve_stage_forward_seconds_bucket',
        'pipeserve_tokenizer_operations_total',
        'pipeserve_process_resident_memory_bytes',
        'pipeserve_api_http_requests_total',
        'pipeserve_api_tokens_total',
        'pipeserve_coordinator_node_up',
        'pipeserve_coordinator_queue_depth',
        'pipeserve_stage_batch_size_bucket',
        'pipeserve_stage_kv_cache_bytes',
        'pipeserve_stage_kv_cache_budget_bytes',
        'pipeserve_stage_kv_cache_sequences',
        'pipeserve_coordinator_queue_wait_seconds_bucket',
        'pipeserve_coordinator_prompt_tokens_bucket',
        'pipeserve_coordinator_generation_tokens_bucket',
        'pipeserve_stage_model_info',
        'pipeserve_stage_load_seconds',
      ]),
    );
  });
});
