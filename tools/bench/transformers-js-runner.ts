import { readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import {
  AutoModelForCausalLM,
  BaseStreamer,
  env,
  LogitsProcessor,
  Tensor,
  type LogitsProcessorList,
  type PreTrainedModel,
  type TextStreamer,
} from '@huggingface/transformers';

/**
 * onnxruntime session settings. The defaults are those of services/node/onnx-session.ts, which the
 * benchmark's bare onnxruntime loop opens its session with, so both run the same onnxruntime
 * build (transformers.js uses the project's onnxruntime-node) with the same threads.
 */
export interface TransformersJsSessionOptions {
  /** onnxruntime's intra-op pool; 0 lets onnxruntime use every core. */
  readonly intraOpThreads?: number;
  /** Whether idle pool threads spin for work. */
  readonly allowSpinning?: boolean;
}

export const TRANSFORMERS_JS_SESSION_DEFAULTS = { intraOpThreads: 0, allowSpinning: true } as const;

export interface TransformersJsGenerateOptions {
  /**
   * Called at every step with each stream's next-token scores as transformers.js hands them to its
   * sampler (so the EOS score is -Infinity while min_new_tokens holds). For tests that check each
   * step, including the cached ones, against a reference; costs a copy per step.
   */
  readonly observeScores?: (step: number, scores: readonly Float32Array[]) => void;
}

export interface StreamResult {
  /** The new token ids (prompt excluded), exactly `newTokens` of them. */
  readonly generatedIds: number[];
  /** From the start of the generate call to this stream's first new token. */
  readonly timeToFirstTokenMs: number;
  /** Gaps between this stream's consecutive new tokens (newTokens − 1 of them). */
  readonly interTokenMs: number[];
}

export interface TransformersJsRun {
  readonly streams: StreamResult[];
  readonly generatedTokens: number;
  readonly seconds: number;
  readonly tokensPerSecond: number;
  /**
   * Peak resident memory. 'run': the high-water mark was reset just before the run (Linux
   * /proc/self/clear_refs), so it is the peak of the run itself, model included; 'process': the
   * process's lifetime peak (process.resourceUsage().maxRSS), where resetting is not possible.
   */
  readonly peakRss: { readonly bytes: number; readonly scope: 'run' | 'process' };
}

/** Left padding is masked out, so any id in the vocabulary will do; 0 is in every vocabulary. */
const PAD_TOKEN_ID = 0n;
/** Writing 5 to clear_refs resets the VmHWM of /proc/self/status (Linux ≥ 4.0). */
const CLEAR_REFS = '/proc/self/clear_refs';
const RESET_PEAK_RSS = '5';
const PROC_STATUS = '/proc/self/status';

/**
 * Greedy generation with transformers.js on a folder written by `exportForTransformersJs`, for a
 * benchmark against the project's own runtime: N streams, each with its own prompt, each
 * generating exactly `newTokens` tokens (do_sample false; min_new_tokens = max_new_tokens, so EOS
 * never ends a stream early), timed per step.
 *
 * Concurrency: all streams go into ONE generate call as a left-padded batch (attention_mask 0
 * on the padding; transformers.js derives position_ids from the mask). That is what a TypeScript
 * user gets the most out of: each step is then a single onnxruntime run over a [streams, 1]
 * batch, so the weights (~500 MB for GPT-2 small) are streamed from memory once per step for
 * every stream together, and onnxruntime's pool parallelises one large MatMul. N parallel
 * generate calls on one session instead queue N batch-1 runs per step, each re-reading all the
 * weights and each too small to keep the cores busy. Measured on models/default (GPT-2 small,
 * 16 streams × 16 tokens, 2 cores shared with other jobs, so noisy): batched 65–101 tokens/s,
 * 16 parallel calls 7–18 tokens/s in all, no more than one stream alone. The price of batching,
 * as in any static batch: a stream's first token waits for the whole padded prompt batch, and
 * every stream runs as long as the longest.
 *
 * Timing: a streamer's put() is called by generate() with the prompt, then once per step with
 * that step's sampled ids, right after sampling and before the next forward pass; each put is
 * timestamped. In a batched call every stream receives its token of a step at the same moment.
 */
export class TransformersJsRunner {
  private constructor(
    private readonly model: PreTrainedModel,
    readonly dir: string,
  ) {}

  static async load(exportDir: string, options: TransformersJsSessionOptions = {}): Promise<TransformersJsRunner> {
    const dir = path.resolve(exportDir);
    env.allowRemoteModels = false;
    env.allowLocalModels = true;
    // Local files are read in place; the file cache would copy them under node_modules.
    env.useFSCache = false;
    const settings = { ...TRANSFORMERS_JS_SESSION_DEFAULTS, ...options };
    // An absolute path is not a Hub id, so transformers.js reads the folder as it is: onnx/model.onnx for fp32.
    const model = await AutoModelForCausalLM.from_pretrained(dir, {
      local_files_only: true,
      device: 'cpu',
      dtype: 'fp32',
      session_options: {
        executionProviders: ['cpu'],
        graphOptimizationLevel: 'all',
        intraOpNumThreads: settings.intraOpThreads,
        interOpNumThreads: 1,
        executionMode: 'sequential',
        extra: { session: { intra_op: { allow_spinning: settings.allowSpinning ? '1' : '0' } } },
      },
    });
    return new TransformersJsRunner(model, dir);
  }

  /** The ONNX input names transformers.js found in the exported graph. */
  get inputNames(): readonly string[] {
    return (this.model.sessions as Record<string, { inputNames: string[] }>).model.inputNames;
  }

  async generate(prompts: readonly (readonly number[])[], newTokens: number, options: TransformersJsGenerateOptions = {}): Promise<TransformersJsRun> {
    if (prompts.length === 0) throw new RangeError('generate: give at least one prompt');
    if (prompts.some((prompt) => prompt.length === 0)) throw new RangeError('generate: every prompt needs at least one token');
    if (!Number.isSafeInteger(newTokens) || newTokens < 1) throw new RangeError(`generate: newTokens must be a positive integer, got ${newTokens}`);
    const { inputIds, attentionMask } = leftPaddedBatch(prompts);
    const streamer = new StepTimestamps();
    const processors = options.observeScores === undefined ? [] : [new ScoreObserver(options.observeScores)];
    const peakResetDone = resetPeakRss();
    const started = performance.now();
    const sequences = (await this.model.generate({
      inputs: inputIds,
      attention_mask: attentionMask,
      max_new_tokens: newTokens,
      min_new_tokens: newTokens,
      do_sample: false,
      num_beams: 1,
      // The typings merge GenerationConfig's `streamer: TextStreamer` in; generate() only calls put() and end().
      streamer: streamer as unknown as TextStreamer,
      // generate() spreads this into its own list, so it takes an array (the typings say a list).
      logits_processor: processors as unknown as LogitsProcessorList,
    })) as Tensor;
    const seconds = (performance.now() - started) / 1000;
    const peakRss = readPeakRss(peakResetDone);

    const rows = sequences.tolist() as bigint[][];
    const stepTimes = streamer.stepTimes;
    if (stepTimes.length !== newTokens) throw new Error(`transformers.js ran ${stepTimes.length} steps for ${newTokens} tokens`);
    const streams = rows.map((row) => ({
      generatedIds: row.slice(row.length - newTokens).map(Number),
      timeToFirstTokenMs: stepTimes[0] - started,
      interTokenMs: stepTimes.slice(1).map((time, i) => time - stepTimes[i]),
    }));
    const generatedTokens = prompts.length * newTokens;
    return { streams, generatedTokens, seconds, tokensPerSecond: generatedTokens / seconds, peakRss };
  }

  async close(): Promise<void> {
    await this.model.dispose();
  }
}

/** [streams, longest] ids and mask, shorter prompts padded on the left (decoder-only generation continues at the right edge). */
function leftPaddedBatch(prompts: readonly (readonly number[])[]): { inputIds: Tensor; attentionMask: Tensor } {
  const longest = Math.max(...prompts.map((prompt) => prompt.length));
  const ids = new BigInt64Array(prompts.length * longest).fill(PAD_TOKEN_ID);
  const mask = new BigInt64Array(prompts.length * longest);
  prompts.forEach((prompt, row) => {
    const offset = row * longest + longest - prompt.length;
    prompt.forEach((id, i) => {
      if (!Number.isSafeInteger(id) || id < 0) throw new RangeError(`prompt ${row}: token id ${id} is not a non-negative integer`);
      ids[offset + i] = BigInt(id);
      mask[offset + i] = 1n;
    });
  });
  const dims = [prompts.length, longest];
  return { inputIds: new Tensor('int64', ids, dims), attentionMask: new Tensor('int64', mask, dims) };
}

/** A streamer that only timestamps: generate() puts the prompt first, then each step's new ids. */
class StepTimestamps extends BaseStreamer {
  readonly stepTimes: number[] = [];
  private promptSeen = false;

  override put(_value: bigint[][]): void {
    const now = performance.now();
    if (this.promptSeen) this.stepTimes.push(now);
    this.promptSeen = true;
  }

  override end(): void {}
}

/** Copies each step's scores out for `observe`, and passes them on unchanged. */
class ScoreObserver extends LogitsProcessor {
  private step = 0;

  constructor(private readonly observe: (step: number, scores: readonly Float32Array[]) => void) {
    super();
  }

  override _call(_inputIds: bigint[][], logits: Tensor): Tensor {
    const [rows, vocab] = logits.dims;
    const data = logits.data as Float32Array;
    const scores = Array.from({ length: rows }, (_, row) => data.slice(row * vocab, (row + 1) * vocab));
    this.observe(this.step++, scores);
    return logits;
  }
}

/** Whether the kernel's peak-RSS mark could be reset, so that the next reading covers only what follows. */
function resetPeakRss(): boolean {
  try {
    writeFileSync(CLEAR_REFS, RESET_PEAK_RSS);
    return true;
  } catch {
    return false;
  }
}

function readPeakRss(resetDone: boolean): TransformersJsRun['peakRss'] {
  if (resetDone) {
    const match = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(PROC_STATUS, 'utf8'));
    if (match !== null) return { bytes: Number(match[1]) * 1024, scope: 'run' };
  }
  return { bytes: process.resourceUsage().maxRSS * 1024, scope: 'process' };
}
