import type { OpsVariant, WeightFormat } from '../../shared/model/manifest';
import type { ModelShape } from '../../shared/model/model-shape';
import type { Weight } from '../../shared/model/weight';
import { attr, type OnnxGraph } from './onnx-graph';
import type { StageAttention } from './stage-attention';

/**
 * How a checkpoint stores a linear layer's weight: Hugging Face GPT-2's Conv1D keeps [in, out],
 * nn.Linear (Llama, Mistral, Qwen2) keeps [out, in].
 */
export type WeightLayout = 'in-out' | 'out-in';

/**
 * What a model family's block writer gets for one stage: the graph, the stage's layers, the
 * shared attention, and the one place that turns a weight into graph ops. Families call
 * `matmul`, `embeddingLookup` and `headMatmul` for every weight they multiply or look up, so the
 * weight format of the stage (fp32 today, block-quantized later) is decided here and nowhere
 * in the families.
 */
export class StageBuilder {
  private readonly weightNames = new Map<string, string>();

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
  matmul(x: string, name: string, weight: Weight, layout: WeightLayout): string {
    const inOut = layout === 'in-out' ? weight : transpose2d(weight);
    return this.graph.op('MatMul', [x, this.weight(layout === 'in-out' ? name : `${name}.T`, inOut)]);
  }

  /** Rows of an embedding table [rows, width] for integer ids of any shape. */
  embeddingLookup(ids: string, name: string, table: Weight): string {
    return this.graph.op('Gather', [this.weight(name, table), ids]);
  }

  /** x [B, in] times an [out, in] head weight (a tied embedding table, or an untied lm_head) → [B, out]. */
  headMatmul(x: string, name: string, weight: Weight): string {
    return this.graph.op('Gemm', [x, this.weight(name, weight)], { transB: attr.int(1) });
  }
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
