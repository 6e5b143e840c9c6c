import { Format, Presets, SingleBar, type Options, type Params } from 'cli-progress';
import type { CliOutput } from './cli-output';
import { formatBytes } from './format-bytes';

/**
 * How a tool shows progress: bars redrawn in place on a terminal, plain lines on stderr (for logs,
 * CI and tests that ask for them with `--progress`), or nothing.
 */
export type ProgressMode = 'bars' | 'lines' | 'off';

/** In `lines` mode a transfer reports at most this often, and always once when it ends. */
export const PROGRESS_LINE_INTERVAL_MS = 5_000;
/** Width of the bar glyphs; the text around them needs about 60 more columns. */
const BAR_SIZE = 24;
/** Byte bars of one tool line up: file names up to this long (tokenizer_config.json is 21). */
const BYTE_LABEL_WIDTH = 24;
/** Redraws per second at most; each redraw is a terminal write. */
const BAR_FPS = 10;

/** Work counted in steps: "stage 1 of 3 compiled". */
export interface StepProgress {
  /** One more step is done; `what` names it ("stage 1 compiled"). */
  step(what: string): void;
  finish(): void;
}

/** One transfer counted in bytes, with its rate. */
export interface ByteProgress {
  /** `doneBytes` of `totalBytes` are there; a total that is undefined was not announced. */
  update(doneBytes: number, totalBytes: number | undefined): void;
  finish(): void;
}

/** What a tool's long work reports to; every task it starts ends with `finish()` or `close()`. */
export interface ProgressReporter {
  readonly mode: ProgressMode;
  steps(label: string, total: number): StepProgress;
  bytes(label: string, totalBytes: number | undefined): ByteProgress;
  /** Ends every task still shown (work that failed half-way); safe to call more than once. */
  close(): void;
}

/** `tool` prefixes plain lines, as it prefixes the tool's error lines. */
export function createProgressReporter(tool: string, mode: ProgressMode, output: CliOutput): ProgressReporter {
  if (mode === 'bars') {
    if (output.terminal === undefined) throw new Error('progress bars need a terminal');
    return new TaskReporter(mode, new BarTasks(output.terminal));
  }
  if (mode === 'lines') return new TaskReporter(mode, new LineTasks(tool, output.stderr));
  return new TaskReporter(mode, NO_TASKS);
}

/** A task as a mode draws it: `finish` when its work is done, `stop` when it is abandoned. */
interface Task {
  stop(): void;
}

interface TaskFactory {
  steps(label: string, total: number): StepProgress & Task;
  bytes(label: string, totalBytes: number | undefined): ByteProgress & Task;
}

/** Keeps the tasks still shown, so that `close()` can stop them when the work fails half-way. */
class TaskReporter implements ProgressReporter {
  private readonly active = new Set<Task>();

  constructor(
    readonly mode: ProgressMode,
    private readonly tasks: TaskFactory,
  ) {}

  steps(label: string, total: number): StepProgress {
    const task = this.tasks.steps(label, total);
    this.active.add(task);
    return { step: (what) => task.step(what), finish: () => this.finish(task) };
  }

  bytes(label: string, totalBytes: number | undefined): ByteProgress {
    const task = this.tasks.bytes(label, totalBytes);
    this.active.add(task);
    return { update: (doneBytes, total) => task.update(doneBytes, total), finish: () => this.finish(task) };
  }

  close(): void {
    for (const task of this.active) task.stop();
    this.active.clear();
  }

  private finish(task: Task & { finish(): void }): void {
    if (this.active.delete(task)) task.finish();
  }
}

const NO_TASKS: TaskFactory = {
  steps: () => ({ step: () => undefined, finish: () => undefined, stop: () => undefined }),
  bytes: () => ({ update: () => undefined, finish: () => undefined, stop: () => undefined }),
};

/** Bytes per second since the first update of a transfer (a resumed file counts only what arrives now). */
class RateMeter {
  private first: { bytes: number; atMs: number } | undefined;

  bytesPerSecond(doneBytes: number, nowMs: number): number | undefined {
    // A transfer that starts over (the server ignored a Range request) starts the meter over too.
    if (this.first === undefined || doneBytes < this.first.bytes) this.first = { bytes: doneBytes, atMs: nowMs };
    const seconds = (nowMs - this.first.atMs) / 1000;
    return seconds > 0 ? (doneBytes - this.first.bytes) / seconds : undefined;
  }
}

function describeTransfer(doneBytes: number, totalBytes: number | undefined, bytesPerSecond: number | undefined): string {
  const amount = totalBytes === undefined ? formatBytes(doneBytes) : `${formatBytes(doneBytes)} / ${formatBytes(totalBytes)}`;
  const percent = totalBytes === undefined || totalBytes === 0 ? '' : ` (${Math.floor((doneBytes / totalBytes) * 100)}%)`;
  const rate = bytesPerSecond === undefined ? '' : `, ${formatBytes(Math.round(bytesPerSecond))}/s`;
  return `${amount}${percent}${rate}`;
}

function seconds(sinceMs: number): string {
  return `${((Date.now() - sinceMs) / 1000).toFixed(1)} s`;
}

/** Plain lines on stderr: one per step, and for a transfer one every PROGRESS_LINE_INTERVAL_MS plus one at its end. */
class LineTasks implements TaskFactory {
  constructor(
    private readonly tool: string,
    private readonly write: (text: string) => void,
  ) {}

  steps(label: string, total: number): StepProgress & Task {
    const startedMs = Date.now();
    let done = 0;
    return {
      step: (what) => {
        done += 1;
        this.write(`${this.tool}: ${label} ${done}/${total}: ${what} (${seconds(startedMs)})\n`);
      },
      finish: () => undefined,
      stop: () => undefined,
    };
  }

  bytes(label: string, totalBytes: number | undefined): ByteProgress & Task {
    const startedMs = Date.now();
    const meter = new RateMeter();
    let lastLineMs = startedMs;
    let state = { done: 0, total: totalBytes, rate: undefined as number | undefined };
    return {
      update: (doneBytes, total) => {
        const now = Date.now();
        state = { done: doneBytes, total, rate: meter.bytesPerSecond(doneBytes, now) };
        // A complete transfer is reported by its "done" line.
        if (now - lastLineMs < PROGRESS_LINE_INTERVAL_MS || (total !== undefined && doneBytes >= total)) return;
        lastLineMs = now;
        this.write(`${this.tool}: ${label} ${describeTransfer(state.done, state.total, state.rate)}\n`);
      },
      finish: () => this.write(`${this.tool}: ${label} ${describeTransfer(state.done, state.total, state.rate)}, done in ${seconds(startedMs)}\n`),
      stop: () => undefined,
    };
  }
}

/** Bars drawn by cli-progress on the terminal, one line per task, each left in place once finished. */
class BarTasks implements TaskFactory {
  constructor(private readonly terminal: NodeJS.WritableStream) {}

  steps(label: string, total: number): StepProgress & Task {
    const bar = this.start(
      (options, params, payload: { what: string }) =>
        `${label} ${Format.BarFormat(params.progress, options)} ${params.value}/${params.total}${payload.what === '' ? '' : ` ${payload.what}`} (${seconds(params.startTime)})`,
      total,
      { what: '' },
    );
    return {
      step: (what) => bar.increment(1, { what }),
      finish: () => bar.stop(),
      stop: () => bar.stop(),
    };
  }

  bytes(label: string, totalBytes: number | undefined): ByteProgress & Task {
    const meter = new RateMeter();
    const bar = this.start(
      (options, params, payload: { totalKnown: boolean; rate: number | undefined }) => {
        const glyphs = payload.totalKnown ? ` ${Format.BarFormat(params.progress, options)}` : '';
        const eta = payload.totalKnown && params.value < params.total ? `, ETA ${Format.TimeFormat(params.eta, options, 1)}` : '';
        return `${label.padEnd(BYTE_LABEL_WIDTH)}${glyphs} ${describeTransfer(params.value, payload.totalKnown ? params.total : undefined, payload.rate)}${eta}`;
      },
      totalBytes ?? 0,
      { totalKnown: totalBytes !== undefined, rate: undefined },
    );
    return {
      update: (doneBytes, total) => {
        if (total !== undefined && total !== bar.getTotal()) bar.setTotal(total);
        bar.update(doneBytes, { totalKnown: total !== undefined, rate: meter.bytesPerSecond(doneBytes, Date.now()) });
      },
      finish: () => bar.stop(),
      stop: () => bar.stop(),
    };
  }

  private start<P extends object>(format: (options: Options, params: Params, payload: P) => string, total: number, payload: P): SingleBar {
    const bar = new SingleBar(
      {
        stream: this.terminal,
        format: (options, params, current: P) => format(options, params, current),
        barsize: BAR_SIZE,
        fps: BAR_FPS,
        // The terminal keeps its settings and signals keep their handlers: a tool killed mid-bar
        // must not leave a hidden cursor or line wrapping turned off, and a launcher's own SIGINT
        // handling stays in charge. linewrap: true cuts a line to the terminal's width instead.
        hideCursor: false,
        linewrap: true,
        gracefulExit: false,
        clearOnComplete: false,
        emptyOnZero: true,
      },
      Presets.shades_classic,
    );
    bar.start(total, 0, payload);
    return bar;
  }
}
