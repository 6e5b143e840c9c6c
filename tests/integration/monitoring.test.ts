import { postJson, postSse } from '../support/http';
import { metricNamesUsedByDashboardsAndAlerts, startPrometheus, type RunningPrometheus } from '../support/prometheus-server';
import { RunningSystem, SYSTEM_START_TIMEOUT_MS } from '../support/system';
import { tinyModel } from '../support/test-models';

const SCRAPE_INTERVAL_SECONDS = 1;
const METRIC_WAIT_MS = 20_000;

let system: RunningSystem;
let prometheus: RunningPrometheus;

beforeAll(async () => {
  system = await RunningSystem.start({ modelDir: await tinyModel({ stages: 3 }) });
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
  'a real Prometheus scrapes every service, and every metric a dashboard panel or alert rule queries returns data',
  async () => {
    // Traffic of every kind the panels show: unary and streaming generations, and a rejected request.
    for (const text of ['The history of the world', 'Once upon a time', 'Dear Sir or Madam,']) {
      expect((await postJson(`${system.apiUrl}/api/model/process`, { text, max_new_tokens: 8 })).status).toBe(200);
    }
    expect((await postSse(`${system.apiUrl}/api/model/generate`, { text: 'Breaking news:', max_new_tokens: 8 })).status).toBe(200);
    expect((await postJson(`${system.apiUrl}/api/model/process`, { text: '' })).status).toBe(400);

    // Two API targets would be wrong too: exactly the six processes, each scraped successfully.
    await prometheus.waitForSamples('count(up == 1) == 6', METRIC_WAIT_MS);
    const up = await prometheus.query('up');
    expect(up.filter((s) => s.value === 1)).toHaveLength(6);
    expect(new Set(up.map((s) => s.metric.job))).toEqual(new Set(['api', 'tokenizer', 'coordinator', 'nodes']));

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

    // Labels the dashboards group by are really there.
    const forward = await prometheus.query('pipeserve_stage_forward_seconds_count');
    expect(forward.map((s) => `${s.metric.node_id}/${s.metric.stage}`).sort()).toEqual(['node1/0', 'node2/1', 'node3/2']);
    const generated = await prometheus.query('sum(pipeserve_coordinator_generated_tokens_total)');
    expect(generated[0].value).toBeGreaterThanOrEqual(32);
  },
  SYSTEM_START_TIMEOUT_MS * 2,
);
