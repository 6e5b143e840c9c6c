import { Command, CommanderError, Option } from 'commander';
import { UsageError } from '../../shared/errors';
import type { CliOutput } from './cli-output';
import { createProgressReporter, type ProgressMode, type ProgressReporter } from './progress-reporter';

/** One flag, `--<key>`: a value option when it has a `value` placeholder, a switch otherwise. */
export interface CliOptionSpec {
  /** The value's placeholder in help and usage: `dir` shows as `--out <dir>`. */
  readonly value?: string;
  readonly description: string;
  /** The value when the flag is absent, shown in help. */
  readonly default?: string;
  /** Absent, the tool fails with `--<key> is required`. */
  readonly required?: boolean;
}

/** A positional argument; every declared one is required, and no others are accepted. */
export interface CliArgumentSpec {
  readonly name: string;
  readonly description: string;
}

export interface CliExample {
  readonly description: string;
  readonly command: string;
}

export interface CliSpec<O extends CliOptionSpecs> {
  /** The tool's name, as errors are prefixed with it (`model-init: …`). */
  readonly name: string;
  readonly description: string;
  readonly arguments?: readonly CliArgumentSpec[];
  readonly options: O;
  /** Adds `--progress` / `--no-progress`, for tools with long work. */
  readonly progress?: boolean;
  /** Environment variables the tool reads, with their meaning. */
  readonly environment?: Readonly<Record<string, string>>;
  readonly examples: readonly [CliExample, ...CliExample[]];
}

export type CliOptionSpecs = Readonly<Record<string, CliOptionSpec>>;

/** The parsed flags by key: a string for a value option (undefined when absent and without default), a boolean for a switch. */
export type CliValues<O extends CliOptionSpecs> = {
  readonly [K in keyof O]: O[K] extends { readonly value: string }
    ? O[K] extends { readonly default: string } | { readonly required: true }
      ? string
      : string | undefined
    : boolean;
};

export interface CliArgs<O extends CliOptionSpecs> {
  readonly values: CliValues<O>;
  /** Exactly the declared positional arguments, in order. */
  readonly positionals: readonly string[];
  /** `--progress` (true), `--no-progress` (false), or neither (undefined). */
  readonly progressFlag: boolean | undefined;
}

export interface CliRun<O extends CliOptionSpecs> extends CliArgs<O> {
  /** Bars on a terminal; plain lines on stderr with `--progress` elsewhere; nothing otherwise. */
  readonly progress: ProgressReporter;
}

/** `--help` was asked for: not a failure, the help text is the tool's output. */
class HelpRequested extends Error {
  constructor(readonly helpText: string) {
    super('help requested');
  }
}

/**
 * A command-line tool declared once: its flags (parsed by commander), its help with defaults and
 * examples, and how it ends. Values stay strings: the tool parses them into its own types and
 * throws a `UsageError` naming the flag.
 */
export class CliCommand<const O extends CliOptionSpecs> {
  constructor(readonly spec: CliSpec<O>) {}

  /** `model-init [--preset <name>] …`: the usage line of help and of every usage error. */
  get usage(): string {
    const args = (this.spec.arguments ?? []).map((a) => `<${a.name}>`);
    const options = Object.entries(this.spec.options).map(([key, option]) => {
      const flag = option.value === undefined ? `--${key}` : `--${key} <${option.value}>`;
      return option.required === true ? flag : `[${flag}]`;
    });
    if (this.spec.progress === true) options.push('[--[no-]progress]');
    return [this.spec.name, ...args, ...options].join(' ');
  }

  /** Parses `argv`; a malformed command line throws a one-line `UsageError` ending with the usage. */
  parse(argv: readonly string[]): CliArgs<O> {
    const sink = { text: '' };
    const command = this.build(sink);
    try {
      command.parse([...argv], { from: 'user' });
    } catch (error) {
      if (!(error instanceof CommanderError)) throw error;
      if (error.code === 'commander.helpDisplayed' || error.code === 'commander.help') throw new HelpRequested(sink.text);
      // commander says "error: unknown option '--x'" and puts its "(Did you mean --y?)" on a line of its own.
      throw this.usageError(error.message.replace(/^error: /, '').replace(/\s*\n\s*/g, ' '));
    }
    const declared = this.spec.arguments?.length ?? 0;
    if (command.args.length > declared) throw this.usageError(`unexpected argument '${command.args[declared]}'`);

    const parsed = command.opts();
    const values: Record<string, string | boolean | undefined> = {};
    for (const [key, spec] of Object.entries(this.spec.options)) {
      const option = command.options.find((o) => o.long === `--${key}`);
      const value: unknown = option === undefined ? undefined : parsed[option.attributeName()];
      if (spec.value !== undefined) values[key] = typeof value === 'string' ? value : undefined;
      // A `--no-x` switch is stored by commander as x = false.
      else values[key] = option?.negate === true ? value === false : value === true;
      if (spec.required === true && values[key] === undefined) throw this.usageError(`--${key} is required`);
    }
    const progressFlag: unknown = this.spec.progress === true ? parsed.progress : undefined;
    return {
      values: values as CliValues<O>,
      positionals: command.args.slice(0, declared),
      progressFlag: typeof progressFlag === 'boolean' ? progressFlag : undefined,
    };
  }

  /**
   * Parses `argv` and runs `body`: prints help for `--help` / `-h` and exits 0; turns what the body
   * throws into one line on stderr, `<name>: <message>`. Resolves to the exit code: the body's
   * own, or 0 when it returns nothing, 2 for a `UsageError`, 1 for anything else.
   */
  async run(argv: readonly string[], output: CliOutput, body: (run: CliRun<O>) => Promise<number | void>): Promise<number> {
    let progress: ProgressReporter | undefined;
    try {
      const args = this.parse(argv);
      progress = createProgressReporter(this.spec.name, progressMode(args.progressFlag, output), output);
      return (await body({ ...args, progress })) ?? 0;
    } catch (error) {
      // A bar still drawn would share its line with the error.
      progress?.close();
      if (error instanceof HelpRequested) {
        output.stdout(error.helpText);
        return 0;
      }
      const message = error instanceof Error ? error.message : String(error);
      output.stderr(`${this.spec.name}: ${message.split('\n')[0]}\n`);
      return error instanceof UsageError ? 2 : 1;
    } finally {
      progress?.close();
    }
  }

  private usageError(message: string): UsageError {
    return new UsageError(`${message}; usage: ${this.usage}`);
  }

  /** A fresh commander program per parse: commander keeps the parsed values on the instance. */
  private build(sink: { text: string }): Command {
    const command = new Command(this.spec.name)
      .description(this.spec.description)
      .usage(this.usage.slice(this.spec.name.length + 1))
      .helpOption('-h, --help', 'show this help and exit')
      .allowExcessArguments(true)
      .exitOverride()
      .configureOutput({
        writeOut: (text) => (sink.text += text),
        writeErr: () => undefined,
        outputError: () => undefined,
      });
    for (const argument of this.spec.arguments ?? []) command.argument(`<${argument.name}>`, argument.description);
    for (const [key, spec] of Object.entries(this.spec.options)) {
      const flags = spec.value === undefined ? `--${key}` : `--${key} <${spec.value}>`;
      const option = new Option(flags, spec.required === true ? `${spec.description} (required)` : spec.description);
      if (spec.default !== undefined) option.default(spec.default, spec.default);
      command.addOption(option);
    }
    if (this.spec.progress === true) {
      command.addOption(new Option('--progress', 'show progress even when stderr is not a terminal, as plain lines (default: bars on a terminal only)'));
      command.addOption(new Option('--no-progress', 'show no progress, not even on a terminal'));
    }
    command.addHelpText('after', this.epilogue());
    return command;
  }

  private epilogue(): string {
    const sections: string[] = [];
    const environment = Object.entries(this.spec.environment ?? {});
    if (environment.length > 0) {
      const width = Math.max(...environment.map(([name]) => name.length));
      sections.push(`Environment:\n${environment.map(([name, meaning]) => `  ${name.padEnd(width)}  ${meaning}`).join('\n')}`);
    }
    sections.push(`Examples:\n${this.spec.examples.map((e) => `  ${e.description}:\n    $ ${e.command}`).join('\n')}`);
    return `\n${sections.join('\n\n')}\n`;
  }
}

/** `--no-progress` wins; a terminal gets bars; elsewhere only `--progress` asks for plain lines. */
function progressMode(flag: boolean | undefined, output: CliOutput): ProgressMode {
  if (flag === false) return 'off';
  if (output.terminal !== undefined) return 'bars';
  return flag === true ? 'lines' : 'off';
}

/** For a tool run as the main module: sets the exit code once it is done, so pending output is flushed. */
export function exitWhenDone(run: Promise<number>): void {
  void run.then((code) => {
    process.exitCode = code;
  });
}
