import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { readManifest } from '../../shared/model/manifest';
import { writeCheckpoint } from '../../tools/families/checkpoint';
import { gpt2Checkpoint } from '../../tools/families/gpt2/gpt2-family';
import { GPT2_PRESETS, randomGpt2Checkpoint } from '../../tools/init/random-gpt2';
import { runModelCompileCli } from '../../tools/model-compile';

const COMPILE_TEST_TIMEOUT_MS = 120_000;

let workDir: string;
let from: string;

beforeAll(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), 'compiler-cli-weights-'));
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

async function run(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await runModelCompileCli(argv, {
    stdout: (text) => (stdout += text),
    stderr: (text) => (stderr += text),
  });
  return { code, stdout, stderr };
}

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
      expect(result.stdout).toMatch(/^compiled tiny-gpt2 into .*: 2 stage\(s\), split balanced, fused ops, int4 weights \(blocks of 64, lm_head kept fp32\), in \d+\.\d s\n/);
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
