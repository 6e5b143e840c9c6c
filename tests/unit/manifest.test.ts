import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { defaultAttentionKernel, parseManifest, readManifest, verifyStageFiles, type ModelManifest } from '../../shared/model/manifest';
import { compileCheckpoint } from '../../tools/compiler/compile-model';
import { gpt2Checkpoint } from '../../tools/families/gpt2/gpt2-family';
import { GPT2_PRESETS, randomGpt2Checkpoint } from '../../tools/init/random-gpt2';

const COMPILE_TEST_TIMEOUT_MS = 120_000;

let workDir: string;
let modelDir: string;
let manifest: ModelManifest;
let manifestJson: Record<string, unknown>;

beforeAll(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), 'manifest-'));
  const tokenizer = path.join(workDir, 'tokenizer.json');
  const tokenizerConfig = path.join(workDir, 'tokenizer_config.json');
  await writeFile(tokenizer, JSON.stringify({ model: { type: 'BPE', vocab: { a: 0 } } }));
  await writeFile(tokenizerConfig, JSON.stringify({ model_max_length: 256 }));
  modelDir = path.join(workDir, 'tiny');
  const config = { ...GPT2_PRESETS.tiny, vocabSize: 1000, nLayer: 3, bosTokenId: 999, eosTokenId: 999 };
  manifest = await compileCheckpoint(gpt2Checkpoint(randomGpt2Checkpoint(config, 3)), modelDir, {
    stages: 2,
    split: { kind: 'even' },
    ops: 'plain',
    modelName: 'tiny',
    tokenizerFiles: [tokenizer, tokenizerConfig],
  });
  manifestJson = JSON.parse(await readFile(path.join(modelDir, 'manifest.json'), 'utf8')) as Record<string, unknown>;
}, COMPILE_TEST_TIMEOUT_MS);

afterAll(async () => {
  await rm(workDir, { recursive: true, force: true });
});

/** Writes a corrupted copy of the manifest into its own folder and returns that folder. */
async function corrupted(name: string, change: (json: Record<string, any>) => void): Promise<string> {
  const dir = await mkdtemp(path.join(workDir, `${name}-`));
  const copy = JSON.parse(JSON.stringify(manifestJson)) as Record<string, any>;
  change(copy);
  await writeFile(path.join(dir, 'manifest.json'), JSON.stringify(copy));
  return dir;
}

describe('manifest', () => {
  test('records the sha256 and byte size of every stage and tokenizer file', async () => {
    const files = [...manifest.stages.flatMap((s) => s.files), ...manifest.tokenizerFiles];
    expect(files.map((f) => f.path).sort()).toEqual(
      ['stage-0.onnx', 'stage-0.onnx.data', 'stage-1.onnx', 'stage-1.onnx.data', 'tokenizer.json', 'tokenizer_config.json'].sort(),
    );
    for (const file of files) {
      const bytes = await readFile(path.join(modelDir, file.path));
      expect(file.bytes).toBe(bytes.byteLength);
      expect(file.sha256).toBe(createHash('sha256').update(bytes).digest('hex'));
    }
    expect(manifest.stages.every((s) => s.weights.format === 'fp32')).toBe(true);
    expect(manifest.stages.map((s) => [s.layerStart, s.layerEnd, s.isFirst, s.isLast])).toEqual([
      [0, 2, true, false],
      [2, 3, false, true],
    ]);
  });

  test('readManifest parses what the compiler wrote back into the same value', async () => {
    expect(await readManifest(modelDir)).toEqual(manifest);
  });

  test('fused graphs default to the split kernel under multi-head attention and to GroupQueryAttention under grouped-query attention', () => {
    expect(defaultAttentionKernel({ attentionHeads: 12, kvHeads: 12 })).toBe('split');
    expect(defaultAttentionKernel({ attentionHeads: 9, kvHeads: 3 })).toBe('gqa');
  });

  test('a fused manifest names its attention kernel; one written before the field existed used GroupQueryAttention', () => {
    const json = JSON.parse(JSON.stringify(manifest)) as Record<string, unknown>;
    expect(parseManifest({ ...json, ops: 'fused', attention: 'split' }).attention).toBe('split');
    expect(parseManifest({ ...json, ops: 'fused', attention: 'gqa' }).attention).toBe('gqa');
    expect(parseManifest({ ...json, ops: 'fused' }).attention).toBe('gqa');
    expect(parseManifest(json).attention).toBeUndefined();
  });

  test.each<[string, (json: Record<string, any>) => void, RegExp]>([
    ['the first format version', (j) => (j.formatVersion = 1), /formatVersion: expected 2, got 1 \(compiled by an older version: compile the checkpoint again\)/],
    ['an unknown ops variant', (j) => (j.ops = 'fast'), /ops: expected "plain" or "fused"/],
    ['a missing shape field', (j) => delete j.shape.kvHeads, /shape\.kvHeads: expected an integer/],
    ['KV heads that do not divide the attention heads', (j) => (j.shape.kvHeads = 3), /shape\.kvHeads: 3 does not divide shape\.attentionHeads 4/],
    ['an end-of-sequence id outside the vocabulary', (j) => (j.shape.eosTokenIds = [1000]), /shape\.eosTokenIds\[0\]: 1000 is outside the vocabulary/],
    ['an unknown weight format', (j) => (j.stages[0].weights.format = 'int3'), /stages\[0\]\.weights\.format: expected one of fp32, int8, int4/],
    ['a stage that does not start where the previous one ends', (j) => (j.stages[1].layerStart = 1), /stages\[1\]\.layerStart: expected 2, got 1/],
    ['stages that stop before the last layer', (j) => (j.stages[1].layerEnd = 2), /stages\[1\]\.layerEnd/],
    ['a wrong isLast flag', (j) => (j.stages[0].isLast = true), /stages\[0\]\.isLast/],
    ['a malformed sha256', (j) => (j.stages[0].files[1].sha256 = 'xyz'), /stages\[0\]\.files\[1\]\.sha256: expected 64 lowercase hex digits/],
    ['a negative size', (j) => (j.stages[1].files[0].bytes = -1), /stages\[1\]\.files\[0\]\.bytes: expected an integer >= 0/],
    ['a path leaving the folder', (j) => (j.tokenizerFiles[0].path = '../secret'), /tokenizerFiles\[0\]\.path: expected a path inside the model folder/],
    ['no stages', (j) => (j.stages = []), /stages: expected at least one stage/],
    ['an attention kernel on plain ops', (j) => (j.attention = 'split'), /attention: applies only to ops "fused", got "split" with ops "plain"/],
    ['an unknown attention kernel', (j) => ((j.ops = 'fused'), (j.attention = 'flash')), /attention: expected "split" or "gqa", got "flash"/],
  ])('readManifest rejects a manifest with %s, naming the field', async (name, change, message) => {
    const dir = await corrupted(name.replace(/\W+/g, '-'), change);
    const error = await readManifest(dir).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(error?.message).toMatch(message);
    expect(error?.message).toContain(path.join(dir, 'manifest.json'));
  });

  test('readManifest rejects a file that is not JSON, naming the file', async () => {
    const dir = await mkdtemp(path.join(workDir, 'not-json-'));
    await writeFile(path.join(dir, 'manifest.json'), '{"formatVersion": 2,');
    await expect(readManifest(dir)).rejects.toThrow(`${path.join(dir, 'manifest.json')}: not valid JSON`);
  });

  test('verifyStageFiles accepts the files as compiled', async () => {
    for (const stage of manifest.stages) await expect(verifyStageFiles(modelDir, stage)).resolves.toBeUndefined();
  });

  test('verifyStageFiles names the file when one byte of it changed', async () => {
    const dataFile = path.join(modelDir, 'stage-1.onnx.data');
    const original = await readFile(dataFile);
    const changed = Buffer.from(original);
    changed[Math.floor(changed.length / 2)] ^= 0x01;
    await writeFile(dataFile, changed);
    try {
      await expect(verifyStageFiles(modelDir, manifest.stages[0])).resolves.toBeUndefined();
      await expect(verifyStageFiles(modelDir, manifest.stages[1])).rejects.toThrow(`stage 1 file ${dataFile}: sha256 is`);
    } finally {
      await writeFile(dataFile, original);
    }
  });

  test('verifyStageFiles reports a file whose size changed, and a missing file', async () => {
    const graphFile = path.join(modelDir, 'stage-0.onnx');
    const original = await readFile(graphFile);
    await writeFile(graphFile, Buffer.concat([original, Buffer.from([0])]));
    try {
      await expect(verifyStageFiles(modelDir, manifest.stages[0])).rejects.toThrow(
        `stage 0 file ${graphFile}: size is ${original.length + 1} bytes, the manifest says ${original.length}`,
      );
    } finally {
      await writeFile(graphFile, original);
    }
    expect((await stat(graphFile)).size).toBe(original.length);
    const missing = { ...manifest.stages[0], files: [{ ...manifest.stages[0].files[0], path: 'gone.onnx' }] };
    await expect(verifyStageFiles(modelDir, missing)).rejects.toThrow(`stage 0 file ${path.join(modelDir, 'gone.onnx')}`);
  });
});
