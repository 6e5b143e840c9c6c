import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { readManifest } from '../../shared/model/manifest';
import { writeCheckpoint } from '../../tools/families/checkpoint';
import { gpt2Checkpoint } from '../../tools/families/gpt2/gpt2-family';
import { runModelCompileCli } from '../../tools/model-compile';
import { FakeTerminal } from '../support/fake-terminal';
import { GPT2_PRESETS, randomGpt2Checkpoint } from '../../tools/init/random-gpt2';

const COMPILE_TEST_TIMEOUT_MS = 120_000;

let workDir: string;
let from: string;

beforeAll(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), 'compiler-cli-'));
  from = path.join(workDir, 'tiny-gpt2');
  const config = { ...GPT2_PRESETS.tiny, vocabSize: 1000, bosTokenId: 999, eosTokenId: 999 };
  await writeCheckpoint(from, gpt2Checkpoint(randomGpt2Checkpoint(config, 9)), {
    tokenizerJson: { model: { type: 'BPE', vocab: { a: 0, b: 1 }, merges: [] } },
    tokenizerConfigJson: { model_max_length: 256 },
  });
});

afterAll(async () => {
  await rm(workDir, { recursive: true, force: true });
});

async function run(argv: string[], terminal?: FakeTerminal): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await runModelCompileCli(argv, {
    stdout: (text) => (stdout += text),
    stderr: (text) => (stderr += text),
    terminal,
  });
  return { code, stdout, stderr };
}

describe('model-compile CLI', () => {
  test.each<[string, (out: string) => string[], RegExp]>([
    ['no --from', (out) => ['--out', out, '--stages', '2'], /--from is required/],
    ['no --out', () => ['--from', from, '--stages', '2'], /--out is required/],
    ['no --stages', (out) => ['--from', from, '--out', out], /--stages is required/],
    ['--stages 0', (out) => ['--from', from, '--out', out, '--stages', '0'], /--stages: expected a positive integer, got '0'/],
    ['--stages two', (out) => ['--from', from, '--out', out, '--stages', 'two'], /--stages: expected a positive integer/],
    ['more stages than layers', (out) => ['--from', from, '--out', out, '--stages', '7'], /--stages: 7 stages need at least 7 layers/],
    ['--ops fast', (out) => ['--from', from, '--out', out, '--stages', '2', '--ops', 'fast'], /--ops: expected plain or fused/],
    ['--attention flash', (out) => ['--from', from, '--out', out, '--stages', '2', '--attention', 'flash'], /--attention: expected split or gqa, got 'flash'/],
    ['--attention with --ops plain', (out) => ['--from', from, '--out', out, '--stages', '2', '--ops', 'plain', '--attention', 'gqa'], /--attention: applies only to --ops fused/],
    ['a malformed --split', (out) => ['--from', from, '--out', out, '--stages', '2', '--split', '0:3'], /--split: '0:3' is not a layer range/],
    [
      'a --split with a gap',
      (out) => ['--from', from, '--out', out, '--stages', '2', '--split', '0-2,3-6'],
      /--split: layers 2-3 are in no stage/,
    ],
    [
      'a --split whose count differs from --stages',
      (out) => ['--from', from, '--out', out, '--stages', '3', '--split', '0-3,3-6'],
      /--split: 0-3,3-6 has 2 ranges but --stages is 3/,
    ],
    ['an unknown flag', (out) => ['--from', from, '--out', out, '--stages', '2', '--fast'], /unknown option '--fast'/],
    ['a --from that does not exist', (out) => ['--from', path.join(workDir, 'nope'), '--out', out, '--stages', '2'], /--from: .*nope is not a folder/],
    ['a --from without config.json', (out) => ['--from', workDir, '--out', out, '--stages', '2'], /--from: .*config\.json: missing file/],
    ['a --name with a space', (out) => ['--from', from, '--out', out, '--stages', '2', '--name', 'my model'], /--name: 'my model' must be 1-128 letters, digits and \. _ - \//],
    ['an empty --name', (out) => ['--from', from, '--out', out, '--stages', '2', '--name', ''], /--name: '' must be/],
  ])('%s: exits 2 with one line on stderr and creates no --out folder', async (name, args, message) => {
    const out = path.join(workDir, `out-${name.replace(/\W+/g, '-')}`);
    const result = await run(args(out));
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^model-compile: [^\n]+\n$/);
    expect(result.stderr).toMatch(message);
    expect(result.stdout).toBe('');
    expect(existsSync(out)).toBe(false);
  });

  test('a non-empty --out without --force exits 2 and keeps what was there', async () => {
    const out = path.join(workDir, 'occupied');
    await mkdir(out);
    await writeFile(path.join(out, 'mine.txt'), 'keep me');
    const result = await run(['--from', from, '--out', out, '--stages', '2']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/--out: .*occupied exists and is not empty; pass --force/);
    expect(await readdir(out)).toEqual(['mine.txt']);
  });

  test(
    'a good run prints the plan with layer ranges and file sizes and writes the model folder',
    async () => {
      const out = path.join(workDir, 'compiled');
      const result = await run(['--from', from, '--out', out, '--stages', '2', '--split', '0-4,4-6', '--ops', 'plain']);
      expect(result.stderr).toBe('');
      expect(result.code).toBe(0);
      expect(result.stdout).toMatch(/^compiled tiny-gpt2 into .*compiled: 2 stage\(s\), split 0-4,4-6, plain ops, in \d+\.\d s\n/);
      expect(result.stdout).toContain('stage 0: layers 0-4 + embeddings\n');
      expect(result.stdout).toContain('stage 1: layers 4-6 + final norm + lm_head\n');
      expect(result.stdout).toMatch(/stage-1\.onnx\.data +\d+\.\d (KiB|MiB)/);
      expect((await readdir(out)).sort()).toEqual(
        ['manifest.json', 'stage-0.onnx', 'stage-0.onnx.data', 'stage-1.onnx', 'stage-1.onnx.data', 'tokenizer.json', 'tokenizer_config.json'].sort(),
      );
    },
    COMPILE_TEST_TIMEOUT_MS,
  );

  test(
    '--progress prints a line per stage written; on a terminal a bar is drawn instead, and stderr stays empty',
    async () => {
      const lines = await run(['--from', from, '--out', path.join(workDir, 'progress-lines'), '--stages', '2', '--ops', 'plain', '--progress']);
      expect(lines.code).toBe(0);
      expect(lines.stderr.split('\n')).toEqual([
        expect.stringMatching(/^model-compile: compile 1\/2: stage 0 of 2 written \(\d+\.\d s\)$/),
        expect.stringMatching(/^model-compile: compile 2\/2: stage 1 of 2 written \(\d+\.\d s\)$/),
        '',
      ]);

      const terminal = new FakeTerminal();
      const bars = await run(['--from', from, '--out', path.join(workDir, 'progress-bars'), '--stages', '2', '--ops', 'plain'], terminal);
      expect(bars.code).toBe(0);
      expect(bars.stderr).toBe('');
      expect(terminal.visibleLines).toEqual([expect.stringMatching(/^compile █+ 2\/2 stage 1 of 2 written \(\d+\.\d s\)$/)]);

      const quiet = new FakeTerminal();
      const off = await run(['--from', from, '--out', path.join(workDir, 'progress-off'), '--stages', '2', '--ops', 'plain', '--no-progress'], quiet);
      expect([off.code, off.stderr, quiet.text]).toEqual([0, '', '']);
    },
    COMPILE_TEST_TIMEOUT_MS,
  );
});

describe('model-compile --name', () => {
  test(
    "the model is named --name, else after --from; a model folder's checkpoint/ compiles under that model's name",
    async () => {
      const named = path.join(workDir, 'named');
      expect((await run(['--from', from, '--out', named, '--stages', '1', '--name', 'org/tiny-int4.v2'])).code).toBe(0);
      expect((await readManifest(named)).modelName).toBe('org/tiny-int4.v2');

      // A model folder as model:init writes it: the compiled model, its checkpoint in checkpoint/.
      const modelFolder = path.join(workDir, 'as-init');
      expect((await run(['--from', from, '--out', modelFolder, '--stages', '1', '--name', 'tiny-random-seed9'])).code).toBe(0);
      await writeCheckpoint(path.join(modelFolder, 'checkpoint'), gpt2Checkpoint(randomGpt2Checkpoint({ ...GPT2_PRESETS.tiny, vocabSize: 1000, bosTokenId: 999, eosTokenId: 999 }, 9)), {
        tokenizerJson: { model: { type: 'BPE', vocab: { a: 0, b: 1 }, merges: [] } },
        tokenizerConfigJson: { model_max_length: 256 },
      });
      const fromInit = path.join(workDir, 'from-init');
      expect((await run(['--from', path.join(modelFolder, 'checkpoint'), '--out', fromInit, '--stages', '2'])).code).toBe(0);
      expect((await readManifest(fromInit)).modelName).toBe('tiny-random-seed9');

      // Any other folder gives its own name.
      const plain = path.join(workDir, 'plain');
      expect((await run(['--from', from, '--out', plain, '--stages', '1'])).code).toBe(0);
      expect((await readManifest(plain)).modelName).toBe('tiny-gpt2');
    },
    COMPILE_TEST_TIMEOUT_MS,
  );
});

describe('model-compile weight flags', () => {
  test.each<[string, string[], RegExp]>([
    ['--weights int3', ['--weights', 'int3'], /--weights: expected fp32, int8, int4, got 'int3'/],
    ['--weights INT4', ['--weights', 'INT4'], /--weights: expected fp32, int8, int4, got 'INT4'/],
    ['--block-size 24', ['--weights', 'int4', '--block-size', '24'], /--block-size: expected a power of two from 16 to 256 \(16, 32, 64, 128, 256: what MatMulNBits takes\), got '24'/],
    ['--block-size 512 (onnxruntime refuses it)', ['--weights', 'int4', '--block-size', '512'], /--block-size: expected a power of two from 16 to 256/],
    ['--block-size 8', ['--weights', 'int8', '--block-size', '8'], /--block-size: expected a power of two from 16 to 256/],
    ['--block-size 32.0', ['--weights', 'int4', '--block-size', '32.0'], /--block-size: expected a power of two from 16 to 256.*got '32.0'/],
    ['--block-size big', ['--weights', 'int4', '--block-size', 'big'], /--block-size: expected a power of two from 16 to 256/],
    ['--block-size with fp32 weights', ['--block-size', '64'], /--block-size: applies only to --weights int8 or int4/],
    ['--keep-fp32 with fp32 weights', ['--keep-fp32', 'lm_head'], /--keep-fp32: applies only to --weights int8 or int4/],
    ['--keep-fp32 of an unknown kind', ['--weights', 'int4', '--keep-fp32', 'lm_head,norms'], /--keep-fp32: unknown tensor kind 'norms'; expected a comma list of embedding, lm_head, attention, mlp/],
    ['an empty --keep-fp32 entry', ['--weights', 'int4', '--keep-fp32', 'lm_head,'], /--keep-fp32: unknown tensor kind ''/],
  ])('%s: exits 2 with one line naming the flag, and creates no --out folder', async (name, flags, message) => {
    const out = path.join(workDir, `out-${name.replace(/\W+/g, '-')}`);
    const result = await run(['--from', from, '--out', out, '--stages', '2', ...flags]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^model-compile: [^\n]+\n$/);
    expect(result.stderr).toMatch(message);
    expect(result.stdout).toBe('');
    expect(existsSync(out)).toBe(false);
  });

  test(
    '--weights int4 --block-size 64 --keep-fp32 " lm_head,lm_head" compiles and the manifest records it once',
    async () => {
      const out = path.join(workDir, 'int4');
      const result = await run(['--from', from, '--out', out, '--stages', '2', '--weights', 'int4', '--block-size', '64', '--keep-fp32', ' lm_head,lm_head']);
      expect(result.stderr).toBe('');
      expect(result.code).toBe(0);
      expect(result.stdout).toMatch(/^compiled tiny-gpt2 into .*: 2 stage\(s\), split balanced, fused ops \(split attention\), int4 weights \(blocks of 64, lm_head kept fp32\), in \d+\.\d s\n/);
      const manifest = await readManifest(out);
      expect(manifest.stages.map((s) => s.weights)).toEqual([
        { format: 'int4', blockSize: 64, keptFp32: ['lm_head'] },
        { format: 'int4', blockSize: 64, keptFp32: ['lm_head'] },
      ]);
    },
    COMPILE_TEST_TIMEOUT_MS,
  );

  test(
    'without --weights the model is fp32, block size and kept kinds unrecorded',
    async () => {
      const out = path.join(workDir, 'fp32');
      expect((await run(['--from', from, '--out', out, '--stages', '1'])).code).toBe(0);
      expect((await readManifest(out)).stages.map((s) => s.weights)).toEqual([{ format: 'fp32' }]);
    },
    COMPILE_TEST_TIMEOUT_MS,
  );
});
