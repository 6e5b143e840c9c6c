import type { Gpt2Config } from '../../tools/families/gpt2/gpt2-config';
import type { Gpt2Checkpoint, Gpt2LayerWeights } from '../../tools/families/gpt2/gpt2-weights';
import type { Weight } from '../../shared/model/weight';
import { naiveGpt2Logits, naiveGreedy } from '../support/naive-gpt2';
import { encode } from 'gpt-3-encoder';
import { GPT2_PRESETS, randomGpt2Checkpoint } from '../../tools/init/random-gpt2';

const TINY_MODEL_TEST_TIMEOUT_MS = 120_000;

/** E = 4, two heads of 2, MLP width 4, five tokens: small enough to check by hand. */
const HAND: Gpt2Config = {
  modelType: 'gpt2',
  vocabSize: 5,
  nPositions: 4,
  nEmbd: 4,
  nLayer: 1,
  nHead: 2,
  nInner: 4,
  layerNormEpsilon: 1e-5,
  activation: 'gelu_new',
  bosTokenId: 0,
  eosTokenId: 0,
};
const WTE = [
  [1, 2, 3, 4],
  [0, -1, 0, 1],
  [2, 0, -2, 0],
  [-1, 3, 0.5, 1],
  [0.25, 0.5, -3, 2],
];
const WPE = [
  [0, 0, 0, 0],
  [0.5, 0, 0, -0.5],
  [0, 1, 0, 0],
  [0, 0, 1, 1],
];

const w = (dims: number[], values: number[] | number = 0): Weight => ({
  dims,
  data: typeof values === 'number' ? new Float32Array(dims.reduce((a, b) => a * b, 1)).fill(values) : Float32Array.from(values),
});
const identity = (n: number): number[] => Array.from({ length: n * n }, (_, i) => (i % (n + 1) === 0 ? 1 : 0));

/** One layer whose parts are all off (zero linear weights, unit layer norms) unless overridden. */
function handCheckpoint(layer: Partial<Gpt2LayerWeights> = {}, activation: Gpt2Config['activation'] = 'gelu_new'): Gpt2Checkpoint {
  const norm = { weight: w([4], 1), bias: w([4]) };
  const off = (inputs: number, outputs: number) => ({ weight: w([inputs, outputs]), bias: w([outputs]) });
  return {
    config: { ...HAND, activation },
    weights: {
      wte: w([5, 4], WTE.flat()),
      wpe: w([4, 4], WPE.flat()),
      layers: [
        {
          ln1: norm,
          attnQkv: off(4, 12),
          attnProj: off(4, 4),
          ln2: norm,
          mlpFc: off(4, 4),
          mlpProj: off(4, 4),
          ...layer,
        },
      ],
      lnF: norm,
    },
  };
}

/** Layer norm with unit gain and zero bias, written out for the expectations. */
function unitLayerNorm(x: number[]): number[] {
  const mean = x.reduce((a, b) => a + b, 0) / x.length;
  const variance = x.reduce((a, b) => a + (b - mean) ** 2, 0) / x.length;
  return x.map((v) => (v - mean) / Math.sqrt(variance + 1e-5));
}
const dot = (a: number[], b: number[]): number => a.reduce((s, v, i) => s + v * b[i], 0);
const plus = (a: number[], b: number[]): number[] => a.map((v, i) => v + b[i]);
const logitsOf = (h: number[]): number[] => WTE.map((row) => dot(unitLayerNorm(h), row));

function expectLogits(actual: Float32Array[], expected: number[][]): void {
  expect(actual).toHaveLength(expected.length);
  actual.forEach((row, t) => row.forEach((v, i) => expect(v).toBeCloseTo(expected[t][i], 4)));
}

describe('naiveGpt2Logits on hand-set weights', () => {
  const tokens = [0, 3, 4];
  const inputs = tokens.map((id, t) => plus(WTE[id], WPE[t]));

  test('with every block off, logits are ln_f(wte + wpe) · wte (tied head)', () => {
    expectLogits(naiveGpt2Logits(handCheckpoint(), tokens), inputs.map(logitsOf));
  });

  test('with q = k = 0 and v = proj = identity, attention adds the mean of ln_1 over the causal prefix', () => {
    const qkv = [...Array(4)].flatMap((_, row) => [0, 0, 0, 0, 0, 0, 0, 0, ...identity(4).slice(row * 4, row * 4 + 4)]);
    const checkpoint = handCheckpoint({
      attnQkv: { weight: w([4, 12], qkv), bias: w([12]) },
      attnProj: { weight: w([4, 4], identity(4)), bias: w([4]) },
    });
    const expected = inputs.map((x, t) => {
      const prefix = inputs.slice(0, t + 1).map(unitLayerNorm);
      const mean = prefix.reduce(plus).map((v) => v / prefix.length);
      return logitsOf(plus(x, mean));
    });
    expectLogits(naiveGpt2Logits(checkpoint, tokens), expected);
  });

  test('attention weights are softmax(q·k / sqrt(head dim)) per head, and later tokens never change earlier logits', () => {
    // q = 3 · ln_1(x) and k = v = ln_1(x), projection identity: head 0 uses channels 0-1, head 1 channels 2-3.
    const qkv = [...Array(4)].flatMap((_, row) => {
      const unit = identity(4).slice(row * 4, row * 4 + 4);
      return [...unit.map((v) => 3 * v), ...unit, ...unit];
    });
    const checkpoint = handCheckpoint({
      attnQkv: { weight: w([4, 12], qkv), bias: w([12]) },
      attnProj: { weight: w([4, 4], identity(4)), bias: w([4]) },
    });
    const normed = inputs.map(unitLayerNorm);
    const expected = inputs.map((x, t) => {
      const out = [0, 0, 0, 0];
      for (const head of [0, 1]) {
        const part = (v: number[]): number[] => v.slice(2 * head, 2 * head + 2);
        const scores = normed.slice(0, t + 1).map((k) => (3 * dot(part(normed[t]), part(k))) / Math.SQRT2);
        const exp = scores.map((s) => Math.exp(s));
        const total = exp.reduce((a, b) => a + b, 0);
        exp.forEach((e, s) => part(normed[s]).forEach((v, i) => (out[2 * head + i] += (e / total) * v)));
      }
      return logitsOf(plus(x, out));
    });
    expectLogits(naiveGpt2Logits(checkpoint, tokens), expected);
    expectLogits(naiveGpt2Logits(checkpoint, tokens.slice(0, 2)), expected.slice(0, 2));
  });

  test.each([
    ['gelu_new' as const, [0.8411919906082768, -0.15880800939172324, 0.34571400982514394, 1.954597694087775]],
    ['gelu' as const, [0.8413447460685429, -0.15865525393145707, 0.34573123063700656, 1.9544997361036416]],
  ])('the MLP applies %s (checked at 1, -1, 0.5, 2)', (activation, geluValues) => {
    // ln_2 with zero gain outputs its bias exactly: the MLP input is [1, -1, 0.5, 2] at every position.
    const checkpoint = handCheckpoint(
      {
        ln2: { weight: w([4], 0), bias: w([4], [1, -1, 0.5, 2]) },
        mlpFc: { weight: w([4, 4], identity(4)), bias: w([4]) },
        mlpProj: { weight: w([4, 4], identity(4)), bias: w([4]) },
      },
      activation,
    );
    expectLogits(
      naiveGpt2Logits(checkpoint, tokens),
      inputs.map((x) => logitsOf(plus(x, geluValues))),
    );
  });

  test('biases of the linear layers are added', () => {
    const checkpoint = handCheckpoint({ attnProj: { weight: w([4, 4]), bias: w([4], [1, 0, -1, 2]) } });
    expectLogits(
      naiveGpt2Logits(checkpoint, tokens),
      inputs.map((x) => logitsOf(plus(x, [1, 0, -1, 2]))),
    );
  });

  test('naiveGreedy feeds back the argmax of the last position', () => {
    const checkpoint = handCheckpoint();
    // Block-free: the next token is argmax over v of ln_f(wte[last] + wpe[t]) · wte[v].
    const argmax = (xs: number[]): number => xs.indexOf(Math.max(...xs));
    const first = argmax(logitsOf(plus(WTE[1], WPE[0])));
    const second = argmax(logitsOf(plus(WTE[first], WPE[1])));
    expect(naiveGreedy(checkpoint, [1], 2)).toEqual([first, second]);
  });

  test('token ids outside the vocabulary and sequences past n_positions are refused', () => {
    expect(() => naiveGpt2Logits(handCheckpoint(), [5])).toThrow('token id 5 is outside the vocabulary');
    expect(() => naiveGpt2Logits(handCheckpoint(), [0, 0, 0, 0, 0])).toThrow('5 tokens exceed n_positions 4');
  });
});

describe('the tiny random preset', () => {
  test(
    'four prompts give pairwise different greedy continuations of 16 tokens, each with at least 6 distinct ids',
    () => {
      const checkpoint = randomGpt2Checkpoint(GPT2_PRESETS.tiny, 42);
      const prompts = ['Hello world', 'The quick brown fox', 'Once upon a time', 'In 1492, Columbus'].map(encode);
      const continuations = prompts.map((prompt) => naiveGreedy(checkpoint, prompt, 16));
      for (const continuation of continuations) {
        expect(continuation).toHaveLength(16);
        expect(new Set(continuation).size).toBeGreaterThanOrEqual(6);
      }
      const distinctContinuations = new Set(continuations.map((c) => c.join(',')));
      expect(distinctContinuations.size).toBe(4);
    },
    TINY_MODEL_TEST_TIMEOUT_MS,
  );
});
