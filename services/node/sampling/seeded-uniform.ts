const MASK_64 = (1n << 64n) - 1n;
const GOLDEN_GAMMA = 0x9e3779b97f4a7c15n;

/**
 * The n-th uniform draw in [0, 1) of the stream named by `seed`: SplitMix64 (Steele et al. 2014)
 * evaluated at counter n instead of stepped, so a draw depends only on (seed, n). A replay after
 * failover that resumes at token n gets the same draws without replaying the earlier ones.
 */
export function seededUniform(seed: number, n: number): number {
  let z = (BigInt(seed) + BigInt(n + 1) * GOLDEN_GAMMA) & MASK_64;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK_64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK_64;
  z = z ^ (z >> 31n);
  // The top 53 bits fill a double's mantissa exactly.
  return Number(z >> 11n) / 2 ** 53;
}
