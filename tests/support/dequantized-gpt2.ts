import type { WeightFormat } from '../../shared/model/manifest';
import type { Weight } from '../../shared/model/weight';
import { dequantizeBlockwise, quantizeBlockwise } from '../../tools/compiler/block-quantize';
import { transpose2d } from '../../tools/compiler/stage-builder';
import { quantSchemeFor, type WeightKind } from '../../tools/compiler/weight-quantization';
import type { Gpt2Checkpoint, LinearWeights } from '../../tools/families/gpt2/gpt2-weights';

/**
 * The checkpoint a quantized compile stands for: every weight the format quantizes replaced by
 * its dequantized values (linear weights quantized along their inputs, tables along their
 * rows), everything else untouched. The naive forward pass over it is the reference for a
 * quantized graph; the only difference left is how onnxruntime multiplies (accuracy level 4
 * quantizes the activations too).
 */
export function dequantizedGpt2(checkpoint: Gpt2Checkpoint, format: WeightFormat): Gpt2Checkpoint {
  const rows = (weight: Weight, kind: WeightKind): Weight => {
    const scheme = quantSchemeFor(format, kind);
    return scheme === undefined ? weight : dequantizeBlockwise(quantizeBlockwise(weight, scheme));
  };
  // Conv1D weights are [in, out]: MatMulNBits quantizes each output's inputs.
  const linear = (l: LinearWeights, kind: WeightKind): LinearWeights => ({ weight: transpose2d(rows(transpose2d(l.weight), kind)), bias: l.bias });
  const { weights } = checkpoint;
  // The naive forward pass reads one wte for the lookup and the tied head.
  if ((quantSchemeFor(format, 'embedding') === undefined) !== (quantSchemeFor(format, 'lm_head') === undefined)) {
    throw new Error('dequantizedGpt2: the tied wte must be quantized for both uses or for neither');
  }
  return {
    config: checkpoint.config,
    weights: {
      wte: rows(weights.wte, 'embedding'),
      wpe: rows(weights.wpe, 'embedding'),
      layers: weights.layers.map((layer) => ({
        ln1: layer.ln1,
        attnQkv: linear(layer.attnQkv, 'attention'),
        attnProj: linear(layer.attnProj, 'attention'),
        ln2: layer.ln2,
        mlpFc: linear(layer.mlpFc, 'mlp'),
        mlpProj: linear(layer.mlpProj, 'mlp'),
      })),
      lnF: weights.lnF,
    },
  };
}
