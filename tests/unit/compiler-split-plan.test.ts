import { parseSplitSpec, planStages, type PlannedModel, type StageRange } from '../../tools/compiler/split-plan';
import type { Gpt2Config } from '../../tools/families/gpt2/gpt2-config';
import { gpt2Definition } from '../../tools/families/gpt2/gpt2-family';
import { GPT2_PRESETS as GPT2_CONFIGS } from '../../tools/init/random-gpt2';

/** The planner reads a model's layer count and costs from its family's definition. */
const model = (config: Gpt2Config): PlannedModel => gpt2Definition(config);
const GPT2_PRESETS = { small: model(GPT2_CONFIGS.small), tiny: model(GPT2_CONFIGS.tiny) };

const asText = (ranges: StageRange[]): string => ranges.map((r) => `${r.layerStart}-${r.layerEnd}`).join(',');

/** Every way to cut nLayer layers into `stages` non-empty contiguous stages, by brute force. */
function allCuts(nLayer: number, stages: number): StageRange[][] {
  if (stages === 1) return [[{ layerStart: 0, layerEnd: nLayer }]];
  const cuts: StageRange[][] = [];
  for (let firstEnd = 1; firstEnd <= nLayer - stages + 1; firstEnd++) {
    for (const rest of allCuts(nLayer - firstEnd, stages - 1)) {
      cuts.push([
        { layerStart: 0, layerEnd: firstEnd },
        ...rest.map((r) => ({ layerStart: r.layerStart + firstEnd, layerEnd: r.layerEnd + firstEnd })),
      ]);
    }
  }
  return cuts;
}

function maxStageCost(planned: PlannedModel, ranges: StageRange[]): number {
  const cost = planned.costs;
  return Math.max(
    ...ranges.map(
      (r) => (r.layerEnd - r.layerStart) * cost.layer + (r.layerStart === 0 ? cost.embedding : 0) + (r.layerEnd === planned.shape.layers ? cost.head : 0),
    ),
  );
}

describe('parseSplitSpec', () => {
  test('reads even, balanced and explicit ranges', () => {
    expect(parseSplitSpec('even')).toEqual({ kind: 'even' });
    expect(parseSplitSpec('balanced')).toEqual({ kind: 'balanced' });
    expect(parseSplitSpec('0-4,4-8,8-12')).toEqual({ kind: 'explicit', ranges: [[0, 4], [4, 8], [8, 12]] });
    expect(parseSplitSpec(' 0-6 , 6-12 ')).toEqual({ kind: 'explicit', ranges: [[0, 6], [6, 12]] });
  });

  test.each(['', 'uneven', '0-4;4-8', '4', '0-4,', 'a-b', '0--4', '-1-4'])('rejects %j with an error about the split', (text) => {
    expect(() => parseSplitSpec(text)).toThrow(/^split: /);
  });
});

describe('planStages', () => {
  test('even gives sizes that differ by at most one, larger ones first', () => {
    expect(asText(planStages(GPT2_PRESETS.small, 3, { kind: 'even' }))).toBe('0-4,4-8,8-12');
    expect(asText(planStages(GPT2_PRESETS.tiny, 4, { kind: 'even' }))).toBe('0-2,2-4,4-5,5-6');
    expect(asText(planStages(GPT2_PRESETS.tiny, 1, { kind: 'even' }))).toBe('0-6');
    expect(asText(planStages(GPT2_PRESETS.tiny, 6, { kind: 'even' }))).toBe('0-1,1-2,2-3,3-4,4-5,5-6');
  });

  test('balanced puts fewer layers in the last stage of GPT-2 small than even, since that stage also runs the LM head', () => {
    const even = planStages(GPT2_PRESETS.small, 3, { kind: 'even' });
    const balanced = planStages(GPT2_PRESETS.small, 3, { kind: 'balanced' });
    const layers = (r: StageRange): number => r.layerEnd - r.layerStart;
    expect(layers(balanced[2])).toBeLessThan(layers(even[2]));
    expect(maxStageCost(GPT2_PRESETS.small, balanced)).toBeLessThan(maxStageCost(GPT2_PRESETS.small, even));
  });

  test('the LM head of GPT-2 small costs about five blocks (a 50257 x 768 matmul per token)', () => {
    const cost = GPT2_PRESETS.small.costs;
    expect(cost.head).toBe(50257 * 768);
    expect(cost.head / cost.layer).toBeGreaterThan(4);
    expect(cost.head / cost.layer).toBeLessThan(6);
  });

  test.each([
    ['GPT-2 small', GPT2_PRESETS.small, [1, 2, 3, 4, 6, 12]],
    ['tiny', GPT2_PRESETS.tiny, [1, 2, 3, 4, 5, 6]],
    ['tiny with a small vocabulary', model({ ...GPT2_CONFIGS.tiny, vocabSize: 100 }), [2, 3, 4]],
  ] as const)('balanced reaches the brute-force minimum of the most expensive stage (%s)', (_, config, stageCounts) => {
    for (const stages of stageCounts) {
      const balanced = planStages(config, stages, { kind: 'balanced' });
      expect(balanced).toHaveLength(stages);
      expect(balanced[0].layerStart).toBe(0);
      expect(balanced[stages - 1].layerEnd).toBe(config.shape.layers);
      balanced.forEach((r, i) => {
        expect(r.layerEnd).toBeGreaterThan(r.layerStart);
        if (i > 0) expect(r.layerStart).toBe(balanced[i - 1].layerEnd);
      });
      const optimum = Math.min(...allCuts(config.shape.layers, stages).map((cut) => maxStageCost(config, cut)));
      expect(maxStageCost(config, balanced)).toBe(optimum);
    }
  });

  test('explicit ranges that cover the layers exactly are used as given', () => {
    expect(asText(planStages(GPT2_PRESETS.small, 3, { kind: 'explicit', ranges: [[0, 7], [7, 11], [11, 12]] }))).toBe('0-7,7-11,11-12');
  });

  test.each([
    ['too few ranges', 3, [[0, 6], [6, 12]], /2 ranges but --stages is 3/],
    ['too many ranges', 2, [[0, 4], [4, 8], [8, 12]], /3 ranges but --stages is 2/],
    ['a gap', 3, [[0, 4], [5, 8], [8, 12]], /layers 4-5 are in no stage/],
    ['an overlap', 3, [[0, 5], [4, 8], [8, 12]], /range 4-8 overlaps/],
    ['an empty range', 3, [[0, 4], [4, 4], [4, 12]], /range 4-4 is empty/],
    ['a reversed range', 3, [[0, 8], [8, 4], [4, 12]], /range 8-4 is empty/],
    ['not starting at 0', 2, [[1, 6], [6, 12]], /layers 0-1 are in no stage/],
    ['stopping short', 2, [[0, 6], [6, 11]], /stops at layer 11; the model has 12 layers/],
    ['running past the end', 2, [[0, 6], [6, 13]], /goes to layer 13; the model has only 12 layers/],
  ] as const)('explicit ranges with %s are rejected with a message saying so', (_, stages, ranges, message) => {
    expect(() => planStages(GPT2_PRESETS.small, stages, { kind: 'explicit', ranges: ranges.map(([a, b]) => [a, b]) })).toThrow(message);
  });

  test.each([0, -1, 1.5, 13])('%p stages for a 12-layer model is rejected', (stages) => {
    expect(() => planStages(GPT2_PRESETS.small, stages, { kind: 'even' })).toThrow(/^stages: /);
  });
});
