import * as path from 'node:path';
import { UsageError } from '../shared/errors';
import { DEFAULT_HF_ENDPOINT, hubDownload, isValidRepoId, type HubDownloadOptions } from './pull/hub-download';
import { CliCommand, exitWhenDone, type CliArgs } from './cli/cli-command';
import { PROCESS_OUTPUT, type CliOutput } from './cli/cli-output';
import { checkOutFlag } from './output-folder';
import type { ByteProgress, ProgressReporter } from './cli/progress-reporter';

const DEFAULT_REVISION = 'main';
const DEFAULT_OUT_ROOT = path.join('models', 'hf');

export const MODEL_PULL_COMMAND = new CliCommand({
  name: 'model-pull',
  description:
    'Downloads a Hugging Face checkpoint (config.json, tokenizer files, safetensors weights, single or sharded) into a ' +
    'folder and validates it. An interrupted run resumes where it stopped.',
  arguments: [{ name: 'repo', description: 'the Hub repository, owner/name (a bare name such as gpt2 is a legacy top-level model)' }],
  options: {
    out: { value: 'dir', description: 'the folder to write (default: models/hf/<repo>)' },
    revision: { value: 'rev', default: DEFAULT_REVISION, description: 'the branch, tag or commit to download' },
    force: { description: 'replace an --out folder that is not empty' },
  },
  progress: true,
  environment: {
    HF_ENDPOINT: `the Hub's address (default: ${DEFAULT_HF_ENDPOINT})`,
    HF_TOKEN: 'sent as a bearer token, for gated or private repositories',
  },
  examples: [
    { description: 'GPT-2 small into models/hf/openai-community/gpt2', command: 'npm run model:pull -- openai-community/gpt2' },
    { description: 'A pinned revision into a folder of your choice', command: 'npm run model:pull -- distilbert/distilgpt2 --revision main --out models/hf/distilgpt2' },
  ],
});

/**
 * Downloads a Hugging Face checkpoint (safetensors) into `--out` (default models/hf/<repo>)
 * and validates it. HF_ENDPOINT overrides the Hub address, HF_TOKEN authenticates. An interrupted
 * run resumes where it stopped. Returns the exit code: 0, 2 for bad arguments, 1 when it fails.
 */
export function runModelPullCli(argv: readonly string[], env: NodeJS.ProcessEnv, output: CliOutput): Promise<number> {
  const started = process.hrtime.bigint();
  return MODEL_PULL_COMMAND.run(argv, output, async (args) => {
    const options = parseModelPullArgs(args, env);
    await checkOutFlag(path.resolve(options.out), options.force === true);
    const files: string[] = [];
    const transfers = new FileTransfers(args.progress);
    const checkpoint = await hubDownload({
      ...options,
      onProgress: (file, done, total) => transfers.update(file, done, total),
      onFileDone: (file, bytes) => {
        transfers.finish(file);
        files.push(`  ${file.padEnd(34)} ${(bytes / 1024 ** 2).toFixed(1)} MiB`);
      },
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

function parseModelPullArgs({ positionals, values }: CliArgs<typeof MODEL_PULL_COMMAND.spec.options>, env: NodeJS.ProcessEnv): HubDownloadOptions {
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

/** One progress task per file, started by its first bytes (a file missing on the Hub, or already complete, shows none). */
class FileTransfers {
  private readonly byFile = new Map<string, ByteProgress>();

  constructor(private readonly progress: ProgressReporter) {}

  update(file: string, doneBytes: number, totalBytes: number | undefined): void {
    let transfer = this.byFile.get(file);
    if (transfer === undefined) {
      transfer = this.progress.bytes(file, totalBytes);
      this.byFile.set(file, transfer);
    }
    transfer.update(doneBytes, totalBytes);
  }

  finish(file: string): void {
    this.byFile.get(file)?.finish();
    this.byFile.delete(file);
  }
}

if (require.main === module) exitWhenDone(runModelPullCli(process.argv.slice(2), process.env, PROCESS_OUTPUT));
