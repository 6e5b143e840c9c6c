import { WEIGHT_FORMATS, type WeightFormat } from '../../shared/model/manifest';
import { BLOCK_SIZES, isValidBlockSize, type QuantBits } from './block-quantize';

/**
 * What a weight is used for, as `--keep-fp32` names it: the token (and position) embedding
 * tables, the LM head, the attention projections and the MLP projections.
 */
export const WEIGHT_KINDS = ['embedding', 'lm_head', 'attention', 'mlp'] as const;
export type WeightKind = (typeof WEIGHT_KINDS)[number];
export type LinearKind = Extract<WeightKind, 'attention' | 'mlp'>;

export const DEFAULT_BLOCK_SIZE = 32;

/** How one quantized weight is stored and multiplied. */
export interface QuantScheme {
  readonly bits: QuantBits;
  readonly blockSize: number;
  readonly zeroPoints: boolean;
  /**
   * MatMulNBits' accuracy_level: 4 lets onnxruntime quantize the activations to int8 per block
   * and run integer kernels (MLAS CompInt8); 0 keeps them fp32.
   */
  readonly accuracyLevel: number;
}

/**
 * The measured choices per format (docs/quantization.md has the figures and how they were taken):
 * - accuracy_level 4 for both. int8 at level 0 has no packed kernel in MLAS and dequantizes the
 *   whole matrix on every call (the LM head took 40x fp32's time at one row). int4 at level 0 was
 *   1.4–2x slower than level 4 at 1 and 16 rows, no faster at 64 and 256, and its KL against
 *   fp32 the same (0.0110 vs 0.0110 on GPT-2 small at std 0.02).
 * - zero points for int4: asymmetric blocks lowered KL by 14–21% on three shapes (0.0110 against
 *   0.0128 symmetric on GPT-2 small) for 5–10% of decode speed. None for int8: they lowered an
 *   already negligible KL (8e-5) by 15% and cost 4–15% at one row.
 */
const SCHEMES: Record<Exclude<WeightFormat['format'], 'fp32'>, Omit<QuantScheme, 'blockSize'>> = {
  int8: { bits: 8, zeroPoints: false, accuracyLevel: 4 },
  int4: { bits: 4, zeroPoints: true, accuracyLevel: 4 },
};

/** The scheme a weight of `kind` gets in a stage of `format`, or undefined when it stays fp32. */
export function quantSchemeFor(format: WeightFormat, kind: WeightKind): QuantScheme | undefined {
  if (format.format === 'fp32' || (format.keptFp32 ?? []).includes(kind)) return undefined;
  return { ...SCHEMES[format.format], blockSize: format.blockSize ?? DEFAULT_BLOCK_SIZE };
}

/**
 * A linear weight's kind from its checkpoint name when the family does not say: every family's
 * attention projections carry "attn" or "attention" in their names (GPT-2 `h.0.attn.c_attn`,
 * Llama `model.layers.0.self_attn.q_proj`); everything else in a block is the MLP.
 */
export function linearKindOf(name: string): LinearKind {
  return /attn|attention/i.test(name) ? 'attention' : 'mlp';
}

/**
 * Checks a weight format before anything is read and fills in its defaults, as the manifest
 * records it: quantized formats with their block size and the kinds kept fp32 (in WEIGHT_KINDS
 * order). Errors name the option field (`weights.blockSize: …`) so the CLI can name its flag.
 */
export function resolveWeightFormat(weights: WeightFormat): WeightFormat {
  if (!WEIGHT_FORMATS.includes(weights.format)) {
    throw new Error(`weights.format: expected one of ${WEIGHT_FORMATS.join(', ')}, got ${JSON.stringify(weights.format)}`);
  }
  if (weights.format === 'fp32') {
    if (weights.blockSize !== undefined) throw new Error('weights.blockSize: applies only to int8 and int4 weights');
    if (weights.keptFp32 !== undefined) throw new Error('weights.keptFp32: applies only to int8 and int4 weights');
    return { format: 'fp32' };
  }
  if (weights.blockSize !== undefined && !isValidBlockSize(weights.blockSize)) {
    throw new Error(`weights.blockSize: expected a power of two from 16 to 256 (${BLOCK_SIZES.join(', ')}: what MatMulNBits takes), got ${weights.blockSize}`);
  }
  for (const kind of weights.keptFp32 ?? []) {
    if (!(WEIGHT_KINDS as readonly string[]).includes(kind)) {
      throw new Error(`weights.keptFp32: unknown tensor kind ${JSON.stringify(kind)} (known: ${WEIGHT_KINDS.join(', ')})`);
    }
  }
  const kept = weights.keptFp32 ?? [];
  return {
    format: weights.format,
    blockSize: weights.blockSize ?? DEFAULT_BLOCK_SIZE,
    keptFp32: WEIGHT_KINDS.filter((kind) => kept.includes(kind)),
  };
}
