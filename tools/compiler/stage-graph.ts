import type { Gpt2Config } from '../../shared/model/gpt2-config';
import { headDim } from '../../shared/model/gpt2-config';
import type { Gpt2Checkpoint, Gpt2LayerWeights } from '../../shared/model/gpt2-weights';
import { addFusedBlocks } from './fused-blocks';
import { attr, OnnxGraph } from './onnx-graph';
import { addPlainBlocks } from './plain-blocks';
import type { StageRange } from './split-plan';
import { checkShape, layerNormWeights, type StageBlocks, type StageLayer } from './stage-blocks';
import { stageDims, stageIoNames } from '../../shared/model/stage-io-names';

/** 'plain' = standard ONNX ops (opset 17), the reference; 'fused' = onnxruntime contrib ops. */
export type OpsVariant = 'plain' | 'fused';

/**
 * Builds the graph of one stage (docs/stage-graph.md): embeddings in the first stage, the
 * stage's transformer blocks, and in the last stage ln_f plus the tied LM head applied to
 * position S - 1 only. Weights are referenced, not copied.
 */
export function buildStageGraph(checkpoint: Gpt2Checkpoint, range: StageRange, ops: OpsVariant, name: string): OnnxGraph {
  const { config, weights } = checkpoint;
  const isFirst = range.layerStart === 0;
  const isLast = range.layerEnd === config.nLayer;
  const { batch, seq, past, total } = stageDims;
  const e = config.nEmbd;
  const h = config.nHead;
  const d = headDim(config);
  const graph = new OnnxGraph(name);

  const layers: StageLayer[] = [];
  for (let index = range.layerStart; index < range.layerEnd; index++) {
    const layer = weights.layers[index];
    if (layer === undefined) throw new Error(`weights.layers[${index}]: missing (config.nLayer is ${config.nLayer})`);
    checkLayerShapes(config, index, layer);
    layers.push({ index, weights: layer });
  }

  const tokens = isFirst
    ? graph.addInput(stageIoNames.inputIds, 'int64', [batch, seq])
    : graph.addInput(stageIoNames.hiddenStates, 'float32', [batch, seq, e]);
  const positionIds = graph.addInput(stageIoNames.positionIds, 'int64', [batch, seq]);
  const attentionMask = graph.addInput(stageIoNames.attentionMask, 'int64', [batch, total]);
  for (const { index } of layers) {
    graph.addInput(stageIoNames.pastKey(index), 'float32', [batch, h, past, d]);
    graph.addInput(stageIoNames.pastValue(index), 'float32', [batch, h, past, d]);
  }

  let wte: string | undefined;
  const tiedEmbedding = (): string => {
    wte ??= graph.addWeight('wte', checkShape(weights.wte, [config.vocabSize, e], 'wte'));
    return wte;
  };

  let hidden = tokens;
  if (isFirst) {
    const wpe = graph.addWeight('wpe', checkShape(weights.wpe, [config.nPositions, e], 'wpe'));
    hidden = graph.inScope('embeddings', () =>
      graph.op('Add', [graph.op('Gather', [tiedEmbedding(), tokens]), graph.op('Gather', [wpe, positionIds])]),
    );
  }

  const blocks: StageBlocks = { graph, config, layers, hidden, attentionMask, positionIds };
  hidden = ops === 'plain' ? addPlainBlocks(blocks) : addFusedBlocks(blocks);

  if (isLast) {
    graph.inScope('lm_head', () => {
      const seqLength = graph.op('Gather', [graph.op('Shape', [positionIds]), graph.int64s([1], [])]);
      const lastPosition = graph.op('Sub', [seqLength, graph.int64s([1], [])]);
      const lastHidden = graph.op('Gather', [hidden, lastPosition], { axis: attr.int(1) });
      const normed = graph.op('LayerNormalization', [lastHidden, ...layerNormWeights(graph, 'ln_f', weights.lnF, e)], {
        axis: attr.int(-1),
        epsilon: attr.float(config.layerNormEpsilon),
      });
      graph.node('Gemm', [normed, tiedEmbedding()], { outputs: [stageIoNames.logits], attributes: { transB: attr.int(1) } });
    });
    graph.addOutput(stageIoNames.logits, 'float32', [batch, config.vocabSize]);
  } else {
    graph.node('Identity', [hidden], { outputs: [stageIoNames.hiddenStatesOut] });
    graph.addOutput(stageIoNames.hiddenStatesOut, 'float32', [batch, seq, e]);
  }
  for (const { index } of layers) {
    graph.addOutput(stageIoNames.presentKey(index), 'float32', [batch, h, total, d]);
    graph.addOutput(stageIoNames.presentValue(index), 'float32', [batch, h, total, d]);
  }
  return graph;
}

/** A swapped Conv1D [in, out] for a Linear [out, in] weight is the classic silent bug: refuse it. */
function checkLayerShapes(config: Gpt2Config, index: number, layer: Gpt2LayerWeights): void {
  const e = config.nEmbd;
  const inner = config.nInner;
  const p = `h.${index}`;
  checkShape(layer.attnQkv.weight, [e, 3 * e], `${p}.attn.c_attn.weight`);
  checkShape(layer.attnQkv.bias, [3 * e], `${p}.attn.c_attn.bias`);
  checkShape(layer.attnProj.weight, [e, e], `${p}.attn.c_proj.weight`);
  checkShape(layer.attnProj.bias, [e], `${p}.attn.c_proj.bias`);
  checkShape(layer.mlpFc.weight, [e, inner], `${p}.mlp.c_fc.weight`);
  checkShape(layer.mlpFc.bias, [inner], `${p}.mlp.c_fc.bias`);
  checkShape(layer.mlpProj.weight, [inner, e], `${p}.mlp.c_proj.weight`);
  checkShape(layer.mlpProj.bias, [e], `${p}.mlp.c_proj.bias`);
  for (const [norm, name] of [
    [layer.ln1, 'ln_1'],
    [layer.ln2, 'ln_2'],
  ] as const) {
    checkShape(norm.weight, [e], `${p}.${name}.weight`);
    checkShape(norm.bias, [e], `${p}.${name}.bias`);
  }
}
