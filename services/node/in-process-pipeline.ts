import { randomUUID } from 'node:crypto';
import { ServiceError } from '../../shared/errors';
import { isEos, type ModelShape } from '../../shared/model/model-shape';
import { readManifest } from '../../shared/model/manifest';
import type { GenerationConfig } from '../../shared/generation-config';
import { createSampler } from './sampling/sampler';
import { StageRuntime, type StepOutput, type StepRow } from './stage-runtime';

export interface GenerationResult {
  /** Generated ids only; when generation stopped on EOS, the EOS id is the last one. */
  readonly tokenIds: number[];
  /** Log-probability of each generated id under the processed logits it was drawn from. */
  readonly logprobs: number[];
  /** 'stop': EOS was generated; 'length': maxNewTokens reached or the context is full. */
  readonly finishReason: 'stop' | 'length';
}

export interface InProcessPipelineOptions {
  /** KV budget of each stage. */
  readonly kvBudgetBytes?: number;
  readonly intraOpThreads?: number;
}

/** Enough for a few hundred GPT-2 small sequences of full length per stage, in one process. */
export const DEFAULT_KV_BUDGET_BYTES = 1 << 30;

export interface GenerateBatchOptions {
  /** EOS does not end a sequence: each runs to maxNewTokens or the context's end (benchmarks). */
  readonly ignoreEos?: boolean;
  /** Called as each token is sampled, with the index of its prompt. */
  readonly onToken?: (promptIndex: number, tokenId: number) => void;
}

interface SequenceState {
  readonly promptIndex: number;
  readonly sequenceId: string;
  /** Prompt and generated ids so far. */
  readonly ids: number[];
  readonly generated: number[];
  readonly logprobs: number[];
  finishReason?: 'stop' | 'length';
}

/**
 * Every stage of a compiled model chained in one process, with no network in between: the
 * reference the distributed pipeline is compared with, and the engine of tools/generate.
 */
export class InProcessPipeline {
  private constructor(
    readonly shape: ModelShape,
    private readonly stages: readonly StageRuntime[],
  ) {}

  static async load(modelDir: string, options: InProcessPipelineOptions = {}): Promise<InProcessPipeline> {
    const manifest = await readManifest(modelDir);
    const stages: StageRuntime[] = [];
    try {
      for (const stage of manifest.stages) {
        stages.push(
          await StageRuntime.load(modelDir, stage.index, {
            kvBudgetBytes: options.kvBudgetBytes ?? DEFAULT_KV_BUDGET_BYTES,
            intraOpThreads: options.intraOpThreads,
          }),
        );
      }
    } catch (error) {
      await Promise.all(stages.map((s) => s.close()));
      throw error;
    }
    return new InProcessPipeline(manifest.shape, stages);
  }

  get stageCount(): number {
    return this.stages.length;
  }

  /** Runs one step through every stage; returns the logits [rows, V] of each row's last new token. */
  async forward(rows: readonly StepRow[]): Promise<Float32Array> {
    return (await this.forwardWithLogsumexp(rows)).logits as Float32Array;
  }

  /** One step through every stage: the last stage's logits and their per-row log Σ exp. */
  async forwardWithLogsumexp(rows: readonly StepRow[]): Promise<StepOutput> {
    let result: StepOutput = {};
    for (const stage of this.stages) {
      result = await stage.step({ rows, hiddenStates: result.hiddenStates });
    }
    return result;
  }

  /** Frees a sequence on every stage. */
  release(sequenceId: string): void {
    for (const stage of this.stages) stage.release(sequenceId);
  }

  async generate(promptIds: readonly number[], config: GenerationConfig): Promise<GenerationResult> {
    const [result] = await this.generateBatch([promptIds], config);
    return result;
  }

  /**
   * Generates for several prompts at once: one prefill step for all of them (left-padded to the
   * longest), then one decode step per token for the sequences still running, whose past lengths
   * differ. Each sequence gets what it would get alone.
   */
  async generateBatch(prompts: readonly (readonly number[])[], config: GenerationConfig, options: GenerateBatchOptions = {}): Promise<GenerationResult[]> {
    prompts.forEach((prompt, i) => {
      if (prompt.length === 0) throw ServiceError.invalidArgument(`prompts[${i}]`, 'needs at least one token');
      if (prompt.length > this.shape.contextLength) {
        throw ServiceError.invalidArgument(`prompts[${i}]`, `${prompt.length} tokens exceed the model's ${this.shape.contextLength} positions`);
      }
    });
    const sampler = createSampler(config);
    const states: SequenceState[] = prompts.map((prompt, promptIndex) => ({
      promptIndex,
      sequenceId: randomUUID(),
      ids: [...prompt],
      generated: [],
      logprobs: [],
    }));
    let rows: StepRow[] = states.map((s) => ({ sequenceId: s.sequenceId, pastLength: 0, tokenIds: [...s.ids] }));
    let running = states;
    const vocab = this.shape.vocabSize;
    try {
      while (running.length > 0) {
        const { logits, logsumexp, argmax } = await this.forwardWithLogsumexp(rows);
        running.forEach((state, row) => {
          const summary = logsumexp === undefined ? undefined : { logsumexp: logsumexp[row], argmax: argmax?.[row] };
          const token = sampler.sample((logits as Float32Array).subarray(row * vocab, (row + 1) * vocab), state.ids, state.generated.length, summary);
          state.ids.push(token.tokenId);
          state.generated.push(token.tokenId);
          state.logprobs.push(token.logprob);
          options.onToken?.(state.promptIndex, token.tokenId);
          if (options.ignoreEos !== true && isEos(this.shape, token.tokenId)) state.finishReason = 'stop';
          else if (state.generated.length >= config.maxNewTokens || state.ids.length >= this.shape.contextLength) state.finishReason = 'length';
        });
        running = running.filter((s) => s.finishReason === undefined);
        rows = running.map((s) => ({ sequenceId: s.sequenceId, pastLength: s.ids.length - 1, tokenIds: [s.ids[s.ids.length - 1]] }));
      }
    } finally {
      for (const state of states) this.release(state.sequenceId);
    }
    return states.map((s) => ({ tokenIds: s.generated, logprobs: s.logprobs, finishReason: s.finishReason ?? 'length' }));
  }

  async close(): Promise<void> {
    await Promise.all(this.stages.map((s) => s.close()));
  }
}
