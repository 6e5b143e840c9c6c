import type { BenchPrompt } from './bench-prompts';
import type { WorkloadRun } from './bench-stats';
import { resetPeakRss } from './bench-worker';
import { SystemRunner } from './system-runner';

/**
 * The whole system as `npm start` runs it (tokenizer, coordinator, API and a node per stage),
 * driven through REST like a user's client: every stream is its own `POST /api/model/generate`
 * (SSE), all sent at once, each token timed as its event arrives.
 */
export class PipelineWorkload {
  private constructor(
    private readonly system: SystemRunner,
    readonly linkDelayMs: number,
  ) {}

  static async start(modelDir: string, linkDelayMs: number): Promise<PipelineWorkload> {
    return new PipelineWorkload(await SystemRunner.start({ modelDir, linkDelayMs }), linkDelayMs);
  }

  /** `measure` false is a warm-up; a measured run resets every service's peak RSS first. */
  async run(prompts: readonly BenchPrompt[], newTokens: number, measure: boolean): Promise<WorkloadRun> {
    const services = this.system.services();
    if (measure) for (const pid of services.values()) resetPeakRss(pid);
    const started = performance.now();
    const streams = await Promise.all(
      prompts.map((prompt) => this.system.stream({ text: prompt.text, max_new_tokens: newTokens, temperature: 0, ignore_eos: true })),
    );
    const seconds = (performance.now() - started) / 1000;
    streams.forEach((stream, i) => {
      if (!stream.done || stream.tokens.length !== newTokens) {
        throw new Error(`pipeline stream ${i}: ${stream.error ?? `${stream.tokens.length} of ${newTokens} tokens`}\n${this.system.log().slice(-2_000)}`);
      }
    });
    const peakRssBytes = Object.fromEntries([...this.system.peakRss()]);
    return { tokens: streams.map((s) => s.tokens), tokenTimesMs: streams.map((s) => s.tokenTimesMs), seconds, peakRssBytes };
  }

  stop(): Promise<void> {
    return this.system.stop();
  }
}
