import { headDim } from '../../shared/model/gpt2-config';
import { attr, type OnnxGraph } from './onnx-graph';
import { layerNormWeights, type StageBlocks } from './stage-blocks';
import { stageIoNames } from '../../shared/model/stage-io-names';

/**
 * What a masked attention score is replaced with. Finite on purpose: a fully masked row (a
 * padding query with no real key before it) then softmaxes to a uniform row instead of NaN.
 */
const MASKED_SCORE = -1e9;

/**
 * Writes the stage's transformer blocks with standard ONNX ops only (opset 17) and returns the
 * residual stream after the last one. This is the reference the fused graphs are tested against.
 */
export function addPlainBlocks(blocks: StageBlocks): string {
  const { graph, config, layers } = blocks;
  const e = config.nEmbd;
  const h = config.nHead;
  const d = headDim(config);
  const allowed = graph.inScope('mask', () => buildAttentionMask(graph, blocks.attentionMask, blocks.positionIds));
  const headsShape = graph.int64s([0, 0, h, d]);
  const mergedShape = graph.int64s([0, 0, e]);
  const scale = graph.scalar(1 / Math.sqrt(d));
  const maskedScore = graph.scalar(MASKED_SCORE);
  const layerNorm = { axis: attr.int(-1), epsilon: attr.float(config.layerNormEpsilon) };

  let x = blocks.hidden;
  for (const { index, weights: w } of layers) {
    const p = `h.${index}`;
    x = graph.inScope(p, () => {
      const linear = (input: string, name: string, weights: typeof w.attnQkv): string =>
        graph.op('Add', [
          graph.op('MatMul', [input, graph.addWeight(`${p}.${name}.weight`, weights.weight)]),
          graph.addWeight(`${p}.${name}.bias`, weights.bias),
        ]);
      const toHeads = (t: string): string =>
        graph.op('Transpose', [graph.op('Reshape', [t, headsShape])], { perm: attr.ints([0, 2, 1, 3]) });

      const h1 = graph.op('LayerNormalization', [x, ...layerNormWeights(graph, `${p}.ln_1`, w.ln1, e)], layerNorm);
      const [q, k, v] = graph.node('Split', [linear(h1, 'attn.c_attn', w.attnQkv)], {
        outputs: 3,
        attributes: { axis: attr.int(2) },
      });
      const [presentKey] = graph.node('Concat', [stageIoNames.pastKey(index), toHeads(k)], {
        outputs: [stageIoNames.presentKey(index)],
        attributes: { axis: attr.int(2) },
      });
      const [presentValue] = graph.node('Concat', [stageIoNames.pastValue(index), toHeads(v)], {
        outputs: [stageIoNames.presentValue(index)],
        attributes: { axis: attr.int(2) },
      });
      const keysT = graph.op('Transpose', [presentKey], { perm: attr.ints([0, 1, 3, 2]) });
      const scores = graph.op('Mul', [graph.op('MatMul', [toHeads(q), keysT]), scale]);
      const probs = graph.op('Softmax', [graph.op('Where', [allowed, scores, maskedScore])], { axis: attr.int(-1) });
      const context = graph.op('Transpose', [graph.op('MatMul', [probs, presentValue])], { perm: attr.ints([0, 2, 1, 3]) });
      const attention = linear(graph.op('Reshape', [context, mergedShape]), 'attn.c_proj', w.attnProj);
      const x1 = graph.op('Add', [x, attention]);

      const h2 = graph.op('LayerNormalization', [x1, ...layerNormWeights(graph, `${p}.ln_2`, w.ln2, e)], layerNorm);
      const activated = gelu(graph, linear(h2, 'mlp.c_fc', w.mlpFc), config.activation);
      return graph.op('Add', [x1, linear(activated, 'mlp.c_proj', w.mlpProj)]);
    });
  }
  return x;
}

/**
 * bool [B, 1, S, P + S]: query i (mask column P + i) may see key j iff j <= P + i and
 * attention_mask[j] = 1. Built once per stage and shared by its layers.
 */
function buildAttentionMask(graph: OnnxGraph, attentionMask: string, positionIds: string): string {
  const axis1 = graph.int64s([1], []);
  const zero = graph.int64s([0], []);
  const one = graph.int64s([1], []);
  const total = graph.op('Gather', [graph.op('Shape', [attentionMask]), axis1]);
  const seq = graph.op('Gather', [graph.op('Shape', [positionIds]), axis1]);
  const past = graph.op('Sub', [total, seq]);
  const keyIndex = graph.op('Range', [zero, total, one]);
  const lastVisibleKey = graph.op('Unsqueeze', [graph.op('Add', [graph.op('Range', [zero, seq, one]), past]), graph.int64s([1])]);
  const causal = graph.op('LessOrEqual', [keyIndex, lastVisibleKey]);
  const realKey = graph.op('Unsqueeze', [graph.op('Cast', [attentionMask], { to: attr.int(BOOL) }), graph.int64s([1, 2])]);
  return graph.op('And', [causal, realKey]);
}

/** TensorProto.DataType.BOOL, for Cast's `to`. */
const BOOL = 9;

/** 'gelu_new' is the tanh approximation GPT-2 was trained with; 'gelu' is the exact erf form. */
function gelu(graph: OnnxGraph, x: string, activation: 'gelu_new' | 'gelu'): string {
  const half = graph.op('Mul', [x, graph.scalar(0.5)]);
  const one = graph.scalar(1);
  if (activation === 'gelu') {
    return graph.op('Mul', [half, graph.op('Add', [graph.op('Erf', [graph.op('Mul', [x, graph.scalar(Math.SQRT1_2)])]), one])]);
  }
  const cube = graph.op('Mul', [graph.op('Mul', [x, x]), x]);
  const inner = graph.op('Mul', [
    graph.op('Add', [x, graph.op('Mul', [cube, graph.scalar(0.044715)])]),
    graph.scalar(Math.sqrt(2 / Math.PI)),
  ]);
  return graph.op('Mul', [half, graph.op('Add', [graph.op('Tanh', [inner]), one])]);
}
