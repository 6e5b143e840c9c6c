import { randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import type { CoordinatorMessage } from '../../protos/generated/pipeserve/v1/CoordinatorMessage';
import type { ModelNodeClient } from '../../protos/generated/pipeserve/v1/ModelNode';
import { createClient } from '../../shared/grpc/channel';
import { protos } from '../../shared/grpc/proto-loader';
import { HiddenStateCache } from '../../services/node/hidden-state-cache';
import { RawNodeSession } from '../support/raw-node-session';
import { InProcessNodes } from '../support/in-process-nodes';
import { naiveGreedy } from '../support/naive-gpt2';
import { tinyCheckpoint, tinyModel } from '../support/test-models';

/**
 * Partial replay on real node services (in process, over gRPC): when the replica of one stage
 * is lost, the healthy stages are rewound and the previous stage refills a replacement from the
 * hidden states it cached, and the sequence continues with exactly the tokens it would have had.
 */
const TEST_TIMEOUT_MS = 120_000;
const PROMPT = [464, 2068, 7586, 21831, 18045];

function open(sequenceId: string, token: Buffer, nextNodeId: string): CoordinatorMessage {
  return { open: { sequence_id: sequenceId, request_id: 'r', token, reserve_tokens: 64, next_node_id: nextNodeId, sampling: { temperature: 0 } } };
}

function step(stepId: number, sequenceId: string, token: Buffer, pastLength: number, tokenIds: number[], generatedIndex: number): CoordinatorMessage {
  return { step: { step_id: stepId, rows: [{ sequence_id: sequenceId, token, past_length: pastLength, token_ids: tokenIds, sample: true, generated_index: generatedIndex }], timeout_ms: 5_000 } };
}

describe('partial replay: rewind and refill', () => {
  let nodes: InProcessNodes;
  const clients: ModelNodeClient[] = [];
  const client = (id: string): ModelNodeClient => {
    const c = createClient(protos().node.pipeserve.v1.ModelNode, nodes.node(id).entry.address);
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    nodes = await InProcessNodes.start(await tinyModel({ stages: 2 }), 2, { replicas: [1, 2] });
  }, TEST_TIMEOUT_MS);

  afterAll(async () => {
    for (const c of clients) c.close();
    await nodes?.stop();
  });

  test(
    'a replacement of the last stage, refilled by the first from its cached hidden states, continues with the greedy tokens; the old token is refused',
    async () => {
      const expected = naiveGreedy(tinyCheckpoint(), PROMPT, 4);
      const first = new RawNodeSession(client('node1'));
      const lostLast = new RawNodeSession(client('node2a'));
      const token = randomBytes(16);
      first.send(open('seq', token, 'node2a'));
      lostLast.send(open('seq', token, ''));
      await first.next('opened');
      await lostLast.next('opened');
      first.send(step(1, 'seq', token, 0, PROMPT, 0));
      expect((await lostLast.next('result')).tokens.map((t) => t.token_id)).toEqual([expected[0]]);
      first.send(step(2, 'seq', token, PROMPT.length, [expected[0]], 1));
      expect((await lostLast.next('result')).tokens.map((t) => t.token_id)).toEqual([expected[1]]);
      // A step that went part of the way before its last stage was lost: the first stage holds one position more.
      first.send(step(3, 'seq', token, PROMPT.length + 1, [expected[1]], 2));
      await lostLast.next('result');
      lostLast.close();
      const fed = PROMPT.length + 1;
      expect(nodes.node('node1').runtime.cachedLength('seq')).toBe(fed + 1);

      // node2a is gone: node2b takes stage 1 under a new token, node1 is cut back to `fed` and refills it.
      const replacement = new RawNodeSession(client('node2b'));
      const newToken = randomBytes(16);
      replacement.send(open('seq', newToken, ''));
      expect(await replacement.next('opened')).toMatchObject({ code: grpc.status.OK });
      first.send({ rewind: { sequence_id: 'seq', token: newToken, length: fed, next_node_id: 'node2b', refill: true, step_id: 50, history: [...PROMPT, expected[0]], timeout_ms: 5_000, request_id: 'r' } });
      expect(await first.next('rewound')).toMatchObject({ sequence_id: 'seq', code: grpc.status.OK });
      const filled = await replacement.next('result');
      expect(filled).toMatchObject({ step_id: 50, tokens: [] });
      expect(nodes.node('node1').runtime.cachedLength('seq')).toBe(fed);
      expect(nodes.node('node2b').runtime.cachedLength('seq')).toBe(fed);

      // The old placement's token no longer opens the sequence.
      first.send(step(4, 'seq', token, fed, [expected[1]], 2));
      expect(await first.next('failed')).toMatchObject({ step_id: 4, code: grpc.status.NOT_FOUND });

      first.send(step(5, 'seq', newToken, fed, [expected[1]], 2));
      expect((await replacement.next('result')).tokens.map((t) => t.token_id)).toEqual([expected[2]]);
      first.send(step(6, 'seq', newToken, fed + 1, [expected[2]], 3));
      expect((await replacement.next('result')).tokens.map((t) => t.token_id)).toEqual([expected[3]]);

      first.send({ release: { sequence_ids: ['seq'] } });
      replacement.send({ release: { sequence_ids: ['seq'] } });
      await first.next('released');
      await replacement.next('released');
      first.close();
      replacement.close();
    },
    TEST_TIMEOUT_MS,
  );

  test('a step of the failed placement that arrives while the cut waits behind a running step is refused, not written past the cut', async () => {
    const first = new RawNodeSession(client('node1'));
    const last = new RawNodeSession(client('node2b'));
    const token = randomBytes(16);
    const reserve = (m: CoordinatorMessage): CoordinatorMessage => ({ open: { ...m.open, reserve_tokens: 256 } });
    first.send(reserve(open('race', token, 'node2b')));
    last.send(reserve(open('race', token, '')));
    await first.next('opened');
    await last.next('opened');
    first.send(step(1, 'race', token, 0, PROMPT, 0));
    await last.next('result');
    // In one burst: the failed step (a long chunk the cut waits behind and undoes), the rewind, then a step of the
    // failed placement with the old token. Accepted while the cut is under way, it would run right after the cut and
    // leave node1 one position ahead of what the coordinator knows.
    // A node's stage runs on a worker thread, so the cut's answer comes back a message later: model that here.
    const runtime = nodes.node('node1').runtime;
    const cut = runtime.rewindInOrder.bind(runtime);
    runtime.rewindInOrder = async (sequenceId: string, length: number): Promise<void> => {
      await cut(sequenceId, length);
      await new Promise((resolve) => setTimeout(resolve, 100));
    };
    const chunk = Array.from({ length: 200 }, (_, i) => 100 + i);
    try {
      first.send(step(2, 'race', token, PROMPT.length, chunk, 1));
      first.send({ rewind: { sequence_id: 'race', token: randomBytes(16), length: PROMPT.length, next_node_id: 'node2b', refill: false, step_id: 0, history: [], timeout_ms: 1_000, request_id: 'r' } });
      first.send(step(3, 'race', token, PROMPT.length, [12], 1));
      expect(await first.next('failed')).toMatchObject({ step_id: 3, code: grpc.status.NOT_FOUND });
      expect(await first.next('rewound')).toMatchObject({ code: grpc.status.OK });
    } finally {
      runtime.rewindInOrder = cut;
    }
    expect((await last.next('result')).step_id).toBe(2);
    expect(nodes.node('node1').runtime.cachedLength('race')).toBe(PROMPT.length);
    first.send({ release: { sequence_ids: ['race'] } });
    last.send({ release: { sequence_ids: ['race'] } });
    await first.next('released');
    await last.next('released');
    first.close();
    last.close();
  });

  test('an id whose release is still under way cannot be opened again (its reservation would merge into the old entry)', async () => {
    const session = new RawNodeSession(client('node2b'));
    const token = randomBytes(16);
    const runtime = nodes.node('node2b').runtime;
    const free = runtime.releaseInOrder.bind(runtime);
    runtime.releaseInOrder = async (sequenceId: string): Promise<boolean> => {
      const held = await free(sequenceId);
      await new Promise((resolve) => setTimeout(resolve, 100));
      return held;
    };
    try {
      session.send(open('again', token, ''));
      await session.next('opened');
      session.send({ release: { sequence_ids: ['again'] } });
      session.send(open('again', token, ''));
      expect(await session.next('opened')).toMatchObject({ code: grpc.status.ALREADY_EXISTS, message: expect.stringMatching(/still being released/) });
      expect((await session.next('released')).sequence_ids).toEqual(['again']);
    } finally {
      runtime.releaseInOrder = free;
    }
    session.send(open('again', token, ''));
    expect(await session.next('opened')).toMatchObject({ code: grpc.status.OK });
    session.send({ release: { sequence_ids: ['again'] } });
    await session.next('released');
    session.close();
  });

  test('a rewind is refused by name, and changes nothing: unknown sequence, a stranger, a refill on the last stage, more positions than held, a fill step that samples', async () => {
    const first = new RawNodeSession(client('node1'));
    const last = new RawNodeSession(client('node2b'));
    const stranger = new RawNodeSession(client('node1'));
    const token = randomBytes(16);
    first.send(open('kept', token, 'node2b'));
    last.send(open('kept', token, ''));
    await first.next('opened');
    await last.next('opened');
    first.send(step(1, 'kept', token, 0, PROMPT, 0));
    await last.next('result');
    const rewind = { sequence_id: 'kept', token: randomBytes(16), length: 2, next_node_id: 'node2b', refill: false, step_id: 0, history: [], timeout_ms: 1_000, request_id: 'r' };

    first.send({ rewind: { ...rewind, sequence_id: 'nope' } });
    expect(await first.next('rewound')).toMatchObject({ code: grpc.status.NOT_FOUND, message: expect.stringMatching(/^rewind\.sequence_id/) });
    stranger.send({ rewind });
    expect(await stranger.next('rewound')).toMatchObject({ code: grpc.status.NOT_FOUND });
    last.send({ rewind: { ...rewind, next_node_id: '', refill: true, history: [1, 2] } });
    expect(await last.next('rewound')).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, message: expect.stringMatching(/^rewind\.refill/) });
    first.send({ rewind: { ...rewind, next_node_id: '10.0.0.1:50051' } });
    expect(await first.next('rewound')).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, message: expect.stringMatching(/^rewind\.next_node_id/) });
    first.send({ rewind: { ...rewind, refill: true, history: [1] } });
    expect(await first.next('rewound')).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, message: expect.stringMatching(/^rewind\.history/) });
    first.send({ rewind: { ...rewind, length: PROMPT.length + 3 } });
    expect(await first.next('rewound')).toMatchObject({ code: grpc.status.FAILED_PRECONDITION });
    expect(nodes.node('node1').runtime.cachedLength('kept')).toBe(PROMPT.length);
    // Still under the old token: nothing was changed by the refused rewinds.
    first.send({ step: { ...step(2, 'kept', token, PROMPT.length, [7], 1).step, fill_only: true } });
    expect(await first.next('failed')).toMatchObject({ step_id: 2, code: grpc.status.INVALID_ARGUMENT, message: expect.stringMatching(/fill_only/) });
    first.send(step(3, 'kept', token, PROMPT.length, [7], 1));
    expect((await last.next('result')).step_id).toBe(3);

    first.send({ release: { sequence_ids: ['kept'] } });
    last.send({ release: { sequence_ids: ['kept'] } });
    await first.next('released');
    await last.next('released');
    for (const s of [first, last, stranger]) s.close();
  });
});

describe('HiddenStateCache', () => {
  const packed = (values: number[]): Float32Array => Float32Array.from(values);

  test('keeps positions as written, cuts back, refuses what it does not hold, and forgets a sequence with a gap', () => {
    const cache = new HiddenStateCache(2);
    cache.write('s', 0, 2, packed([1, 1, 2, 2, 9, 9]), 0);
    cache.write('s', 2, 1, packed([9, 9, 3, 3]), 1);
    expect(cache.length('s')).toBe(3);
    expect([...cache.read('s', 3)]).toEqual([1, 1, 2, 2, 3, 3]);
    cache.truncate('s', 1);
    cache.write('s', 1, 1, packed([5, 5]), 0);
    expect([...cache.read('s', 2)]).toEqual([1, 1, 5, 5]);
    expect(() => cache.read('s', 3)).toThrow(/2 hidden states cached, 3 needed/);
    expect(() => cache.truncate('s', 3)).toThrow(/cannot keep 3/);
    for (let i = 2; i < 40; i++) cache.write('s', i, 1, packed([i, -i]), 0);
    expect([...cache.read('s', 40).subarray(78)]).toEqual([39, -39]);
    cache.write('s', 45, 1, packed([0, 0]), 0);
    expect(cache.length('s')).toBe(0);
    cache.delete('s');
    expect(cache.bytes).toBe(0);
  });
});
