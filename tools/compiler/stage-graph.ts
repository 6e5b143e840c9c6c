import type { AttentionKernel, OpsVariant, WeightFormat } from '../../shared/model/manifest';
import { stageDims, stageIoNames } from '../../shared/model/stage-io-names';
import type { ModelDefinition, TensorMap } from '../families/model-family';
import { attr, OnnxGraph } from './onnx-graph';
import type { StageRange } from './split-plan';
import { StageAttention } from './stage-attention';
import { StageBuilder } from './stage-builder';

/**
 * Builds the graph of one stage (docs/stage-graph.md), whatever the family: the stage's inputs
 * and outputs, the family's embedding (first stage), blocks, and final norm + head applied to
 * each row's last real token (last stage). Weights are referenced, not copied. `kernel` is the
 * attention kernel of fused graphs (plain graphs ignore it).
 */
export function buildStageGraph(
  model: ModelDefinition,
  tensors: TensorMap,
  range: StageRange,
  ops: OpsVariant,
  kernel: AttentionKernel,
  weightFormat: WeightFormat,
  name: string,
): OnnxGraph {
  const { shape } = model;
  const isFirst = range.layerStart === 0;
  const isLast = range.layerEnd === shape.layers;
  const { batch, seq, past, total } = stageDims;
  const graph = new OnnxGraph(name);
  const layers = Array.from({ length: range.layerEnd - range.layerStart }, (_, i) => range.layerStart + i);

  const inputIds = isFirst ? graph.addInput(stageIoNames.inputIds, 'int64', [batch, seq]) : '';
  const hiddenIn = isFirst ? '' : graph.addInput(stageIoNames.hiddenStates, 'float32', [batch, seq, shape.hiddenSize]);
  const positionIds = graph.addInput(stageIoNames.positionIds, 'int64', [batch, seq]);
  const attentionMask = graph.addInput(stageIoNames.attentionMask, 'int64', [batch, total]);
  for (const layer of layers) {
    graph.addInput(stageIoNames.pastKey(layer), 'float32', [batch, shape.kvHeads, past, shape.headDim]);
    graph.addInput(stageIoNames.pastValue(layer), 'float32', [batch, shape.kvHeads, past, shape.headDim]);
  }

  const attention = new StageAttention(graph, ops, kernel, shape, attentionMask, positionIds);
  const stage = new StageBuilder(graph, ops, shape, layers, isFirst, isLast, inputIds, positionIds, attention, weightFormat);
  const embedded = isFirst ? graph.inScope('embeddings', () => model.embed(stage, tensors)) : hiddenIn;
  const hidden = model.blocks(stage, tensors, embedded);

  if (isLast) {
    const logits = graph.inScope('lm_head', () => model.head(stage, tensors, lastTokens(graph, hidden, positionIds, attentionMask, shape.hiddenSize)));
    graph.node('Identity', [logits], { outputs: [stageIoNames.logits] });
    // The greedy pick per row, by the runtime's vectorised kernel: JavaScript need not scan the vocabulary of every row.
    graph.node('ArgMax', [stageIoNames.logits], { outputs: [stageIoNames.argmax], attributes: { axis: attr.int(1), keepdims: attr.int(0), select_last_index: attr.int(0) } });
    logSumExp(graph, stageIoNames.logits, stageIoNames.argmax, stageIoNames.logsumexp);
    graph.addOutput(stageIoNames.logits, 'float32', [batch, shape.vocabSize]);
    graph.addOutput(stageIoNames.logsumexp, 'float32', [batch]);
    graph.addOutput(stageIoNames.argmax, 'int64', [batch]);
  } else {
    graph.node('Identity', [hidden], { outputs: [stageIoNames.hiddenStatesOut] });
    graph.addOutput(stageIoNames.hiddenStatesOut, 'float32', [batch, seq, shape.hiddenSize]);
  }
  for (const layer of layers) {
    graph.addOutput(stageIoNames.presentKey(layer), 'float32', [batch, shape.kvHeads, seq, shape.headDim]);
    graph.addOutput(stageIoNames.presentValue(layer), 'float32', [batch, shape.kvHeads, seq, shape.headDim]);
  }
  return graph;
}

/**
 * log Σ exp(logits) per row [B], so the sampler's greedy path gets log-probabilities without a
 * pass over the vocabulary in JavaScript. Computed as logits[argmax] − log_softmax(logits)[argmax]
 * (the same max + log Σ exp(x − max), to float rounding): onnxruntime's LogSoftmax is vectorised,
 * its ReduceLogSumExp is not, and took 4x as long at 64 rows of GPT-2's vocabulary (18 against
 * 6 ms here, 7 % of a bare decode step).
 */
function logSumExp(graph: OnnxGraph, logits: string, argmax: string, output: string): void {
  graph.inScope('logsumexp', () => {
    const pick = graph.op('Unsqueeze', [argmax, graph.int64s([1])]);
    const top = graph.op('GatherElements', [logits, pick], { axis: attr.int(1) });
    const topLogprob = graph.op('GatherElements', [graph.op('LogSoftmax', [logits], { axis: attr.int(1) }), pick], { axis: attr.int(1) });
    graph.node('Squeeze', [graph.op('Sub', [top, topLogprob]), graph.int64s([1])], { outputs: [output] });
  });
}

/**
 * [B, S, E] → [B, E]: each row's last real new token. New blocks are right-padded, so row b's
 * last token sits at s_b - 1, where s_b counts the mask's ones over the new columns.
 */
function lastTokens(graph: OnnxGraph, hidden: string, positionIds: string, attentionMask: string, width: number): string {
  return graph.inScope('last_token', () => {
    const batch = graph.op('Shape', [positionIds], { start: attr.int(0), end: attr.int(1) });
    const seq = graph.op('Shape', [positionIds], { start: attr.int(1), end: attr.int(2) });
    const total = graph.op('Shape', [attentionMask], { start: attr.int(1), end: attr.int(2) });
    const newColumns = graph.op('Slice', [attentionMask, graph.op('Sub', [total, seq]), total, graph.int64s([1])]);
    const newTokens = graph.op('ReduceSum', [newColumns, graph.int64s([1])], { keepdims: attr.int(0) });
    const rowStarts = graph.op('Mul', [graph.op('Range', [graph.int64s([0], []), graph.op('Squeeze', [batch, graph.int64s([0])]), graph.int64s([1], [])]), seq]);
    const index = graph.op('Sub', [graph.op('Add', [rowStarts, newTokens]), graph.int64s([1])]);
    return graph.op('Gather', [graph.op('Reshape', [hidden, graph.int64s([-1, width])]), index], { axis: attr.int(0) });
  });
}
