/** Seeds are 32-bit: they feed splitmix32. */
export const MAX_SEED = 2 ** 32 - 1;

/**
 * Standard normal numbers from xoshiro128** (seeded through splitmix32) and the polar
 * Box–Muller transform. 32-bit integer arithmetic keeps it exact and fast in JavaScript.
 */
export class NormalGenerator {
  private readonly state = new Uint32Array(4);
  private spare: number | undefined;

  constructor(seed: number) {
    if (!Number.isInteger(seed) || seed < 0 || seed > MAX_SEED) {
      throw new RangeError(`seed must be an integer in [0, ${MAX_SEED}], got ${seed}`);
    }
    let s = seed;
    for (let i = 0; i < 4; i++) {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      this.state[i] = (z ^ (z >>> 16)) >>> 0;
    }
  }

  /** A standard normal number (Marsaglia's polar form of Box–Muller: no trigonometry). */
  next(): number {
    if (this.spare !== undefined) {
      const value = this.spare;
      this.spare = undefined;
      return value;
    }
    let u: number;
    let v: number;
    let r: number;
    do {
      u = this.nextUint32() * UINT32_TO_SYMMETRIC - 1;
      v = this.nextUint32() * UINT32_TO_SYMMETRIC - 1;
      r = u * u + v * v;
    } while (r >= 1 || r === 0);
    const scale = Math.sqrt((-2 * Math.log(r)) / r);
    this.spare = v * scale;
    return u * scale;
  }

  fill(dims: readonly number[], std: number, mean: number): Float32Array {
    const data = new Float32Array(dims.reduce((n, d) => n * d, 1));
    for (let i = 0; i < data.length; i++) data[i] = mean + std * this.next();
    return data;
  }

  private nextUint32(): number {
    const s = this.state;
    const result = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  }
}

/** Maps a uint32 to [0, 2). */
const UINT32_TO_SYMMETRIC = 2 / 2 ** 32;

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}
