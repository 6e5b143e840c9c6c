import { Router } from '../../services/coordinator/router';
import type { ReplicaHealth } from '../../services/coordinator/replica-health';
import { NodeDirectory } from '../../shared/node-directory';

/** Replica states as ReplicaHealth reports them: whether health checks answer SERVING, whether the breaker is open. */
type States = Record<string, { serving: boolean; breakerOpen: boolean }>;

function router(states: States, load: Record<string, number> = {}): Router {
  const ids = Object.keys(states);
  const directory = new NodeDirectory(
    ids.map((id, i) => ({ id, address: `127.0.0.1:${40_000 + i}`, modelPart: Number(id[4]) - 1, metricsPort: 1, discovery: 'static' as const, intraOpThreads: 1 })),
  );
  const health = {
    routable: (id: string) => states[id].serving && !states[id].breakerOpen,
    serving: (id: string) => states[id].serving,
    describe: (id: string) => `health status ${states[id].serving ? 'SERVING' : 'NOT_SERVING'}${states[id].breakerOpen ? ', breaker open after recent failures' : ''}`,
  } as unknown as ReplicaHealth;
  return new Router(directory, health, 2, (id) => load[id] ?? 0);
}

const ok = { serving: true, breakerOpen: false };

describe('Router', () => {
  test('picks the least loaded usable replica of every stage, and avoids the ones a sequence just failed on when another is usable', () => {
    const r = router({ node1a: ok, node1b: ok, node2a: ok }, { node1a: 3, node1b: 1 });
    expect(r.pick().map((n) => n.id)).toEqual(['node1b', 'node2a']);
    expect(r.pick(new Set(['node1b'])).map((n) => n.id)).toEqual(['node1a', 'node2a']);
    // The only replica of stage 2 is kept even when it is to be avoided.
    expect(r.pick(new Set(['node2a'])).map((n) => n.id)).toEqual(['node1b', 'node2a']);
  });

  test('an open breaker diverts traffic to another replica, but never takes out the last one that answers its health checks', () => {
    expect(router({ node1a: { serving: true, breakerOpen: true }, node1b: ok, node2a: ok }).pick().map((n) => n.id)).toEqual(['node1b', 'node2a']);
    expect(router({ node1a: { serving: true, breakerOpen: true }, node2a: ok }).pick().map((n) => n.id)).toEqual(['node1a', 'node2a']);
  });

  test('a stage whose replicas are all down is UNAVAILABLE, naming each replica and why', () => {
    const r = router({ node1a: ok, node2a: { serving: false, breakerOpen: true } });
    expect(() => r.pick()).toThrow('no serving replica of stage 1 (node2a at 127.0.0.1:40001: health status NOT_SERVING, breaker open after recent failures)');
    expect(r.available()).toBe(false);
  });
});
