import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { postJson, postSse } from '../support/http';
import {
  dashboardPanelQueries,
  metricNamesUsedByDashboardsAndAlerts,
  startPrometheus,
  withGrafanaIntervals,
  type RunningPrometheus,
} from '../support/prometheus-server';
import { RunningSystem, SYSTEM_START_TIMEOUT_MS } from '../support/system';
import { tinyModel } from '../support/test-models';

const SCRAPE_INTERVAL_SECONDS = 1;
const METRIC_WAIT_MS = 20_000;
/** What Grafana would put for $__rate_interval and $__range: wide enough for the whole test's samples. */
const PANEL_INTERVALS = { rate: '1m', range: '1h' };
const STAGES = 3;
const MAX_NEW_TOKENS = 8;
const GENERATIONS = ['The history of the world', 'Once upon a time', 'Dear Sir or Madam,'];
const STREAMED = 'Breaking news:';
/** The prefix of each job's own metrics (a model node's are its stage's). */
const OWN_PREFIX: Record<string, string> = {
  api: 'pipeserve_api_',
  tokenizer: 'pipeserve_tokenizer_',
  coordinator: 'pipeserve_coordinator_',
  nodes: 'pipeserve_stage_',
};
/** Every process's: prom-client's default metrics and the launcher's restart count. */
const SHARED = /^pipeserve_(process_|nodejs_|service_restarts$)/;
/** What Prometheus adds to every target itself. */
const SYNTHETIC = /^(up|scrape_[a-z_]+)$/;

let modelDir: string;
let system: RunningSystem;
let prometheus: RunningPrometheus;

beforeAll(async () => {
  modelDir = await tinyModel({ stages: STAGES });
  system = await RunningSystem.start({ modelDir });
  const targets = system.config.metricsTargets;
  prometheus = await startPrometheus({
    scrapeIntervalSeconds: SCRAPE_INTERVAL_SECONDS,
    targets: [
      { job: 'api', targets: targets.api },
      { job: 'tokenizer', targets: targets.tokenizer },
      { job: 'coordinator', targets: targets.coordinator },
      { job: 'nodes', targets: targets.nodes },
    ],
  });
}, SYSTEM_START_TIMEOUT_MS * 2);

afterAll(async () => {
  await prometheus?.stop();
  await system?.stop();
});

it(
  'a real Prometheus scrapes every service, every metric a dashboard panel or alert rule queries returns data, and so does every panel query',
  async () => {
    // Every target scraped once before the traffic, so rates and quantiles see it arrive.
    await prometheus.waitForSamples('count(up == 1) == 6', METRIC_WAIT_MS);

    // Traffic of every kind the panels show: unary and streaming generations, and a rejected request.
    const body = (text: string) => ({ text, max_new_tokens: MAX_NEW_TOKENS, ignore_eos: true });
    for (const text of GENERATIONS) expect((await postJson(`${system.apiUrl}/api/model/process`, body(text))).status).toBe(200);
    expect((await postSse(`${system.apiUrl}/api/model/generate`, body(STREAMED))).status).toBe(200);
    expect((await postJson(`${system.apiUrl}/api/model/process`, { text: '' })).status).toBe(400);
    const generations = GENERATIONS.length + 1;

    // Two API targets would be wrong too: exactly the six processes, each scraped successfully.
    const up = await prometheus.query('up');
    expect(up.filter((s) => s.value === 1)).toHaveLength(6);
    expect(new Set(up.map((s) => s.metric.job))).toEqual(new Set(['api', 'tokenizer', 'coordinator', 'nodes']));

    // The coordinator's histograms have seen every generation once it was scraped after them.
    await prometheus.waitForSamples(`sum(pipeserve_coordinator_generation_tokens_count) == ${generations}`, METRIC_WAIT_MS);

    const names = await metricNamesUsedByDashboardsAndAlerts();
    expect(names.length).toBeGreaterThan(10);
    const missing: string[] = [];
    for (const name of names) {
      try {
        await prometheus.waitForSamples(`{__name__="${name}"}`, METRIC_WAIT_MS);
      } catch {
        missing.push(name);
      }
    }
    expect(missing).toEqual([]);

    // Each panel's own query, as Grafana would send it, answers at least one series.
    const queries = await dashboardPanelQueries();
    expect(queries.length).toBeGreaterThan(30);
    const empty: string[] = [];
    for (const query of queries) {
      try {
        await prometheus.waitForSamples(withGrafanaIntervals(query.expr, PANEL_INTERVALS), METRIC_WAIT_MS);
      } catch {
        empty.push(`${query.panel} (${query.refId}): ${query.expr}`);
      }
    }
    expect(empty).toEqual([]);

    // Every name a service exports starts with pipeserve_ and its own service's prefix.
    const exported = await prometheus.query('count by (__name__, job) ({job=~".+"})');
    const misnamed = exported
      .map((s) => ({ name: s.metric.__name__, job: s.metric.job }))
      .filter(({ name, job }) => !SYNTHETIC.test(name) && !SHARED.test(name) && !name.startsWith(OWN_PREFIX[job]));
    expect(misnamed).toEqual([]);
    expect(exported.some((s) => s.metric.__name__ === 'pipeserve_process_resident_memory_bytes')).toBe(true);

    // Labels the dashboards group by are really there.
    const forward = await prometheus.query('pipeserve_stage_forward_seconds_count');
    expect(forward.map((s) => `${s.metric.node_id}/${s.metric.stage}`).sort()).toEqual(['node1/0', 'node2/1', 'node3/2']);
    for (const gauge of ['pipeserve_stage_kv_cache_bytes', 'pipeserve_stage_kv_cache_budget_bytes', 'pipeserve_stage_kv_cache_sequences']) {
      expect([gauge, (await prometheus.query(gauge)).map((s) => s.metric.stage).sort()]).toEqual([gauge, ['0', '1', '2']]);
    }
    const budgetShare = await prometheus.query('pipeserve_stage_kv_cache_bytes / pipeserve_stage_kv_cache_budget_bytes');
    expect(budgetShare.map((s) => s.value).every((share) => share >= 0 && share <= 1)).toBe(true);

    // Generation numbers agree across services: the coordinator's histograms, its token counter
    // and what the api counted for the same requests.
    const value = async (promql: string): Promise<number> => (await prometheus.query(promql))[0]?.value ?? Number.NaN;
    const generated = generations * MAX_NEW_TOKENS;
    expect(await value('sum(pipeserve_coordinator_generated_tokens_total)')).toBe(generated);
    expect(await value('sum(pipeserve_coordinator_generation_tokens_sum)')).toBe(generated);
    expect(await value('sum(pipeserve_api_tokens_total{kind="generated"})')).toBe(generated);
    expect(await value('sum(pipeserve_coordinator_prompt_tokens_count)')).toBe(generations);
    expect(await value('sum(pipeserve_coordinator_prompt_tokens_sum)')).toBe(await value('sum(pipeserve_api_tokens_total{kind="prompt"})'));
    expect(await value('sum(pipeserve_coordinator_queue_wait_seconds_count)')).toBe(generations);
    // The panels' quantiles are numbers: every generation holds 8 tokens, in the bucket (4, 16].
    const quantile = (q: number, histogram: string): Promise<number> =>
      value(withGrafanaIntervals(`histogram_quantile(${q}, sum by (le) (rate(${histogram}_bucket[$__rate_interval])))`, PANEL_INTERVALS));
    const generationMedian = await quantile(0.5, 'pipeserve_coordinator_generation_tokens');
    expect(generationMedian).toBeGreaterThan(4);
    expect(generationMedian).toBeLessThanOrEqual(16);
    expect(Number.isFinite(await quantile(0.99, 'pipeserve_coordinator_queue_wait_seconds'))).toBe(true);
    expect(Number.isFinite(await quantile(0.5, 'pipeserve_coordinator_prompt_tokens'))).toBe(true);

    // The model table: one row per stage, as manifest.json describes the model and the stage.
    const manifest = JSON.parse(await readFile(path.join(modelDir, 'manifest.json'), 'utf8')) as {
      modelName: string;
      architecture: string;
      stages: { index: number; layerStart: number; layerEnd: number; weights: { format: string } }[];
    };
    const info = await prometheus.query('pipeserve_stage_model_info');
    expect(info.map((s) => ({ ...s.metric })).sort((a, b) => a.stage.localeCompare(b.stage))).toEqual(
      manifest.stages.map((stage, i) => ({
        __name__: 'pipeserve_stage_model_info',
        job: 'nodes',
        instance: system.config.metricsTargets.nodes[i],
        service: 'node',
        node_id: `node${i + 1}`,
        stage: String(stage.index),
        model_name: manifest.modelName,
        architecture: manifest.architecture,
        weights: stage.weights.format,
        layers: `${stage.layerStart}-${stage.layerEnd - 1}`,
        stages: String(STAGES),
      })),
    );
    expect(info.map((s) => s.value)).toEqual([1, 1, 1]);
    // Each replica says how long loading its stage took: some time, and less than the whole start.
    const loads = await prometheus.query('pipeserve_stage_load_seconds');
    expect(loads.map((s) => s.metric.node_id).sort()).toEqual(['node1', 'node2', 'node3']);
    for (const load of loads) expect(load.value).toBeGreaterThan(0);
    for (const load of loads) expect(load.value).toBeLessThan(SYSTEM_START_TIMEOUT_MS / 1000);
  },
  SYSTEM_START_TIMEOUT_MS * 2,
);
