import path from 'node:path';
import { readManifest } from '../../shared/model/manifest';
import { stageIoNames } from '../../shared/model/stage-io-names';
import { float32Tensor, int64Tensor, type Tensor } from '../../shared/tensor';
import { OnnxSession, type OnnxSessionOptions } from '../../services/node/onnx-session';
import type { ModelShape } from '../../shared/model/model-shape';

export interface LoopResult {
  /** Each stream's new token ids, `newTokens` of them (EOS does not stop a stream). */
  readonly tokens: number[][];
  /** When each step's tokens were picked, ms after the call began: one time per step, shared by every stream. */
  readonly stepTimesMs: number[];
  readonly seconds: number;
}

/**
 * The baseline: a plain greedy loop on the 1-stage (monolithic) graph, every row the same
 * prompt length, a static cache per layer that each step's new keys and values are written
 * into, no other bookkeeping. What a bare onnxruntime-node script does; what the pipeline must
 * beat. One session, opened once, serves every call (onnxruntime plans a shape on its first run).
 */
export class BareOnnxLoop {
  private constructor(
    private readonly session: OnnxSession,
    private readonly shape: ModelShape,
  ) {}

  static async open(modelDir: string, options: OnnxSessionOptions = {}): Promise<BareOnnxLoop> {
    const manifest = await readManifest(modelDir);
    if (manifest.stages.length !== 1) throw new Error(`${modelDir}: the baseline needs a 1-stage compile, found ${manifest.stages.length} stages`);
    return new BareOnnxLoop(await OnnxSession.open(path.join(modelDir, manifest.stages[0].files[0].path), options), manifest.shape);
  }

  async generate(prompts: readonly (readonly number[])[], newTokens: number): Promise<LoopResult> {
    const batch = prompts.length;
    if (batch === 0) throw new RangeError('generate: give at least one prompt');
    const promptLength = prompts[0].length;
    if (prompts.some((p) => p.length !== promptLength)) throw new RangeError('the baseline loop needs prompts of one length');
    const { kvHeads, headDim, layers, vocabSize } = this.shape;
    // A static cache, as a bare script keeps one: [B, kvHeads, capacity, D] per layer, each
    // step's new keys and values written after the ones before.
    const capacity = promptLength + newTokens;
    const rowStride = kvHeads * capacity * headDim;
    const keys = Array.from({ length: layers }, () => new Float32Array(batch * rowStride));
    const values = Array.from({ length: layers }, () => new Float32Array(batch * rowStride));
    const tokens: number[][] = prompts.map(() => []);
    const stepTimesMs: number[] = [];
    let ids: number[] = prompts.flat();
    let length = 0;
    let seq = promptLength;
    const started = performance.now();
    for (let step = 0; step < newTokens; step++) {
      const pastWidth = length === 0 ? 0 : capacity;
      const mask = new Array<number>(batch * (pastWidth + seq)).fill(0);
      for (let row = 0; row < batch; row++) {
        const base = row * (pastWidth + seq);
        for (let i = 0; i < length; i++) mask[base + i] = 1;
        for (let i = 0; i < seq; i++) mask[base + pastWidth + i] = 1;
      }
      const feeds: Record<string, Tensor> = {
        [stageIoNames.inputIds]: int64Tensor([batch, seq], ids),
        [stageIoNames.positionIds]: int64Tensor([batch, seq], Array.from({ length: batch * seq }, (_, i) => length + (i % seq))),
        [stageIoNames.attentionMask]: int64Tensor([batch, pastWidth + seq], mask),
      };
      for (let layer = 0; layer < layers; layer++) {
        feeds[stageIoNames.pastKey(layer)] = float32Tensor([batch, kvHeads, pastWidth, headDim], pastWidth === 0 ? new Float32Array(0) : keys[layer]);
        feeds[stageIoNames.pastValue(layer)] = float32Tensor([batch, kvHeads, pastWidth, headDim], pastWidth === 0 ? new Float32Array(0) : values[layer]);
      }
      const outputs = await this.session.run(feeds);
      for (let layer = 0; layer < layers; layer++) {
        const newKeys = outputs[stageIoNames.presentKey(layer)].data as Float32Array;
        const newValues = outputs[stageIoNames.presentValue(layer)].data as Float32Array;
        for (let row = 0; row < batch; row++) {
          for (let h = 0; h < kvHeads; h++) {
            const from = (row * kvHeads + h) * seq * headDim;
            const to = row * rowStride + (h * capacity + length) * headDim;
            keys[layer].set(newKeys.subarray(from, from + seq * headDim), to);
            values[layer].set(newValues.subarray(from, from + seq * headDim), to);
          }
        }
      }
      length += seq;
      const logits = outputs[stageIoNames.logits].data as Float32Array;
      ids = Array.from({ length: batch }, (_, row) => argmax(logits, row * vocabSize, vocabSize));
      ids.forEach((id, row) => tokens[row].push(id));
      stepTimesMs.push(performance.now() - started);
      seq = 1;
    }
    return { tokens, stepTimesMs, seconds: (performance.now() - started) / 1000 };
  }

  async close(): Promise<void> {
    await this.session.close();
  }
}

function argmax(values: Float32Array, offset: number, length: number): number {
  let best = 0;
  for (let i = 1; i < length; i++) if (values[offset + i] > values[offset + best]) best = i;
  return best;
}
