import type { Gpt2Config } from '../../shared/model/gpt2-config';
import type { Gpt2LayerWeights, Weight } from '../../shared/model/gpt2-weights';
import type { OnnxGraph } from './onnx-graph';

/** One layer of a stage with its global index. */
export interface StageLayer {
  readonly index: number;
  readonly weights: Gpt2LayerWeights;
}

/** What a block writer (plain or fused) receives: the graph so far and the values every layer shares. */
export interface StageBlocks {
  readonly graph: OnnxGraph;
  readonly config: Gpt2Config;
  readonly layers: readonly StageLayer[];
  /** The residual stream entering the stage, float32 [B, S, E]. */
  readonly hidden: string;
  /** int64 [B, P + S], 1 = real token, 0 = left padding. */
  readonly attentionMask: string;
  /** int64 [B, S]; the blocks read only its shape. */
  readonly positionIds: string;
}

/** Adds a LayerNorm's gamma and beta as initializers named `<prefix>.weight` / `<prefix>.bias`. */
export function layerNormWeights(
  graph: OnnxGraph,
  prefix: string,
  norm: { readonly weight: Weight; readonly bias: Weight },
  width: number,
): [string, string] {
  return [
    graph.addWeight(`${prefix}.weight`, checkShape(norm.weight, [width], `${prefix}.weight`)),
    graph.addWeight(`${prefix}.bias`, checkShape(norm.bias, [width], `${prefix}.bias`)),
  ];
}

export function checkShape(weight: Weight, dims: readonly number[], name: string): Weight {
  if (weight.dims.length !== dims.length || weight.dims.some((size, i) => size !== dims[i])) {
    throw new Error(`weights ${name}: expected dims [${dims.join(', ')}], got [${weight.dims.join(', ')}]`);
  }
  return weight;
}
