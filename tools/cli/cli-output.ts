/** Where a command-line tool writes; tests pass collectors, `PROCESS_OUTPUT` is the process's own streams. */
export interface CliOutput {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
  /**
   * stderr when it is a terminal: progress bars are drawn there. Absent, a tool draws no bars
   * (and prints progress as plain lines on `stderr` only when asked to with `--progress`).
   */
  readonly terminal?: NodeJS.WritableStream;
}

export const PROCESS_OUTPUT: CliOutput = {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  terminal: process.stderr.isTTY ? process.stderr : undefined,
};
