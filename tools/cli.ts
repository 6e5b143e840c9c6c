import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UsageError } from '../shared/errors';

/** Where a command-line tool writes; tests pass collectors, `PROCESS_OUTPUT` is the terminal. */
export interface CliOutput {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
}

export const PROCESS_OUTPUT: CliOutput = {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
};

/** The flags of a tool, and whether it takes positional arguments (by default it does not). */
export type CliArgsConfig = Pick<ParseArgsConfig, 'options' | 'allowPositionals'>;

/**
 * `node:util` parseArgs in strict mode; its errors become a one-line `UsageError` that ends with
 * the tool's usage text.
 */
export function parseCliArgs<const T extends CliArgsConfig>(
  argv: readonly string[],
  config: T,
  usage: string,
): ReturnType<typeof parseArgs<T & { args: string[]; strict: true }>> {
  try {
    return parseArgs({ ...config, args: [...argv], strict: true });
  } catch (error) {
    // node:util spreads some messages over several lines; the CLI promises one.
    throw new UsageError(`${(error as Error).message.replace(/\s*\n\s*/g, ' ')}; ${usage}`);
  }
}

/**
 * Runs a tool's body and turns what it throws into one line on stderr, `<name>: <message>`.
 * Returns the exit code: 0, 2 for a `UsageError`, 1 for anything else.
 */
export async function runCliTool(name: string, output: CliOutput, body: () => Promise<void>): Promise<number> {
  try {
    await body();
    return 0;
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    output.stderr(`${name}: ${message.split('\n')[0]}\n`);
    return error instanceof UsageError ? 2 : 1;
  }
}

/** For a tool run as the main module: sets the exit code once it is done, so pending output is flushed. */
export function exitWhenDone(run: Promise<number>): void {
  void run.then((code) => {
    process.exitCode = code;
  });
}
