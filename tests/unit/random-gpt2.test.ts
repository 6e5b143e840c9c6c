import { createHash } from 'node:crypto';
import type { Gpt2Checkpoint } from '../../tools/families/gpt2/gpt2-weights';
import type { Weight } from '../../shared/model/weight';
import { GPT2_PRESETS, randomGpt2Checkpoint } from '../../tools/init/random-gpt2';

const TINY_INIT_TIMEOUT_MS = 60_000;

function allWeights(checkpoint: Gpt2Checkpoint): Weight[] {
  const { wte, wpe, layers, lnF } = checkpoint.weights;
  const perLayer = layers.flatMap((l) => [l.ln1, l.attnQkv, l.attnProj, l.ln2, l.mlpFc, l.mlpProj].flatMap((p) => [p.weight, p.bias]));
  return [wte, wpe, ...perLayer, lnF.weight, lnF.bias];
}

function digest(checkpoint: Gpt2Checkpoint): string {
  const hash = createHash('sha256');
  for (const weight of allWeights(checkpoint)) hash.update(new Uint8Array(weight.data.buffer, weight.data.byteOffset, weight.data.byteLength));
  return hash.digest('hex');
}

function std(data: Float32Array): number {
  let mean = 0;
  for (const v of data) mean += v;
  mean /= data.length;
  let variance = 0;
  for (const v of data) variance += (v - mean) ** 2;
  return Math.sqrt(variance / data.length);
}

describe('randomGpt2Checkpoint', () => {
  let seed5: Gpt2Checkpoint;
  beforeAll(() => {
    seed5 = randomGpt2Checkpoint(GPT2_PRESETS.tiny, 5);
  }, TINY_INIT_TIMEOUT_MS);

  test(
    'the same seed gives the same bytes, a different seed different bytes in every tensor',
    () => {
      const a = randomGpt2Checkpoint(GPT2_PRESETS.tiny, 42);
      const b = randomGpt2Checkpoint(GPT2_PRESETS.tiny, 42);
      const c = randomGpt2Checkpoint(GPT2_PRESETS.tiny, 43);
      expect(digest(a)).toBe(digest(b));
      const [wa, wc] = [allWeights(a), allWeights(c)];
      wa.forEach((weight, i) => {
        expect(Buffer.from(weight.data.buffer).equals(Buffer.from(wc[i].data.buffer))).toBe(false);
      });
    },
    TINY_INIT_TIMEOUT_MS,
  );

  test('every tensor has the Hugging Face GPT-2 shape for the tiny preset', () => {
    const { nEmbd: e, nInner: inner, vocabSize: v, nPositions: p, nLayer } = GPT2_PRESETS.tiny;
    const checkpoint = seed5;
    const layerShapes = [[e], [e], [e, 3 * e], [3 * e], [e, e], [e], [e], [e], [e, inner], [inner], [inner, e], [e]];
    const expected = [[v, e], [p, e], ...Array.from({ length: nLayer }, () => layerShapes).flat(), [e], [e]];
    expect(allWeights(checkpoint).map((w) => w.dims)).toEqual(expected);
    for (const weight of allWeights(checkpoint)) {
      expect(weight.data.length).toBe(weight.dims.reduce((a, b) => a * b, 1));
      expect(weight.data.every(Number.isFinite)).toBe(true);
    }
  });

  test('values follow the documented scales: unit embeddings, linear weights at gain / sqrt(fan in)', () => {
    const { nEmbd: e } = GPT2_PRESETS.tiny;
    const { weights } = seed5;
    expect(std(weights.wte.data)).toBeCloseTo(1, 1);
    const qkv = weights.layers[0].attnQkv.weight.data;
    const column = (block: number): Float32Array => qkv.filter((_, i) => Math.floor((i % (3 * e)) / e) === block);
    expect(std(column(0)) * Math.sqrt(e)).toBeCloseTo(3, 0);
    expect(std(column(2)) * Math.sqrt(e)).toBeCloseTo(1, 0);
    expect(std(weights.layers[0].mlpProj.weight.data) * Math.sqrt(GPT2_PRESETS.tiny.nInner)).toBeCloseTo(4, 0);
  });

  test('the small preset is the GPT-2 small shape', () => {
    expect(GPT2_PRESETS.small).toMatchObject({ nLayer: 12, nEmbd: 768, nHead: 12, nInner: 3072, nPositions: 1024, vocabSize: 50257 });
  });

  test.each([-1, 1.5, 2 ** 32])('seed %p is refused', (seed) => {
    expect(() => randomGpt2Checkpoint(GPT2_PRESETS.tiny, seed)).toThrow('seed must be an integer in [0, 4294967295]');
  });
});
