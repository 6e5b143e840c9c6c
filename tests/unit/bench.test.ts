import * as net from 'node:net';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { TextTokenizer } from '../../services/tokenizer/text-tokenizer';
import { parseBenchArgs, runBenchCli } from '../../tools/bench';
import { BareOnnxLoop } from '../../tools/bench/bare-onnx-loop';
import { benchPrompts } from '../../tools/bench/bench-prompts';
import { delayCosts, resultsMarkdown, type BenchContext } from '../../tools/bench/bench-report';
import { medianRun, percentile, stepBreakdown, summarize, withLoadRatios, withRatios, type WorkloadRun } from '../../tools/bench/bench-stats';
import { BenchWorker } from '../../tools/bench/bench-worker';
import { DelayProxy } from '../../tools/bench/delay-proxy';
import { naiveGreedy } from '../support/naive-gpt2';
import { tinyCheckpoint, tinyModel } from '../support/test-models';

const TEST_TIMEOUT_MS = 180_000;

/** Two streams of three tokens: stream 0 at 10, 20, 30 ms; stream 1 at 10, 25, 50 ms. */
const RUN: WorkloadRun = {
  tokens: [
    [1, 2, 3],
    [4, 5, 6],
  ],
  tokenTimesMs: [
    [10, 20, 30],
    [10, 25, 50],
  ],
  seconds: 0.05,
  peakRssBytes: { a: 100, b: 50 },
  cpuSeconds: { a: 0.006, b: 0.003 },
};

const CONTEXT: BenchContext = { command: 'npm run bench', date: '2026-12-02', cpu: 'cpu', cores: 2, node: '22', onnxruntime: '1.30.0', model: 'm', promptTokens: 12, newTokens: 3, rounds: 1 };

describe('bench statistics', () => {
  test('nearest-rank percentiles', () => {
    expect(percentile([5, 1, 4, 2, 3], 0.5)).toBe(3);
    expect(percentile([5, 1, 4, 2, 3], 0.99)).toBe(5);
    expect(percentile([5, 1, 4, 2, 3], 0)).toBe(1);
    expect(percentile([], 0.5)).toBeNaN();
  });

  test('a run summarises into total and per-stream rates, TTFT, ITL, summed RSS and agreement with the bare run', () => {
    const bare: WorkloadRun = { ...RUN, tokens: [[1, 2, 3], [4, 5, 7]] };
    const s = summarize('pipeline', 'm', 0, RUN, bare);
    expect(s).toMatchObject({
      system: 'pipeline',
      tokens_per_second: 120,
      // 3 tokens in 30 ms and 3 in 50 ms.
      tokens_per_second_per_stream: 80,
      ttft_ms_p50: 10,
      // Gaps 10, 10, 15, 25.
      itl_ms_p50: 10,
      itl_ms_p99: 25,
      peak_rss_bytes: 150,
      // 9 ms of CPU over 6 tokens.
      cpu_ms_per_token: 1.5,
      cpu_ms_per_token_by_process: { a: 1, b: 0.5 },
      generated_tokens: 6,
      streams_equal_to_bare: 1,
    });
    expect(summarize('bare-onnxruntime', 'm', 0, RUN, undefined).streams_equal_to_bare).toBeNull();
  });

  test('ratios are to the bare loop and to transformers.js of the same workload', () => {
    const at = (system: 'bare-onnxruntime' | 'transformers.js' | 'pipeline', seconds: number) => summarize(system, 'm', 0, { ...RUN, seconds }, undefined);
    const [bare, tjs, pipeline] = withRatios([at('bare-onnxruntime', 0.1), at('transformers.js', 0.2), at('pipeline', 0.05)]);
    expect([bare.vs_bare, tjs.vs_bare, pipeline.vs_bare]).toEqual([1, 0.5, 2]);
    expect([bare.vs_transformers_js, pipeline.vs_transformers_js]).toEqual([2, 4]);
    expect(withRatios([at('pipeline', 1)])[0].vs_bare).toBeNull();
  });

  test('with several models, vs_bare is over the same model\'s bare loop and vs_reference_bare over the first model\'s', () => {
    const at = (system: 'bare-onnxruntime' | 'pipeline', model: string, seconds: number) => summarize(system, model, 0, { ...RUN, seconds }, undefined);
    const systems = withRatios([at('bare-onnxruntime', 'fp32', 0.1), at('pipeline', 'fp32', 0.1), at('bare-onnxruntime', 'int4', 0.04), at('pipeline', 'int4', 0.05)]);
    expect(systems.map((s) => [s.model, s.system, s.vs_bare, s.vs_reference_bare])).toEqual([
      ['fp32', 'bare-onnxruntime', 1, 1],
      ['fp32', 'pipeline', 1, 1],
      ['int4', 'bare-onnxruntime', 1, 2.5],
      ['int4', 'pipeline', 0.8, 2],
    ]);
    const markdown = resultsMarkdown(CONTEXT, [{ streams: 2, systems }]);
    expect(markdown).toContain('| 2 | int4: pipeline | 120.0 |');
    expect(markdown).toMatch(/\| vs fp32 bare \|\n/);
  });

  test('load times: each over the same system\'s on the first model; the report lists them per model, the pipeline by stage', () => {
    const loads = withLoadRatios(
      [
        { system: 'bare-onnxruntime', model: 'fp32', link_delay_ms: 0, load_ms: 800, stage_load_ms: null, ready_ms: null },
        { system: 'pipeline', model: 'fp32', link_delay_ms: 0, load_ms: 500, stage_load_ms: [500, 400, 450], ready_ms: 2500 },
        { system: 'bare-onnxruntime', model: 'int4', link_delay_ms: 0, load_ms: 400, stage_load_ms: null, ready_ms: null },
        { system: 'pipeline', model: 'int4', link_delay_ms: 0, load_ms: 250, stage_load_ms: [250, 200, 220], ready_ms: 2000 },
      ],
      'fp32',
    );
    expect(loads.map((l) => l.vs_reference)).toEqual([null, null, 0.5, 0.5]);
    const markdown = resultsMarkdown(CONTEXT, [], loads);
    expect(markdown).toContain('- fp32: bare-onnxruntime 800; pipeline 500 (stages 500 / 400 / 450, ready 2500)\n');
    expect(markdown).toContain('- int4: bare-onnxruntime 400, 0.50x fp32; pipeline 250 (stages 250 / 200 / 220, ready 2000), 0.50x fp32\n');
    expect(resultsMarkdown(CONTEXT, [])).not.toContain('Load time');
  });

  test('the median run of several rounds goes by tokens per second', () => {
    const runs = [0.3, 0.1, 0.2].map((seconds) => ({ ...RUN, seconds }));
    expect(medianRun(runs).seconds).toBe(0.2);
    expect(medianRun(runs.slice(0, 2)).seconds).toBe(0.3);
    expect(() => medianRun([])).toThrow(RangeError);
  });

  test("a pipeline run's stage timings split a stream's step into each stage's forward pass and what is left between them", () => {
    // Three steps each: stream 0's last token at 30 ms, stream 1's at 50: 10 and 16.67 ms a step,
    // 13.33 on average. Each stream's timings are its steps' sums, per node (a batch's step counts
    // for each of its streams).
    const run: WorkloadRun = {
      ...RUN,
      stageTimings: [
        [
          { node_id: 'node1', stage: 0, forward_ms: 9, steps: 3 },
          { node_id: 'node2', stage: 1, forward_ms: 12, steps: 3 },
        ],
        [
          { node_id: 'node1', stage: 0, forward_ms: 15, steps: 3 },
          { node_id: 'node2', stage: 1, forward_ms: 18, steps: 3 },
        ],
      ],
    };
    const breakdown = stepBreakdown(run);
    expect(breakdown).toEqual({ step_ms: 13.33, stage_ms: { node1: 4, node2: 5 }, between_stages_ms: 4.33 });
    expect(summarize('pipeline', 'm', 0, run, undefined).step_breakdown).toEqual(breakdown);
    // Systems without stages have none, and say so as null.
    expect(summarize('bare-onnxruntime', 'm', 0, RUN, undefined).step_breakdown).toBeNull();
    const markdown = resultsMarkdown(CONTEXT, [{ streams: 2, systems: withRatios([summarize('pipeline', 'm', 0, run, undefined)]) }]);
    expect(markdown).toContain('- 2 stream(s), pipeline: step 13.33 = stages node1 4.00 + node2 5.00 + between 4.33');
  });

  test('the report has a row per system and workload, and what a link delay costs', () => {
    const plain = summarize('pipeline', 'm', 0, RUN, undefined);
    const delayed = summarize('pipeline', 'm', 2, { ...RUN, seconds: 0.1, tokenTimesMs: [[16, 32, 48], [16, 32, 48]] }, undefined);
    const workloads = [{ streams: 2, systems: withRatios([plain, delayed]) }];
    expect(delayCosts(workloads)).toEqual([{ streams: 2, delayMs: 2, itlMs: 6, throughputChangePercent: -50, heldMs: null, crossings: null }]);
    const markdown = resultsMarkdown(CONTEXT, workloads);
    expect(markdown).toContain('| 2 | pipeline | 120.0 |');
    expect(markdown).toContain('| 2 | pipeline (+2 ms links) | 60.0 |');
    expect(markdown).toContain('2 stream(s), +2 ms each way: inter-token p50 +6.0 ms, tokens/s -50.0 %.');
    // With what the proxies really held and the stages known, the report gives the floor those crossings make.
    const stageTimings = [[{ node_id: 'node1', stage: 0, forward_ms: 3, steps: 3 }, { node_id: 'node2', stage: 1, forward_ms: 3, steps: 3 }], []];
    const measured = summarize('pipeline', 'm', 2, { ...RUN, seconds: 0.1, tokenTimesMs: [[16, 32, 48], [16, 32, 48]], heldLinkDelayMs: 2.25, stageTimings }, undefined);
    expect(measured.link_delay_held_ms).toBe(2.25);
    expect(plain.link_delay_held_ms).toBeNull();
    const costs = delayCosts([{ streams: 2, systems: withRatios([plain, measured]) }]);
    expect(costs).toEqual([{ streams: 2, delayMs: 2, itlMs: 6, throughputChangePercent: -50, heldMs: 2.25, crossings: 3 }]);
    expect(resultsMarkdown(CONTEXT, [{ streams: 2, systems: withRatios([plain, measured]) }])).toContain(
      '2 stream(s), +2 ms each way: inter-token p50 +6.0 ms, tokens/s -50.0 % (the proxies held a chunk 2.25 ms on average: 3 crossings are 6.8 ms).',
    );
  });

  test('the delay proxy holds every chunk at least its delay, both ways, in order, and reports what it held', async () => {
    const echo = net.createServer((socket) => socket.pipe(socket));
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
    const listen = net.createServer();
    await new Promise<void>((resolve) => listen.listen(0, '127.0.0.1', resolve));
    const proxyPort = (listen.address() as AddressInfo).port;
    await new Promise<void>((resolve) => listen.close(() => resolve()));
    const proxy = await DelayProxy.start(proxyPort, { host: '127.0.0.1', port: (echo.address() as AddressInfo).port }, 15);
    const client = net.connect(proxyPort, '127.0.0.1');
    try {
      await new Promise<void>((resolve) => client.once('connect', () => resolve()));
      client.setNoDelay(true);
      let received = '';
      const sent = performance.now();
      const answered = new Promise<number>((resolve) =>
        client.on('data', (chunk: Buffer) => {
          received += chunk.toString();
          if (received.length >= 6) resolve(performance.now() - sent);
        }),
      );
      client.write('abc');
      client.write('def');
      // There and back through the proxy: at least twice the delay.
      expect(await answered).toBeGreaterThanOrEqual(30);
      expect(received).toBe('abcdef');
      const held = proxy.heldDelay();
      expect(held.chunks).toBeGreaterThanOrEqual(2);
      expect(held.meanMs).toBeGreaterThanOrEqual(15);
      proxy.resetHeldDelay();
      expect(proxy.heldDelay()).toEqual({ chunks: 0, meanMs: 0 });
    } finally {
      client.destroy();
      await proxy.close();
      await new Promise<void>((resolve) => echo.close(() => resolve()));
    }
  });
});

describe('bench command line', () => {
  test('defaults: every system, 1, 16 and 64 streams, 48 tokens, no link delay', () => {
    const args = parseBenchArgs([]);
    expect(args).toMatchObject({ streams: [1, 16, 64], newTokens: 48, promptTokens: 12, linkDelayMs: 0, rounds: 1, json: false });
    expect(args.systems).toEqual(['bare-onnxruntime', 'transformers.js', 'in-process', 'pipeline']);
    expect(args.modelDirs).toEqual([path.resolve('models/default')]);
    expect(args.checkpointDir).toBeUndefined();
    expect(parseBenchArgs(['--model', 'a,b', '--checkpoint', 'c'])).toMatchObject({ modelDirs: [path.resolve('a'), path.resolve('b')], checkpointDir: path.resolve('c') });
  });

  test('systems keep one order whatever order they are given in', () => {
    expect(parseBenchArgs(['--systems', 'pipeline,bare-onnxruntime']).systems).toEqual(['bare-onnxruntime', 'pipeline']);
  });

  test.each([
    [['--systems', 'vllm'], "--systems: unknown system 'vllm'"],
    [['--streams', '0'], "--streams: expected an integer from 1 to 256, got '0'"],
    [['--streams', '1,x'], "--streams: expected an integer from 1 to 256, got 'x'"],
    [['--link-delay-ms', '2', '--systems', 'in-process'], '--link-delay-ms: only the pipeline has links'],
    [['--rounds', '0'], "--rounds: expected an integer from 1 to 20, got '0'"],
    [['--model', 'a,,b'], '--model: expected folder paths, comma-separated'],
    [['--model', 'a,./a'], '--model: a folder is named twice'],
  ])('%j is refused: %s', (argv, message) => {
    expect(() => parseBenchArgs(argv)).toThrow(message);
  });
});

describe('bench workloads on the tiny model', () => {
  let tokenizer: TextTokenizer;
  let baselineDir: string;

  beforeAll(async () => {
    baselineDir = await tinyModel({ stages: 1, ops: 'fused' });
    tokenizer = await TextTokenizer.load(baselineDir);
  }, TEST_TIMEOUT_MS);

  test('prompts are distinct, all of the asked length, and their text encodes back to the same ids', () => {
    const prompts = benchPrompts(tokenizer, 40, 12);
    expect(new Set(prompts.map((p) => p.ids.join(','))).size).toBe(40);
    for (const prompt of prompts) {
      expect(prompt.ids).toHaveLength(12);
      expect(tokenizer.encode(prompt.text)).toEqual(prompt.ids);
    }
  });

  test.each([80, 200])('%i-token prompts, longer than any one source text, are built and round-trip too', (length) => {
    const prompts = benchPrompts(tokenizer, 16, length);
    expect(new Set(prompts.map((p) => p.ids.join(','))).size).toBe(16);
    for (const prompt of prompts) {
      expect(prompt.ids).toHaveLength(length);
      expect(tokenizer.encode(prompt.text)).toEqual(prompt.ids);
    }
  });

  test('prompts and new tokens beyond the context length are refused before anything starts, naming both flags', async () => {
    let stderr = '';
    const code = await runBenchCli(['--model', baselineDir, '--prompt-tokens', '250', '--tokens', '8', '--no-progress'], { stdout: () => undefined, stderr: (t) => (stderr += t) });
    expect(code).toBe(2);
    expect(stderr).toContain(`--prompt-tokens 250 + --tokens 8 exceed ${path.basename(baselineDir)}'s context length of 256 tokens`);
  });

  test(
    'the bare loop is a correct greedy loop: it generates the naive forward pass tokens, timing every step',
    async () => {
      const prompts = benchPrompts(tokenizer, 3, 8).map((p) => p.ids);
      const loop = await BareOnnxLoop.open(baselineDir);
      try {
        const run = await loop.generate(prompts, 10);
        expect(run.tokens).toEqual(prompts.map((p) => naiveGreedy(tinyCheckpoint(), p, 10)));
        expect(run.stepTimesMs).toHaveLength(10);
        expect([...run.stepTimesMs].sort((a, b) => a - b)).toEqual(run.stepTimesMs);
      } finally {
        await loop.close();
      }
    },
    TEST_TIMEOUT_MS,
  );

  test(
    'a system in a worker process of its own (the in-process pipeline) gives the same tokens, a time per token and its peak RSS',
    async () => {
      const prompts = benchPrompts(tokenizer, 2, 8).map((p) => p.ids);
      const worker = await BenchWorker.start({ system: 'in-process', modelDir: await tinyModel({ stages: 3, ops: 'fused' }) });
      try {
        await worker.run(prompts, 6, false);
        const run = await worker.run(prompts, 6, true);
        expect(run.tokens).toEqual(prompts.map((p) => naiveGreedy(tinyCheckpoint(), p, 6)));
        expect(run.tokenTimesMs.map((t) => t.length)).toEqual([6, 6]);
        expect(run.peakRssBytes['in-process']).toBeGreaterThan(10 * 2 ** 20);
      } finally {
        await worker.close();
      }
    },
    TEST_TIMEOUT_MS,
  );
});
