import { BENCH_COMMAND, runBenchCli } from '../../tools/bench';
import { BENCH_TRANSFORMERS_JS_COMMAND, runBenchTransformersJsCli } from '../../tools/bench-transformers-js';
import { CHAOS_COMMAND, runChaosCli } from '../../tools/chaos';
import type { CliCommand, CliOptionSpecs } from '../../tools/cli/cli-command';
import type { CliOutput } from '../../tools/cli/cli-output';
import { EVAL_COMMAND, runEvalCli } from '../../tools/eval';
import { GENERATE_COMMAND, runGenerateCli } from '../../tools/generate';
import { MODEL_COMPILE_COMMAND, runModelCompileCli } from '../../tools/model-compile';
import { MODEL_INIT_COMMAND, runModelInitCli } from '../../tools/model-init';
import { MODEL_PULL_COMMAND, runModelPullCli } from '../../tools/model-pull';
import { runStartCli, START_COMMAND } from '../../tools/start';

interface Tool {
  readonly command: CliCommand<CliOptionSpecs>;
  readonly run: (argv: readonly string[], output: CliOutput) => Promise<number>;
  /** How the README and the examples start it. */
  readonly launchers: readonly string[];
  /** Every flag the README documents, with its value placeholder, and each default as help must show it. */
  readonly options: readonly string[];
  readonly defaults: readonly string[];
}

const TOOLS: Record<string, Tool> = {
  start: {
    command: START_COMMAND,
    run: runStartCli,
    launchers: ['npm start --', 'npm start', 'node dist/tools/start.js'],
    options: ['--config <path>', '--ready-timeout-ms <ms>', 'CONFIG_PATH'],
    defaults: ['(default: 300000)', '$CONFIG_PATH, else ./config.json'],
  },
  'model-init': {
    command: MODEL_INIT_COMMAND,
    run: runModelInitCli,
    launchers: ['npm run model:init --', 'npm run model:init', 'node dist/tools/model-init.js'],
    options: ['--preset <name>', '--out <dir>', '--seed <n>', '--stages <n>', '--ops <plain|fused>', '--force', '--if-missing', '--progress', '--no-progress'],
    defaults: ['small (GPT-2 small shape', 'tiny (a tiny GPT-2', '(default: small)', '(default: models/default)', '(default: 42)', '(default: 3)', '(default: fused)'],
  },
  'model-pull': {
    command: MODEL_PULL_COMMAND,
    run: (argv, output) => runModelPullCli(argv, {}, output),
    launchers: ['npm run model:pull --'],
    options: ['<repo>', '--out <dir>', '--revision <rev>', '--force', '--progress', '--no-progress', 'HF_ENDPOINT', 'HF_TOKEN'],
    defaults: ['(default: models/hf/<repo>)', '(default: main)', '(default: https://huggingface.co)'],
  },
  'model-compile': {
    command: MODEL_COMPILE_COMMAND,
    run: runModelCompileCli,
    launchers: ['npm run model:compile --'],
    options: ['--from <hf-dir>', '--out <dir>', '--stages <n>', '--split <even|balanced|ranges>', '--ops <plain|fused>', '--weights <fp32|int8|int4>', '--block-size <n>', '--keep-fp32 <kinds>', '--force', '--progress', '--no-progress'],
    defaults: ['(default: balanced)', '(default: fused)', '0-4,4-8,8-12', '(required)'],
  },
  generate: {
    command: GENERATE_COMMAND,
    run: runGenerateCli,
    launchers: ['npm run generate --'],
    options: ['--model <dir>', '--prompt <text>', '--max-new-tokens <n>', '--temperature <t>', '--top-k <k>', '--top-p <p>', '--repetition-penalty <r>', '--seed <s>', '--json'],
    // The generation defaults every entry point shares: 32 tokens (or what the context leaves), greedy, no filters.
    defaults: ['(default 32, or', 'greedy', '(default: 0)', '(default: 1)', '(required)'],
  },
  'bench-transformers-js': {
    command: BENCH_TRANSFORMERS_JS_COMMAND,
    run: runBenchTransformersJsCli,
    launchers: ['npm run bench:transformers-js --', 'npm run bench:transformers-js'],
    options: ['--model <dir>', '--streams <list>', '--tokens <n>', '--prompt-tokens <n>', '--threads <n>', '--no-spinning', '--json'],
    defaults: ['(default: models/default)', '(default: 1,16)', '(default: 32)', '(default: 12)', '(default: 0)'],
  },
  eval: {
    command: EVAL_COMMAND,
    run: runEvalCli,
    launchers: ['npm run eval --'],
    options: ['--model <dir>', '--reference <dir>', '--json'],
    defaults: ['(required)'],
  },
  bench: {
    command: BENCH_COMMAND,
    run: runBenchCli,
    launchers: ['npm run bench --', 'npm run bench'],
    options: ['--model <dirs>', '--checkpoint <dir>', '--streams <list>', '--tokens <n>', '--prompt-tokens <n>', '--systems <list>', '--link-delay-ms <ms>', '--rounds <n>', '--out <file>', '--update-readme', '--json', '--progress', '--no-progress'],
    defaults: ['(default: models/default)', '(default: 1,16,64)', '(default: 48)', '(default: 12)', '(default: bare-onnxruntime,transformers.js,in-process,pipeline)', '(default: 0)', '(default: 1)', '(default: bench/results.md)'],
  },
  chaos: {
    command: CHAOS_COMMAND,
    run: runChaosCli,
    launchers: ['npm run chaos --', 'npm run chaos', 'node dist/tools/chaos.js'],
    options: ['--model <dir>', '--streams <n>', '--tokens <n>', '--kill <n>', '--freeze <n>', '--freeze-ms <ms>', '--cancel <n>', '--replicas <n>', '--seed <n>', '--timeout-ms <ms>', '--json'],
    defaults: ['(default: models/default)', '(default: 16)', '(default: 48)', '(default: 1)', '(default: 0)', '(default: 4000)', '(default: 2)', '(default: 180000 + 250 × streams × tokens)'],
  },
};

async function capture(tool: Tool, argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await tool.run(argv, { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t) });
  return { code, stdout, stderr };
}

/** Splits an example command line as a shell would, for the double quotes the examples use. */
function shellWords(line: string): string[] {
  return [...line.matchAll(/"([^"]*)"|(\S+)/g)].map((m) => m[1] ?? m[2]);
}

describe.each(Object.entries(TOOLS))('%s --help', (name, tool) => {
  test('--help and -h print usage, every option with its default, and examples on stdout, and exit 0', async () => {
    const help = await capture(tool, ['--help']);
    expect(help.code).toBe(0);
    expect(help.stderr).toBe('');
    expect(help.stdout).toMatch(new RegExp(`^Usage: ${name} `));
    // commander wraps long descriptions; compare with the line breaks folded.
    const text = help.stdout.replace(/\s+/g, ' ');
    for (const option of [...tool.options, '-h, --help']) expect([option, text.includes(option)]).toEqual([option, true]);
    for (const value of tool.defaults) expect([value, text.includes(value)]).toEqual([value, true]);
    expect(help.stdout).toMatch(/\nExamples:\n {2}\S.*:\n {4}\$ \S/);
    expect((await capture(tool, ['-h'])).stdout).toBe(help.stdout);
  });

  test('every example in the help parses', () => {
    const examples = tool.command.spec.examples.map((e) => e.command);
    expect(examples.length).toBeGreaterThan(0);
    for (const example of examples) {
      const launcher = tool.launchers.find((l) => example === l || example.startsWith(`${l} `));
      expect([example, launcher !== undefined]).toEqual([example, true]);
      const argv = shellWords(example.slice((launcher as string).length));
      expect(() => tool.command.parse(argv)).not.toThrow();
    }
  });

  test('an unknown option exits 2 with one line on stderr that names it', async () => {
    const result = await capture(tool, ['--frobnicate']);
    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.stderr).toMatch(new RegExp(`^${name}: unknown option '--frobnicate'; usage: ${name} [^\\n]+\\n$`));
  });
});
