import os from 'node:os';
import path from 'node:path';
import { ledgerProblems, runChaosCli, type ChaosLedger } from '../../tools/chaos';
import { settledKv, type SettledKvOptions } from '../../tools/chaos/settled-kv';

/** No such folder: a bad command line must be refused before anything starts, whatever else it says. */
const MISSING_MODEL = path.join(os.tmpdir(), 'pipeserve-chaos-no-such-model');

const HEALTHY: ChaosLedger = {
  accepted: 4,
  completed: 4,
  failed: 0,
  cancelled: 0,
  mismatched: 0,
  kv_leaked: 0,
  kv_by_node: { node1a: 0, node1b: 0 },
  kv_unknown_nodes: [],
  stall_ms_p99: 120,
  stall_ms_max: 900,
  faults: ['SIGKILL node1a at 10 ms'],
};

describe('chaos command line', () => {
  test.each([
    [['--streams', '1.5'], "--streams: expected an integer from 1 to 256, got '1.5'"],
    [['--streams', '0'], "--streams: expected an integer from 1 to 256, got '0'"],
    [['--tokens', 'many'], "--tokens: expected an integer from 1 to 1024, got 'many'"],
    [['--kill', '-1'], "--kill: expected an integer from 0 to 100, got '-1'"],
    [['--freeze', '2.0'], "--freeze: expected an integer from 0 to 100, got '2.0'"],
    [['--freeze-ms', '50'], "--freeze-ms: expected an integer from 100 to 60000, got '50'"],
    [['--replicas', '9'], "--replicas: expected an integer from 1 to 8, got '9'"],
    [['--seed', ''], "--seed: expected an integer from 0 to 2147483648, got ''"],
    [['--timeout-ms', '10'], "--timeout-ms: expected an integer from 1000 to 86400000, got '10'"],
    [['--streams', '4', '--cancel', '5'], '--cancel: 5 is more than the 4 streams'],
    [[], `--model: ${MISSING_MODEL} is not a compiled model folder (no manifest.json)`],
  ])('%j exits 2 with one line naming the option, before starting anything', async (argv, message) => {
    let stdout = '';
    let stderr = '';
    const code = await runChaosCli([...argv, '--model', MISSING_MODEL], { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t) });
    expect({ code, stdout, stderr }).toEqual({ code: 2, stdout: '', stderr: `chaos: ${message}\n` });
  });
});

describe('chaos ledger', () => {
  test('a healthy run has no problems; an unanswering node, leaked KV, a failure or a long stall each make it unhealthy', () => {
    expect(ledgerProblems(HEALTHY)).toEqual([]);
    expect(ledgerProblems({ ...HEALTHY, kv_by_node: { node1a: 0, node1b: null }, kv_unknown_nodes: ['node1b'] })).toEqual(['KV unknown on node1b']);
    expect(ledgerProblems({ ...HEALTHY, kv_leaked: 2, kv_by_node: { node1a: 2, node1b: 0 } })).toEqual(['2 KV sequence(s) still held']);
    expect(ledgerProblems({ ...HEALTHY, failed: 1, mismatched: 1 })).toEqual(['1 stream(s) failed', '1 output(s) differ from the no-fault run']);
    expect(ledgerProblems({ ...HEALTHY, stall_ms_max: 3_000 })).toEqual(['a stall of 3000 ms (limit 3000 ms)']);
  });
});

describe('settledKv', () => {
  const NODES = [
    { id: 'node1a', address: 'a:1' },
    { id: 'node1b', address: 'b:1' },
  ];
  const WINDOWS = { settleMs: 100, answerWaitMs: 400, pollMs: 10 };

  /** Options whose describe answers from `answers[address]`, one entry per poll (the last repeats); an Error entry is thrown. */
  function options(answers: Record<string, readonly (number | Error)[]>, overrides: Partial<SettledKvOptions> = {}): SettledKvOptions & { readonly polls: () => number } {
    const calls = new Map<string, number>();
    return {
      nodes: NODES,
      running: () => new Set(NODES.map((n) => n.id)),
      describe: async (address) => {
        const call = calls.get(address) ?? 0;
        calls.set(address, call + 1);
        const list = answers[address];
        const answer = list[Math.min(call, list.length - 1)];
        if (answer instanceof Error) throw answer;
        return { kv_sequences: answer };
      },
      ...WINDOWS,
      signal: new AbortController().signal,
      ...overrides,
      polls: () => Math.max(0, ...calls.values()),
    };
  }

  test('releases that land while it polls count as 0, and it stops at the first poll where every node holds nothing', async () => {
    const settle = options({ 'a:1': [2, 1, 0], 'b:1': [0] });
    const readings = await settledKv(settle);
    expect(Object.fromEntries(readings)).toEqual({ node1a: { sequences: 0 }, node1b: { sequences: 0 } });
    expect(settle.polls()).toBe(3);
  });

  test('a node that never answers is unknown, never 0, after answerWaitMs; the others keep their counts', async () => {
    const started = Date.now();
    const readings = await settledKv(options({ 'a:1': [0], 'b:1': [new Error('14 UNAVAILABLE: connection refused')] }));
    expect(Date.now() - started).toBeGreaterThanOrEqual(WINDOWS.answerWaitMs);
    expect(Object.fromEntries(readings)).toEqual({ node1a: { sequences: 0 }, node1b: { unknown: 'no answer to Describe: 14 UNAVAILABLE: connection refused' } });
  });

  test('a node whose process is not running is unknown, and is not asked', async () => {
    const settle = options({ 'a:1': [0], 'b:1': [0] }, { running: () => new Set(['node1a']), answerWaitMs: 50 });
    const readings = await settledKv(settle);
    expect(Object.fromEntries(readings)).toEqual({ node1a: { sequences: 0 }, node1b: { unknown: 'not running' } });
  });

  test('a node that answers late (restarted, still loading) is waited for past settleMs', async () => {
    const late = Array.from({ length: 15 }, (): number | Error => new Error('not listening yet'));
    const readings = await settledKv(options({ 'a:1': [0], 'b:1': [...late, 0] }));
    expect(Object.fromEntries(readings)).toEqual({ node1a: { sequences: 0 }, node1b: { sequences: 0 } });
  });

  test('KV still held once every node answered and settleMs passed is what it reports, without waiting for answerWaitMs', async () => {
    const started = Date.now();
    const readings = await settledKv(options({ 'a:1': [3], 'b:1': [0] }));
    const elapsedMs = Date.now() - started;
    expect(Object.fromEntries(readings)).toEqual({ node1a: { sequences: 3 }, node1b: { sequences: 0 } });
    expect(elapsedMs).toBeGreaterThanOrEqual(WINDOWS.settleMs);
    expect(elapsedMs).toBeLessThan(WINDOWS.answerWaitMs);
  });

  test('past the deadline it answers with its first readings', async () => {
    const settle = options({ 'a:1': [1], 'b:1': [new Error('frozen')] }, { signal: AbortSignal.abort() });
    const readings = await settledKv(settle);
    expect(Object.fromEntries(readings)).toEqual({ node1a: { sequences: 1 }, node1b: { unknown: 'no answer to Describe: frozen' } });
    expect(settle.polls()).toBe(1);
  });
});
