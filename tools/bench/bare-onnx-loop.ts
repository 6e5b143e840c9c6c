import path from 'node:path';
import { readManifest } from '../../shared/model/manifest';
import { stageIoNames } from '../../shared/model/stage-io-names';
import { float32Tensor, int64Tensor, type Tensor } from '../../shared/tensor';
import { OnnxSession } from '../../services/node/onnx-session';

export interface LoopResult {
  readonly generatedTokens: number;
  readonly seconds: number;
}

/**
 * The baseline: a plain greedy loop on the 1-stage (monolithic) graph, every row the same
 * prompt length, each step's present tensors fed back as the next step's past with no copy and
 * no KV bookkeeping. What a bare onnxruntime-node script does; what the pipeline must beat.
 */
export async function bareOnnxLoop(modelDir: string, prompts: readonly (readonly number[])[], newTokens: number): Promise<LoopResult> {
  const manifest = await readManifest(modelDir);
  if (manifest.stages.length !== 1) throw new Error(`${modelDir}: the baseline needs a 1-stage compile, found ${manifest.stages.length} stages`);
  const { config } = manifest;
  const session = await OnnxSession.open(path.join(modelDir, manifest.stages[0].files[0].path));
  try {
    const batch = prompts.length;
    const promptLength = prompts[0].length;
    if (prompts.some((p) => p.length !== promptLength)) throw new Error('the baseline loop needs prompts of one length');
    const headDim = config.nEmbd / config.nHead;
    const past: Record<string, Tensor> = {};
    for (let layer = 0; layer < config.nLayer; layer++) {
      past[stageIoNames.pastKey(layer)] = float32Tensor([batch, config.nHead, 0, headDim]);
      past[stageIoNames.pastValue(layer)] = float32Tensor([batch, config.nHead, 0, headDim]);
    }
    let ids: number[] = prompts.flat();
    let positions: number[] = prompts.flatMap(() => Array.from({ length: promptLength }, (_, i) => i));
    let seq = promptLength;
    const started = performance.now();
    for (let step = 0; step < newTokens; step++) {
      // Past plus new tokens: the prompt at step 0, then one more token per step.
      const total = promptLength + step;
      const outputs = await session.run({
        [stageIoNames.inputIds]: int64Tensor([batch, seq], ids),
        [stageIoNames.positionIds]: int64Tensor([batch, seq], positions),
        [stageIoNames.attentionMask]: int64Tensor([batch, total], new Array<number>(batch * total).fill(1)),
        ...past,
      });
      const logits = outputs[stageIoNames.logits].data as Float32Array;
      ids = Array.from({ length: batch }, (_, row) => argmax(logits, row * config.vocabSize, config.vocabSize));
      positions = new Array<number>(batch).fill(promptLength + step);
      seq = 1;
      for (let layer = 0; layer < config.nLayer; layer++) {
        past[stageIoNames.pastKey(layer)] = outputs[stageIoNames.presentKey(layer)];
        past[stageIoNames.pastValue(layer)] = outputs[stageIoNames.presentValue(layer)];
      }
    }
    return { generatedTokens: batch * newTokens, seconds: (performance.now() - started) / 1000 };
  } finally {
    await session.close();
  }
}

function argmax(values: Float32Array, offset: number, length: number): number {
  let best = 0;
  for (let i = 1; i < length; i++) if (values[offset + i] > values[offset + best]) best = i;
  return best;
}
