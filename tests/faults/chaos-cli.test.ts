import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { readdirSync, readFileSync } from 'node:fs';
import { tinyModel } from '../support/test-models';

const PROJECT_DIR = path.resolve(__dirname, '../..');
const TEST_TIMEOUT_MS = 300_000;
const run = promisify(execFile);

/** Every process on the machine running one of the project's services (tests/faults/ runs alone). */
function servicePids(): Set<number> {
  const pids = new Set<number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(path.join(PROJECT_DIR, 'dist'))) pids.add(Number(entry));
    } catch {
      // It ended while we looked.
    }
  }
  return pids;
}

/**
 * `npm run chaos` as a user runs it, on the tiny model: a kill and a freeze among four streams.
 * The tool must say the run was healthy (exit 0), its JSON ledger must account for every stream
 * and every node, and it must leave no process of its own behind.
 */
describe('npm run chaos', () => {
  test(
    'a kill and a freeze among 4 streams: all complete as without faults, no KV held anywhere, no stall of 3 s, no process left',
    async () => {
      const model = await tinyModel({ stages: 3 });
      const before = servicePids();
      const { stdout, stderr } = await run(
        process.execPath,
        [path.join(PROJECT_DIR, 'dist/tools/chaos.js'), '--model', model, '--streams', '4', '--tokens', '24', '--kill', '1', '--freeze', '1', '--freeze-ms', '1500', '--json'],
        { cwd: PROJECT_DIR, timeout: TEST_TIMEOUT_MS - 10_000, maxBuffer: 16 * 1024 * 1024 },
      ).catch((error: { code?: number; stdout?: string; stderr?: string }) => {
        throw new Error(`chaos exited ${String(error.code)}:\n${error.stderr ?? ''}\n${error.stdout ?? ''}`);
      });
      const ledger = JSON.parse(stdout.trim().split('\n').at(-1) ?? '') as Record<string, unknown>;
      expect(ledger).toMatchObject({ accepted: 4, completed: 4, failed: 0, cancelled: 0, mismatched: 0, kv_leaked: 0, kv_unknown_nodes: [] });
      // Every node of 3 stages × 2 replicas answered, the restarted one included.
      expect(Object.keys(ledger.kv_by_node as object).sort()).toEqual(['node1a', 'node1b', 'node2a', 'node2b', 'node3a', 'node3b']);
      expect(Object.values(ledger.kv_by_node as object)).toEqual([0, 0, 0, 0, 0, 0]);
      expect(ledger.stall_ms_max).toBeLessThan(3_000);
      expect(stdout).toMatch(/faults: .*SIGKILL node\d[ab].*|faults: .*SIGSTOP node\d[ab]/);
      expect(stderr).toContain('system ready');
      // execFile resolved once chaos exited: nothing it started (launcher, services) may still run, orphaned or not.
      expect([...servicePids()].filter((pid) => !before.has(pid))).toEqual([]);
    },
    TEST_TIMEOUT_MS,
  );
});
