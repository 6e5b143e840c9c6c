import type { LoadSummary, StepBreakdown, SystemSummary, WorkloadSummary } from './bench-stats';

/** Where and on what a benchmark ran: the head of bench/results.md. */
export interface BenchContext {
  readonly command: string;
  readonly date: string;
  readonly cpu: string;
  readonly cores: number;
  readonly node: string;
  readonly onnxruntime: string;
  readonly model: string;
  readonly promptTokens: number;
  readonly newTokens: number;
  readonly rounds: number;
  /** The pipeline's settings from config.json, as `runtime … limits …`; empty when it has none. */
  readonly pipelineSettings?: string;
}

const MIB = 2 ** 20;

/** A system's name in tables: the pipeline with a link delay says so, and so does a model after the first. */
export function systemLabel(s: Pick<SystemSummary, 'system' | 'link_delay_ms'> & { readonly model?: string }, showModel = false): string {
  const name = s.link_delay_ms > 0 ? `${s.system} (+${s.link_delay_ms} ms links)` : s.system;
  return showModel && s.model !== undefined ? `${s.model}: ${name}` : name;
}

/** One markdown table per workload, with what the figures mean. */
export function resultsMarkdown(context: BenchContext, workloads: readonly WorkloadSummary[], loads: readonly LoadSummary[] = []): string {
  const lines = [
    '# Benchmark results',
    '',
    `\`${context.command}\` on ${context.date}: ${context.cpu}, ${context.cores} cores, Node ${context.node}, onnxruntime-node ${context.onnxruntime}.`,
    `Model ${context.model}; ${context.promptTokens}-token prompts, ${context.newTokens} new tokens per stream, greedy` +
      (context.rounds > 1 ? `; the median of ${context.rounds} rounds.` : '.'),
    ...(context.pipelineSettings === undefined || context.pipelineSettings === '' ? [] : [`The pipeline runs with ${context.pipelineSettings}.`]),
    '',
    'Every system runs the same weights and the same prompts, side by side in this one run; ratios',
    'compare systems of the same workload. All streams of a workload start together. tok/s: tokens of',
    'all streams over the time to the last one; per stream: the mean of each stream\'s own rate. TTFT:',
    'time to first token; ITL: gap between consecutive tokens of a stream. Peak RSS: the high-water',
    'mark during the measured run (model resident), summed over the system\'s processes. "= bare":',
    'streams whose tokens equal the bare loop\'s.',
    '',
  ];
  const models = [...new Set(workloads.flatMap((w) => w.systems.map((s) => s.model)))];
  const several = models.length > 1;
  if (several) lines.push(`Models: ${models.join(', ')}; "vs ${models[0]} bare" compares every system with the bare loop on ${models[0]}.`, '');
  lines.push(
    `| streams | system | tok/s | per stream | TTFT p50 / p99 ms | ITL p50 / p99 ms | peak RSS MiB | = bare | vs bare | vs transformers.js |${several ? ` vs ${models[0]} bare |` : ''}`,
    `|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|${several ? '---:|' : ''}`,
  );
  for (const workload of workloads) {
    for (const s of workload.systems) {
      lines.push(
        `| ${workload.streams} | ${systemLabel(s, several)} | ${s.tokens_per_second.toFixed(1)} | ${s.tokens_per_second_per_stream.toFixed(1)} | ` +
          `${s.ttft_ms_p50.toFixed(0)} / ${s.ttft_ms_p99.toFixed(0)} | ${s.itl_ms_p50.toFixed(1)} / ${s.itl_ms_p99.toFixed(1)} | ` +
          `${(s.peak_rss_bytes / MIB).toFixed(0)} | ${s.streams_equal_to_bare ?? '–'}/${workload.streams} | ${ratio(s.vs_bare)} | ${ratio(s.vs_transformers_js)} |` +
          (several ? ` ${ratio(s.vs_reference_bare)} |` : ''),
      );
    }
  }
  for (const model of models) {
    const pipeline = workloads.flatMap((w) => w.systems).find((s) => s.system === 'pipeline' && s.link_delay_ms === 0 && s.model === model);
    if (pipeline === undefined || Object.keys(pipeline.peak_rss_bytes_by_process).length < 2) continue;
    const processes = Object.entries(pipeline.peak_rss_bytes_by_process).map(([name, bytes]) => `${name} ${(bytes / MIB).toFixed(0)}`);
    lines.push('', `Peak RSS of the pipeline's processes${several ? ` on ${model}` : ''} (MiB, first workload): ${processes.join(', ')}.`);
  }
  const cpuRows = workloads.flatMap((w) => w.systems.filter((s) => Object.keys(s.cpu_ms_per_token_by_process).length > 0).map((s) => ({ streams: w.streams, s })));
  if (cpuRows.length > 0) {
    lines.push('', 'CPU ms per generated token, every thread of every process (the pipeline\'s `client` is this benchmark\'s REST client):', '');
    for (const { streams, s } of cpuRows) {
      const byProcess = Object.entries(s.cpu_ms_per_token_by_process);
      const detail = byProcess.length > 1 ? `: ${byProcess.map(([name, ms]) => `${name} ${ms.toFixed(2)}`).join(', ')}` : '';
      lines.push(`- ${streams} stream(s), ${systemLabel(s, several)}: ${s.cpu_ms_per_token.toFixed(2)}${detail}`);
    }
  }
  const breakdowns = workloads.flatMap((w) => w.systems.filter((s) => s.step_breakdown !== null).map((s) => ({ streams: w.streams, s, b: s.step_breakdown as StepBreakdown })));
  if (breakdowns.length > 0) {
    lines.push(
      '',
      "Where a pipeline stream's step goes, ms (means over streams, the prompt's step counted with the others: a stream's time to its last token over its steps): " +
        "the stages' forward passes as each node measures them (its hand-off to the stage's worker thread included), and what is left between them: " +
        'gRPC hops, the coordinator, tokenizing, waiting for a place in a batch:',
      '',
    );
    for (const { streams, s, b } of breakdowns) {
      const stages = Object.entries(b.stage_ms).map(([node, ms]) => `${node} ${ms.toFixed(2)}`);
      lines.push(`- ${streams} stream(s), ${systemLabel(s, several)}: step ${b.step_ms.toFixed(2)} = stages ${stages.join(' + ')} + between ${b.between_stages_ms.toFixed(2)}`);
    }
  }
  if (loads.length > 0) {
    lines.push(
      '',
      "Load time, ms (the model read and its onnxruntime sessions ready: in the worker's own process, or per stage in each node; " +
        "the pipeline's slowest stage is its load, and `ready` is from spawning the launcher to the API's /ready):",
      '',
    );
    const models = [...new Set(loads.map((l) => l.model))];
    for (const model of models) {
      const parts = loads
        .filter((l) => l.model === model)
        .map((l) => {
          const stages = l.stage_load_ms === null ? '' : ` (stages ${l.stage_load_ms.map((ms) => ms.toFixed(0)).join(' / ')}${l.ready_ms === null ? '' : `, ready ${l.ready_ms.toFixed(0)}`})`;
          const versus = l.vs_reference === null ? '' : `, ${l.vs_reference.toFixed(2)}x ${models[0]}`;
          return `${systemLabel(l)} ${l.load_ms.toFixed(0)}${stages}${versus}`;
        });
      lines.push(`- ${model}: ${parts.join('; ')}`);
    }
  }
  const delays = delayCosts(workloads);
  if (delays.length > 0) {
    lines.push(
      '',
      'What the link delay costs the pipeline (a proxy in front of every node delays both directions, so a token crosses one delayed link per stage ' +
        "and one more with the last stage's answer to the coordinator: (stages + 1) x the delay is the floor at one stream):",
      '',
    );
    for (const d of delays) {
      const held =
        d.heldMs === null ? '' : ` (the proxies held a chunk ${d.heldMs.toFixed(2)} ms on average${d.crossings === null ? '' : `: ${d.crossings} crossings are ${(d.crossings * d.heldMs).toFixed(1)} ms`})`;
      lines.push(`- ${d.streams} stream(s), +${d.delayMs} ms each way: inter-token p50 ${d.itlMs >= 0 ? '+' : ''}${d.itlMs.toFixed(1)} ms, tokens/s ${d.throughputChangePercent >= 0 ? '+' : ''}${d.throughputChangePercent.toFixed(1)} %${held}.`);
    }
  }
  return `${lines.join('\n')}\n`;
}

export interface DelayCost {
  readonly streams: number;
  readonly delayMs: number;
  /** What the proxies really held a chunk (null when unknown). */
  readonly heldMs: number | null;
  /** Delayed links a token crosses at one stream (stages + 1: every node's link, and the last stage's answer), null when the stages are unknown. */
  readonly crossings: number | null;
  /** Median inter-token latency with the delay minus without. */
  readonly itlMs: number;
  readonly throughputChangePercent: number;
}

/** The pipeline with a link delay against the pipeline without, per workload. */
export function delayCosts(workloads: readonly WorkloadSummary[]): DelayCost[] {
  const costs: DelayCost[] = [];
  for (const w of workloads) {
    for (const delayed of w.systems.filter((s) => s.system === 'pipeline' && s.link_delay_ms > 0)) {
      const plain = w.systems.find((s) => s.system === 'pipeline' && s.link_delay_ms === 0 && s.model === delayed.model);
      if (plain === undefined) continue;
      const stages = delayed.step_breakdown === null ? 0 : Object.keys(delayed.step_breakdown.stage_ms).length;
      costs.push({
        streams: w.streams,
        delayMs: delayed.link_delay_ms,
        heldMs: delayed.link_delay_held_ms,
        crossings: stages === 0 ? null : stages + 1,
        itlMs: delayed.itl_ms_p50 - plain.itl_ms_p50,
        throughputChangePercent: (delayed.tokens_per_second / plain.tokens_per_second - 1) * 100,
      });
    }
  }
  return costs;
}

function ratio(value: number | null): string {
  return value === null ? '–' : `${value.toFixed(2)}x`;
}
