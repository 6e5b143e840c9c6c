import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { onnx } from 'onnx-proto';
import { InProcessPipeline } from '../../services/node/in-process-pipeline';
import { readManifest, type OpsVariant, type WeightFormat } from '../../shared/model/manifest';
import { compileCheckpoint, type CompileCheckpointOptions } from '../../tools/compiler/compile-model';
import { gpt2Checkpoint } from '../../tools/families/gpt2/gpt2-family';
import { GPT2_PRESETS, gpt2ScaleCheckpoint, randomGpt2Checkpoint } from '../../tools/init/random-gpt2';
import { maxAbsDifference } from '../support/compiler-fixtures';
import { dequantizedGpt2 } from '../support/dequantized-gpt2';
import { naiveGpt2Logits } from '../support/naive-gpt2';

const COMPILE_TEST_TIMEOUT_MS = 180_000;
const SMALL_VOCAB_CONFIG = { ...GPT2_PRESETS.tiny, vocabSize: 1000, bosTokenId: 999, eosTokenId: 999 };
const PROMPT = [464, 2068, 7586, 21831, 18045, 625, 262];

let workDir: string;

beforeAll(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), 'compiler-quantized-'));
});

afterAll(async () => {
  await rm(workDir, { recursive: true, force: true });
});

function options(weights: WeightFormat, overrides: Partial<CompileCheckpointOptions> = {}): CompileCheckpointOptions {
  return { stages: 3, split: { kind: 'even' }, ops: 'fused', modelName: 'tiny', tokenizerFiles: [], weights, ...overrides };
}

async function graphOf(file: string): Promise<onnx.GraphProto> {
  return onnx.ModelProto.decode(await readFile(file)).graph as onnx.GraphProto;
}

function intAttribute(node: onnx.INodeProto, name: string): number {
  return Number(node.attribute?.find((a) => a.name === name)?.i);
}

/** Float32 initializers of more than `elements` values: the fp32 weight matrices and tables a stage holds. */
function largeFloatInitializers(graph: onnx.GraphProto, elements: number): string[] {
  return graph.initializer
    .filter((t) => t.dataType === onnx.TensorProto.DataType.FLOAT && (t.dims ?? []).reduce((n: number, d) => n * Number(d), 1) > elements)
    .map((t) => t.name as string);
}

describe('quantized compiles', () => {
  const checkpoint = gpt2Checkpoint(randomGpt2Checkpoint(SMALL_VOCAB_CONFIG, 5));

  test.each<[string, WeightFormat, WeightFormat]>([
    ['fp32', { format: 'fp32' }, { format: 'fp32' }],
    ['int8 (defaults filled in)', { format: 'int8' }, { format: 'int8', blockSize: 32, keptFp32: [] }],
    ['int4, blocks of 64, lm_head kept fp32', { format: 'int4', blockSize: 64, keptFp32: ['lm_head'] }, { format: 'int4', blockSize: 64, keptFp32: ['lm_head'] }],
    ['int4, embedding kept fp32', { format: 'int4', keptFp32: ['embedding'] }, { format: 'int4', blockSize: 32, keptFp32: ['embedding'] }],
  ])(
    '%s: every stage of the manifest read back records the format, and the graphs hold it',
    async (name, weights, recorded) => {
      const out = path.join(workDir, `manifest-${name.replace(/\W+/g, '-')}`);
      const written = await compileCheckpoint(checkpoint, out, options(weights));
      const manifest = await readManifest(out);
      expect(manifest).toEqual(written);
      expect(manifest.stages.map((s) => s.weights)).toEqual([recorded, recorded, recorded]);

      const kept = recorded.keptFp32 ?? [];
      for (const stage of manifest.stages) {
        const graph = await graphOf(path.join(out, stage.files[0].path));
        const ops = graph.node.map((n) => n.opType);
        const nbits = graph.node.filter((n) => n.opType === 'MatMulNBits');
        const layers = stage.layerEnd - stage.layerStart;
        if (recorded.format === 'fp32') {
          expect(nbits).toHaveLength(0);
          expect(ops).not.toContain('GatherBlockQuantized');
          continue;
        }
        const quantizedHead = stage.isLast && !kept.includes('lm_head');
        expect(nbits).toHaveLength(4 * layers + (quantizedHead ? 1 : 0));
        for (const node of nbits) {
          expect(intAttribute(node, 'bits')).toBe(recorded.format === 'int8' ? 8 : 4);
          expect(intAttribute(node, 'block_size')).toBe(recorded.blockSize);
          expect(intAttribute(node, 'accuracy_level')).toBe(4);
        }
        expect(ops.filter((op) => op === 'GatherBlockQuantized')).toHaveLength(stage.isFirst && !kept.includes('embedding') ? 2 : 0);
        expect(ops.includes('Gemm')).toBe(stage.isLast && kept.includes('lm_head'));
        // No fp32 copy of a quantized matrix: only the kept kinds stay float (the tied wte, or wte and wpe).
        const expectedFloat = [
          ...(stage.isFirst && kept.includes('embedding') ? ['wte', 'wpe'] : []),
          ...(stage.isLast && kept.includes('lm_head') ? ['wte'] : []),
        ];
        expect(largeFloatInitializers(graph, 4096).sort()).toEqual([...new Set(expectedFloat)].sort());
      }
    },
    COMPILE_TEST_TIMEOUT_MS,
  );

  // Per weight int8 stores 1 + 4/32 bytes, int4 0.5 + 4/32 (+ 0.5/32 of zero points) against fp32's 4;
  // norms, biases and the 4 KiB alignment of every tensor in the data file come on top.
  test(
    'stage files shrink with the format: int8 below 0.35x fp32, int4 below 0.25x',
    async () => {
      const bytes = async (weights: WeightFormat): Promise<number> => {
        const manifest = await compileCheckpoint(checkpoint, path.join(workDir, `size-${weights.format}`), options(weights, { stages: 1 }));
        return manifest.stages.flatMap((s) => s.files).reduce((n, f) => n + f.bytes, 0);
      };
      const fp32 = await bytes({ format: 'fp32' });
      expect(await bytes({ format: 'int8' })).toBeLessThan(0.35 * fp32);
      expect(await bytes({ format: 'int4' })).toBeLessThan(0.25 * fp32);
    },
    COMPILE_TEST_TIMEOUT_MS,
  );

  test.each<[string, WeightFormat, RegExp]>([
    ['a block size that is no power of two', { format: 'int4', blockSize: 24 }, /^weights\.blockSize: expected a power of two from 16 to 256/],
    ['a block size below 16', { format: 'int8', blockSize: 8 }, /^weights\.blockSize: /],
    ['an unknown tensor kind', { format: 'int4', keptFp32: ['lm_head', 'norms'] }, /^weights\.keptFp32: unknown tensor kind "norms"/],
    ['a block size for fp32', { format: 'fp32', blockSize: 32 }, /^weights\.blockSize: applies only to int8 and int4/],
  ])('%s is refused before anything is written', async (name, weights, message) => {
    const out = path.join(workDir, `refused-${name.replace(/\W+/g, '-')}`);
    await expect(compileCheckpoint(checkpoint, out, options(weights))).rejects.toThrow(message);
  });
});

describe('a quantized graph computes with the weights it stores', () => {
  // GPT-2's own init: smooth enough that the small differences left are measurable, not chaotic.
  const typed = gpt2ScaleCheckpoint(GPT2_PRESETS.tiny, 1234);

  test.each<[WeightFormat['format'], OpsVariant]>([
    ['int4', 'fused'],
    ['int4', 'plain'],
    ['int8', 'fused'],
  ])(
    '%s, %s: last-position logits follow the naive float64 pass over the dequantized weights, not the fp32 ones',
    async (format, ops) => {
      const weights: WeightFormat = { format, blockSize: 32 };
      const out = path.join(workDir, `naive-${format}-${ops}`);
      await compileCheckpoint(gpt2Checkpoint(typed), out, options(weights, { stages: 1, ops }));
      const pipeline = await InProcessPipeline.load(out);
      let logits: Float32Array;
      try {
        logits = await pipeline.forward([{ sequenceId: 'naive', pastLength: 0, tokenIds: PROMPT }]);
      } finally {
        await pipeline.close();
      }
      const dequantized = naiveGpt2Logits(dequantizedGpt2(typed, weights), PROMPT)[PROMPT.length - 1];
      const original = naiveGpt2Logits(typed, PROMPT)[PROMPT.length - 1];
      // What is left is accuracy level 4's int8 activations: measured 8e-3 for both formats
      // (logits up to 0.65), against 0.14 (int4) and 0.016 (int8) from the fp32 weights.
      expect(maxAbsDifference(logits, dequantized)).toBeLessThan(0.015);
      if (format === 'int4') expect(maxAbsDifference(logits, original)).toBeGreaterThan(5 * maxAbsDifference(logits, dequantized));
    },
    COMPILE_TEST_TIMEOUT_MS,
  );
});
