import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { onnx } from 'onnx-proto';
import { writeCheckpoint, type Checkpoint } from '../../tools/families/checkpoint';
import { gpt2Checkpoint, gpt2Shape } from '../../tools/families/gpt2/gpt2-family';
import type { Gpt2Checkpoint } from '../../tools/families/gpt2/gpt2-weights';
import { compileCheckpoint, compileModel, type CompileCheckpointOptions } from '../../tools/compiler/compile-model';
import { GPT2_PRESETS, randomGpt2Checkpoint } from '../../tools/init/random-gpt2';

const COMPILE_TEST_TIMEOUT_MS = 120_000;
const SMALL_VOCAB_CONFIG = { ...GPT2_PRESETS.tiny, vocabSize: 1000, bosTokenId: 999, eosTokenId: 999 };

let workDir: string;
let checkpoint: Checkpoint;
let typed: Gpt2Checkpoint;

beforeAll(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), 'compiler-compile-model-'));
  typed = randomGpt2Checkpoint(SMALL_VOCAB_CONFIG, 5);
  checkpoint = gpt2Checkpoint(typed);
});

afterAll(async () => {
  await rm(workDir, { recursive: true, force: true });
});

function options(overrides: Partial<CompileCheckpointOptions> = {}): CompileCheckpointOptions {
  return { stages: 3, split: { kind: 'even' }, ops: 'plain', modelName: 'tiny', tokenizerFiles: [], ...overrides };
}

/** The decoded model's graph; protobufjs fills repeated fields with [] when decoding. */
async function loadModel(file: string): Promise<{ opsetImport: onnx.IOperatorSetIdProto[]; graph: onnx.GraphProto }> {
  const model = onnx.ModelProto.decode(await readFile(file));
  if (model.graph === null || model.graph === undefined) throw new Error(`${file}: no graph`);
  return { opsetImport: model.opsetImport, graph: model.graph as onnx.GraphProto };
}

interface DeclaredValue {
  readonly dtype: number;
  readonly dims: (number | string)[];
}

function declared(values: onnx.IValueInfoProto[]): Record<string, DeclaredValue> {
  return Object.fromEntries(
    values.map((v) => [
      v.name as string,
      {
        dtype: v.type?.tensorType?.elemType as number,
        dims: (v.type?.tensorType?.shape?.dim ?? []).map((d) => (d.dimParam ? d.dimParam : Number(d.dimValue))),
      },
    ]),
  );
}

describe('compileCheckpoint', () => {
  test(
    'stage graphs declare exactly the inputs and outputs of docs/stage-graph.md',
    async () => {
      const out = path.join(workDir, 'contract');
      const manifest = await compileCheckpoint(checkpoint, out, options({ split: { kind: 'explicit', ranges: [[0, 2], [2, 5], [5, 6]] } }));
      const FLOAT = onnx.TensorProto.DataType.FLOAT;
      const INT64 = onnx.TensorProto.DataType.INT64;
      const [e, h, d, v] = [64, 4, 16, 1000];
      const pastAndPresent = (from: number, to: number): [Record<string, DeclaredValue>, Record<string, DeclaredValue>] => {
        const inputs: Record<string, DeclaredValue> = {};
        const outputs: Record<string, DeclaredValue> = {};
        for (let layer = from; layer < to; layer++) {
          for (const kind of ['key', 'value']) {
            inputs[`past_${kind}.${layer}`] = { dtype: FLOAT, dims: ['batch', h, 'past', d] };
            outputs[`present_${kind}.${layer}`] = { dtype: FLOAT, dims: ['batch', h, 'seq', d] };
          }
        }
        return [inputs, outputs];
      };
      const common = {
        position_ids: { dtype: INT64, dims: ['batch', 'seq'] },
        attention_mask: { dtype: INT64, dims: ['batch', 'total'] },
      };
      const expected = [
        {
          inputs: { input_ids: { dtype: INT64, dims: ['batch', 'seq'] }, ...common, ...pastAndPresent(0, 2)[0] },
          outputs: { hidden_states_out: { dtype: FLOAT, dims: ['batch', 'seq', e] }, ...pastAndPresent(0, 2)[1] },
        },
        {
          inputs: { hidden_states: { dtype: FLOAT, dims: ['batch', 'seq', e] }, ...common, ...pastAndPresent(2, 5)[0] },
          outputs: { hidden_states_out: { dtype: FLOAT, dims: ['batch', 'seq', e] }, ...pastAndPresent(2, 5)[1] },
        },
        {
          inputs: { hidden_states: { dtype: FLOAT, dims: ['batch', 'seq', e] }, ...common, ...pastAndPresent(5, 6)[0] },
          outputs: { logits: { dtype: FLOAT, dims: ['batch', v] }, logsumexp: { dtype: FLOAT, dims: ['batch'] }, argmax: { dtype: INT64, dims: ['batch'] }, ...pastAndPresent(5, 6)[1] },
        },
      ];
      for (const [k, stage] of manifest.stages.entries()) {
        const model = await loadModel(path.join(out, stage.files[0].path));
        expect(declared(model.graph.input)).toEqual(expected[k].inputs);
        expect(declared(model.graph.output)).toEqual(expected[k].outputs);
        expect(model.opsetImport.map((o) => [o.domain, Number(o.version)])).toEqual([['', 17]]);
      }
    },
    COMPILE_TEST_TIMEOUT_MS,
  );

  test.each([
    ['split (the default)', undefined, ['FastGelu', 'SkipLayerNormalization']],
    ['gqa', 'gqa', ['FastGelu', 'GroupQueryAttention', 'SkipLayerNormalization']],
  ] as const)(
    'fused graphs with %s attention import com.microsoft and use its fused ops, and the manifest names the kernel',
    async (name, attention, expectedOps) => {
      const out = path.join(workDir, `fused-ops-${attention ?? 'default'}`);
      const manifest = await compileCheckpoint(checkpoint, out, options({ stages: 1, ops: 'fused', attention }));
      expect(manifest.attention).toBe(attention ?? 'split');
      expect(JSON.parse(await readFile(path.join(out, 'manifest.json'), 'utf8')).attention).toBe(attention ?? 'split');
      const model = await loadModel(path.join(out, manifest.stages[0].files[0].path));
      expect(model.opsetImport.map((o) => [o.domain, Number(o.version)])).toEqual([
        ['', 17],
        ['com.microsoft', 1],
      ]);
      const contribOps = new Set(model.graph.node.filter((n) => n.domain === 'com.microsoft').map((n) => n.opType));
      expect([...contribOps].sort()).toEqual(expectedOps);
      const groupQuery = model.graph.node.filter((n) => n.opType === 'GroupQueryAttention');
      if (attention === 'gqa') {
        expect(groupQuery).toHaveLength(SMALL_VOCAB_CONFIG.nLayer);
        for (const node of groupQuery) {
          const attributes = Object.fromEntries((node.attribute ?? []).map((a) => [a.name, a.type === 2 ? Number(a.i) : a.f]));
          expect(attributes).toMatchObject({ num_heads: 4, kv_num_heads: 4 });
        }
      } else {
        // No concatenation of the past: two score MatMuls and two value MatMuls per layer read it in place.
        expect(model.graph.node.filter((n) => n.opType === 'Concat' && (n.input ?? []).some((i) => i.startsWith('past_')))).toHaveLength(0);
        expect(model.graph.node.filter((n) => n.opType === 'MatMul' && (n.input ?? []).some((i) => i.startsWith('past_value')))).toHaveLength(SMALL_VOCAB_CONFIG.nLayer);
      }
    },
    COMPILE_TEST_TIMEOUT_MS,
  );

  test('an attention kernel is refused by name when unknown or asked of plain graphs, before anything is written', async () => {
    const out = path.join(workDir, 'refused-attention');
    await expect(compileCheckpoint(checkpoint, out, options({ ops: 'fused', attention: 'flash' as never }))).rejects.toThrow('attention: expected split or gqa, got "flash"');
    await expect(compileCheckpoint(checkpoint, out, options({ ops: 'plain', attention: 'gqa' }))).rejects.toThrow('attention: applies only to ops fused');
    expect(existsSync(out)).toBe(false);
  });

  test(
    'every initializer above 1 KiB is external data whose bytes at the recorded offset are the checkpoint weight',
    async () => {
      const out = path.join(workDir, 'external');
      const manifest = await compileCheckpoint(checkpoint, out, options({ stages: 2 }));
      const expectedWeights: Record<string, Float32Array> = {
        wte: typed.weights.wte.data,
        wpe: typed.weights.wpe.data,
        'h.0.attn.c_attn.weight': typed.weights.layers[0].attnQkv.weight.data,
        'h.4.mlp.c_proj.weight': typed.weights.layers[4].mlpProj.weight.data,
        'h.5.mlp.c_fc.weight': typed.weights.layers[5].mlpFc.weight.data,
        'ln_f.weight': typed.weights.lnF.weight.data,
      };
      const seen = new Set<string>();
      for (const stage of manifest.stages) {
        const graphFile = path.join(out, stage.files[0].path);
        expect(stage.files.map((f) => f.path)).toEqual([`stage-${stage.index}.onnx`, `stage-${stage.index}.onnx.data`]);
        const data = await readFile(`${graphFile}.data`);
        const model = await loadModel(graphFile);
        // The graph itself stays small: every weight matrix lives in the data file.
        expect(stage.files[0].bytes).toBeLessThan(64 * 1024);
        for (const init of model.graph.initializer) {
          const external = init.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL;
          const count = (init.dims ?? []).reduce((n: number, dim) => n * Number(dim), 1);
          const byteLength = count * (init.dataType === onnx.TensorProto.DataType.INT64 ? 8 : 4);
          expect([init.name, external]).toEqual([init.name, byteLength > 1024]);
          if (!external) continue;
          const entries = Object.fromEntries((init.externalData ?? []).map((entry) => [entry.key, entry.value]));
          expect(entries.location).toBe(`stage-${stage.index}.onnx.data`);
          const offset = Number(entries.offset);
          expect(Number(entries.length)).toBe(byteLength);
          expect(offset + byteLength).toBeLessThanOrEqual(data.length);
          const name = String(init.name);
          const want = expectedWeights[name];
          if (want === undefined) continue;
          seen.add(name);
          const stored = new Float32Array(data.buffer.slice(data.byteOffset + offset, data.byteOffset + offset + byteLength));
          expect(stored).toEqual(want);
        }
      }
      expect([...seen].sort()).toEqual(['h.0.attn.c_attn.weight', 'h.4.mlp.c_proj.weight', 'h.5.mlp.c_fc.weight', 'wpe', 'wte']);
    },
    COMPILE_TEST_TIMEOUT_MS,
  );

  test('a failed compile leaves nothing at out and no temporary folder beside it', async () => {
    const parent = path.join(workDir, 'failing');
    await mkdir(parent);
    const out = path.join(parent, 'model');
    const missingTokenizer = path.join(workDir, 'no-such-tokenizer.json');
    await expect(compileCheckpoint(checkpoint, out, options({ tokenizerFiles: [missingTokenizer] }))).rejects.toThrow(
      /no-such-tokenizer\.json/,
    );
    expect(await readdir(parent)).toEqual([]);
  });

  test('a bad split is refused before anything is written', async () => {
    const parent = path.join(workDir, 'bad-split');
    await mkdir(parent);
    const bad = options({ split: { kind: 'explicit', ranges: [[0, 3], [4, 6]] }, stages: 2 });
    await expect(compileCheckpoint(checkpoint, path.join(parent, 'model'), bad)).rejects.toThrow(/layers 3-4 are in no stage/);
    expect(await readdir(parent)).toEqual([]);
  });

  test('a non-empty out is refused and kept unless force is given, which replaces it', async () => {
    const out = path.join(workDir, 'existing');
    await mkdir(out);
    await writeFile(path.join(out, 'keep.txt'), 'old');
    await expect(compileCheckpoint(checkpoint, out, options())).rejects.toThrow(`out: ${out} exists and is not empty`);
    expect(await readdir(out)).toEqual(['keep.txt']);

    await compileCheckpoint(checkpoint, out, options({ force: true }));
    expect((await readdir(out)).sort()).toEqual(
      ['manifest.json', 'stage-0.onnx', 'stage-0.onnx.data', 'stage-1.onnx', 'stage-1.onnx.data', 'stage-2.onnx', 'stage-2.onnx.data'].sort(),
    );
    expect((await readdir(workDir)).filter((name) => name.startsWith('existing'))).toEqual(['existing']);
  });

  test('the model folder is readable by other users (0755), unlike the private temporary folder it is built in', async () => {
    const out = path.join(workDir, 'shared-mode');
    await compileCheckpoint(checkpoint, out, options());
    expect((await stat(out)).mode & 0o777).toBe(0o755);
  });

  test('a weight stored as Linear [out, in] instead of Conv1D [in, out] is refused, naming it', async () => {
    const layers = [...typed.weights.layers];
    const fc = layers[1].mlpFc;
    layers[1] = { ...layers[1], mlpFc: { ...fc, weight: { dims: [256, 64], data: fc.weight.data } } };
    const swapped = gpt2Checkpoint({ ...typed, weights: { ...typed.weights, layers } });
    await expect(compileCheckpoint(swapped, path.join(workDir, 'swapped'), options())).rejects.toThrow(
      'weights h.1.mlp.c_fc.weight: expected dims [64, 256], got [256, 64]',
    );
  });
});

describe('compileModel', () => {
  test(
    'compiles a Hugging Face folder, names the model after it and copies its tokenizer files',
    async () => {
      const from = path.join(workDir, 'hf', 'my-gpt2');
      await writeCheckpoint(from, checkpoint, {
        tokenizerJson: { model: { type: 'BPE', vocab: { a: 0, b: 1 }, merges: [] } },
        tokenizerConfigJson: { model_max_length: 256 },
      });
      const out = path.join(workDir, 'compiled-from-hf');
      const manifest = await compileModel({ from, out, stages: 2, split: { kind: 'balanced' }, ops: 'fused' });
      expect(manifest.modelName).toBe('my-gpt2');
      expect(manifest.shape).toEqual(gpt2Shape(SMALL_VOCAB_CONFIG));
      expect(manifest.family).toBe('gpt2');
      expect(manifest.architecture).toBe('GPT2LMHeadModel');
      expect(manifest.tokenizerFiles.map((f) => f.path).sort()).toEqual(['tokenizer.json', 'tokenizer_config.json']);
      for (const file of manifest.tokenizerFiles) {
        expect(await readFile(path.join(out, file.path))).toEqual(await readFile(path.join(from, file.path)));
      }
    },
    COMPILE_TEST_TIMEOUT_MS,
  );
});
