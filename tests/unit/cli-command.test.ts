import { UsageError } from '../../shared/errors';
import { CliCommand, type CliRun } from '../../tools/cli/cli-command';
import type { CliOutput } from '../../tools/cli/cli-output';
import { FakeTerminal } from '../support/fake-terminal';

const DEMO = new CliCommand({
  name: 'demo',
  description: 'Copies things for the tests.',
  arguments: [{ name: 'source', description: 'what to copy' }],
  options: {
    out: { value: 'dir', default: 'copies', description: 'where the copies go' },
    count: { value: 'n', required: true, description: 'how many copies' },
    label: { value: 'text', description: 'a label for the copies' },
    force: { description: 'replace what is there' },
    'no-spin': { description: 'sit still' },
  },
  progress: true,
  environment: { DEMO_HOME: 'where demo keeps its state' },
  examples: [{ description: 'Three copies of a.txt', command: 'demo a.txt --count 3' }],
});

interface Outcome {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
  readonly seen?: CliRun<typeof DEMO.spec.options>;
}

async function run(argv: string[], options: { terminal?: FakeTerminal; body?: (run: CliRun<typeof DEMO.spec.options>) => Promise<number | void> } = {}): Promise<Outcome> {
  let stdout = '';
  let stderr = '';
  let seen: CliRun<typeof DEMO.spec.options> | undefined;
  const output: CliOutput = { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t), terminal: options.terminal };
  const code = await DEMO.run(argv, output, async (parsed) => {
    seen = parsed;
    return options.body?.(parsed);
  });
  return { code, stdout, stderr, seen };
}

describe('CliCommand', () => {
  test('--help prints usage, every option with its default or "required", the environment and the examples, exits 0 and runs nothing', async () => {
    const result = await run(['--help']);
    expect(result.code).toBe(0);
    expect(result.stderr).toBe('');
    expect(result.seen).toBeUndefined();
    const help = result.stdout;
    expect(help).toContain('Usage: demo <source> [--out <dir>] --count <n> [--label <text>] [--force] [--no-spin] [--[no-]progress]\n');
    expect(help).toContain('Copies things for the tests.');
    expect(help).toMatch(/source +what to copy/);
    expect(help).toMatch(/--out <dir> +where the copies go \(default: copies\)/);
    expect(help).toMatch(/--count <n> +how many copies \(required\)/);
    expect(help).toMatch(/--label <text> +a label for the copies\n/);
    expect(help).toMatch(/--force +replace what is there/);
    expect(help).toMatch(/--no-spin +sit still/);
    expect(help).toMatch(/--progress +show progress even when stderr is not a terminal/);
    expect(help).toMatch(/--no-progress +show no progress/);
    expect(help).toMatch(/-h, --help +show this help and exit/);
    expect(help).toMatch(/Environment:\n {2}DEMO_HOME {2}where demo keeps its state/);
    expect(help).toContain('Examples:\n  Three copies of a.txt:\n    $ demo a.txt --count 3\n');
    expect((await run(['-h'])).stdout).toBe(help);
    expect((await run(['a.txt', '--bogus', '--help'])).stdout).toBe(help);
  });

  test('values: defaults fill absent flags, a value may follow = or be negative, switches are booleans', async () => {
    const plain = await run(['a.txt', '--count', '3']);
    expect(plain.code).toBe(0);
    expect(plain.seen?.values).toEqual({ out: 'copies', count: '3', label: undefined, force: false, 'no-spin': false });
    expect(plain.seen?.positionals).toEqual(['a.txt']);

    const all = await run(['--count=-1', 'b.txt', '--label', '-x', '--force', '--no-spin', '--out', 'o']);
    expect(all.seen?.values).toEqual({ out: 'o', count: '-1', label: '-x', force: true, 'no-spin': true });
    expect(all.seen?.positionals).toEqual(['b.txt']);
  });

  test.each([
    [['a.txt', '--count', '1', '--cuont', '2'], "unknown option '--cuont' (Did you mean --count?)"],
    [['a.txt'], '--count is required'],
    [['--count', '1'], "missing required argument 'source'"],
    [['a.txt', 'b.txt', '--count', '1'], "unexpected argument 'b.txt'"],
    [['a.txt', '--count'], "option '--count <n>' argument missing"],
    [['a.txt', '--count', '1', '--force=yes'], "unknown option '--force=yes'"],
  ])('%j: exit 2, one line on stderr naming the problem, then the usage; the body does not run', async (argv, message) => {
    const result = await run(argv);
    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.seen).toBeUndefined();
    expect(result.stderr).toBe(`demo: ${message}; usage: ${DEMO.usage}\n`);
  });

  test('parse() throws the same UsageError for a tool that validates without running', () => {
    expect(() => DEMO.parse(['a.txt'])).toThrow(UsageError);
    expect(() => DEMO.parse(['a.txt'])).toThrow('--count is required; usage: demo <source>');
  });

  test("the body's failures: a UsageError exits 2, anything else 1, each as the first line of its message; a returned code is the exit code", async () => {
    const usage = await run(['a', '--count', '1'], { body: () => Promise.reject(new UsageError('--count: too many')) });
    expect([usage.code, usage.stderr]).toEqual([2, 'demo: --count: too many\n']);
    const failure = await run(['a', '--count', '1'], { body: () => Promise.reject(new Error('disk full\n  at somewhere')) });
    expect([failure.code, failure.stderr]).toEqual([1, 'demo: disk full\n']);
    const thrown = await run(['a', '--count', '1'], { body: () => Promise.reject('a string') });
    expect([thrown.code, thrown.stderr]).toEqual([1, 'demo: a string\n']);
    expect((await run(['a', '--count', '1'], { body: async () => 3 })).code).toBe(3);
  });

  test.each<[string, string, string[], boolean]>([
    ['no terminal, no flag', 'off', [], false],
    ['no terminal, --progress', 'lines', ['--progress'], false],
    ['no terminal, --no-progress', 'off', ['--no-progress'], false],
    ['a terminal, no flag', 'bars', [], true],
    ['a terminal, --progress', 'bars', ['--progress'], true],
    ['a terminal, --no-progress', 'off', ['--no-progress'], true],
  ])('progress with %s: %s', async (_case, mode, flags, onTerminal) => {
    const result = await run(['a', '--count', '1', ...flags], { terminal: onTerminal ? new FakeTerminal() : undefined });
    expect(result.seen?.progress.mode).toBe(mode);
  });

  test('a bar still drawn when the body fails is ended, its line closed, and the error goes to stderr', async () => {
    const terminal = new FakeTerminal();
    const result = await run(['a', '--count', '2'], {
      terminal,
      body: async ({ progress }) => {
        progress.steps('copy', 2).step('first copy');
        throw new Error('second copy failed');
      },
    });
    expect(result.code).toBe(1);
    expect(result.stderr).toBe('demo: second copy failed\n');
    expect(terminal.visibleLines).toEqual([expect.stringMatching(/^copy .* 1\/2 first copy \(\d+\.\d s\)$/)]);
    expect(terminal.text.endsWith('\n')).toBe(true);
  });
});
