/**
 * Test fixtures for the compiler tests: a driver that runs compiled stage graphs over a batch
 * exactly as docs/stage-graph.md lays it out (pasts and new blocks right-padded, graphs return
 * only the new keys and values, the driver keeps the past), and helpers to compare outputs. It
 * is written from the contract, not from the stage runtime. The reference they are compared
 * with is a naive forward pass (tests/support/naive-gpt2.ts).
 */
import type { OnnxSession } from '../../services/node/onnx-session';
import { float32Tensor, int64Tensor, type Tensor } from '../../shared/tensor';

/** The numbers of a model the driver needs. */
export interface DriverShape {
  readonly kvHeads: number;
  readonly headDim: number;
}

/** One batch step: per row the real new tokens; rows are right-padded to the longest. */
export interface StepRows {
  readonly newTokens: readonly (readonly number[])[];
}

/** Per layer every row's cached keys/values [B, kvHeads, P, D] (row b's first lengths[b] columns are real). */
export interface PastState {
  readonly keys: Map<number, Tensor<'float32'>>;
  readonly values: Map<number, Tensor<'float32'>>;
  readonly lengths: readonly number[];
}

export interface StepResult {
  readonly logits: Tensor<'float32'>;
  /** The last stage's per-row summaries of the logits: log Σ exp and the greedy pick. */
  readonly logsumexp: Tensor<'float32'>;
  readonly argmax: Tensor;
  /** The past after this step (the driver's own cache). */
  readonly past: PastState;
  /** Per layer the graph's present_key / present_value: this step's new entries [B, kvHeads, S, D]. */
  readonly presentKeys: Map<number, Tensor<'float32'>>;
  readonly presentValues: Map<number, Tensor<'float32'>>;
  /** Per stage, its `hidden_states_out` (absent for the last stage). */
  readonly hiddenOut: Tensor<'float32'>[];
}

/**
 * Runs one step through `stages` in order: right-pads the new tokens, builds positions
 * (past length + i) and the mask (ones over each row's real past columns and real new columns),
 * feeds each stage's hidden_states_out to the next, and appends each row's real new entries to
 * the past. Padding positions use token 0 and position 0.
 */
export async function runStep(
  stages: readonly { session: OnnxSession; layerStart: number; layerEnd: number }[],
  shape: DriverShape,
  rows: StepRows,
  past: PastState | undefined,
): Promise<StepResult> {
  const batch = rows.newTokens.length;
  const seq = Math.max(...rows.newTokens.map((t) => t.length));
  const lengths = past?.lengths ?? new Array<number>(batch).fill(0);
  const pastWidth = past === undefined ? 0 : (past.keys.values().next().value as Tensor).dims[2];
  const ids: number[] = [];
  const positions: number[] = [];
  const mask: number[] = [];
  for (let r = 0; r < batch; r++) {
    const tokens = rows.newTokens[r];
    for (let i = 0; i < seq; i++) {
      ids.push(i < tokens.length ? tokens[i] : 0);
      positions.push(i < tokens.length ? lengths[r] + i : 0);
    }
    for (let j = 0; j < pastWidth; j++) mask.push(j < lengths[r] ? 1 : 0);
    for (let i = 0; i < seq; i++) mask.push(i < tokens.length ? 1 : 0);
  }
  const emptyPast = float32Tensor([batch, shape.kvHeads, 0, shape.headDim]);
  const presentKeys = new Map<number, Tensor<'float32'>>();
  const presentValues = new Map<number, Tensor<'float32'>>();
  const hiddenOut: Tensor<'float32'>[] = [];
  let hidden: Tensor | undefined;
  let logits: Tensor<'float32'> | undefined;
  let logsumexp: Tensor<'float32'> | undefined;
  let argmax: Tensor | undefined;
  for (const stage of stages) {
    const feeds: Record<string, Tensor> = {
      position_ids: int64Tensor([batch, seq], positions),
      attention_mask: int64Tensor([batch, pastWidth + seq], mask),
    };
    if (hidden === undefined) feeds.input_ids = int64Tensor([batch, seq], ids);
    else feeds.hidden_states = hidden;
    for (let layer = stage.layerStart; layer < stage.layerEnd; layer++) {
      feeds[`past_key.${layer}`] = past?.keys.get(layer) ?? emptyPast;
      feeds[`past_value.${layer}`] = past?.values.get(layer) ?? emptyPast;
    }
    const out = await stage.session.run(feeds);
    for (let layer = stage.layerStart; layer < stage.layerEnd; layer++) {
      presentKeys.set(layer, out[`present_key.${layer}`] as Tensor<'float32'>);
      presentValues.set(layer, out[`present_value.${layer}`] as Tensor<'float32'>);
    }
    if ('logits' in out) {
      logits = out.logits as Tensor<'float32'>;
      logsumexp = out.logsumexp as Tensor<'float32'>;
      argmax = out.argmax;
    } else {
      hidden = out.hidden_states_out;
      hiddenOut.push(hidden as Tensor<'float32'>);
    }
  }
  if (logits === undefined || logsumexp === undefined || argmax === undefined) throw new Error('no stage produced logits');
  const newLengths = lengths.map((length, r) => length + rows.newTokens[r].length);
  const width = Math.max(...newLengths);
  const append = (old: Tensor<'float32'> | undefined, fresh: Tensor<'float32'>): Tensor<'float32'> => {
    const { kvHeads, headDim } = shape;
    const next = new Float32Array(batch * kvHeads * width * headDim);
    for (let r = 0; r < batch; r++) {
      for (let h = 0; h < kvHeads; h++) {
        const to = ((r * kvHeads + h) * width) * headDim;
        if (old !== undefined) {
          const from = ((r * kvHeads + h) * pastWidth) * headDim;
          next.set(old.data.subarray(from, from + lengths[r] * headDim), to);
        }
        const from = ((r * kvHeads + h) * seq) * headDim;
        next.set(fresh.data.subarray(from, from + rows.newTokens[r].length * headDim), to + lengths[r] * headDim);
      }
    }
    return float32Tensor([batch, kvHeads, width, headDim], next);
  };
  const keys = new Map<number, Tensor<'float32'>>();
  const values = new Map<number, Tensor<'float32'>>();
  for (const [layer, fresh] of presentKeys) keys.set(layer, append(past?.keys.get(layer), fresh));
  for (const [layer, fresh] of presentValues) values.set(layer, append(past?.values.get(layer), fresh));
  return { logits, logsumexp, argmax, past: { keys, values, lengths: newLengths }, presentKeys, presentValues, hiddenOut };
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

/** The largest difference of two [B, H, S, D] present tensors over each row's real columns (the first counts[b]). */
export function maxPresentDifference(a: Tensor<'float32'>, b: Tensor<'float32'>, counts: readonly number[]): number {
  if (a.dims.join() !== b.dims.join()) throw new Error(`dims ${a.dims} != ${b.dims}`);
  const [batch, heads, columns, d] = a.dims;
  let max = 0;
  for (let r = 0; r < batch; r++) {
    for (let h = 0; h < heads; h++) {
      const offset = ((r * heads + h) * columns) * d;
      max = Math.max(max, maxAbsDifference(a.data.subarray(offset, offset + counts[r] * d), b.data.subarray(offset, offset + counts[r] * d)));
    }
  }
  return max;
}
