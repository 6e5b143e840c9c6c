import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/**
 * `npm test`: jest in two phases. First every test except tests/faults/, two workers at a time
 * (jest.config.js). Then tests/faults/ alone (--runInBand, nothing else running): those tests
 * kill and freeze replicas of a running system and hold the stall a client sees to the issue's
 * 3 s, which measures the system only when no other test file is competing for the same two
 * cores. Arguments go to both phases (a path pattern, -t, --ci ...); --json / --outputFile are
 * honoured once, with the two phases' results merged into one report.
 */
const FAULTS_DIR = 'tests/faults/';
const JEST = require.resolve('jest/bin/jest');

interface JestReport {
  success: boolean;
  startTime: number;
  wasInterrupted?: boolean;
  testResults: unknown[];
  [field: string]: unknown;
}

/** Where the user wants jest's JSON (`--outputFile X` / `--outputFile=X`), and the other arguments. */
function splitOutputArgs(args: readonly string[]): { json: boolean; outputFile: string | undefined; rest: string[] } {
  let json = false;
  let outputFile: string | undefined;
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === '--json') json = true;
    else if (arg === '--outputFile') outputFile = args[++i];
    else if (arg.startsWith('--outputFile=')) outputFile = arg.slice('--outputFile='.length);
    else rest.push(arg);
  }
  return { json, outputFile, rest };
}

function runPhase(args: readonly string[], reportFile: string): { status: number; report: JestReport | undefined } {
  const result = spawnSync(process.execPath, [JEST, ...args, '--json', `--outputFile=${reportFile}`], { stdio: 'inherit' });
  let report: JestReport | undefined;
  try {
    report = JSON.parse(readFileSync(reportFile, 'utf8')) as JestReport;
  } catch {
    report = undefined;
  }
  return { status: result.status ?? 1, report };
}

/** One report for both phases: counts add up, results concatenate, success needs both. */
function merge(reports: readonly JestReport[]): JestReport {
  const merged: JestReport = { ...reports[0], testResults: [] };
  for (const [field, value] of Object.entries(reports[0])) {
    if (typeof value === 'number' && field.startsWith('num')) merged[field] = reports.reduce((sum, r) => sum + (typeof r[field] === 'number' ? (r[field] as number) : 0), 0);
  }
  merged.success = reports.every((r) => r.success);
  merged.wasInterrupted = reports.some((r) => r.wasInterrupted === true);
  merged.startTime = Math.min(...reports.map((r) => r.startTime));
  merged.testResults = reports.flatMap((r) => r.testResults);
  return merged;
}

function main(): number {
  const { json, outputFile, rest } = splitOutputArgs(process.argv.slice(2));
  const scratch = mkdtempSync(path.join(os.tmpdir(), 'pipeserve-test-'));
  try {
    const phases = [
      runPhase([...rest, '--testPathIgnorePatterns', FAULTS_DIR], path.join(scratch, 'parallel.json')),
      runPhase([...rest, '--runInBand', '--passWithNoTests', '--roots', path.resolve(__dirname, '../..', FAULTS_DIR)], path.join(scratch, 'faults.json')),
    ];
    const reports = phases.flatMap((p) => (p.report === undefined ? [] : [p.report]));
    if (reports.length > 0) {
      const merged = merge(reports);
      const c = merged as unknown as Record<string, number>;
      console.log(`\nboth phases: ${c.numPassedTests} passed, ${c.numFailedTests} failed, ${c.numPendingTests} skipped, ${c.numTotalTests} total`);
      if (outputFile !== undefined) writeFileSync(outputFile, JSON.stringify(merged));
      else if (json) process.stdout.write(`${JSON.stringify(merged)}\n`);
    }
    return phases.every((p) => p.status === 0) && reports.length === phases.length ? 0 : 1;
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

process.exitCode = main();
