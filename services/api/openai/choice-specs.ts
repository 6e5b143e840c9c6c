import { randomInt } from 'node:crypto';
import type { GenerationSettings } from '../generation-settings';
import { MAX_UINT32 } from '../schemas/schema-fields';
import type { ChoiceSpec } from './choice-generations';

/**
 * The choices of a request: `n` per prompt, choice `p * n + i` being the i-th of prompt p (the
 * index OpenAI gives them). With a `seed`, choice i samples with `seed + i` (so choice 0 of any
 * request equals the same request with n = 1, and any choice can be replayed alone); without
 * one, each choice draws its own random seed, as OpenAI's API samples independently.
 */
export function choiceSpecs(
  prompts: ReadonlyArray<readonly number[]>,
  n: number,
  settings: Omit<GenerationSettings, 'seed'>,
  seed: number | undefined,
  requestId: string,
): ChoiceSpec[] {
  const specs: ChoiceSpec[] = [];
  const total = prompts.length * n;
  prompts.forEach((promptTokenIds, p) => {
    for (let i = 0; i < n; i++) {
      const choiceSeed = seed === undefined ? randomInt(0, MAX_UINT32 + 1) : (seed + i) % (MAX_UINT32 + 1);
      specs.push({ settings: { ...settings, seed: choiceSeed }, promptTokenIds, requestId: total === 1 ? requestId : `${requestId}.${p * n + i}` });
    }
  });
  return specs;
}
