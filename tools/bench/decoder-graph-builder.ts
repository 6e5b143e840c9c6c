import { onnx } from 'onnx-proto';
import type { Weight } from '../../shared/model/weight';
import { attr, OnnxGraph } from '../compiler/onnx-graph';

/**
 * The input and output names of an Optimum decoder export ("text-generation-with-past"), which
 * transformers.js feeds by name, plus `num_logits_to_keep`, which transformers.js sets to 1 while
 * generating (and 0, all positions, for a plain forward call) when the graph declares it.
 */
export const OPTIMUM_DECODER_NAMES = {
  inputIds: 'input_ids',
  attentionMask: 'attention_mask',
  positionIds: 'position_ids',
  numLogitsToKeep: 'num_logits_to_keep',
  logits: 'logits',
  pastKey: (layer: number): string => `past_key_values.${layer}.key`,
  pastValue: (layer: number): string => `past_key_values.${layer}.value`,
  presentKey: (layer: number): string => `present.${layer}.key`,
  presentValue: (layer: number): string => `present.${layer}.value`,
} as const;

/**
 * Symbolic dims. transformers.js builds the first step's empty cache from the past inputs'
 * declared shapes: it fills in `batch_size` and makes every other symbolic dim 0, so the batch
 * dim must carry exactly this name.
 */
const DIMS = {
  batch: 'batch_size',
  sequence: 'sequence_length',
  past: 'past_sequence_length',
  total: 'total_sequence_length',
  logits: 'logits_sequence_length',
} as const;

/** Hugging Face masks with the lowest float32 (not -inf), so a row with nothing visible gives no NaN. */
const MASKED_SCORE = -3.4028234663852886e38;
/** Slice end meaning "to the end". */
const TO_THE_END = Number.MAX_SAFE_INTEGER;
const DataType = onnx.TensorProto.DataType;

export interface DecoderShape {
  readonly name: string;
  readonly layers: number;
  readonly heads: number;
  readonly kvHeads: number;
  readonly headDim: number;
  readonly hiddenSize: number;
  readonly vocabSize: number;
}

/** cos and sin of the rotary angles, [batch, seq, 1, head_dim], shared by every layer. */
export interface RotaryTables {
  readonly cos: string;
  readonly sin: string;
}

/**
 * The parts every decoder-only graph shares, written in plain opset-17 ops: the Optimum inputs
 * and outputs, the causal (optionally sliding-window) padding mask, attention with a KV cache and
 * grouped query heads, rotary embeddings, norms, linear layers and the logits head. The model
 * files (GPT-2, Llama) compose blocks from these.
 */
export class DecoderGraphBuilder {
  readonly graph: OnnxGraph;
  readonly inputIds: string;
  readonly positionIds: string;
  private readonly attentionMask: string;
  private readonly numLogitsToKeep: string;
  /** The visibility mask per sliding window (null: none), built once and shared by the layers. */
  private readonly visibility = new Map<number | null, string>();

  constructor(readonly shape: DecoderShape) {
    if (shape.heads % shape.kvHeads !== 0) throw new Error(`${shape.name}: ${shape.heads} heads do not split into ${shape.kvHeads} KV groups`);
    const names = OPTIMUM_DECODER_NAMES;
    this.graph = new OnnxGraph(shape.name);
    this.inputIds = this.graph.addInput(names.inputIds, 'int64', [DIMS.batch, DIMS.sequence]);
    this.attentionMask = this.graph.addInput(names.attentionMask, 'int64', [DIMS.batch, DIMS.total]);
    this.positionIds = this.graph.addInput(names.positionIds, 'int64', [DIMS.batch, DIMS.sequence]);
    for (let layer = 0; layer < shape.layers; layer++) {
      this.graph.addInput(names.pastKey(layer), 'float32', [DIMS.batch, shape.kvHeads, DIMS.past, shape.headDim]);
      this.graph.addInput(names.pastValue(layer), 'float32', [DIMS.batch, shape.kvHeads, DIMS.past, shape.headDim]);
    }
    this.numLogitsToKeep = this.graph.addInput(names.numLogitsToKeep, 'int64', []);
  }

  /** A float32 weight as an initializer (kept by reference). */
  weight(name: string, weight: Weight): string {
    return this.graph.addWeight(name, weight);
  }

  /** Rows of `table` [rows, width] picked by the int64 ids. */
  gather(table: string, ids: string): string {
    return this.graph.op('Gather', [table, ids], { axis: attr.int(0) });
  }

  /** x · weight + bias, with the weight stored [in, out]. */
  linear(name: string, x: string, weightInOut: Weight, bias: Weight | null): string {
    const product = this.graph.op('MatMul', [x, this.weight(`${name}.weight`, weightInOut)]);
    return bias === null ? product : this.graph.op('Add', [product, this.weight(`${name}.bias`, bias)]);
  }

  layerNorm(name: string, x: string, weight: Weight, bias: Weight, epsilon: number): string {
    return this.graph.op('LayerNormalization', [x, this.weight(`${name}.weight`, weight), this.weight(`${name}.bias`, bias)], {
      axis: attr.int(-1),
      epsilon: attr.float(epsilon),
    });
  }

  /** x / sqrt(mean(x²) + ε) · weight (RMSNormalization only arrives in opset 23). */
  rmsNorm(name: string, x: string, weight: Weight, epsilon: number): string {
    const g = this.graph;
    const meanSquare = g.op('ReduceMean', [g.op('Mul', [x, x])], { axes: attr.ints([-1]), keepdims: attr.int(1) });
    const inverseRms = g.op('Reciprocal', [g.op('Sqrt', [g.op('Add', [meanSquare, g.scalar(epsilon)])])]);
    return g.op('Mul', [g.op('Mul', [x, inverseRms]), this.weight(`${name}.weight`, weight)]);
  }

  add(a: string, b: string): string {
    return this.graph.op('Add', [a, b]);
  }

  mul(a: string, b: string): string {
    return this.graph.op('Mul', [a, b]);
  }

  /** Splits the last axis of a [batch, seq, n] value into pieces of the given widths. */
  splitLast(x: string, widths: readonly number[]): string[] {
    return this.graph.node('Split', [x, this.graph.int64s(widths)], { outputs: widths.length, attributes: { axis: attr.int(-1) } });
  }

  /** cos and sin of position_ids × inverse frequencies, the angles repeated for both halves of a head (Hugging Face's layout). */
  rotaryTables(inverseFrequencies: Float32Array): RotaryTables {
    const g = this.graph;
    if (inverseFrequencies.length * 2 !== this.shape.headDim) {
      throw new Error(`${this.shape.name}: ${inverseFrequencies.length} rotary frequencies for head_dim ${this.shape.headDim}`);
    }
    return g.inScope('rotary', () => {
      const frequencies = g.addInitializer('rotary.inv_freq', 'float32', [inverseFrequencies.length], inverseFrequencies);
      const positions = g.op('Unsqueeze', [g.op('Cast', [this.positionIds], { to: attr.int(DataType.FLOAT) }), g.int64s([2])]);
      const angles = g.op('Mul', [positions, frequencies]);
      const both = g.op('Concat', [angles, angles], { axis: attr.int(-1) });
      const perHead = (op: 'Cos' | 'Sin'): string => g.op('Unsqueeze', [g.op(op, [both]), g.int64s([2])]);
      return { cos: perHead('Cos'), sin: perHead('Sin') };
    });
  }

  /**
   * Self-attention of one layer. q is [batch, seq, heads·head_dim], k and v are
   * [batch, seq, kv_heads·head_dim]; rotary embeddings (when given) turn q and k before k joins
   * the cache, as Hugging Face caches rotated keys. Query head h reads KV head h / (heads/kv_heads)
   * (Hugging Face's repeat_kv), done by broadcasting a [batch, kv_heads, group, seq, head_dim]
   * query against [batch, kv_heads, 1, total, head_dim] keys instead of copying the cache.
   * Declares present.{layer}.key/value and returns [batch, seq, heads·head_dim].
   */
  attention(layer: number, q: string, k: string, v: string, options: { rotary: RotaryTables | null; slidingWindow: number | null }): string {
    const g = this.graph;
    const { heads, kvHeads, headDim } = this.shape;
    const group = heads / kvHeads;
    const names = OPTIMUM_DECODER_NAMES;
    const visible = this.visible(options.slidingWindow);
    return g.inScope(`layers.${layer}.attention`, () => {
      let queries = this.reshape(q, [0, 0, heads, headDim]);
      let keys = this.reshape(k, [0, 0, kvHeads, headDim]);
      const values = this.reshape(v, [0, 0, kvHeads, headDim]);
      if (options.rotary !== null) {
        queries = this.rotate(queries, options.rotary);
        keys = this.rotate(keys, options.rotary);
      }
      const grouped = g.op('Transpose', [this.reshape(queries, [0, 0, kvHeads, group, headDim])], { perm: attr.ints([0, 2, 3, 1, 4]) });
      const cached = (past: string, present: string, value: string): string => {
        const [out] = g.node('Concat', [past, g.op('Transpose', [value], { perm: attr.ints([0, 2, 1, 3]) })], {
          outputs: [present],
          attributes: { axis: attr.int(2) },
        });
        g.addOutput(out, 'float32', [DIMS.batch, kvHeads, DIMS.total, headDim]);
        return out;
      };
      const presentKey = cached(names.pastKey(layer), names.presentKey(layer), keys);
      const presentValue = cached(names.pastValue(layer), names.presentValue(layer), values);
      const keysT = g.op('Unsqueeze', [g.op('Transpose', [presentKey], { perm: attr.ints([0, 1, 3, 2]) }), g.int64s([2])]);
      const scores = g.op('Mul', [g.op('MatMul', [grouped, keysT]), g.scalar(1 / Math.sqrt(headDim))]);
      const masked = g.op('Where', [visible, scores, g.scalar(MASKED_SCORE)]);
      const probabilities = g.op('Softmax', [masked], { axis: attr.int(-1) });
      const context = g.op('MatMul', [probabilities, g.op('Unsqueeze', [presentValue, g.int64s([2])])]);
      return this.reshape(g.op('Transpose', [context], { perm: attr.ints([0, 3, 1, 2, 4]) }), [0, 0, heads * headDim]);
    });
  }

  /**
   * Declares `logits` [batch, kept, vocab] from the final hidden states: the last
   * num_logits_to_keep positions, or all of them when it is 0. The head is `table` [vocab, hidden]
   * read through Gemm's transB, so a head tied to the token embedding is stored once.
   */
  logits(hidden: string, table: string): void {
    const g = this.graph;
    g.inScope('lm_head', () => {
      const start = g.op('Neg', [this.reshape(this.numLogitsToKeep, [1])]);
      const kept = g.op('Slice', [hidden, start, g.int64s([TO_THE_END]), g.int64s([1])]);
      const rows = this.reshape(kept, [-1, this.shape.hiddenSize]);
      const flat = g.op('Gemm', [rows, table], { transB: attr.int(1) });
      const shape = g.op('Concat', [g.op('Shape', [kept], { start: attr.int(0), end: attr.int(2) }), g.int64s([this.shape.vocabSize])], {
        axis: attr.int(0),
      });
      g.node('Reshape', [flat, shape], { outputs: [OPTIMUM_DECODER_NAMES.logits] });
    });
    g.addOutput(OPTIMUM_DECODER_NAMES.logits, 'float32', [DIMS.batch, DIMS.logits, this.shape.vocabSize]);
  }

  private reshape(x: string, dims: readonly number[]): string {
    return this.graph.op('Reshape', [x, this.graph.int64s(dims)]);
  }

  /** x·cos + rotate_half(x)·sin on [batch, seq, heads, head_dim], rotate_half(x) = [-x₂, x₁]. */
  private rotate(x: string, tables: RotaryTables): string {
    const g = this.graph;
    const half = this.shape.headDim / 2;
    const [first, second] = g.node('Split', [x, g.int64s([half, half])], { outputs: 2, attributes: { axis: attr.int(3) } });
    const rotated = g.op('Concat', [g.op('Neg', [second]), first], { axis: attr.int(3) });
    return g.op('Add', [g.op('Mul', [x, tables.cos]), g.op('Mul', [rotated, tables.sin])]);
  }

  /**
   * Which keys each query may read, [batch, 1, 1, seq, total] (bool): key j is visible to the query
   * at cache index i = past + t when j ≤ i, the mask keeps j, and (with a window W) i − j < W, as
   * Hugging Face's sliding-window mask counts. Indices are cache positions, not position_ids:
   * with left padding the two differ by a constant per row, so distances agree.
   */
  private visible(slidingWindow: number | null): string {
    const cached = this.visibility.get(slidingWindow);
    if (cached !== undefined) return cached;
    const g = this.graph;
    const mask = g.inScope('mask', () => {
      const total = g.op('Shape', [this.attentionMask], { start: attr.int(1), end: attr.int(2) });
      const sequence = g.op('Shape', [this.inputIds], { start: attr.int(1), end: attr.int(2) });
      const scalar = (x: string): string => g.op('Squeeze', [x, g.int64s([0])]);
      const step = g.int64s([1], []);
      const keyIndex = g.op('Unsqueeze', [g.op('Range', [g.int64s([0], []), scalar(total), step]), g.int64s([0])]);
      const queryIndex = g.op('Unsqueeze', [g.op('Range', [scalar(g.op('Sub', [total, sequence])), scalar(total), step]), g.int64s([1])]);
      let causal = g.op('LessOrEqual', [keyIndex, queryIndex]);
      if (slidingWindow !== null) {
        const inWindow = g.op('Less', [g.op('Sub', [queryIndex, keyIndex]), g.int64s([slidingWindow], [])]);
        causal = g.op('And', [causal, inWindow]);
      }
      const kept = g.op('Unsqueeze', [g.op('Cast', [this.attentionMask], { to: attr.int(DataType.BOOL) }), g.int64s([1, 2, 3])]);
      return g.op('And', [causal, kept]);
    });
    this.visibility.set(slidingWindow, mask);
    return mask;
  }
}
