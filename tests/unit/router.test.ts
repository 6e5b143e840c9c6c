import { Router } from '../../services/coordinator/router';
import type { ReplicaHealth } from '../../services/coordinator/replica-health';
import { NodeDirectory } from '../../shared/node-directory';
import { CircuitBreaker } from '../../services/coordinator/circuit-breaker';

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
    admitted: () => undefined,
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

  test('a half-open replica gets one new sequence as its probe; the others go elsewhere until the probe is answered', () => {
    const options = { failureThreshold: 3, openMs: 60_000, successThreshold: 2 };
    const breakers: Record<string, CircuitBreaker> = { node1a: new CircuitBreaker(options), node1b: new CircuitBreaker(options), node2a: new CircuitBreaker(options) };
    // node1a came back: its breaker tripped one openMs ago, so it is half-open now.
    breakers.node1a.trip(Date.now() - options.openMs);
    const health = {
      routable: (id: string, now: number) => breakers[id].allows(now),
      serving: () => true,
      describe: () => 'health status SERVING',
      admitted: (id: string, now: number) => breakers[id].admit(now),
    } as unknown as ReplicaHealth;
    const ids = Object.keys(breakers);
    const directory = new NodeDirectory(ids.map((id, i) => ({ id, address: `127.0.0.1:${40_000 + i}`, modelPart: Number(id[4]) - 1, metricsPort: 1, discovery: 'static' as const, intraOpThreads: 1 })));
    // node1a holds nothing, so least-loaded routing alone would send it every newcomer.
    const r = new Router(directory, health, 2, (id) => (id === 'node1b' ? 5 : 0));
    expect(r.available()).toBe(true); // readiness asks without spending the probe
    expect(r.pick()[0].id).toBe('node1a');
    expect(r.pick()[0].id).toBe('node1b');
    expect(r.pickStage(0).id).toBe('node1b');
    // The probe's step came back: one more may go (the breaker closes after successThreshold successes).
    breakers.node1a.recordSuccess(Date.now());
    expect(r.pick()[0].id).toBe('node1a');
    expect(r.pick()[0].id).toBe('node1b');
    breakers.node1a.recordSuccess(Date.now());
    expect(breakers.node1a.state(Date.now())).toBe('closed');
    expect(r.pick()[0].id).toBe('node1a');
    expect(r.pick()[0].id).toBe('node1a');
  });
});
