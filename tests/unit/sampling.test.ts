import { status } from '@grpc/grpc-js';
import { DEFAULT_GENERATION_CONFIG, parseGenerationConfig, type GenerationConfig } from '../../shared/generation-config';
import { RepetitionPenaltyProcessor } from '../../services/node/sampling/repetition-penalty-processor';
import { createSampler } from '../../services/node/sampling/sampler';
import { seededUniform } from '../../services/node/sampling/seeded-uniform';
import { SequenceSamplers } from '../../services/node/sequence-samplers';
import { TemperatureProcessor } from '../../services/node/sampling/temperature-processor';
import { TopKProcessor } from '../../services/node/sampling/top-k-processor';
import { TopPProcessor } from '../../services/node/sampling/top-p-processor';
import { ServiceError } from '../../shared/errors';

const NEG_INF = Number.NEGATIVE_INFINITY;

/** A sampling config (temperature 1 unless overridden): the defaults themselves are greedy. */
function config(overrides: Partial<GenerationConfig>): GenerationConfig {
  return { ...DEFAULT_GENERATION_CONFIG, temperature: 1, ...overrides };
}

/** Deterministic pseudo-random logits without using the code under test. */
function testLogits(size: number, salt: number): Float32Array {
  return Float32Array.from({ length: size }, (_, i) => Math.sin(i * 12.9898 + salt * 78.233) * 4);
}

/** log-softmax in float64, written independently of the sampler. */
function logSoftmax(values: ArrayLike<number>): number[] {
  const list = Array.from(values);
  const max = Math.max(...list);
  const logTotal = Math.log(list.reduce((sum, v) => sum + Math.exp(v - max), 0));
  return list.map((v) => v - max - logTotal);
}

describe('logits processors', () => {
  test('repetition penalty divides positive and multiplies negative logits of seen tokens only', () => {
    const logits = Float32Array.from([2, -1, 0.5, 3]);
    const out = new RepetitionPenaltyProcessor(2).apply(logits, [0, 1, 1]);
    expect(Array.from(out)).toEqual([1, -2, 0.5, 3]);
    expect(Array.from(logits)).toEqual([2, -1, 0.5, 3]);
  });

  test('temperature divides every logit, less the largest (the same softmax)', () => {
    const out = new TemperatureProcessor(0.5).apply(Float32Array.from([2, -1, 0.5]));
    expect(Array.from(out)).toEqual([0, -6, -3]);
  });

  test('top-k keeps the k largest logits and ties with the k-th', () => {
    expect(Array.from(new TopKProcessor(2).apply(Float32Array.from([1, 5, 3, 4, 2])))).toEqual([NEG_INF, 5, NEG_INF, 4, NEG_INF]);
    expect(Array.from(new TopKProcessor(2).apply(Float32Array.from([1, 3, 3, 3])))).toEqual([NEG_INF, 3, 3, 3]);
    expect(Array.from(new TopKProcessor(9).apply(Float32Array.from([1, 2])))).toEqual([1, 2]);
  });

  test('top-p keeps the most likely tokens until their probability reaches p', () => {
    // Probabilities 0.5, 0.2, 0.3: sorted 0.5 (index 0), 0.3 (index 2), 0.2 (index 1).
    const logits = Float32Array.from([Math.log(0.5), Math.log(0.2), Math.log(0.3)]);
    const kept = (p: number): boolean[] => Array.from(new TopPProcessor(p).apply(logits), (v) => v !== NEG_INF);
    expect(kept(0.45)).toEqual([true, false, false]);
    expect(kept(0.75)).toEqual([true, false, true]);
    expect(kept(0.85)).toEqual([true, true, true]);
    expect(kept(1)).toEqual([true, true, true]);
  });

  test('top-p ignores tokens already removed by top-k', () => {
    const logits = Float32Array.from([0, NEG_INF, 0, NEG_INF]);
    expect(Array.from(new TopPProcessor(0.4).apply(logits), (v) => v !== NEG_INF)).toEqual([true, false, false, false]);
  });
});

describe('seededUniform', () => {
  test('draw n is output n of SplitMix64 for that seed (reference values)', () => {
    // Published SplitMix64 outputs for seed 0.
    const reference = [0xe220a8397b1dcdafn, 0x6e789e6aa1b965f4n, 0x06c45d188009454fn];
    reference.forEach((bits, n) => expect(seededUniform(0, n)).toBe(Number(bits >> 11n) / 2 ** 53));
  });

  test('draws are uniform in [0, 1)', () => {
    const draws = Array.from({ length: 20_000 }, (_, n) => seededUniform(42, n));
    expect(Math.min(...draws)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...draws)).toBeLessThan(1);
    const mean = draws.reduce((a, b) => a + b, 0) / draws.length;
    expect(Math.abs(mean - 0.5)).toBeLessThan(0.01);
    const belowQuarter = draws.filter((d) => d < 0.25).length / draws.length;
    expect(Math.abs(belowQuarter - 0.25)).toBeLessThan(0.015);
  });
});

describe('createSampler', () => {
  test('greedy picks the argmax and reports its log-softmax', () => {
    const logits = testLogits(500, 1);
    const expectedId = Array.from(logits).indexOf(Math.max(...logits));
    const token = createSampler(config({ temperature: 0 })).sample(logits, [], 0);
    expect(token.tokenId).toBe(expectedId);
    expect(token.logprob).toBeCloseTo(logSoftmax(logits)[expectedId], 5);
  });

  test("greedy takes the graph's summary as given: its argmax and logsumexp, no scan; a penalty still rescans", () => {
    const logits = Float32Array.from([1, 4, 3]);
    const summary = { logsumexp: 10, argmax: 2 }; // not the true values: shows they are what the sampler uses
    const token = createSampler(config({ temperature: 0 })).sample(logits, [], 0, summary);
    expect(token).toEqual({ tokenId: 2, logprob: 3 - 10, topLogprobs: [] });
    expect(createSampler(config({ temperature: 0 })).sample(logits, [], 0, { logsumexp: 10 }).tokenId).toBe(1);
    expect(createSampler(config({ temperature: 0, repetitionPenalty: 2 })).sample(logits, [1], 0, summary).tokenId).toBe(2);
    expect(createSampler(config({ temperature: 0, repetitionPenalty: 2 })).sample(Float32Array.from([1, 4, 3.5]), [2], 0, { logsumexp: 10, argmax: 2 }).tokenId).toBe(1);
  });

  test("greedy breaks ties toward the lower id, as the graph's ArgMax (select_last_index 0) does", () => {
    const logits = Float32Array.from([0, 5, 2, 5]);
    expect(createSampler(config({ temperature: 0 })).sample(logits, [], 0).tokenId).toBe(1);
  });

  test('greedy applies the repetition penalty before the argmax', () => {
    const logits = Float32Array.from([1, 4, 3]);
    expect(createSampler(config({ temperature: 0 })).sample(logits, [1], 0).tokenId).toBe(1);
    const penalised = createSampler(config({ temperature: 0, repetitionPenalty: 2 })).sample(logits, [1], 0);
    expect(penalised.tokenId).toBe(2);
    expect(penalised.logprob).toBeCloseTo(logSoftmax([1, 2, 3])[2], 5);
  });

  test('top-k = 1 equals greedy whatever the temperature and seed', () => {
    for (let salt = 0; salt < 20; salt++) {
      const logits = testLogits(300, salt);
      const greedy = createSampler(config({ temperature: 0 })).sample(logits, [], salt).tokenId;
      const topK1 = createSampler(config({ temperature: 1.7, topK: 1, seed: salt })).sample(logits, [], salt).tokenId;
      expect(topK1).toBe(greedy);
    }
  });

  test('seeded sampling is reproducible and depends only on (seed, n)', () => {
    const logits = testLogits(200, 3);
    const sampler = createSampler(config({ seed: 7 }));
    const forward = Array.from({ length: 50 }, (_, n) => sampler.sample(logits, [], n).tokenId);
    const again = createSampler(config({ seed: 7 }));
    const backward = Array.from({ length: 50 }, (_, i) => again.sample(logits, [], 49 - i).tokenId).reverse();
    expect(backward).toEqual(forward);
  });

  test('different seeds give different samples', () => {
    const logits = testLogits(200, 3);
    const draw = (seed: number): number[] => {
      const sampler = createSampler(config({ seed, temperature: 2 }));
      return Array.from({ length: 30 }, (_, n) => sampler.sample(logits, [], n).tokenId);
    };
    expect(draw(1)).not.toEqual(draw(2));
  });

  test('multinomial frequencies follow the softmax of logits / temperature', () => {
    const probabilities = [0.1, 0.2, 0.7];
    const temperature = 0.5;
    // Logits chosen so that softmax(logits / temperature) = probabilities.
    const logits = Float32Array.from(probabilities, (p) => Math.log(p) * temperature);
    const sampler = createSampler(config({ temperature, seed: 11 }));
    const counts = [0, 0, 0];
    const draws = 20_000;
    for (let n = 0; n < draws; n++) counts[sampler.sample(logits, [], n).tokenId]++;
    counts.forEach((count, i) => expect(Math.abs(count / draws - probabilities[i])).toBeLessThan(0.015));
    expect(sampler.sample(logits, [], 0).logprob).toBeCloseTo(Math.log(probabilities[sampler.sample(logits, [], 0).tokenId]), 5);
  });

  test('a temperature or repetition penalty at the edge of float32 gives real log-probabilities, and a tiny temperature is greedy', () => {
    for (let salt = 0; salt < 10; salt++) {
      const logits = testLogits(300, salt);
      const greedy = createSampler(config({ temperature: 0 })).sample(logits, [], 0).tokenId;
      for (const temperature of [1e-30, 1.4e-45]) {
        const token = createSampler(config({ temperature, seed: salt })).sample(logits, [], salt, undefined, 5);
        expect({ temperature, tokenId: token.tokenId, logprob: token.logprob }).toEqual({ temperature, tokenId: greedy, logprob: 0 });
        expect(token.topLogprobs.every((alt) => alt.logprob <= 0 && !Number.isNaN(alt.logprob))).toBe(true);
      }
      for (const repetitionPenalty of [1.4e-45, 3.4e38]) {
        for (const temperature of [0, 1]) {
          const token = createSampler(config({ temperature, repetitionPenalty, seed: salt })).sample(logits, [1, 2, 3, 200], salt, undefined, 5);
          const logprobs = [token.logprob, ...token.topLogprobs.map((alt) => alt.logprob)];
          expect({ repetitionPenalty, temperature, finite: logprobs.every((l) => Number.isFinite(l) && l <= 0) }).toEqual({ repetitionPenalty, temperature, finite: true });
        }
      }
    }
  });

  test('top-p sampling never draws outside the nucleus', () => {
    const logits = Float32Array.from([Math.log(0.5), Math.log(0.2), Math.log(0.3)]);
    const sampler = createSampler(config({ topP: 0.75, seed: 5 }));
    const seen = new Set(Array.from({ length: 500 }, (_, n) => sampler.sample(logits, [], n).tokenId));
    expect([...seen].sort()).toEqual([0, 2]);
  });
});

describe('SequenceSamplers (the last stage, from an open message)', () => {
  const open = (sampling: Partial<{ temperature: number; top_k: number; top_p: number; repetition_penalty: number; seed: number; top_logprobs: number }>): void =>
    new SequenceSamplers().open('s', { temperature: 0, top_k: 0, top_p: 0, repetition_penalty: 0, seed: 0, top_logprobs: 0, ...sampling });

  test('0 leaves top_p and repetition_penalty off, as proto3 sends them unset', () => {
    expect(() => open({})).not.toThrow();
  });

  test.each([
    [{ top_p: Number.NaN }, 'topP'],
    [{ repetition_penalty: Number.NaN }, 'repetitionPenalty'],
    [{ temperature: Number.NaN }, 'temperature'],
    [{ top_p: 1.5 }, 'topP'],
    [{ top_logprobs: 6 }, 'sampling.top_logprobs'],
  ])('refuses %p with INVALID_ARGUMENT naming %s (NaN is not "unset")', (sampling, field) => {
    let caught: unknown;
    try {
      open(sampling);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(ServiceError);
    expect({ code: (caught as ServiceError).code, field: (caught as ServiceError).message.split(':')[0] }).toEqual({ code: status.INVALID_ARGUMENT, field });
  });
});

describe('parseGenerationConfig', () => {
  test('fills documented defaults', () => {
    expect(parseGenerationConfig({})).toEqual({ maxNewTokens: 32, temperature: 0, topK: 0, topP: 1, repetitionPenalty: 1, seed: 0 });
    expect(parseGenerationConfig({ maxNewTokens: 3, temperature: 0.5 })).toEqual({ ...DEFAULT_GENERATION_CONFIG, maxNewTokens: 3, temperature: 0.5 });
  });

  test.each([
    [{ maxNewTokens: 0 }, 'maxNewTokens'],
    [{ maxNewTokens: 2.5 }, 'maxNewTokens'],
    [{ temperature: -0.1 }, 'temperature'],
    [{ temperature: Number.NaN }, 'temperature'],
    [{ topK: -1 }, 'topK'],
    [{ topK: 1.5 }, 'topK'],
    [{ topP: 0 }, 'topP'],
    [{ topP: 1.01 }, 'topP'],
    [{ repetitionPenalty: 0 }, 'repetitionPenalty'],
    [{ seed: -3 }, 'seed'],
    [{ seed: 0.5 }, 'seed'],
    [{ seed: '1' }, 'seed'],
    [{ top_k: 3 }, 'top_k'],
  ])('rejects %j naming %s', (input, field) => {
    let caught: unknown;
    try {
      parseGenerationConfig(input);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(ServiceError);
    expect((caught as ServiceError).code).toBe(status.INVALID_ARGUMENT);
    expect((caught as ServiceError).message.startsWith(`${field}:`)).toBe(true);
  });

  test('rejects a non-object', () => {
    expect(() => parseGenerationConfig([1])).toThrow(/generation config: must be an object/);
  });
});
