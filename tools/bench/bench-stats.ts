import type { StageTiming } from './system-runner';

/** The systems `npm run bench` runs side by side, by the names of its JSON output. */
export const BENCH_SYSTEMS = ['bare-onnxruntime', 'transformers.js', 'in-process', 'pipeline'] as const;
export type BenchSystem = (typeof BENCH_SYSTEMS)[number];

/** One measured run of a workload, as a system's client saw it. */
export interface WorkloadRun {
  /** Each stream's new token ids. */
  readonly tokens: readonly (readonly number[])[];
  /** When each of a stream's tokens arrived, ms after the workload started (all streams start together). */
  readonly tokenTimesMs: readonly (readonly number[])[];
  /** From the start of the workload to its last token. */
  readonly seconds: number;
  /** Peak resident memory during the measured run, per process. */
  readonly peakRssBytes: Readonly<Record<string, number>>;
  /** CPU seconds (every thread) each process spent during the measured run; `client` is the benchmark's own REST client. */
  readonly cpuSeconds: Readonly<Record<string, number>>;
  /** Pipeline only: each stream's per-stage forward time, as the API's `done` event reports it. */
  readonly stageTimings?: readonly (readonly StageTiming[])[];
  /** Pipeline with a link delay only: how long the link proxies really held a chunk, on average. */
  readonly heldLinkDelayMs?: number;
}

/** The figures of one system on one workload (snake_case: they are the JSON output). */
export interface SystemSummary {
  readonly system: BenchSystem;
  /** The model folder's name (a run may compare several compiles of one checkpoint). */
  readonly model: string;
  /** Added ms each way on every link between stages (pipeline only). */
  readonly link_delay_ms: number;
  /** What the links really held a chunk, on average (timers fire late); null without a link delay. */
  readonly link_delay_held_ms: number | null;
  readonly tokens_per_second: number;
  /** Mean over streams of a stream's tokens over its own time to its last token. */
  readonly tokens_per_second_per_stream: number;
  readonly ttft_ms_p50: number;
  readonly ttft_ms_p99: number;
  readonly itl_ms_p50: number;
  readonly itl_ms_p99: number;
  /** Sum over the system's processes. */
  readonly peak_rss_bytes: number;
  readonly peak_rss_bytes_by_process: Readonly<Record<string, number>>;
  /** CPU ms per generated token, summed over the system's processes (the benchmark's client included for the pipeline). */
  readonly cpu_ms_per_token: number;
  readonly cpu_ms_per_token_by_process: Readonly<Record<string, number>>;
  readonly generated_tokens: number;
  /** Streams whose tokens equal the bare loop's (greedy output should not depend on the system). */
  readonly streams_equal_to_bare: number | null;
  /** Over the bare loop on the same model. */
  readonly vs_bare: number | null;
  readonly vs_transformers_js: number | null;
  /** Over the bare loop on the run's first model (the fp32 one, when quantized compiles are compared with it). */
  readonly vs_reference_bare: number | null;
  /**
   * Pipeline only: where a stream's step goes, means over streams, every step counted (the
   * prompt's too). `step_ms`: the stream's time from its request to its last token over its steps;
   * `stage_ms`: each stage's forward pass per step, by node (measured by the node around its stage
   * worker, so the hand-off to that thread is in it); `between_stages_ms`: the rest, gRPC hops,
   * the coordinator's scheduling, tokenizing the prompt and waiting for a place in a batch.
   */
  readonly step_breakdown: StepBreakdown | null;
}

export interface StepBreakdown {
  readonly step_ms: number;
  readonly stage_ms: Readonly<Record<string, number>>;
  readonly between_stages_ms: number;
}

/** Means over streams of a stream's step time and of each stage's forward time per step; null without stage timings. */
export function stepBreakdown(run: WorkloadRun): StepBreakdown | null {
  const streams = (run.stageTimings ?? []).map((timings, s) => ({ timings, times: run.tokenTimesMs[s] ?? [] })).filter((s) => s.timings.length > 0 && s.times.length > 0);
  if (streams.length === 0) return null;
  const mean = (values: readonly number[]): number => values.reduce((a, b) => a + b, 0) / values.length;
  const stepMs = mean(streams.map(({ timings, times }) => times[times.length - 1] / Math.max(1, ...timings.map((t) => t.steps))));
  const nodes = [...new Set(streams.flatMap(({ timings }) => timings.map((t) => t.node_id)))].sort();
  const stageMs = Object.fromEntries(
    nodes.map((node) => [node, mean(streams.map(({ timings }) => timings.filter((t) => t.node_id === node).reduce((sum, t) => sum + t.forward_ms / Math.max(1, t.steps), 0)))]),
  );
  const stagesTotal = Object.values(stageMs).reduce((a, b) => a + b, 0);
  return {
    step_ms: round(stepMs, 2),
    stage_ms: Object.fromEntries(Object.entries(stageMs).map(([node, ms]) => [node, round(ms, 2)])),
    between_stages_ms: round(stepMs - stagesTotal, 2),
  };
}

/** How long one system took to load its model (snake_case: the JSON output's `loads`). */
export interface LoadSummary {
  readonly system: BenchSystem;
  readonly model: string;
  readonly link_delay_ms: number;
  /**
   * The model read and its onnxruntime sessions ready: in a worker's own process for the
   * in-process systems; for the pipeline, its slowest stage (the stages load at once).
   */
  readonly load_ms: number;
  /** Pipeline only: each stage's load by stage index (its node's pipeserve_stage_load_seconds). */
  readonly stage_load_ms: readonly number[] | null;
  /** Pipeline only: from spawning the launcher to the API's /ready answering 200 (every process started). */
  readonly ready_ms: number | null;
  /** load_ms over the same system's on the run's first model (a quantized compile against the fp32 one). */
  readonly vs_reference: number | null;
}

/** Fills in `vs_reference`: each load over the same system's (same link delay) on `referenceModel`. */
export function withLoadRatios(loads: readonly Omit<LoadSummary, 'vs_reference'>[], referenceModel: string): LoadSummary[] {
  return loads.map((load) => {
    const reference = loads.find((l) => l.model === referenceModel && l.system === load.system && l.link_delay_ms === load.link_delay_ms);
    return { ...load, vs_reference: reference === undefined || load.model === referenceModel ? null : round(load.load_ms / reference.load_ms, 2) };
  });
}

export interface WorkloadSummary {
  readonly streams: number;
  readonly systems: SystemSummary[];
}

/** Nearest-rank percentile of `values` (p in [0, 1]); NaN for none. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))];
}

/** Tokens/s, time to first token and inter-token latency of one run; ratios are filled in by `withRatios`. */
export function summarize(system: BenchSystem, model: string, linkDelayMs: number, run: WorkloadRun, bare: WorkloadRun | undefined): SystemSummary {
  const generated = run.tokens.reduce((sum, t) => sum + t.length, 0);
  const firstTokens = run.tokenTimesMs.filter((times) => times.length > 0).map((times) => times[0]);
  const gaps = run.tokenTimesMs.flatMap((times) => times.slice(1).map((time, i) => time - times[i]));
  const perStream = run.tokenTimesMs.map((times, s) => (times.length === 0 ? 0 : run.tokens[s].length / (times[times.length - 1] / 1000)));
  const rss = Object.values(run.peakRssBytes).reduce((sum, bytes) => sum + bytes, 0);
  const cpuPerToken = Object.fromEntries(Object.entries(run.cpuSeconds).map(([name, seconds]) => [name, round((seconds * 1000) / Math.max(1, generated), 2)]));
  return {
    system,
    model,
    link_delay_ms: linkDelayMs,
    link_delay_held_ms: run.heldLinkDelayMs === undefined ? null : round(run.heldLinkDelayMs, 2),
    tokens_per_second: round(generated / run.seconds, 1),
    tokens_per_second_per_stream: round(perStream.reduce((a, b) => a + b, 0) / Math.max(1, perStream.length), 2),
    ttft_ms_p50: round(percentile(firstTokens, 0.5), 1),
    ttft_ms_p99: round(percentile(firstTokens, 0.99), 1),
    itl_ms_p50: round(percentile(gaps, 0.5), 2),
    itl_ms_p99: round(percentile(gaps, 0.99), 2),
    peak_rss_bytes: rss,
    peak_rss_bytes_by_process: run.peakRssBytes,
    cpu_ms_per_token: round((Object.values(run.cpuSeconds).reduce((sum, s) => sum + s, 0) * 1000) / Math.max(1, generated), 2),
    cpu_ms_per_token_by_process: cpuPerToken,
    generated_tokens: generated,
    streams_equal_to_bare: bare === undefined ? null : run.tokens.filter((tokens, s) => sameTokens(tokens, bare.tokens[s])).length,
    vs_bare: null,
    vs_transformers_js: null,
    vs_reference_bare: null,
    step_breakdown: stepBreakdown(run),
  };
}

/**
 * Each system's tokens/s in one workload over: the bare loop on the same model, transformers.js
 * (which runs the checkpoint, whatever the model's weight format), and the bare loop on the first
 * model of the run.
 */
export function withRatios(systems: readonly SystemSummary[]): SystemSummary[] {
  const bareOf = (model: string): number | undefined => systems.find((s) => s.system === 'bare-onnxruntime' && s.model === model)?.tokens_per_second;
  const reference = systems.length === 0 ? undefined : bareOf(systems[0].model);
  const transformersJs = systems.find((s) => s.system === 'transformers.js')?.tokens_per_second;
  const ratio = (value: number, over: number | undefined): number | null => (over === undefined ? null : round(value / over, 2));
  return systems.map((s) => ({
    ...s,
    vs_bare: ratio(s.tokens_per_second, bareOf(s.model)),
    vs_transformers_js: ratio(s.tokens_per_second, transformersJs),
    vs_reference_bare: ratio(s.tokens_per_second, reference),
  }));
}

/**
 * The median run of several rounds by tokens/s (the lower middle one of an even count), so one
 * disturbed round on a shared machine does not decide the figures.
 */
export function medianRun(runs: readonly WorkloadRun[]): WorkloadRun {
  if (runs.length === 0) throw new RangeError('medianRun: no runs');
  const rate = (run: WorkloadRun): number => run.tokens.reduce((sum, t) => sum + t.length, 0) / run.seconds;
  return [...runs].sort((a, b) => rate(a) - rate(b))[Math.floor((runs.length - 1) / 2)];
}

function sameTokens(a: readonly number[], b: readonly number[] | undefined): boolean {
  return b !== undefined && a.length === b.length && a.every((id, i) => id === b[i]);
}

function round(value: number, digits: number): number {
  const scale = 10 ** digits;
  return Math.round(value * scale) / scale;
}
