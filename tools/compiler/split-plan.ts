import type { ModelCosts } from '../families/model-family';

/** How to cut the layers into stages. */
export type SplitSpec = { kind: 'even' } | { kind: 'balanced' } | { kind: 'explicit'; ranges: [number, number][] };

/** Global layer indices [layerStart, layerEnd) of one stage. */
export interface StageRange {
  readonly layerStart: number;
  readonly layerEnd: number;
}

/**
 * The context length the balanced split assumes when it prices attention: per token, attention
 * reads every cached key and value, so its cost grows with the context while the matmuls do not.
 */
export const TYPICAL_CONTEXT_TOKENS = 256;

/** What the planner needs of a model: its layer count and the cost of each part. */
export interface PlannedModel {
  readonly shape: { readonly layers: number };
  readonly costs: ModelCosts;
}

/** Parses "even", "balanced" or explicit ranges such as "0-4,4-8,8-12". */
export function parseSplitSpec(text: string): SplitSpec {
  const trimmed = text.trim();
  if (trimmed === 'even' || trimmed === 'balanced') return { kind: trimmed };
  if (trimmed === '') throw new Error('split: empty; expected even, balanced or ranges like 0-4,4-8,8-12');
  const ranges = trimmed.split(',').map((part): [number, number] => {
    const match = /^\s*(\d+)\s*-\s*(\d+)\s*$/.exec(part);
    if (match === null) {
      throw new Error(`split: '${part}' is not a layer range like 4-8 (expected even, balanced or ranges like 0-4,4-8,8-12)`);
    }
    return [Number(match[1]), Number(match[2])];
  });
  return { kind: 'explicit', ranges };
}

/** Cuts the model's layers into `stages` contiguous, non-empty stages according to `spec`. */
export function planStages(model: PlannedModel, stages: number, spec: SplitSpec): StageRange[] {
  const layers = model.shape.layers;
  if (!Number.isInteger(stages) || stages < 1) throw new Error(`stages: expected a positive integer, got ${stages}`);
  if (stages > layers) {
    throw new Error(`stages: ${stages} stages need at least ${stages} layers, the model has ${layers}`);
  }
  switch (spec.kind) {
    case 'even':
      return evenSplit(layers, stages);
    case 'balanced':
      return balancedSplit(model, stages);
    case 'explicit':
      return checkExplicitRanges(layers, stages, spec.ranges);
  }
}

/** Sizes differ by at most one; the earlier stages take the extra layers. */
function evenSplit(nLayer: number, stages: number): StageRange[] {
  const base = Math.floor(nLayer / stages);
  const extra = nLayer % stages;
  const ranges: StageRange[] = [];
  let start = 0;
  for (let k = 0; k < stages; k++) {
    const size = base + (k < extra ? 1 : 0);
    ranges.push({ layerStart: start, layerEnd: start + size });
    start += size;
  }
  return ranges;
}

/**
 * Minimises the most expensive stage (the pipeline's throughput is set by its slowest stage);
 * among the cuts that reach that minimum, picks the one with the smallest sum of squared stage
 * costs, so the stages that are not the bottleneck are still evened out.
 */
function balancedSplit(model: PlannedModel, stages: number): StageRange[] {
  const n = model.shape.layers;
  const cost = model.costs;
  const stageCost = (start: number, end: number): number =>
    (end - start) * cost.layer + (start === 0 ? cost.embedding : 0) + (end === n ? cost.head : 0);

  // best[k][i]: the smallest achievable maximum when the first i layers form k stages.
  const best = table(stages + 1, n + 1, Infinity);
  best[0][0] = 0;
  for (let k = 1; k <= stages; k++) {
    for (let i = k; i <= n; i++) {
      for (let j = k - 1; j < i; j++) {
        best[k][i] = Math.min(best[k][i], Math.max(best[k - 1][j], stageCost(j, i)));
      }
    }
  }
  const limit = best[stages][n];

  const squares = table(stages + 1, n + 1, Infinity);
  const cut = table(stages + 1, n + 1, -1);
  squares[0][0] = 0;
  for (let k = 1; k <= stages; k++) {
    for (let i = k; i <= n; i++) {
      for (let j = k - 1; j < i; j++) {
        const c = stageCost(j, i);
        if (c > limit || squares[k - 1][j] === Infinity) continue;
        const total = squares[k - 1][j] + c * c;
        if (total < squares[k][i]) {
          squares[k][i] = total;
          cut[k][i] = j;
        }
      }
    }
  }
  const ranges: StageRange[] = [];
  for (let k = stages, end = n; k > 0; k--) {
    const start = cut[k][end];
    ranges.unshift({ layerStart: start, layerEnd: end });
    end = start;
  }
  return ranges;
}

function table(rows: number, columns: number, fill: number): number[][] {
  return Array.from({ length: rows }, () => new Array<number>(columns).fill(fill));
}

function checkExplicitRanges(nLayer: number, stages: number, ranges: readonly [number, number][]): StageRange[] {
  const shown = ranges.map(([a, b]) => `${a}-${b}`).join(',');
  if (ranges.length !== stages) {
    throw new Error(`split: ${shown} has ${ranges.length} ranges but --stages is ${stages}`);
  }
  let expectedStart = 0;
  for (const [start, end] of ranges) {
    if (end <= start) throw new Error(`split: range ${start}-${end} is empty; a stage needs at least one layer`);
    if (start !== expectedStart) {
      throw new Error(
        start > expectedStart
          ? `split: layers ${expectedStart}-${start} are in no stage (range ${start}-${end} should start at ${expectedStart})`
          : `split: range ${start}-${end} overlaps the previous range, which ends at ${expectedStart}`,
      );
    }
    expectedStart = end;
  }
  if (expectedStart !== nLayer) {
    throw new Error(
      expectedStart < nLayer
        ? `split: ${shown} stops at layer ${expectedStart}; the model has ${nLayer} layers`
        : `split: ${shown} goes to layer ${expectedStart}; the model has only ${nLayer} layers`,
    );
  }
  return ranges.map(([layerStart, layerEnd]) => ({ layerStart, layerEnd }));
}
