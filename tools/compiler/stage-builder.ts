import type { OpsVariant, WeightFormat } from '../../shared/model/manifest';
import type { ModelShape } from '../../shared/model/model-shape';
import type { Weight } from '../../shared/model/weight';
import { blobBytes, quantizeBlockwise, type BlockQuantized } from './block-quantize';
import { attr, MICROSOFT_DOMAIN, type OnnxGraph } from './onnx-graph';
import type { StageAttention } from './stage-attention';
import { linearKindOf, quantSchemeFor, type LinearKind, type QuantScheme } from './weight-quantization';

/**
 * How a checkpoint stores a linear layer's weight: Hugging Face GPT-2's Conv1D keeps [in, out],
 * nn.Linear (Llama, Mistral, Qwen2) keeps [out, in].
 */
export type WeightLayout = 'in-out' | 'out-in';

export interface MatmulOptions {
  /** What the weight is for, as `--keep-fp32` names it; by default read from its name (`linearKindOf`). */
  readonly kind?: LinearKind;
}

/**
 * A block-quantized weight's initializers in the graph. Zero points are added when an op first
 * needs them, in that op's layout (a table only looked up never carries MatMulNBits' packing).
 */
interface QuantizedWeight {
  readonly quantized: BlockQuantized;
  readonly scheme: QuantScheme;
  /** [rows, blocks, blob] uint8: MatMulNBits' B and GatherBlockQuantized's data alike. */
  readonly data: string;
  /** [rows, blocks] float32. */
  readonly scales: string;
  /** MatMulNBits' [rows, ⌈blocks·bits/8⌉] uint8, once added. */
  packedZeroPoints?: string;
  /** GatherBlockQuantized's [rows, blocks, 1] uint8, once added. */
  perBlockZeroPoints?: string;
}

/**
 * What a model family's block writer gets for one stage: the graph, the stage's layers, the
 * shared attention, and the one place that turns a weight into graph ops. Families call
 * `matmul`, `embeddingLookup` and `headMatmul` for every weight they multiply or look up, so the
 * weight format of the stage is decided here and nowhere in the families: fp32 initializers with
 * MatMul / Gather / Gemm, or (int8, int4) block-quantized ones with onnxruntime's com.microsoft
 * MatMulNBits and GatherBlockQuantized, whatever the ops variant. Each weight is quantized once
 * per stage, by name, so a tied table serves the lookup and the head from the same bytes; the same
 * weight quantizes to the same bytes in every stage and split.
 */
export class StageBuilder {
  private readonly weightNames = new Map<string, string>();
  private readonly quantizedWeights = new Map<string, QuantizedWeight>();

  constructor(
    readonly graph: OnnxGraph,
    readonly ops: OpsVariant,
    readonly shape: ModelShape,
    /** Global indices of the stage's layers, in order. */
    readonly layers: readonly number[],
    readonly isFirst: boolean,
    readonly isLast: boolean,
    /** `input_ids` on the first stage, '' elsewhere. */
    readonly inputIds: string,
    readonly positionIds: string,
    readonly attention: StageAttention,
    readonly weightFormat: WeightFormat,
  ) {}

  /** A float32 weight as an initializer, added once per name (a tied table shared by lookup and head stays one tensor). */
  weight(name: string, weight: Weight): string {
    const existing = this.weightNames.get(name);
    if (existing !== undefined) return existing;
    const added = this.graph.addWeight(name, weight);
    this.weightNames.set(name, added);
    return added;
  }

  /** x [..., in] times a linear weight → [..., out]. */
  matmul(x: string, name: string, weight: Weight, layout: WeightLayout, options: MatmulOptions = {}): string {
    const scheme = quantSchemeFor(this.weightFormat, options.kind ?? linearKindOf(name));
    if (scheme !== undefined) {
      return this.matMulNBits(x, this.quantized(name, scheme, () => (layout === 'out-in' ? weight : transpose2d(weight))));
    }
    const inOut = layout === 'in-out' ? weight : transpose2d(weight);
    return this.graph.op('MatMul', [x, this.weight(layout === 'in-out' ? name : `${name}.T`, inOut)]);
  }

  /** Rows of an embedding table [rows, width] for integer ids of any shape. */
  embeddingLookup(ids: string, name: string, table: Weight): string {
    const scheme = quantSchemeFor(this.weightFormat, 'embedding');
    if (scheme === undefined) return this.graph.op('Gather', [this.weight(name, table), ids]);
    return this.gatherBlockQuantized(ids, this.quantized(name, scheme, () => table));
  }

  /** x [B, in] times an [out, in] head weight (a tied embedding table, or an untied lm_head) → [B, out]. */
  headMatmul(x: string, name: string, weight: Weight): string {
    const scheme = quantSchemeFor(this.weightFormat, 'lm_head');
    if (scheme === undefined) return this.graph.op('Gemm', [x, this.weight(name, weight)], { transB: attr.int(1) });
    return this.matMulNBits(x, this.quantized(name, scheme, () => weight));
  }

  /** `rows()` [rows, columns] quantized once per name and scheme; later calls reuse the initializers. */
  private quantized(name: string, scheme: QuantScheme, rows: () => Weight): QuantizedWeight {
    const key = `${name}.q${scheme.bits}`;
    const existing = this.quantizedWeights.get(key);
    if (existing !== undefined) return existing;
    const quantized = quantizeBlockwise(rows(), scheme);
    const { graph } = this;
    const added: QuantizedWeight = {
      quantized,
      scheme,
      data: graph.addInitializer(key, 'uint8', [quantized.rows, quantized.blocks, blobBytes(scheme.bits, scheme.blockSize)], quantized.data),
      scales: graph.addInitializer(`${key}.scales`, 'float32', [quantized.rows, quantized.blocks], quantized.scales),
    };
    this.quantizedWeights.set(key, added);
    return added;
  }

  /** x [..., K] times the quantized [N, K] weight → [..., N]. */
  private matMulNBits(x: string, weight: QuantizedWeight): string {
    const { quantized, scheme } = weight;
    const inputs = [x, weight.data, weight.scales];
    if (quantized.zeroPoints !== undefined) {
      weight.packedZeroPoints ??= this.graph.addInitializer(`${weight.data}.zero_points`, 'uint8', [quantized.rows, quantized.zeroPoints.length / quantized.rows], quantized.zeroPoints);
      inputs.push(weight.packedZeroPoints);
    }
    return this.graph.op(
      'MatMulNBits',
      inputs,
      {
        K: attr.int(quantized.columns),
        N: attr.int(quantized.rows),
        bits: attr.int(scheme.bits),
        block_size: attr.int(scheme.blockSize),
        accuracy_level: attr.int(scheme.accuracyLevel),
      },
      MICROSOFT_DOMAIN,
    );
  }

  /**
   * Rows of a quantized table. GatherBlockQuantized (uint8 data) quantizes along the last axis
   * and wants scales and zero points of the data's rank, so it reads the same [rows, blocks, blob]
   * bytes as MatMulNBits with each block as one quantization group: scales [rows, blocks, 1] (an
   * Unsqueeze of MatMulNBits' scales) and one zero point per byte. Its [..., blocks, blockSize]
   * output is reshaped to [..., width].
   */
  private gatherBlockQuantized(ids: string, weight: QuantizedWeight): string {
    const { graph } = this;
    const { quantized, scheme } = weight;
    const inputs = [weight.data, ids, graph.op('Unsqueeze', [weight.scales, graph.int64s([2])])];
    if (quantized.zeroPoints !== undefined) {
      weight.perBlockZeroPoints ??= graph.addInitializer(`${weight.data}.zero_points_per_block`, 'uint8', [quantized.rows, quantized.blocks, 1], zeroPointPerBlock(quantized));
      inputs.push(weight.perBlockZeroPoints);
    }
    const blocks = graph.op('GatherBlockQuantized', inputs, {
      gather_axis: attr.int(0),
      quantize_axis: attr.int(2),
      block_size: attr.int(scheme.blockSize),
      bits: attr.int(scheme.bits),
    }, MICROSOFT_DOMAIN);
    const padded = quantized.blocks * scheme.blockSize;
    const rows = graph.op('Reshape', [blocks, graph.op('Concat', [graph.op('Shape', [ids]), graph.int64s([padded])], { axis: attr.int(0) })]);
    if (padded === quantized.columns) return rows;
    return graph.op('Slice', [rows, graph.int64s([0]), graph.int64s([quantized.columns]), graph.int64s([-1])]);
  }
}

/** The packed zero points of a table, one block's per byte (its low bits). */
function zeroPointPerBlock(quantized: BlockQuantized): Uint8Array {
  const { bits, rows, blocks, zeroPoints } = quantized;
  if (zeroPoints === undefined) throw new Error('zeroPointPerBlock: the table has no zero points');
  const rowBytes = zeroPoints.length / rows;
  const out = new Uint8Array(rows * blocks);
  for (let r = 0; r < rows; r++) {
    for (let b = 0; b < blocks; b++) {
      out[r * blocks + b] = bits === 8 ? zeroPoints[r * rowBytes + b] : (zeroPoints[r * rowBytes + (b >> 1)] >> ((b & 1) * 4)) & 0x0f;
    }
  }
  return out;
}

/** [rows, columns] → [columns, rows], a new array. */
export function transpose2d(weight: Weight): Weight {
  const [rows, columns] = weight.dims;
  const out = new Float32Array(rows * columns);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < columns; c++) out[c * rows + r] = weight.data[r * columns + c];
  }
  return { dims: [columns, rows], data: out };
}
