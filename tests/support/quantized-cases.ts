import type { WeightFormat } from '../../shared/model/manifest';
import type { TinyModelOptions } from './test-models';

/** One quantized format and graph kind, with the split layouts compared with its 1-stage (monolithic) graph. */
export interface QuantizedCase {
  readonly name: string;
  readonly weights: WeightFormat;
  readonly ops: 'plain' | 'fused';
  readonly splits: readonly Omit<TinyModelOptions, 'weights' | 'ops'>[];
}

/** The formats and splits every family's quantized pipeline test covers (the tiny presets have 6 layers). */
export const QUANTIZED_CASES: readonly QuantizedCase[] = [
  {
    name: 'int4, fused',
    weights: { format: 'int4' },
    ops: 'fused',
    splits: [
      { stages: 3, split: { kind: 'balanced' } },
      { stages: 2, split: { kind: 'explicit', ranges: [[0, 4], [4, 6]] } },
    ],
  },
  { name: 'int8, fused', weights: { format: 'int8' }, ops: 'fused', splits: [{ stages: 3, split: { kind: 'even' } }] },
  { name: 'int4, plain', weights: { format: 'int4' }, ops: 'plain', splits: [{ stages: 3, split: { kind: 'even' } }] },
];
