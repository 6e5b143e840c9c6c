import { Sequence, type SequenceObserver } from '../../services/coordinator/sequence';
import { planLaneStep } from '../../services/coordinator/step-planner';
import { DEFAULT_GENERATION_CONFIG } from '../../shared/generation-config';

const OBSERVER: SequenceObserver = { onToken: () => undefined, onFinish: () => undefined, onError: () => undefined };

function running(prompt: number[], generated: number[], fed: number): Sequence {
  const sequence = new Sequence(
    { requestId: 'r', promptIds: prompt, sampling: { ...DEFAULT_GENERATION_CONFIG, stop: [], topLogprobs: 0, ignoreEos: false }, deadlineUnixMs: Date.now() + 60_000, priority: 'interactive' },
    OBSERVER,
  );
  sequence.generated.push(...generated);
  sequence.newIncarnation([]);
  sequence.fed = fed;
  sequence.state = 'running';
  return sequence;
}

describe('planLaneStep', () => {
  test('decode rows come first, then prefill chunks share what is left of the token budget; only a chunk that reaches the end samples', () => {
    const decoding = running([1, 2, 3], [4], 3);
    const prefilling = running(Array.from({ length: 10 }, (_, i) => i), [], 0);
    const rows = planLaneStep([prefilling, decoding], { maxRows: 8, maxTokens: 5 });
    expect(rows.map((r) => [r.sequence === decoding ? 'decode' : 'prefill', r.start, r.count, r.sample])).toEqual([
      ['decode', 3, 1, true],
      ['prefill', 0, 4, false],
    ]);
    expect(decoding.historySlice(3, 1)).toEqual([4]);
  });

  test('a replay after failover feeds the whole history (prompt and generated) from position 0 and samples the next token', () => {
    const sequence = running([10, 11, 12], [20, 21, 22], 5);
    sequence.newIncarnation([]);
    expect(sequence.fed).toBe(0);
    const [row] = planLaneStep([sequence], { maxRows: 4, maxTokens: 64 });
    expect([row.start, row.count, row.sample]).toEqual([0, 6, true]);
    expect(sequence.historySlice(0, 6)).toEqual([10, 11, 12, 20, 21, 22]);
  });

  test('members in flight, done or waiting for their open are skipped; maxRows bounds the step', () => {
    const a = running([1], [2], 1);
    const b = running([1], [2], 1);
    const c = running([1], [2], 1);
    const d = running([1], [2], 1);
    b.inFlight = true;
    c.state = 'opening';
    d.state = 'done';
    const e = running([1], [2], 1);
    const f = running([1], [2], 1);
    expect(planLaneStep([a, b, c, d, e, f], { maxRows: 2, maxTokens: 64 }).map((r) => r.sequence)).toEqual([a, e]);
  });

  test('each incarnation gets a new node-side id and token, so stale messages of the old one can never match', () => {
    const sequence = running([1], [], 0);
    const first = sequence.incarnation;
    const second = sequence.newIncarnation([]);
    expect(second.nodeSequenceId).not.toBe(first?.nodeSequenceId);
    expect(second.token.equals(first?.token as Buffer)).toBe(false);
    expect(second.token.length).toBe(16);
  });
});
