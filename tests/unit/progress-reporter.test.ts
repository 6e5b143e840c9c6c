import { createProgressReporter, PROGRESS_LINE_INTERVAL_MS } from '../../tools/cli/progress-reporter';
import { FakeTerminal } from '../support/fake-terminal';

function linesReporter(): { lines: string[]; reporter: ReturnType<typeof createProgressReporter> } {
  const lines: string[] = [];
  const reporter = createProgressReporter('tool', 'lines', { stdout: () => undefined, stderr: (text) => lines.push(text) });
  return { lines, reporter };
}

describe('progress as plain lines', () => {
  afterEach(() => jest.useRealTimers());

  test('a step task prints one line per step with the count and the time since it started', () => {
    jest.useFakeTimers({ now: 0 });
    const { lines, reporter } = linesReporter();
    const steps = reporter.steps('build', 3);
    jest.setSystemTime(1_200);
    steps.step('weights drawn');
    jest.setSystemTime(2_000);
    steps.step('checkpoint written');
    steps.finish();
    expect(lines).toEqual(['tool: build 1/3: weights drawn (1.2 s)\n', 'tool: build 2/3: checkpoint written (2.0 s)\n']);
  });

  test(`a transfer prints at most one line per ${PROGRESS_LINE_INTERVAL_MS} ms with bytes done/total and rate, and one when it is done`, () => {
    jest.useFakeTimers({ now: 0 });
    const { lines, reporter } = linesReporter();
    const file = reporter.bytes('model.safetensors', 10 * 1024 ** 2);
    file.update(0, 10 * 1024 ** 2);
    jest.setSystemTime(1_000);
    file.update(1024 ** 2, 10 * 1024 ** 2);
    expect(lines).toEqual([]);
    jest.setSystemTime(PROGRESS_LINE_INTERVAL_MS);
    file.update(5 * 1024 ** 2, 10 * 1024 ** 2);
    jest.setSystemTime(PROGRESS_LINE_INTERVAL_MS + 1_000);
    file.update(6 * 1024 ** 2, 10 * 1024 ** 2);
    jest.setSystemTime(10_000);
    file.update(10 * 1024 ** 2, 10 * 1024 ** 2);
    file.finish();
    expect(lines).toEqual([
      'tool: model.safetensors 5.0 MiB / 10.0 MiB (50%), 1.0 MiB/s\n',
      'tool: model.safetensors 10.0 MiB / 10.0 MiB (100%), 1.0 MiB/s, done in 10.0 s\n',
    ]);
  });

  test('a transfer of unknown size shows bytes and rate; a resumed one counts its rate from where it resumed', () => {
    jest.useFakeTimers({ now: 0 });
    const { lines, reporter } = linesReporter();
    const unknown = reporter.bytes('a.bin', undefined);
    unknown.update(0, undefined);
    jest.setSystemTime(2_000);
    unknown.update(4096, undefined);
    unknown.finish();
    const resumed = reporter.bytes('b.bin', 1000);
    resumed.update(900, 1000);
    jest.setSystemTime(3_000);
    resumed.update(1000, 1000);
    resumed.finish();
    expect(lines).toEqual(['tool: a.bin 4.0 KiB, 2.0 KiB/s, done in 2.0 s\n', 'tool: b.bin 1000 B / 1000 B (100%), 100 B/s, done in 1.0 s\n']);
  });

  test('close() abandons unfinished tasks without a "done" line, and a finished task prints its line once', () => {
    const { lines, reporter } = linesReporter();
    const done = reporter.bytes('done.bin', 10);
    done.update(10, 10);
    done.finish();
    done.finish();
    reporter.bytes('cut.bin', 10).update(5, 10);
    reporter.close();
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^tool: done\.bin 10 B \/ 10 B \(100%\).*, done in/);
  });
});

describe('progress bars on a terminal', () => {
  test('a step bar is redrawn in place as steps end and left on its own line when finished', () => {
    const terminal = new FakeTerminal();
    const reporter = createProgressReporter('tool', 'bars', { stdout: () => undefined, stderr: () => undefined, terminal });
    const steps = reporter.steps('compile', 2);
    steps.step('stage 0 written');
    steps.step('stage 1 written');
    steps.finish();
    expect(terminal.text).toContain('\x1b[');
    expect(terminal.visibleLines).toEqual([expect.stringMatching(/^compile █+ 2\/2 stage 1 written \(\d+\.\d s\)$/)]);
    expect(terminal.text.endsWith('\n')).toBe(true);
  });

  test('a byte bar shows percent, bytes done/total, rate and ETA; close() ends it', async () => {
    const terminal = new FakeTerminal();
    const reporter = createProgressReporter('tool', 'bars', { stdout: () => undefined, stderr: () => undefined, terminal });
    const file = reporter.bytes('model.safetensors', 4 * 1024 ** 2);
    file.update(0, 4 * 1024 ** 2);
    await new Promise((resolve) => setTimeout(resolve, 250));
    file.update(1024 ** 2, 4 * 1024 ** 2);
    await new Promise((resolve) => setTimeout(resolve, 150));
    reporter.close();
    expect(terminal.visibleLines).toEqual([expect.stringMatching(/^model\.safetensors +[█░]+ 1\.0 MiB \/ 4\.0 MiB \(25%\), [\d.]+ MiB\/s, ETA [\dhms]+$/)]);
    expect(terminal.text.endsWith('\n')).toBe(true);
  });

  test('bars need a terminal', () => {
    expect(() => createProgressReporter('tool', 'bars', { stdout: () => undefined, stderr: () => undefined })).toThrow('progress bars need a terminal');
  });
});

test('progress off writes nothing anywhere', () => {
  const written: string[] = [];
  const terminal = new FakeTerminal();
  const reporter = createProgressReporter('tool', 'off', { stdout: (t) => written.push(t), stderr: (t) => written.push(t), terminal });
  const steps = reporter.steps('build', 1);
  steps.step('done');
  steps.finish();
  const file = reporter.bytes('f', 1);
  file.update(1, 1);
  file.finish();
  reporter.close();
  expect(written).toEqual([]);
  expect(terminal.text).toBe('');
});
