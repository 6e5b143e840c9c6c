import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadCheckpoint } from '../../tools/families/checkpoint';
import { gpt2Shape } from '../../tools/families/gpt2/gpt2-family';
import { GPT2_PRESETS, randomGpt2Checkpoint } from '../../tools/init/random-gpt2';
import { llamaShape } from '../../tools/families/llama/llama-family';
import { LLAMA_PRESETS, randomLlamaCheckpoint } from '../../tools/init/random-llama';
import { runModelInitCli } from '../../tools/model-init';

const INIT_TINY_TIMEOUT_MS = 180_000;

async function run(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await runModelInitCli(argv, { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t) });
  return { code, stdout, stderr };
}

/** Every file below `dir` with its modification time and sha256, keyed by relative path. */
async function snapshot(dir: string): Promise<Record<string, { mtimeMs: number; sha256: string }>> {
  const files: Record<string, { mtimeMs: number; sha256: string }> = {};
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const full = path.join(entry.parentPath, entry.name);
    files[path.relative(dir, full)] = {
      mtimeMs: (await stat(full)).mtimeMs,
      sha256: createHash('sha256').update(await readFile(full)).digest('hex'),
    };
  }
  return files;
}

describe('model-init', () => {
  let root: string;
  beforeAll(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'model-init-'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  test.each([
    [['--preset', 'medium'], "--preset: expected one of small, tiny, llama-small, llama-tiny, got 'medium'"],
    [['--preset', 'llama-tiny', '--stages', '7'], "--stages: expected an integer from 1 to 6, got '7'"],
    [['--seed=-3'], "--seed: expected an integer from 0 to 4294967295, got '-3'"],
    [['--seed', 'abc'], "--seed: expected an integer from 0 to 4294967295, got 'abc'"],
    [['--stages', '0'], "--stages: expected an integer from 1 to 12, got '0'"],
    [['--preset', 'tiny', '--stages', '7'], "--stages: expected an integer from 1 to 6, got '7'"],
    [['--ops', 'fast'], "--ops: expected plain or fused, got 'fast'"],
    [['--bogus'], "unknown option '--bogus'"],
    [['--seeds', '3'], "unknown option '--seeds' (Did you mean --seed?)"],
    [['extra'], "unexpected argument 'extra'"],
    [['--out'], "option '--out <dir>' argument missing"],
  ])('%j exits 2 with one line on stderr and writes nothing', async (args, message) => {
    const out = path.join(root, 'bad-args');
    const argv = args.includes('--out') ? args : [...args, '--out', out];
    const result = await run(argv);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(message);
    expect(result.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(result.stdout).toBe('');
    await expect(stat(out)).rejects.toThrow('ENOENT');
  });

  test(
    'writes the tiny model: checkpoint/ holds the seeded weights, manifest.json lists the stages; a second run needs --force',
    async () => {
      const out = path.join(root, 'tiny');
      const result = await run(['--preset', 'tiny', '--out', out, '--seed', '3', '--stages', '2', '--ops', 'plain']);
      expect(result.stderr).toBe('');
      expect(result.code).toBe(0);
      expect(result.stdout).toMatch(/^wrote gpt2-tiny-random-seed3 .* in \d+\.\d s/);

      const manifest = JSON.parse(await readFile(path.join(out, 'manifest.json'), 'utf8'));
      expect(manifest.stages.map((s: { layerStart: number; layerEnd: number }) => [s.layerStart, s.layerEnd])).toHaveLength(2);
      expect(manifest.ops).toBe('plain');
      expect(manifest.shape).toEqual(gpt2Shape(GPT2_PRESETS.tiny));

      const checkpoint = await loadCheckpoint(path.join(out, 'checkpoint'));
      const expected = randomGpt2Checkpoint(GPT2_PRESETS.tiny, 3);
      expect(Buffer.from(checkpoint.tensors.get('wte.weight')!.data.buffer).equals(Buffer.from(expected.weights.wte.data.buffer))).toBe(true);
      expect(Array.from(checkpoint.tensors.get('h.5.mlp.c_proj.bias')!.data)).toEqual(Array.from(expected.weights.layers[5].mlpProj.bias.data));
      const tokenizerConfig = JSON.parse(await readFile(path.join(out, 'checkpoint', 'tokenizer_config.json'), 'utf8'));
      expect(tokenizerConfig.model_max_length).toBe(GPT2_PRESETS.tiny.nPositions);

      const again = await run(['--preset', 'tiny', '--out', out, '--stages', '2']);
      expect(again.code).toBe(2);
      expect(again.stderr).toMatch(/--out: .* exists and is not empty; pass --force/);
      expect(JSON.parse(await readFile(path.join(out, 'manifest.json'), 'utf8'))).toEqual(manifest);
      expect((await readdir(root)).filter((name) => name.startsWith('tiny.'))).toEqual([]);
    },
    INIT_TINY_TIMEOUT_MS,
  );

  test(
    '--progress reports each step of the build as a plain line on stderr: random weights, checkpoint, every stage',
    async () => {
      const out = path.join(root, 'progress');
      const result = await run(['--preset', 'tiny', '--out', out, '--stages', '2', '--ops', 'plain', '--progress']);
      expect(result.code).toBe(0);
      expect(result.stdout).toMatch(/^wrote gpt2-tiny-random-seed42 /);
      expect(result.stderr.split('\n')).toEqual([
        expect.stringMatching(/^model-init: build 1\/4: random weights drawn \(\d+\.\d s\)$/),
        expect.stringMatching(/^model-init: build 2\/4: checkpoint written \(\d+\.\d s\)$/),
        expect.stringMatching(/^model-init: build 3\/4: stage 0 of 2 compiled \(\d+\.\d s\)$/),
        expect.stringMatching(/^model-init: build 4\/4: stage 1 of 2 compiled \(\d+\.\d s\)$/),
        '',
      ]);
    },
    INIT_TINY_TIMEOUT_MS,
  );

  test(
    'writes the llama-tiny model: a Hugging Face LlamaForCausalLM checkpoint of the seeded weights, compiled with its shape',
    async () => {
      const out = path.join(root, 'llama-tiny');
      const result = await run(['--preset', 'llama-tiny', '--out', out, '--seed', '3', '--stages', '2', '--ops', 'plain']);
      expect(result.stderr).toBe('');
      expect(result.code).toBe(0);
      expect(result.stdout).toMatch(/^wrote llama-tiny-random-seed3 \(llama-tiny: 6 layers, 144 wide, seed 3\)/);
      const manifest = JSON.parse(await readFile(path.join(out, 'manifest.json'), 'utf8'));
      expect(manifest).toMatchObject({ family: 'llama', architecture: 'LlamaForCausalLM', ops: 'plain', shape: llamaShape(LLAMA_PRESETS.tiny) });
      const checkpoint = await loadCheckpoint(path.join(out, 'checkpoint'));
      const expected = randomLlamaCheckpoint(LLAMA_PRESETS.tiny, 3);
      expect([...checkpoint.tensors.keys()].sort()).toEqual([...expected.tensors.keys()].sort());
      for (const name of ['model.embed_tokens.weight', 'model.layers.5.mlp.down_proj.weight', 'model.norm.weight']) {
        expect(Buffer.from(checkpoint.tensors.get(name)!.data.buffer).equals(Buffer.from(expected.tensors.get(name)!.data.buffer))).toBe(true);
      }
      const config = JSON.parse(await readFile(path.join(out, 'checkpoint', 'config.json'), 'utf8'));
      expect(config).toMatchObject({ architectures: ['LlamaForCausalLM'], num_key_value_heads: 3, tie_word_embeddings: true });
    },
    INIT_TINY_TIMEOUT_MS,
  );

  test(
    '--force replaces an existing folder and leaves no temporary folder behind',
    async () => {
      const out = path.join(root, 'replace');
      await run(['--preset', 'tiny', '--out', out, '--stages', '1', '--ops', 'plain']);
      await writeFile(path.join(out, 'stale.txt'), 'old');
      const result = await run(['--preset', 'tiny', '--out', out, '--stages', '3', '--ops', 'plain', '--force']);
      expect(result.code).toBe(0);
      const entries = await readdir(out);
      expect(entries).not.toContain('stale.txt');
      expect(JSON.parse(await readFile(path.join(out, 'manifest.json'), 'utf8')).stages).toHaveLength(3);
      expect((await readdir(root)).filter((name) => name.startsWith('replace.'))).toEqual([]);
    },
    INIT_TINY_TIMEOUT_MS,
  );

  test(
    '--if-missing builds a missing folder, then leaves the complete folder untouched and exits 0',
    async () => {
      const out = path.join(root, 'if-missing');
      const args = ['--preset', 'tiny', '--out', out, '--stages', '2', '--ops', 'plain', '--if-missing'];
      const first = await run(args);
      expect(first.stderr).toBe('');
      expect(first.code).toBe(0);
      expect(first.stdout).toMatch(/^wrote gpt2-tiny-random-seed42 /);
      const before = await snapshot(out);
      expect(Object.keys(before)).toEqual(expect.arrayContaining(['manifest.json', 'stage-0.onnx', 'stage-1.onnx.data']));
      expect((await stat(out)).mode & 0o777).toBe(0o755);

      const second = await run(args);
      expect(second.stderr).toBe('');
      expect(second.code).toBe(0);
      expect(second.stdout).toBe(`model-init: ${out} already holds gpt2-tiny-random-seed42; nothing to do\n`);
      expect(await snapshot(out)).toEqual(before);
      expect((await readdir(root)).filter((name) => name.startsWith('if-missing.'))).toEqual([]);
    },
    INIT_TINY_TIMEOUT_MS,
  );

  test(
    '--if-missing rebuilds a folder whose stage file no longer matches the manifest',
    async () => {
      const out = path.join(root, 'corrupted');
      const args = ['--preset', 'tiny', '--out', out, '--stages', '2', '--ops', 'plain'];
      expect((await run(args)).code).toBe(0);
      const dataFile = path.join(out, 'stage-1.onnx.data');
      const original = await readFile(dataFile);
      const corrupted = Buffer.from(original);
      corrupted[corrupted.length >> 1] ^= 0xff;
      await writeFile(dataFile, corrupted);
      await writeFile(path.join(out, 'stale.txt'), 'left by the broken build');

      const result = await run([...args, '--if-missing']);
      expect(result.stderr).toBe('');
      expect(result.code).toBe(0);
      expect(result.stdout).toContain(`model-init: ${out} holds a broken model (stage 1 file ${dataFile}: sha256 is`);
      expect(result.stdout).toMatch(/\nwrote gpt2-tiny-random-seed42 /);

      const rebuilt = await readFile(dataFile);
      expect(rebuilt.equals(original)).toBe(true);
      const manifest = JSON.parse(await readFile(path.join(out, 'manifest.json'), 'utf8'));
      const recorded = manifest.stages[1].files.find((file: { path: string }) => file.path === 'stage-1.onnx.data');
      expect(createHash('sha256').update(rebuilt).digest('hex')).toBe(recorded.sha256);
      expect(await readdir(out)).not.toContain('stale.txt');
    },
    INIT_TINY_TIMEOUT_MS,
  );
});
