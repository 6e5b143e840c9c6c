import { decode as referenceDecode, encode as referenceEncode } from 'gpt-3-encoder';
import { InProcessPipeline } from '../../services/node/in-process-pipeline';
import { DEFAULT_GENERATION_CONFIG } from '../../shared/generation-config';
import { runGenerateCli } from '../../tools/generate';
import { naiveGreedy } from '../support/naive-gpt2';
import { tinyCheckpoint, tinyModel } from '../support/test-models';

const MODEL_TEST_TIMEOUT_MS = 300_000;
const PROMPT = 'The quick brown fox';
const EOS = 50256;

interface CliRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

async function runCli(argv: string[]): Promise<CliRun> {
  let stdout = '';
  let stderr = '';
  const code = await runGenerateCli(argv, { stdout: (text) => (stdout += text), stderr: (text) => (stderr += text) });
  return { code, stdout, stderr };
}

describe('generate CLI', () => {
  let modelDir: string;

  beforeAll(async () => {
    modelDir = await tinyModel({ stages: 2 });
  }, MODEL_TEST_TIMEOUT_MS);

  test(
    '--json prints the pipeline token_ids, the prompt ids, the decoded text and the finish reason',
    async () => {
      const run = await runCli(['--model', modelDir, '--prompt', PROMPT, '--max-new-tokens', '8', '--temperature', '0', '--json']);
      expect(run.stderr).toBe('');
      expect(run.code).toBe(0);
      const output = JSON.parse(run.stdout) as { token_ids: number[]; text: string; prompt_token_ids: number[]; finish_reason: string };
      const promptIds = referenceEncode(PROMPT);
      expect(output.prompt_token_ids).toEqual(promptIds);

      const pipeline = await InProcessPipeline.load(modelDir);
      try {
        const direct = await pipeline.generate(promptIds, { ...DEFAULT_GENERATION_CONFIG, maxNewTokens: 8, temperature: 0 });
        expect(output.token_ids).toEqual(direct.tokenIds);
      } finally {
        await pipeline.close();
      }
      const naive = naiveGreedy(tinyCheckpoint(), promptIds, 8);
      const stop = naive.indexOf(EOS);
      expect(output.token_ids).toEqual(stop < 0 ? naive : naive.slice(0, stop + 1));
      expect(output.finish_reason).toBe(output.token_ids.includes(EOS) ? 'stop' : 'length');
      expect(output.text).toBe(referenceDecode(output.token_ids.filter((id) => id !== EOS)));
    },
    MODEL_TEST_TIMEOUT_MS,
  );

  test(
    'without --json prints the continuation text; a fixed seed reproduces a sampled continuation',
    async () => {
      const args = ['--model', modelDir, '--prompt', PROMPT, '--max-new-tokens', '6', '--temperature', '0.8', '--top-k', '50', '--seed', '3'];
      const json = await runCli([...args, '--json']);
      const text = await runCli(args);
      expect(text.code).toBe(0);
      const ids = (JSON.parse(json.stdout) as { token_ids: number[] }).token_ids;
      expect(ids).toHaveLength(6);
      expect(text.stdout).toBe(`${referenceDecode(ids.filter((id) => id !== EOS))}\n`);
    },
    MODEL_TEST_TIMEOUT_MS,
  );

  test.each([
    [[], /^generate: --model is required; usage: generate/],
    [['--prompt', 'hi'], /^generate: --model is required/],
    [['--model', '/nonexistent/model', '--prompt', 'hi'], /^generate: --model: \/nonexistent\/model is not a compiled model folder/],
    [['--model', 'MODEL'], /^generate: --prompt is required/],
    [['--model', 'MODEL', '--prompt', 'hi', '--top-k', 'many'], /^generate: --top-k: expected a number, got 'many'/],
    [['--model', 'MODEL', '--prompt', 'hi', '--top-p', '2'], /^generate: --top-p: must be in \(0, 1\]/],
    [['--model', 'MODEL', '--prompt', 'hi', '--max-new-tokens', '0'], /^generate: --max-new-tokens: must be an integer >= 1/],
    [['--model', 'MODEL', '--prompt', 'hi', '--temperature=-1'], /^generate: --temperature: must be >= 0/],
    [['--model', 'MODEL', '--prompt', 'hi', '--temperature', '-1'], /^generate: --temperature: must be >= 0/],
    [['--model', 'MODEL', '--prompt', 'hi', '--beam-width', '4'], /^generate: unknown option '--beam-width'/],
    [['--model', 'MODEL', '--prompt', ''], /^generate: --prompt: encodes to no tokens/],
  ])('bad arguments %j print one line on stderr and exit 2', async (argv, message) => {
    const run = await runCli(argv.map((arg) => (arg === 'MODEL' ? modelDir : arg)));
    expect(run.code).toBe(2);
    expect(run.stdout).toBe('');
    expect(run.stderr).toMatch(message);
    expect(run.stderr.trimEnd().split('\n')).toHaveLength(1);
  });
});
