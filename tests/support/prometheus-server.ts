import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { freeLoopbackPort } from '../../tools/free-port';

/**
 * A real Prometheus server for tests: the `prometheus` binary (Debian's `prometheus` package) on
 * an ephemeral loopback port with a throwaway storage directory, scraping the given targets.
 */
export interface ScrapeJob {
  readonly job: string;
  /** host:port of each target; Prometheus scrapes http://<target>/metrics. */
  readonly targets: readonly string[];
}

export interface PrometheusOptions {
  readonly targets: readonly ScrapeJob[];
  readonly scrapeIntervalSeconds: number;
  /** More scrape_configs entries, written as they would be in prometheus.yml. */
  readonly scrapeConfigs?: readonly Readonly<Record<string, unknown>>[];
  /** How long to wait for /-/ready (a loaded machine can take a while). Default 60 s. */
  readonly readyTimeoutMs?: number;
}

/** One element of an instant-vector answer. */
export interface PromSample {
  readonly metric: Readonly<Record<string, string>>;
  readonly value: number;
}

export interface RunningPrometheus {
  /** Base URL, e.g. http://127.0.0.1:41234 */
  readonly url: string;
  /** Evaluates an instant query now; a scalar answer comes back as one sample without labels. */
  query(promql: string): Promise<PromSample[]>;
  /** Repeats `query` until it returns at least one sample (scrapes take a few intervals). */
  waitForSamples(promql: string, timeoutMs: number): Promise<PromSample[]>;
  stop(): Promise<void>;
}

const DEFAULT_READY_TIMEOUT_MS = 60_000;
const POLL_INTERVAL_MS = 200;
const STOP_GRACE_MS = 10_000;
const PORT_ATTEMPTS = 3;
const REPO_ROOT = path.resolve(__dirname, '..', '..');

export async function startPrometheus(options: PrometheusOptions): Promise<RunningPrometheus> {
  requirePrometheusBinary();
  if (!(options.scrapeIntervalSeconds >= 1)) {
    throw new Error(`startPrometheus: scrapeIntervalSeconds must be >= 1, got ${options.scrapeIntervalSeconds}`);
  }
  const dir = await mkdtemp(path.join(os.tmpdir(), 'prometheus-test-'));
  const configFile = path.join(dir, 'prometheus.yml');
  await writeFile(configFile, YAML.stringify(prometheusConfig(options)));
  try {
    // The free port is found by binding and releasing it, so another process can take it first:
    // then Prometheus exits at once and we try again with another port.
    let lastError: Error | undefined;
    for (let attempt = 0; attempt < PORT_ATTEMPTS; attempt++) {
      const port = await freeLoopbackPort();
      const child = spawn(
        'prometheus',
        [
          `--config.file=${configFile}`,
          `--storage.tsdb.path=${path.join(dir, 'data')}`,
          `--web.listen-address=127.0.0.1:${port}`,
          '--log.level=warn',
        ],
        { stdio: ['ignore', 'ignore', 'pipe'] },
      );
      const stderr = collectTail(child);
      const url = `http://127.0.0.1:${port}`;
      try {
        await waitUntilReady(url, child, stderr, options.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS);
        return running(url, child, dir);
      } catch (error) {
        lastError = error as Error;
        await terminate(child);
      }
    }
    throw lastError ?? new Error('prometheus did not start');
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
}

/**
 * Every metric name the Grafana dashboards (grafana/dashboards/*.json) and the alert rules
 * (prometheus/alerts.yml) query, sorted. A system test scrapes a running system and checks that
 * each of them returns data.
 */
export async function metricNamesUsedByDashboardsAndAlerts(repoRoot: string = REPO_ROOT): Promise<string[]> {
  const expressions: string[] = [];
  const dashboardDir = path.join(repoRoot, 'grafana', 'dashboards');
  for (const file of (await readdir(dashboardDir)).filter((f) => f.endsWith('.json')).sort()) {
    const dashboard: unknown = JSON.parse(await readFile(path.join(dashboardDir, file), 'utf8'));
    collectExpressions(dashboard, expressions);
  }
  const alerts = YAML.parse(await readFile(path.join(repoRoot, 'prometheus', 'alerts.yml'), 'utf8')) as {
    groups: { rules: { expr: string }[] }[];
  };
  for (const group of alerts.groups) for (const rule of group.rules) expressions.push(String(rule.expr));
  return [...new Set(expressions.flatMap(metricNamesInPromQL))].sort();
}

/** One query of a dashboard panel. */
export interface PanelQuery {
  readonly dashboard: string;
  readonly panel: string;
  readonly refId: string;
  readonly expr: string;
}

interface DashboardPanel {
  readonly title?: string;
  readonly targets?: readonly { readonly refId?: string; readonly expr?: string }[];
  readonly panels?: readonly DashboardPanel[];
}

/** Every target of every panel of grafana/dashboards/*.json (those nested in collapsed rows too). */
export async function dashboardPanelQueries(repoRoot: string = REPO_ROOT): Promise<PanelQuery[]> {
  const dashboardDir = path.join(repoRoot, 'grafana', 'dashboards');
  const queries: PanelQuery[] = [];
  for (const file of (await readdir(dashboardDir)).filter((f) => f.endsWith('.json')).sort()) {
    const dashboard = JSON.parse(await readFile(path.join(dashboardDir, file), 'utf8')) as { panels: DashboardPanel[] };
    for (const panel of dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])])) {
      for (const target of panel.targets ?? []) {
        queries.push({ dashboard: file, panel: panel.title ?? '', refId: target.refId ?? 'A', expr: target.expr ?? '' });
      }
    }
  }
  return queries;
}

/** A panel's PromQL as Grafana sends it: its interval variables replaced by plain durations. */
export function withGrafanaIntervals(expr: string, intervals: { readonly rate: string; readonly range: string }): string {
  return expr.replace(/\$__rate_interval|\$__interval/g, intervals.rate).replace(/\$__range/g, intervals.range);
}

const PROMQL_KEYWORDS = new Set([
  'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'and', 'or', 'unless', 'offset', 'inf', 'nan',
]);

/**
 * The metric names a PromQL expression selects. A small lexer, enough for dashboards and rules:
 * strings, label matchers, ranges, grouping clauses and Grafana variables are cut out, and what
 * remains is a metric name unless it is a keyword or a function call.
 */
export function metricNamesInPromQL(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, ' ')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/gi, ' ')
    .replace(/\$\{?\w+\}?/g, ' ')
    .replace(/(?<![\w:])\d+(?:\.\d+)?(?:[eE][+-]?\d+|ms|[smhdwy])?(?![\w:])/g, ' ');
  const names = new Set<string>();
  for (const match of stripped.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    const name = match[0];
    const rest = stripped.slice((match.index ?? 0) + name.length);
    if (/^\s*\(/.test(rest) || PROMQL_KEYWORDS.has(name.toLowerCase())) continue;
    names.add(name);
  }
  return [...names];
}

function collectExpressions(value: unknown, out: string[]): void {
  if (Array.isArray(value)) {
    for (const item of value) collectExpressions(item, out);
  } else if (typeof value === 'object' && value !== null) {
    for (const [key, item] of Object.entries(value)) {
      if (key === 'expr' && typeof item === 'string') out.push(item);
      else collectExpressions(item, out);
    }
  }
}

function prometheusConfig(options: PrometheusOptions): Record<string, unknown> {
  const interval = `${options.scrapeIntervalSeconds}s`;
  return {
    global: { scrape_interval: interval, evaluation_interval: interval, scrape_timeout: interval },
    scrape_configs: [
      ...options.targets.map((job) => ({ job_name: job.job, static_configs: [{ targets: [...job.targets] }] })),
      ...(options.scrapeConfigs ?? []),
    ],
  };
}

function requirePrometheusBinary(): void {
  const probe = spawnSync('prometheus', ['--version'], { stdio: 'ignore' });
  if (probe.error !== undefined) {
    throw new Error(
      `prometheus binary not found on PATH (${probe.error.message}): install Debian's prometheus package ` +
        '(apt-get install -y prometheus)',
    );
  }
}

function running(url: string, child: ChildProcess, dir: string): RunningPrometheus {
  const query = async (promql: string): Promise<PromSample[]> => {
    const response = await fetch(`${url}/api/v1/query?query=${encodeURIComponent(promql)}`);
    const body = (await response.json()) as PromQueryResponse;
    if (body.status !== 'success' || body.data === undefined) {
      throw new Error(`prometheus query ${JSON.stringify(promql)} failed: ${body.errorType ?? response.status} ${body.error ?? ''}`);
    }
    return samplesOf(body.data, promql);
  };
  return {
    url,
    query,
    async waitForSamples(promql, timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const samples = await query(promql);
        if (samples.length > 0) return samples;
        if (Date.now() > deadline) throw new Error(`prometheus query ${JSON.stringify(promql)} returned no samples within ${timeoutMs} ms`);
        await delay(POLL_INTERVAL_MS);
      }
    },
    async stop() {
      await terminate(child);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

interface PromQueryResponse {
  status: 'success' | 'error';
  data?: { resultType: string; result: unknown };
  errorType?: string;
  error?: string;
}

type WireValue = [number, string];

function samplesOf(data: { resultType: string; result: unknown }, promql: string): PromSample[] {
  if (data.resultType === 'vector') {
    return (data.result as { metric: Record<string, string>; value: WireValue }[]).map((s) => ({
      metric: s.metric,
      value: sampleValue(s.value[1]),
    }));
  }
  if (data.resultType === 'scalar') return [{ metric: {}, value: sampleValue((data.result as WireValue)[1]) }];
  throw new Error(`prometheus query ${JSON.stringify(promql)} returned a ${data.resultType}; only instant vectors and scalars are supported`);
}

/** Prometheus writes special floats as "+Inf", "-Inf" and "NaN", which Number() only half reads. */
function sampleValue(text: string): number {
  if (text === '+Inf') return Number.POSITIVE_INFINITY;
  if (text === '-Inf') return Number.NEGATIVE_INFINITY;
  return Number(text);
}

async function waitUntilReady(url: string, child: ChildProcess, stderr: () => string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`prometheus exited (${child.exitCode ?? child.signalCode}) before it was ready: ${stderr()}`);
    }
    try {
      const response = await fetch(`${url}/-/ready`);
      if (response.ok) return;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) throw new Error(`prometheus at ${url} not ready within ${timeoutMs} ms: ${stderr()}`);
    await delay(POLL_INTERVAL_MS);
  }
}

function collectTail(child: ChildProcess): () => string {
  let text = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    text = (text + chunk).slice(-4000);
  });
  return () => text.trim();
}

async function terminate(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
  await exited;
  clearTimeout(timer);
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
