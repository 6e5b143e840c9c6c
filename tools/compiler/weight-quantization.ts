import { WEIGHT_FORMATS, type WeightFormat } from '../../shared/model/manifest';
import { isValidBlockSize, type QuantBits } from './block-quantize';

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
 * The measured choices per format (docs/quantization.md has the figures):
 * - accuracy_level 4 for both. int8 at level 0 has no packed kernel in MLAS and dequantizes the
 *   whole matrix on every call (the LM head took 40x fp32's time at one row); int4 at level 0
 *   was 2-3x slower than level 4 at 1 and 16 rows and no faster at 64, for no measurable gain in
 *   quality.
 * - zero points for int4 (asymmetric blocks lower KL against fp32 by ~25% at std-0.02 scale);
 *   none for int8, where they cost speed at 16+ rows and KL is already ~1e-5.
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
    throw new Error(`weights.blockSize: expected a power of two >= 16 (what MatMulNBits takes), got ${weights.blockSize}`);
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
