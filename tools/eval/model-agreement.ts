import { randomUUID } from 'node:crypto';
import type { InProcessPipeline } from '../../services/node/in-process-pipeline';
import type { StepRow } from '../../services/node/stage-runtime';

/**
 * The fixed texts quality is measured on: prose, dialogue, code and a list, so that the tokens
 * (and the positions they reach) differ in kind. Each encodes to well over 64 GPT-2 tokens.
 */
export const EVAL_PROMPTS: readonly string[] = [
  'The history of the city begins with a small fishing village on the northern bank of the river. Over the next three centuries ' +
    'merchants built warehouses along the water, the old wooden bridge was replaced by one of stone, and the market square became ' +
    'the place where farmers from the surrounding valleys sold grain, wool and cheese every Saturday morning.',
  '"Are you sure this is the right road?" she asked, looking at the map again. "Of course," he said, although he had not seen a ' +
    'sign for twenty minutes. "We turn left at the church, then follow the lake until we reach the old mill. It cannot be more than ' +
    'five miles from here." She folded the map and said nothing.',
  'def merge_sorted(left, right):\n    result = []\n    i = j = 0\n    while i < len(left) and j < len(right):\n' +
    '        if left[i] <= right[j]:\n            result.append(left[i])\n            i += 1\n        else:\n' +
    '            result.append(right[j])\n            j += 1\n    result.extend(left[i:])\n    result.extend(right[j:])\n    return result\n',
  'Ingredients for four people: 500 g of flour, 2 teaspoons of salt, 1 packet of dried yeast, 300 ml of warm water and 3 ' +
    'tablespoons of olive oil. Mix the flour, salt and yeast in a large bowl, add the water and the oil, and knead for ten minutes ' +
    'until the dough is smooth. Leave it to rise for one hour in a warm place.',
];

/** Tokens of each prompt that are scored. */
export const EVAL_TOKENS_PER_PROMPT = 64;

export interface PromptAgreement {
  /** Positions scored: one per token fed. */
  readonly positions: number;
  /** Mean over positions of KL(reference ‖ model) of the next-token distributions, in nats. */
  readonly meanKl: number;
  /** Fraction of positions where both models' most likely next token is the same. */
  readonly top1Agreement: number;
  /** Largest |reference logit − model logit| over every position and vocabulary entry. */
  readonly maxLogitError: number;
}

export interface AgreementReport extends PromptAgreement {
  readonly prompts: readonly PromptAgreement[];
}

/**
 * Teacher-forced comparison of two pipelines over the same token sequences: every sequence is fed
 * one token per step (all sequences in one batch), both models see exactly the same inputs, and
 * the next-token distributions they give at each position are compared.
 */
export async function measureAgreement(model: InProcessPipeline, reference: InProcessPipeline, sequences: readonly (readonly number[])[]): Promise<AgreementReport> {
  if (model.shape.vocabSize !== reference.shape.vocabSize) {
    throw new Error(`the models' vocabularies differ: ${model.shape.vocabSize} and ${reference.shape.vocabSize} tokens`);
  }
  const vocab = model.shape.vocabSize;
  const ids = sequences.map(() => randomUUID());
  const sums = sequences.map(() => ({ positions: 0, kl: 0, agree: 0, maxLogitError: 0 }));
  const longest = Math.max(...sequences.map((s) => s.length));
  try {
    for (let t = 0; t < longest; t++) {
      const active = sequences.flatMap((s, i) => (t < s.length ? [i] : []));
      const rows: StepRow[] = active.map((i) => ({ sequenceId: ids[i], pastLength: t, tokenIds: [sequences[i][t]] }));
      const [modelLogits, referenceLogits] = [await model.forward(rows), await reference.forward(rows)];
      active.forEach((i, r) => {
        const compared = compareDistributions(referenceLogits.subarray(r * vocab, (r + 1) * vocab), modelLogits.subarray(r * vocab, (r + 1) * vocab));
        const sum = sums[i];
        sum.positions += 1;
        sum.kl += compared.kl;
        sum.agree += compared.sameTop1 ? 1 : 0;
        sum.maxLogitError = Math.max(sum.maxLogitError, compared.maxLogitError);
      });
    }
  } finally {
    for (const id of ids) {
      model.release(id);
      reference.release(id);
    }
  }
  const prompts = sums.map((s) => ({ positions: s.positions, meanKl: s.kl / s.positions, top1Agreement: s.agree / s.positions, maxLogitError: s.maxLogitError }));
  const positions = sums.reduce((n, s) => n + s.positions, 0);
  return {
    positions,
    meanKl: sums.reduce((n, s) => n + s.kl, 0) / positions,
    top1Agreement: sums.reduce((n, s) => n + s.agree, 0) / positions,
    maxLogitError: Math.max(...sums.map((s) => s.maxLogitError)),
    prompts,
  };
}

/** KL(p ‖ q) in nats for the softmaxes of two logit vectors (float64), whether their argmaxes agree, and the largest logit difference. */
export function compareDistributions(p: Float32Array, q: Float32Array): { kl: number; sameTop1: boolean; maxLogitError: number } {
  const lseP = logSumExp(p);
  const lseQ = logSumExp(q);
  let kl = 0;
  let maxLogitError = 0;
  let argmaxP = 0;
  let argmaxQ = 0;
  for (let i = 0; i < p.length; i++) {
    const logP = p[i] - lseP;
    kl += Math.exp(logP) * (logP - (q[i] - lseQ));
    maxLogitError = Math.max(maxLogitError, Math.abs(p[i] - q[i]));
    if (p[i] > p[argmaxP]) argmaxP = i;
    if (q[i] > q[argmaxQ]) argmaxQ = i;
  }
  // Rounding can leave a KL of identical distributions a hair below zero.
  return { kl: Math.max(0, kl), sameTop1: argmaxP === argmaxQ, maxLogitError };
}

function logSumExp(x: Float32Array): number {
  let max = -Infinity;
  for (let i = 0; i < x.length; i++) if (x[i] > max) max = x[i];
  let sum = 0;
  for (let i = 0; i < x.length; i++) sum += Math.exp(x[i] - max);
  return max + Math.log(sum);
}
