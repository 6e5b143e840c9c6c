import { attr, MICROSOFT_DOMAIN } from './onnx-graph';
import { layerNormWeights, type StageBlocks } from './stage-blocks';
import { stageIoNames } from '../../shared/model/stage-io-names';

/**
 * Added by MultiHeadAttention to the score of a masked key (padding or future). Large enough
 * that exp() of it is exactly 0 next to any real score, finite so no row can become NaN.
 */
const MASK_FILTER_VALUE = -1e9;

/** TensorProto.DataType.INT32, for Cast's `to`: MultiHeadAttention takes an int32 key_padding_mask. */
const INT32 = 6;

/**
 * Writes the stage's transformer blocks with onnxruntime contrib ops and returns the residual
 * stream after the last one:
 *   MultiHeadAttention (past in, present out, causal, key padding mask, q/k/v bias inside);
 *   SkipLayerNormalization, which adds the projection bias and the residual, normalises for the
 *     next sub-block, and gives back the un-normalised sum (output 3) as the new residual;
 *   FastGelu (tanh approximation, 'gelu_new') or BiasGelu (erf form, 'gelu') with the fc bias.
 * Each block's closing SkipLayerNormalization already applies the next block's ln_1.
 */
export function addFusedBlocks(blocks: StageBlocks): string {
  const { graph, config, layers } = blocks;
  const e = config.nEmbd;
  const epsilon = attr.float(config.layerNormEpsilon);
  const keyPaddingMask = graph.inScope('mask', () => graph.op('Cast', [blocks.attentionMask], { to: attr.int(INT32) }));

  // SkipLayerNormalization's outputs are (normalised, mean, inv_std_var, input + skip + bias);
  // the statistics are only for training, so they are left unnamed.
  const skipLayerNormOutputs = (): string[] => [graph.freshName('normed'), '', '', graph.freshName('residual')];

  let x = blocks.hidden;
  let normed: string | undefined;
  layers.forEach(({ index, weights: w }, position) => {
    const p = `h.${index}`;
    const next = layers[position + 1];
    [x, normed] = graph.inScope(p, (): [string, string | undefined] => {
      const weight = (name: string, value: typeof w.attnQkv.weight): string => graph.addWeight(`${p}.${name}`, value);
      const h1 =
        normed ??
        graph.op('LayerNormalization', [x, ...layerNormWeights(graph, `${p}.ln_1`, w.ln1, e)], { axis: attr.int(-1), epsilon });

      const [q, k, v] = graph.node('Split', [graph.op('MatMul', [h1, weight('attn.c_attn.weight', w.attnQkv.weight)])], {
        outputs: 3,
        attributes: { axis: attr.int(2) },
      });
      const [attention] = graph.node(
        'MultiHeadAttention',
        [
          q,
          k,
          v,
          weight('attn.c_attn.bias', w.attnQkv.bias),
          keyPaddingMask,
          '',
          stageIoNames.pastKey(index),
          stageIoNames.pastValue(index),
        ],
        {
          domain: MICROSOFT_DOMAIN,
          outputs: [graph.freshName('attention'), stageIoNames.presentKey(index), stageIoNames.presentValue(index)],
          attributes: {
            num_heads: attr.int(config.nHead),
            unidirectional: attr.int(1),
            mask_filter_value: attr.float(MASK_FILTER_VALUE),
          },
        },
      );
      const [h2, , , x1] = graph.node(
        'SkipLayerNormalization',
        [
          graph.op('MatMul', [attention, weight('attn.c_proj.weight', w.attnProj.weight)]),
          x,
          ...layerNormWeights(graph, `${p}.ln_2`, w.ln2, e),
          weight('attn.c_proj.bias', w.attnProj.bias),
        ],
        { domain: MICROSOFT_DOMAIN, outputs: skipLayerNormOutputs(), attributes: { epsilon } },
      );

      const fc = graph.op('MatMul', [h2, weight('mlp.c_fc.weight', w.mlpFc.weight)]);
      const activation = config.activation === 'gelu_new' ? 'FastGelu' : 'BiasGelu';
      const activated = graph.op(activation, [fc, weight('mlp.c_fc.bias', w.mlpFc.bias)], {}, MICROSOFT_DOMAIN);
      const mlp = graph.op('MatMul', [activated, weight('mlp.c_proj.weight', w.mlpProj.weight)]);
      const mlpBias = weight('mlp.c_proj.bias', w.mlpProj.bias);
      if (next === undefined) return [graph.op('Add', [graph.op('Add', [mlp, mlpBias]), x1]), undefined];
      const [nextNormed, , , x2] = graph.node(
        'SkipLayerNormalization',
        [mlp, x1, ...layerNormWeights(graph, `h.${next.index}.ln_1`, next.weights.ln1, e), mlpBias],
        { domain: MICROSOFT_DOMAIN, outputs: skipLayerNormOutputs(), attributes: { epsilon } },
      );
      return [x2, nextNormed];
    });
  });
  return x;
}
