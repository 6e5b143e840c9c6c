import type { AttentionKernel, OpsVariant } from '../../shared/model/manifest';
import type { ModelShape } from '../../shared/model/model-shape';
import { stageIoNames } from '../../shared/model/stage-io-names';
import { attr, MICROSOFT_DOMAIN, type OnnxGraph } from './onnx-graph';

/**
 * What a masked attention score is replaced with in plain graphs. Finite on purpose: a fully
 * masked row (a padding query) then softmaxes to a uniform row instead of NaN.
 */
const MASKED_SCORE = -1e9;

/** TensorProto.DataType codes, for Cast's `to`. */
const INT32 = 6;
const INT64 = 7;
const BOOL = 9;

/** Rotary tables of a family that uses rotary position embeddings: [contextLength, rotaryDim / 2] each. */
export interface RotaryTables {
  readonly cos: string;
  readonly sin: string;
}

/**
 * The attention of every layer of one stage, in either op variant, behind one call. Both
 * variants implement the stage graph contract of docs/stage-graph.md:
 *
 * - the past of each layer arrives as `past_key.L` / `past_value.L` [B, kvHeads, P, D], each row
 *   right-padded (row b's p_b real entries are columns 0 … p_b - 1);
 * - `attention_mask` [B, P + S] marks the key columns that hold a real token (the first p_b of
 *   the past, the first s_b of the new block);
 * - `present_key.L` / `present_value.L` [B, kvHeads, S, D] are the keys and values of the step's
 *   new tokens only (after rotary), which the runtime appends to its cache: the graph never
 *   returns the whole past, so no step copies it out.
 *
 * 'fused' rotates with onnxruntime's RotaryEmbedding and attends with one of two kernels:
 * 'split' (the default under multi-head attention) scores the query against the new keys and
 * against the past keys apart and weights the new and the past values the same way, so no step
 * concatenates or copies the past; 'gqa' (the default under grouped-query attention) is
 * onnxruntime's GroupQueryAttention (per-row lengths from the mask; a batch
 * mixes past lengths only with one new token per row, or has no past at all, or is one row — the
 * runtime keeps to that), which copies every row's past into a buffer of its own on every step.
 * 'plain' writes the math of 'split' with a concatenated past, in standard ops only, the reference.
 */
export class StageAttention {
  private fusedLengths: { seqlensK: string; totalLength: string } | undefined;
  private plainAllowed: string | undefined;
  private splitAllowed: string | undefined;
  private splitRowCounts: { seq: string; decodeRows: string } | undefined;

  constructor(
    private readonly graph: OnnxGraph,
    private readonly ops: OpsVariant,
    private readonly kernel: AttentionKernel,
    private readonly shape: ModelShape,
    private readonly attentionMask: string,
    private readonly positionIds: string,
  ) {}

  /**
   * Attention of global layer `layer`: `q` [B, S, heads·D], `k` and `v` [B, S, kvHeads·D], all
   * before rotary. Returns the attended values [B, S, heads·D] (before the output projection).
   */
  attend(layer: number, q: string, k: string, v: string, rotary?: RotaryTables): string {
    return this.graph.inScope('attention', () => {
      if (this.ops === 'plain') return this.plain(layer, q, k, v, rotary);
      const query = this.fusedRotary(q, this.shape.attentionHeads, rotary);
      const key = this.fusedRotary(k, this.shape.kvHeads, rotary);
      return this.kernel === 'split' ? this.split(layer, query, key, v) : this.groupQuery(layer, query, key, v);
    });
  }

  /** RotaryEmbedding of [B, S, heads·D]; its spec pairs num_heads with rotary_embedding_dim; interleaved 0 is Hugging Face's rotate_half layout. */
  private fusedRotary(x: string, heads: number, rotary: RotaryTables | undefined): string {
    if (rotary === undefined) return x;
    const attributes = { num_heads: attr.int(heads), rotary_embedding_dim: attr.int(this.shape.headDim), interleaved: attr.int(0) };
    return this.graph.op('RotaryEmbedding', [x, this.positionIds, rotary.cos, rotary.sin], attributes, MICROSOFT_DOMAIN);
  }

  /**
   * Attention without a concatenated past. Under grouped-query attention the g = heads / kvHeads
   * query heads of one key/value head are stacked as g·S query rows of that head, so the cache is
   * read as it is, never repeated: scores [B, kvHeads, g·S, P] against the past and
   * [B, kvHeads, g·S, S] against the new keys are joined along the key axis (new first) only for
   * the masked softmax, then the probabilities are cut at S again to weight the new and the past
   * values.
   */
  private split(layer: number, query: string, key: string, v: string): string {
    const { graph, shape } = this;
    const d = shape.headDim;
    const kvHeads = shape.kvHeads;
    const group = shape.attentionHeads / kvHeads;
    this.writePresent(stageIoNames.presentKey(layer), key);
    this.writePresent(stageIoNames.presentValue(layer), v);
    const pastKey = stageIoNames.pastKey(layer);
    const newKey = stageIoNames.presentKey(layer);
    // [B, S, heads·D] → [B, kvHeads, g·S, D], query head h = kv·g + j (Hugging Face's repeat_kv order).
    const stacked =
      group === 1
        ? graph.op('Transpose', [graph.op('Reshape', [query, graph.int64s([0, 0, kvHeads, d])])], { perm: attr.ints([0, 2, 1, 3]) })
        : graph.op('Reshape', [
            graph.op('Transpose', [graph.op('Reshape', [query, graph.int64s([0, 0, kvHeads, group, d])])], { perm: attr.ints([0, 2, 3, 1, 4]) }),
            graph.int64s([0, kvHeads, -1, d]),
          ]);
    // A decode row's result must not depend on the rows it is batched with, whose lengths set how
    // many padding columns its past carries: onnxruntime's kernels round differently as a
    // MatMul's key count or a softmax's real-column positions move, and quantized activations turn
    // that rounding into other tokens. So:
    // - past scores of a decode step (S = 1) are [B, kvHeads, g, 1, D] · [B, kvHeads, 1, P, D]
    //   summed over D, one sum of D products whatever P is; any other step (a prompt with no past,
    //   or one row continuing its past: never batched with others) takes the MatMul, whose
    //   temporary is not S times the past. Both are built; the other one gets zero query rows;
    // - new-key scores are new keys times queryᵀ, transposed: a decode step's new block is one
    //   column for every row;
    // - the new columns come first, then the past: a row's real keys sit at the same columns
    //   whatever padding its batch adds at the end, so the softmax sums them in the same order,
    //   and the past values' MatMul only meets zero weights past a row's own length.
    const transposed = (x: string): string => graph.op('Transpose', [x], { perm: attr.ints([0, 1, 3, 2]) });
    const newScores = transposed(graph.op('MatMul', [newKey, transposed(stacked)]));
    const { seq, decodeRows } = this.splitRows();
    const rowAxis = graph.int64s([2]);
    const decodeQuery = graph.op('Slice', [stacked, graph.int64s([0]), decodeRows, rowAxis]);
    const otherQuery = graph.op('Slice', [stacked, decodeRows, graph.int64s([Number.MAX_SAFE_INTEGER]), rowAxis]);
    const decodeScores = graph.op(
      'ReduceSum',
      [graph.op('Mul', [graph.op('Unsqueeze', [decodeQuery, graph.int64s([3])]), graph.op('Unsqueeze', [pastKey, graph.int64s([2])])]), graph.int64s([-1])],
      { keepdims: attr.int(0) },
    );
    const otherScores = graph.op('MatMul', [otherQuery, transposed(pastKey)]);
    const pastScores = graph.op('Concat', [decodeScores, otherScores], { axis: attr.int(2) });
    const scores = graph.op('Mul', [graph.op('Concat', [newScores, pastScores], { axis: attr.int(-1) }), graph.scalar(1 / Math.sqrt(d))]);
    // [B, heads, S, S + P] for the mask [B, 1, S, S + P], then back to the stacked rows.
    const byHead = group === 1 ? scores : graph.op('Reshape', [scores, graph.int64s([0, shape.attentionHeads, -1, 0])]);
    const probs = graph.op('Softmax', [graph.op('Where', [this.newFirstAllowed(), byHead, graph.scalar(MASKED_SCORE)])], { axis: attr.int(-1) });
    const stackedProbs = group === 1 ? probs : graph.op('Reshape', [probs, graph.int64s([0, kvHeads, -1, 0])]);
    const lastAxis = graph.int64s([-1]);
    const newProbs = graph.op('Slice', [stackedProbs, graph.int64s([0]), seq, lastAxis]);
    const pastProbs = graph.op('Slice', [stackedProbs, seq, graph.int64s([Number.MAX_SAFE_INTEGER]), lastAxis]);
    const context = graph.op('Add', [
      graph.op('MatMul', [pastProbs, stageIoNames.pastValue(layer)]),
      graph.op('MatMul', [newProbs, stageIoNames.presentValue(layer)]),
    ]);
    // [B, kvHeads, g·S, D] → [B, S, heads·D].
    const rows =
      group === 1
        ? graph.op('Transpose', [context], { perm: attr.ints([0, 2, 1, 3]) })
        : graph.op('Transpose', [graph.op('Reshape', [context, graph.int64s([0, kvHeads, group, -1, d])])], { perm: attr.ints([0, 3, 1, 2, 4]) });
    return graph.op('Reshape', [rows, graph.int64s([0, 0, shape.attentionHeads * d])]);
  }

  private groupQuery(layer: number, query: string, key: string, v: string): string {
    const { graph, shape } = this;
    const { seqlensK, totalLength } = this.lengths();
    this.writePresent(stageIoNames.presentKey(layer), key);
    this.writePresent(stageIoNames.presentValue(layer), v);
    const attributes: Record<string, ReturnType<typeof attr.int>> = {
      num_heads: attr.int(shape.attentionHeads),
      kv_num_heads: attr.int(shape.kvHeads),
    };
    // onnxruntime 1.30's GroupQueryAttention lets a query see local_window_size keys, its own included:
    // exactly Hugging Face's window (key k visible from query q when q − k < sliding_window).
    if (shape.slidingWindow !== null) attributes.local_window_size = attr.int(shape.slidingWindow);
    const [attended] = graph.node(
      'GroupQueryAttention',
      [query, key, v, stageIoNames.pastKey(layer), stageIoNames.pastValue(layer), seqlensK, totalLength],
      // Its own present outputs (past + new, internal) are not graph outputs: nothing copies them out.
      { domain: MICROSOFT_DOMAIN, outputs: [graph.freshName('attended'), graph.freshName('all_keys'), graph.freshName('all_values')], attributes },
    );
    return attended;
  }

  private plain(layer: number, q: string, k: string, v: string, rotary: RotaryTables | undefined): string {
    const { graph, shape } = this;
    const d = shape.headDim;
    const toHeads = (x: string, heads: number): string =>
      graph.op('Transpose', [graph.op('Reshape', [x, graph.int64s([0, 0, heads, d])])], { perm: attr.ints([0, 2, 1, 3]) });
    let query = toHeads(q, shape.attentionHeads);
    let key = toHeads(k, shape.kvHeads);
    if (rotary !== undefined) {
      query = this.plainRotary(query, rotary);
      key = this.plainRotary(key, rotary);
    }
    const value = toHeads(v, shape.kvHeads);
    graph.node('Identity', [key], { outputs: [stageIoNames.presentKey(layer)] });
    graph.node('Identity', [value], { outputs: [stageIoNames.presentValue(layer)] });
    const concat = (past: string, fresh: string): string => graph.op('Concat', [past, fresh], { axis: attr.int(2) });
    const keys = this.repeatKv(concat(stageIoNames.pastKey(layer), key));
    const values = this.repeatKv(concat(stageIoNames.pastValue(layer), value));
    const scores = graph.op('Mul', [graph.op('MatMul', [query, graph.op('Transpose', [keys], { perm: attr.ints([0, 1, 3, 2]) })]), graph.scalar(1 / Math.sqrt(d))]);
    const probs = graph.op('Softmax', [graph.op('Where', [this.allowed(), scores, graph.scalar(MASKED_SCORE)])], { axis: attr.int(-1) });
    const context = graph.op('Transpose', [graph.op('MatMul', [probs, values])], { perm: attr.ints([0, 2, 1, 3]) });
    return graph.op('Reshape', [context, graph.int64s([0, 0, shape.attentionHeads * d])]);
  }

  /** A new-token tensor [B, S, heads·D] as the BNSH output `name`. */
  private writePresent(name: string, x: string): void {
    const { graph, shape } = this;
    const heads = graph.op('Reshape', [x, graph.int64s([0, 0, shape.kvHeads, shape.headDim])]);
    graph.node('Transpose', [heads], { outputs: [name], attributes: { perm: attr.ints([0, 2, 1, 3]) } });
  }

  /** [B, kvHeads, T, D] → [B, heads, T, D]: each key/value head serves heads / kvHeads query heads. */
  private repeatKv(x: string): string {
    const { graph, shape } = this;
    const group = shape.attentionHeads / shape.kvHeads;
    if (group === 1) return x;
    const batch = graph.op('Shape', [x], { start: attr.int(0), end: attr.int(1) });
    const length = graph.op('Shape', [x], { start: attr.int(2), end: attr.int(3) });
    const expanded = graph.op('Expand', [
      graph.op('Unsqueeze', [x, graph.int64s([2])]),
      graph.op('Concat', [batch, graph.int64s([shape.kvHeads, group]), length, graph.int64s([shape.headDim])], { axis: attr.int(0) }),
    ]);
    return graph.op('Reshape', [expanded, graph.op('Concat', [batch, graph.int64s([shape.attentionHeads]), length, graph.int64s([shape.headDim])], { axis: attr.int(0) })]);
  }

  /** Rotary embedding of [B, N, S, D] in the rotate-half layout Hugging Face uses. */
  private plainRotary(x: string, rotary: RotaryTables): string {
    const { graph, shape } = this;
    const half = shape.headDim / 2;
    const table = (name: string): string => {
      const rows = graph.op('Unsqueeze', [graph.op('Gather', [name, this.positionIds]), graph.int64s([1])]); // [B, 1, S, D/2]
      return graph.op('Concat', [rows, rows], { axis: attr.int(-1) }); // [B, 1, S, D]
    };
    const cos = table(rotary.cos);
    const sin = table(rotary.sin);
    const [x1, x2] = graph.node('Split', [x, graph.int64s([half, half])], { outputs: 2, attributes: { axis: attr.int(-1) } });
    const rotated = graph.op('Concat', [graph.op('Neg', [x2]), x1], { axis: attr.int(-1) });
    return graph.op('Add', [graph.op('Mul', [x, cos]), graph.op('Mul', [rotated, sin])]);
  }

  /** GroupQueryAttention's per-row lengths, from the mask once per stage: seqlens_k = keys - 1, total = mask width. */
  private lengths(): { seqlensK: string; totalLength: string } {
    this.fusedLengths ??= this.graph.inScope('lengths', () => {
      const { graph } = this;
      const keys = graph.op('ReduceSum', [this.attentionMask, graph.int64s([1])], { keepdims: attr.int(0) });
      return {
        seqlensK: graph.op('Cast', [graph.op('Sub', [keys, graph.int64s([1], [])])], { to: attr.int(INT32) }),
        totalLength: graph.op('Cast', [graph.op('Gather', [graph.op('Shape', [this.attentionMask]), graph.int64s([1], [])])], { to: attr.int(INT32) }),
      };
    });
    return this.fusedLengths;
  }

  /**
   * Once per stage, not per layer: S as a 1-D shape, and how many stacked query rows (g·S) take
   * the decode form of the past scores: all of them when S = 1, none otherwise.
   */
  private splitRows(): { seq: string; decodeRows: string } {
    this.splitRowCounts ??= this.graph.inScope('rows', () => {
      const { graph, shape } = this;
      const seq = graph.op('Shape', [this.positionIds], { start: attr.int(1), end: attr.int(2) });
      const isDecode = graph.op('Cast', [graph.op('Equal', [seq, graph.int64s([1])])], { to: attr.int(INT64) });
      return { seq, decodeRows: graph.op('Mul', [isDecode, graph.int64s([shape.attentionHeads / shape.kvHeads])]) };
    });
    return this.splitRowCounts;
  }

  /** allowed() with its key columns reordered as [new S | past P], once per stage. */
  private newFirstAllowed(): string {
    this.splitAllowed ??= this.graph.inScope('mask', () => {
      const { graph } = this;
      const allowed = this.allowed();
      const { seq } = this.splitRows();
      const total = graph.op('Shape', [this.attentionMask], { start: attr.int(1), end: attr.int(2) });
      const past = graph.op('Sub', [total, seq]);
      const lastAxis = graph.int64s([-1]);
      const newColumns = graph.op('Slice', [allowed, past, total, lastAxis]);
      const pastColumns = graph.op('Slice', [allowed, graph.int64s([0]), past, lastAxis]);
      return graph.op('Concat', [newColumns, pastColumns], { axis: attr.int(-1) });
    });
    return this.splitAllowed;
  }

  /**
   * bool [B, 1, S, P + S], built once per stage (plain and split attention): query i of row b sees key column j when the
   * column holds a real token at a position no later than the query's (and, with a sliding
   * window, fewer than `window` positions earlier). Past column j holds position j; new column
   * P + i holds position_ids[b, i].
   */
  private allowed(): string {
    this.plainAllowed ??= this.graph.inScope('mask', () => {
      const { graph } = this;
      const batch = graph.op('Shape', [this.positionIds], { start: attr.int(0), end: attr.int(1) });
      const seq = graph.op('Shape', [this.positionIds], { start: attr.int(1), end: attr.int(2) });
      const total = graph.op('Shape', [this.attentionMask], { start: attr.int(1), end: attr.int(2) });
      const past = graph.op('Squeeze', [graph.op('Sub', [total, seq]), graph.int64s([0])]);
      const pastPositions = graph.op('Expand', [
        graph.op('Unsqueeze', [graph.op('Range', [graph.int64s([0], []), past, graph.int64s([1], [])]), graph.int64s([0])]),
        graph.op('Concat', [batch, graph.op('Unsqueeze', [past, graph.int64s([0])])], { axis: attr.int(0) }),
      ]);
      const keyPositions = graph.op('Unsqueeze', [graph.op('Concat', [pastPositions, this.positionIds], { axis: attr.int(1) }), graph.int64s([1])]); // [B, 1, T]
      const queryPositions = graph.op('Unsqueeze', [this.positionIds, graph.int64s([2])]); // [B, S, 1]
      let allowed = graph.op('And', [
        graph.op('LessOrEqual', [keyPositions, queryPositions]),
        graph.op('Cast', [graph.op('Unsqueeze', [this.attentionMask, graph.int64s([1])])], { to: attr.int(BOOL) }),
      ]);
      if (this.shape.slidingWindow !== null) {
        const distance = graph.op('Sub', [queryPositions, keyPositions]);
        allowed = graph.op('And', [allowed, graph.op('Less', [distance, graph.int64s([this.shape.slidingWindow], [])])]);
      }
      return graph.op('Unsqueeze', [allowed, graph.int64s([1])]);
    });
    return this.plainAllowed;
  }
}
