import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { writeCheckpoint } from '../../tools/families/checkpoint';
import { gpt2Checkpoint } from '../../tools/families/gpt2/gpt2-family';
import { compileModel } from '../../tools/compiler/compile-model';
import { buildGpt2TokenizerFiles } from '../../tools/init/gpt2-tokenizer-files';
import { tinyCheckpoint } from '../support/test-models';

const PROJECT_DIR = path.resolve(__dirname, '../..');
const TEST_TIMEOUT_MS = 600_000;
const run = promisify(execFile);

/**
 * `npm run bench` end to end on the tiny model, as a user runs it (all four systems, the
 * pipeline with and without a link delay): not a measurement, only that every system runs, the
 * greedy tokens agree, and the JSON and the report have their documented shape.
 */
describe('npm run bench', () => {
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'pipeserve-bench-'));
    // A model folder as model:init writes it: the compiled stages and checkpoint/ beside them.
    await writeCheckpoint(path.join(dir, 'tiny'), gpt2Checkpoint(tinyCheckpoint()), buildGpt2TokenizerFiles());
    await compileModel({ from: path.join(dir, 'tiny'), out: path.join(dir, 'model'), stages: 3, split: { kind: 'even' }, ops: 'fused' });
    await writeCheckpoint(path.join(dir, 'model', 'checkpoint'), gpt2Checkpoint(tinyCheckpoint()), buildGpt2TokenizerFiles());
    // An int8 compile of the same checkpoint, without a checkpoint/ of its own (as model:compile writes it).
    await compileModel({ from: path.join(dir, 'tiny'), out: path.join(dir, 'int8'), stages: 2, split: { kind: 'even' }, ops: 'fused', weights: { format: 'int8', blockSize: 32, keptFp32: [] } });
  }, TEST_TIMEOUT_MS);

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test(
    'two models side by side: a quantized compile gets its own bare loop, one transformers.js run serves both, ratios to the first model',
    async () => {
      const { stdout } = await run(
        process.execPath,
        [
          path.join(PROJECT_DIR, 'dist/tools/bench.js'),
          ...['--model', `${path.join(dir, 'model')},${path.join(dir, 'int8')}`, '--checkpoint', path.join(dir, 'tiny')],
          ...['--streams', '2', '--tokens', '4', '--prompt-tokens', '8', '--out', path.join(dir, 'two.md'), '--json'],
        ],
        { cwd: PROJECT_DIR, timeout: TEST_TIMEOUT_MS, maxBuffer: 16 << 20 },
      );
      const lines = stdout.trim().split('\n');
      const [workload] = (JSON.parse(lines[lines.length - 1]) as { workloads: { systems: Record<string, unknown>[] }[] }).workloads;
      expect(workload.systems.map((s) => [s.model, s.system])).toEqual([
        ['model', 'bare-onnxruntime'],
        ['model', 'transformers.js'],
        ['model', 'in-process'],
        ['model', 'pipeline'],
        ['int8', 'bare-onnxruntime'],
        ['int8', 'in-process'],
        ['int8', 'pipeline'],
      ]);
      const int8 = workload.systems.filter((s) => s.model === 'int8');
      // Within one quantized model, every arrangement makes the same tokens as its own bare loop.
      for (const system of int8) expect([system.system, system.streams_equal_to_bare]).toEqual([system.system, 2]);
      expect(int8.every((s) => typeof s.vs_reference_bare === 'number' && typeof s.vs_transformers_js === 'number')).toBe(true);
      const report = await readFile(path.join(dir, 'two.md'), 'utf8');
      expect(report).toContain('| 2 | int8: pipeline |');
      // The pipelines split their streams' steps by stage (3 nodes for the model, 2 for int8); the others have no stages.
      const breakdowns = workload.systems.map((s) => [s.model, s.system, s.step_breakdown === null ? null : Object.keys((s.step_breakdown as { stage_ms: object }).stage_ms)]);
      expect(breakdowns.filter(([, system]) => system === 'pipeline')).toEqual([
        ['model', 'pipeline', ['node1', 'node2', 'node3']],
        ['int8', 'pipeline', ['node1', 'node2']],
      ]);
      expect(breakdowns.filter(([, system]) => system !== 'pipeline').every(([, , stages]) => stages === null)).toBe(true);
      for (const s of workload.systems.filter((x) => x.system === 'pipeline')) {
        const b = s.step_breakdown as { step_ms: number; stage_ms: Record<string, number>; between_stages_ms: number };
        expect(Object.values(b.stage_ms).every((ms) => ms > 0)).toBe(true);
        expect(b.step_ms).toBeCloseTo(Object.values(b.stage_ms).reduce((a, c) => a + c, 0) + b.between_stages_ms, 1);
      }
      expect(report).toContain("Where a pipeline stream's step goes");
      // Every system's load time, the int8 compile's over the fp32 model's.
      const { loads } = JSON.parse(lines[lines.length - 1]) as { loads: { model: string; system: string; load_ms: number; stage_load_ms: number[] | null; ready_ms: number | null; vs_reference: number | null }[] };
      expect(loads.map((l) => [l.model, l.system])).toEqual(workload.systems.map((s) => [s.model, s.system]));
      for (const load of loads) {
        expect(load.load_ms).toBeGreaterThan(0);
        expect(typeof load.vs_reference).toBe(load.model === 'int8' ? 'number' : 'object');
        if (load.system === 'pipeline') {
          expect(load.stage_load_ms).toHaveLength(load.model === 'int8' ? 2 : 3);
          expect(load.load_ms).toBe(Math.max(...(load.stage_load_ms as number[])));
          expect(load.ready_ms).toBeGreaterThan(load.load_ms);
        } else {
          expect([load.stage_load_ms, load.ready_ms]).toEqual([null, null]);
        }
      }
      expect(report).toMatch(/^- int8: bare-onnxruntime \d+, [\d.]+x model; in-process \d+, [\d.]+x model; pipeline \d+ \(stages \d+ \/ \d+, ready \d+\), [\d.]+x model$/m);
    },
    TEST_TIMEOUT_MS,
  );

  test(
    'every system runs the same workloads; --json ends with the documented object; results.md has a row per system',
    async () => {
      const out = path.join(dir, 'results.md');
      const { stdout } = await run(
        process.execPath,
        [path.join(PROJECT_DIR, 'dist/tools/bench.js'), '--model', path.join(dir, 'model'), '--streams', '1,3', '--tokens', '5', '--prompt-tokens', '8', '--link-delay-ms', '1', '--out', out, '--json'],
        { cwd: PROJECT_DIR, timeout: TEST_TIMEOUT_MS, maxBuffer: 16 << 20 },
      );
      const lines = stdout.trim().split('\n');
      const result = JSON.parse(lines[lines.length - 1]) as { workloads: { streams: number; systems: Record<string, unknown>[] }[] };
      expect(result.workloads.map((w) => w.streams)).toEqual([1, 3]);
      for (const workload of result.workloads) {
        expect(workload.systems.map((s) => [s.system, s.link_delay_ms])).toEqual([
          ['bare-onnxruntime', 0],
          ['transformers.js', 0],
          ['in-process', 0],
          ['pipeline', 0],
          ['pipeline', 1],
        ]);
        for (const system of workload.systems) {
          for (const key of ['tokens_per_second', 'ttft_ms_p50', 'ttft_ms_p99', 'itl_ms_p50', 'itl_ms_p99']) expect([key, typeof system[key]]).toEqual([key, 'number']);
          expect(system.tokens_per_second).toBeGreaterThan(0);
          expect(system.generated_tokens).toBe(workload.streams * 5);
          // Greedy on the same weights and prompts: every system makes the bare loop's tokens.
          expect(system.streams_equal_to_bare).toBe(workload.streams);
          expect(system.peak_rss_bytes).toBeGreaterThan(0);
          expect(system.cpu_ms_per_token).toBeGreaterThan(0);
          // The pipeline's CPU is split by service, the benchmark's client among them.
          const processes = Object.keys(system.cpu_ms_per_token_by_process as Record<string, number>).sort();
          if (system.system === 'pipeline') expect(processes).toEqual(['api', 'client', 'coordinator', 'node1', 'node2', 'node3', 'tokenizer']);
          else expect(processes).toEqual([system.system]);
        }
      }
      const markdown = await readFile(out, 'utf8');
      expect(markdown).toMatch(/^# Benchmark results\n/);
      expect(markdown.match(/^\| \d+ \| /gm)).toHaveLength(10);
      expect(markdown).toContain('pipeline (+1 ms links)');
      expect(markdown).toContain('What the link delay costs the pipeline');
      expect(markdown).toMatch(/^- 3 stream\(s\), pipeline: [\d.]+: .*\bapi [\d.]+.*\bclient [\d.]+/m);
    },
    TEST_TIMEOUT_MS,
  );
});
