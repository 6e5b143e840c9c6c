import * as path from 'node:path';
import { UsageError } from '../shared/errors';
import { DEFAULT_HF_ENDPOINT, hubDownload, isValidRepoId, type HubDownloadOptions } from './pull/hub-download';
import { exitWhenDone, parseCliArgs, PROCESS_OUTPUT, runCliTool, type CliOutput } from './cli';

const USAGE = 'usage: model-pull <owner/name> [--out dir] [--revision main] [--force]';
const DEFAULT_REVISION = 'main';
const DEFAULT_OUT_ROOT = path.join('models', 'hf');

/**
 * Downloads a Hugging Face GPT-2 checkpoint (safetensors) into `--out` (default models/hf/<repo>)
 * and validates it. HF_ENDPOINT overrides the Hub address, HF_TOKEN authenticates. An interrupted
 * run resumes where it stopped. Returns the exit code: 0, 2 for bad arguments, 1 when it fails.
 */
export function runModelPullCli(argv: readonly string[], env: NodeJS.ProcessEnv, output: CliOutput): Promise<number> {
  const started = process.hrtime.bigint();
  return runCliTool('model-pull', output, async () => {
    const options = parseModelPullArgs(argv, env);
    const files: string[] = [];
    const checkpoint = await hubDownload({
      ...options,
      onFileDone: (file, bytes) => files.push(`  ${file.padEnd(34)} ${(bytes / 1024 ** 2).toFixed(1)} MiB`),
    });
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const { model } = checkpoint;
    const { shape } = model;
    output.stdout(
      `pulled ${options.repo}@${options.revision} into ${checkpoint.dir} in ${seconds.toFixed(1)} s ` +
        `(${model.architecture}: ${shape.layers} layers, ${shape.hiddenSize} wide, ${shape.attentionHeads} heads / ${shape.kvHeads} KV heads, vocab ${shape.vocabSize})\n${files.join('\n')}\n`,
    );
  });
}

export function parseModelPullArgs(argv: readonly string[], env: NodeJS.ProcessEnv): HubDownloadOptions {
  const { positionals, values } = parseCliArgs(
    argv,
    {
      allowPositionals: true,
      options: {
        out: { type: 'string' },
        revision: { type: 'string', default: DEFAULT_REVISION },
        force: { type: 'boolean', default: false },
      },
    },
    USAGE,
  );
  if (positionals.length !== 1) throw new UsageError(`expected one repository, got ${positionals.length}; ${USAGE}`);
  const repo = positionals[0];
  if (!isValidRepoId(repo)) throw new UsageError(`repository '${repo}' is not a Hub id like openai-community/gpt2`);
  const revision = values.revision;
  if (revision.trim() === '' || revision.includes('..')) throw new UsageError(`--revision: '${revision}' is not a branch, tag or commit`);
  const endpoint = env.HF_ENDPOINT ?? DEFAULT_HF_ENDPOINT;
  if (!/^https?:\/\/[^/]/.test(endpoint)) throw new UsageError(`HF_ENDPOINT: '${endpoint}' is not an http(s) URL`);
  return {
    repo,
    revision,
    out: values.out ?? path.join(DEFAULT_OUT_ROOT, ...repo.split('/')),
    endpoint,
    token: env.HF_TOKEN,
    force: values.force,
  };
}

if (require.main === module) exitWhenDone(runModelPullCli(process.argv.slice(2), process.env, PROCESS_OUTPUT));
