import type { BenchPrompt } from './bench-prompts';
import type { WorkloadRun } from './bench-stats';
import { resetPeakRss } from './bench-worker';
import { SystemRunner } from './system-runner';
import { cpuSeconds } from '../launcher/process-tree';

export interface PipelineSettings {
  readonly limits?: Readonly<Record<string, number>>;
  readonly runtime?: Readonly<Record<string, number>>;
}

/**
 * The whole system as `npm start` runs it (tokenizer, coordinator, API and a node per stage),
 * driven through REST like a user's client: every stream is its own `POST /api/model/generate`
 * (SSE), all sent at once, each token timed as its event arrives.
 */
export class PipelineWorkload {
  private constructor(
    private readonly system: SystemRunner,
    readonly linkDelayMs: number,
    /** How long each stage took to load, in ms, by stage index (the nodes' pipeserve_stage_load_seconds). */
    readonly stageLoadMs: readonly number[],
  ) {}

  /** From spawning the launcher to the whole system ready (every process started, every stage loaded), in ms. */
  get readyMs(): number {
    return this.system.readyMs;
  }

  /** `settings`: config.json's `limits` and `runtime`, so that the system runs as `npm start` runs it. */
  static async start(modelDir: string, linkDelayMs: number, settings: PipelineSettings = {}): Promise<PipelineWorkload> {
    const system = await SystemRunner.start({ modelDir, linkDelayMs, limits: settings.limits, runtime: settings.runtime });
    try {
      return new PipelineWorkload(system, linkDelayMs, await system.stageLoadMs());
    } catch (error) {
      await system.stop();
      throw error;
    }
  }

  /** `measure` false is a warm-up; a measured run resets every service's peak RSS first. */
  async run(prompts: readonly BenchPrompt[], newTokens: number, measure: boolean): Promise<WorkloadRun> {
    const services = this.system.services();
    if (measure) for (const pid of services.values()) resetPeakRss(pid);
    this.system.resetHeldLinkDelay();
    const cpuBefore = new Map([...services].map(([name, pid]) => [name, cpuSeconds(pid)]));
    const clientBefore = process.cpuUsage();
    const started = performance.now();
    const streams = await Promise.all(
      prompts.map((prompt) => this.system.stream({ text: prompt.text, max_new_tokens: newTokens, temperature: 0, ignore_eos: true })),
    );
    const seconds = (performance.now() - started) / 1000;
    const client = process.cpuUsage(clientBefore);
    const cpu: Record<string, number> = {};
    for (const [name, pid] of services) {
      const before = cpuBefore.get(name);
      const after = cpuSeconds(pid);
      if (before !== undefined && after !== undefined) cpu[name] = after - before;
    }
    cpu.client = (client.user + client.system) / 1e6;
    streams.forEach((stream, i) => {
      if (!stream.done || stream.tokens.length !== newTokens) {
        throw new Error(`pipeline stream ${i}: ${stream.error ?? `${stream.tokens.length} of ${newTokens} tokens`}\n${this.system.log().slice(-2_000)}`);
      }
    });
    const peakRssBytes = Object.fromEntries([...this.system.peakRss()]);
    return { tokens: streams.map((s) => s.tokens), tokenTimesMs: streams.map((s) => s.tokenTimesMs), seconds, peakRssBytes, cpuSeconds: cpu, stageTimings: streams.map((s) => s.stageTimings), heldLinkDelayMs: this.system.heldLinkDelayMs() };
  }

  stop(): Promise<void> {
    return this.system.stop();
  }
}
