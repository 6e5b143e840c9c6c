/**
 * Test fixtures for the compiler tests: a driver that runs compiled stage graphs over a
 * left-padded batch exactly as docs/stage-graph.md lays it out, and helpers to compare outputs.
 * The reference they are compared with is tests/support/naive-gpt2.ts; the checkpoints come from
 * randomGpt2Checkpoint (tools/init/random-gpt2.ts).
 */
import type { Gpt2Config } from '../../shared/model/gpt2-config';
import { float32Tensor, int64Tensor, type Tensor } from '../../shared/tensor';
import type { OnnxSession } from '../../services/node/onnx-session';

/** One batch step: per row the real new tokens; rows are left-padded to the longest. */
export interface StepRows {
  readonly newTokens: readonly (readonly number[])[];
}

/** Per layer the present key/value of the previous step, and the mask of its columns. */
export interface PastState {
  readonly keys: Map<number, Tensor<'float32'>>;
  readonly values: Map<number, Tensor<'float32'>>;
  /** [B][P] 0/1 */
  readonly mask: number[][];
}

export interface StepResult {
  readonly logits: Tensor<'float32'>;
  readonly past: PastState;
  /** Per stage, its `hidden_states_out` (absent for the last stage). */
  readonly hiddenOut: Tensor<'float32'>[];
}

/**
 * Runs one step through `stages` in order: left-pads the new tokens, builds position ids and
 * the attention mask from the previous step's mask, and feeds each stage's hidden_states_out to
 * the next. Padding positions use token 0 and position 0 (the contract).
 */
export async function runStep(
  stages: readonly { session: OnnxSession; layerStart: number; layerEnd: number }[],
  config: Gpt2Config,
  rows: StepRows,
  past: PastState | undefined,
): Promise<StepResult> {
  const batch = rows.newTokens.length;
  const seq = Math.max(...rows.newTokens.map((t) => t.length));
  const pastLength = past === undefined ? 0 : past.mask[0].length;
  const heads = config.nHead;
  const d = config.nEmbd / heads;
  const ids: number[] = [];
  const positions: number[] = [];
  const mask: number[][] = [];
  for (let r = 0; r < batch; r++) {
    const tokens = rows.newTokens[r];
    const pastMask = past === undefined ? [] : past.mask[r];
    const realPast = pastMask.reduce((a, b) => a + b, 0);
    const padding = seq - tokens.length;
    for (let i = 0; i < seq; i++) {
      ids.push(i < padding ? 0 : tokens[i - padding]);
      positions.push(i < padding ? 0 : realPast + i - padding);
    }
    mask.push([...pastMask, ...Array.from({ length: seq }, (_, i) => (i < padding ? 0 : 1))]);
  }
  const emptyPast = float32Tensor([batch, heads, 0, d]);
  const keys = new Map<number, Tensor<'float32'>>();
  const values = new Map<number, Tensor<'float32'>>();
  const hiddenOut: Tensor<'float32'>[] = [];
  let hidden: Tensor | undefined;
  let logits: Tensor<'float32'> | undefined;
  for (const stage of stages) {
    const feeds: Record<string, Tensor> = {
      position_ids: int64Tensor([batch, seq], positions),
      attention_mask: int64Tensor([batch, pastLength + seq], mask.flat()),
    };
    if (hidden === undefined) feeds.input_ids = int64Tensor([batch, seq], ids);
    else feeds.hidden_states = hidden;
    for (let layer = stage.layerStart; layer < stage.layerEnd; layer++) {
      feeds[`past_key.${layer}`] = past?.keys.get(layer) ?? emptyPast;
      feeds[`past_value.${layer}`] = past?.values.get(layer) ?? emptyPast;
    }
    const out = await stage.session.run(feeds);
    for (let layer = stage.layerStart; layer < stage.layerEnd; layer++) {
      keys.set(layer, out[`present_key.${layer}`] as Tensor<'float32'>);
      values.set(layer, out[`present_value.${layer}`] as Tensor<'float32'>);
    }
    if ('logits' in out) logits = out.logits as Tensor<'float32'>;
    else {
      hidden = out.hidden_states_out;
      hiddenOut.push(hidden as Tensor<'float32'>);
    }
  }
  if (logits === undefined) throw new Error('no stage produced logits');
  return { logits, past: { keys, values, mask }, hiddenOut };
}

/** The largest |a - b| over two equally long arrays. */
export function maxAbsDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
  return max;
}

/** Row `r` of a [B, N] tensor. */
export function row(t: Tensor<'float32'>, r: number): Float32Array {
  const width = t.dims[1];
  return t.data.subarray(r * width, (r + 1) * width);
}
