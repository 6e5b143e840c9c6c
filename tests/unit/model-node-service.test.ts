import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { CoordinatorMessage } from '../../protos/generated/pipeserve/v1/CoordinatorMessage';
import type { ForwardMessage } from '../../protos/generated/pipeserve/v1/ForwardMessage';
import type { ForwardReply__Output } from '../../protos/generated/pipeserve/v1/ForwardReply';
import type { ModelNodeClient } from '../../protos/generated/pipeserve/v1/ModelNode';
import { createClient, requestMetadata } from '../../shared/grpc/channel';
import { protos } from '../../shared/grpc/proto-loader';
import { float32Tensor } from '../../shared/tensor';
import { encodeTensor } from '../../shared/tensor-codec';
import { EVENT_TIMEOUT_MS, RawNodeSession } from '../support/raw-node-session';
import { InProcessNodes } from '../support/in-process-nodes';
import { naiveGreedy } from '../support/naive-gpt2';
import { tinyCheckpoint, tinyModel } from '../support/test-models';

const TEST_TIMEOUT_MS = 120_000;
const HIDDEN = 64;
const PROMPT = [464, 2068, 7586, 21831, 18045];

function open(sequenceId: string, token: Buffer, nextNodeId: string, reserve = 64): CoordinatorMessage {
  return { open: { sequence_id: sequenceId, request_id: 'r', token, reserve_tokens: reserve, next_node_id: nextNodeId, sampling: { temperature: 0 } } };
}

function stepRow(sequenceId: string, token: Buffer, pastLength: number, tokenIds: number[]): CoordinatorMessage['step'] {
  return { step_id: 1, rows: [{ sequence_id: sequenceId, token, past_length: pastLength, token_ids: tokenIds, sample: true, generated_index: 0 }], timeout_ms: 5_000 };
}

describe('ModelNodeService', () => {
  let nodes: InProcessNodes;
  let modelDir: string;
  const clients = new Map<string, ModelNodeClient>();
  const client = (id: string): ModelNodeClient => {
    let c = clients.get(id);
    if (c === undefined) {
      c = createClient(protos().node.pipeserve.v1.ModelNode, nodes.node(id).entry.address);
      clients.set(id, c);
    }
    return c;
  };

  beforeAll(async () => {
    modelDir = await tinyModel({ stages: 2 });
    nodes = await InProcessNodes.start(modelDir, 2);
  }, TEST_TIMEOUT_MS);

  afterAll(async () => {
    for (const c of clients.values()) c.close();
    await nodes?.stop();
  });

  test(
    'open on every stage, step into the first: the last stage sends the sampled token straight to the owner, equal to the naive greedy token',
    async () => {
      const first = new RawNodeSession(client('node1'));
      const last = new RawNodeSession(client('node2'));
      const token = randomBytes(16);
      first.send(open('seq-a', token, 'node2'));
      last.send(open('seq-a', token, ''));
      expect(await first.next('opened')).toMatchObject({ sequence_id: 'seq-a', code: grpc.status.OK });
      expect(await last.next('opened')).toMatchObject({ sequence_id: 'seq-a', code: grpc.status.OK, reserved_bytes: 64 * nodes.node('node2').runtime.kvStats().bytesPerToken });
      first.send({ step: stepRow('seq-a', token, 0, PROMPT) });
      const result = await last.next('result');
      expect(result.step_id).toBe(1);
      expect(result.tokens.map((t) => [t.sequence_id, t.token_id])).toEqual([['seq-a', naiveGreedy(tinyCheckpoint(), PROMPT, 1)[0]]]);
      expect(result.timings.map((t) => t.node_id)).toEqual(['node1', 'node2']);
      first.send({ release: { sequence_ids: ['seq-a'] } });
      last.send({ release: { sequence_ids: ['seq-a'] } });
      expect((await first.next('released')).sequence_ids).toEqual(['seq-a']);
      expect((await last.next('released')).sequence_ids).toEqual(['seq-a']);
      expect(nodes.node('node1').runtime.kvStats().sequences).toBe(0);
      first.close();
      last.close();
    },
    TEST_TIMEOUT_MS,
  );

  test('each stage publishes pipeserve_stage_model_info 1 with the model name, architecture, its weight format and layers, and the stage count of manifest.json', async () => {
    // Read straight from the file the compiler wrote, not through the manifest parser the node uses.
    const manifest = JSON.parse(readFileSync(path.join(modelDir, 'manifest.json'), 'utf8')) as {
      modelName: string;
      architecture: string;
      stages: { layerStart: number; layerEnd: number; weights: { format: string } }[];
    };
    expect(manifest.stages).toHaveLength(2);
    for (const [index, id] of ['node1', 'node2'].entries()) {
      const stage = manifest.stages[index];
      const info = await nodes.node(id).registry.getSingleMetric('pipeserve_stage_model_info')?.get();
      expect(info?.values).toEqual([
        {
          value: 1,
          labels: {
            model_name: manifest.modelName,
            architecture: manifest.architecture,
            weights: stage.weights.format,
            layers: `${stage.layerStart}-${stage.layerEnd - 1}`,
            stages: '2',
          },
        },
      ]);
    }
    expect(manifest.stages.map((s) => s.weights.format)).toEqual(['fp32', 'fp32']);
  });

  test('an open is refused with INVALID_ARGUMENT naming the field: bad id, short token, reserve beyond the context, unknown next hop', async () => {
    const session = new RawNodeSession(client('node1'));
    const token = randomBytes(16);
    session.send(open('has space', token, 'node2'));
    expect(await session.next('opened')).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, message: expect.stringMatching(/^open\.sequence_id/) });
    session.send(open('short-token', randomBytes(4), 'node2'));
    expect(await session.next('opened')).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, message: expect.stringMatching(/^open\.token/) });
    session.send(open('too-long', token, 'node2', 100_000));
    expect(await session.next('opened')).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, message: expect.stringMatching(/^open\.reserve_tokens: must be 1-256/) });
    // A hop the node was not configured with: the node must never connect to an arbitrary address.
    session.send(open('elsewhere', token, '10.0.0.1:50051'));
    expect(await session.next('opened')).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, message: expect.stringMatching(/^open\.next_node_id: "10\.0\.0\.1:50051" is not a configured replica of stage 1/) });
    expect(nodes.node('node1').runtime.kvStats().sequences).toBe(0);
    session.close();
  });

  test('only the owner steps, reads and releases a sequence; a wrong token looks like an unknown sequence and leaks nothing', async () => {
    const owner = new RawNodeSession(client('node1'));
    const stranger = new RawNodeSession(client('node1'));
    const token = randomBytes(16);
    owner.send(open('owned', token, 'node2'));
    await owner.next('opened');
    stranger.send({ step: stepRow('owned', token, 0, PROMPT) });
    const refused = await stranger.next('failed');
    expect(refused.code).toBe(grpc.status.NOT_FOUND);
    stranger.send({ step: stepRow('owned', randomBytes(16), 0, PROMPT) });
    const wrongToken = await stranger.next('failed');
    expect(wrongToken.code).toBe(grpc.status.NOT_FOUND);
    expect(wrongToken.message).not.toMatch(/cached|length|holds/);
    stranger.send({ release: { sequence_ids: ['owned'] } });
    expect((await stranger.next('released')).sequence_ids).toEqual([]);
    expect(nodes.node('node1').runtime.holds('owned')).toBe(true);
    owner.send({ release: { sequence_ids: ['owned'] } });
    expect((await owner.next('released')).sequence_ids).toEqual(['owned']);
    owner.close();
    stranger.close();
  });

  test('a release that arrives while its open is still reserving KV frees the sequence once the open completes', async () => {
    // What a coordinator does after an open timed out on a hung replica: when the replica resumes, both arrive at once.
    // The in-process runtime reserves within a microtask; the worker thread of a real node takes a
    // message round trip. The reservation is held back here so that the release surely arrives during it.
    const runtime = nodes.node('node1').runtime;
    const reserve = runtime.reserve.bind(runtime);
    runtime.reserve = async (id: string, tokens: number) => {
      await new Promise((r) => setTimeout(r, 200));
      return reserve(id, tokens);
    };
    const session = new RawNodeSession(client('node1'));
    try {
      const token = randomBytes(16);
      session.send(open('released-while-opening', token, 'node2'));
      session.send({ release: { sequence_ids: ['released-while-opening'] } });
      expect(await session.next('opened')).toMatchObject({ code: grpc.status.ABORTED, message: expect.stringMatching(/was released while it opened/) });
      const deadline = Date.now() + EVENT_TIMEOUT_MS;
      while (runtime.holds('released-while-opening') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      expect(runtime.holds('released-while-opening')).toBe(false);
      expect(runtime.kvStats().sequences).toBe(0);
    } finally {
      runtime.reserve = reserve;
      session.close();
    }
  });

  test('a step without rows, and one already past its deadline, are answered at once and run nothing', async () => {
    const session = new RawNodeSession(client('node1'));
    session.send({ step: { step_id: 7, rows: [], timeout_ms: 1_000 } });
    expect(await session.next('failed')).toMatchObject({ step_id: 7, code: grpc.status.INVALID_ARGUMENT, message: expect.stringMatching(/^step\.rows/) });
    const token = randomBytes(16);
    session.send(open('late', token, 'node2'));
    expect(await session.next('opened')).toMatchObject({ sequence_id: 'late', code: grpc.status.OK });
    session.send({ step: { ...stepRow('late', token, 0, PROMPT), step_id: 8, timeout_ms: 0 } });
    expect(await session.next('failed')).toMatchObject({ step_id: 8, code: grpc.status.DEADLINE_EXCEEDED });
    expect(nodes.node('node1').runtime.cachedLength('late')).toBe(0);
    session.send({ release: { sequence_ids: ['late'] } });
    await session.next('released');
    session.close();
  });

  test('a Forward message with NaN activations or the wrong shape is answered INVALID_ARGUMENT on the stream and changes nothing', async () => {
    const session = new RawNodeSession(client('node2'));
    const token = randomBytes(16);
    session.send(open('fwd', token, ''));
    await session.next('opened');
    const forward = client('node2').Forward(requestMetadata(''));
    const replies: ForwardReply__Output[] = [];
    forward.on('data', (reply: ForwardReply__Output) => replies.push(reply));
    const hidden = new Float32Array(2 * HIDDEN).fill(0.5);
    hidden[17] = Number.NaN;
    const message = (id: number, data: Float32Array, dims: number[]): ForwardMessage => ({
      forward_id: id,
      step: { step_id: id, rows: [{ sequence_id: 'fwd', token, past_length: 0, token_ids: [1, 2], sample: true }], hidden_states: encodeTensor(float32Tensor(dims, data)), timeout_ms: 1_000 },
    });
    forward.write(message(1, hidden, [2, HIDDEN]));
    forward.write(message(2, new Float32Array(HIDDEN), [1, HIDDEN]));
    const until = Date.now() + EVENT_TIMEOUT_MS;
    while (replies.length < 2 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    expect(replies.map((r) => [r.forward_id, grpc.status[r.code]])).toEqual([
      [1, 'INVALID_ARGUMENT'],
      [2, 'INVALID_ARGUMENT'],
    ]);
    expect(replies[0].message).toMatch(/step\.hidden_states: element 17 is NaN/);
    expect(replies[1].message).toMatch(/expected float32\[2, 64\]/);
    expect(nodes.node('node2').runtime.cachedLength('fwd')).toBe(0);
    forward.end();
    session.close();
  });

  test('a full KV budget refuses the open with RESOURCE_EXHAUSTED', async () => {
    const session = new RawNodeSession(client('node1'));
    const token = randomBytes(16);
    // Stage 0 of 2 holds 3 layers: 1.5 KiB per token; the in-process budget is 64 MiB.
    session.send(open('huge-1', token, 'node2', 256));
    await session.next('opened');
    const perToken = nodes.node('node1').runtime.kvStats().bytesPerToken;
    const fit = Math.floor((64 << 20) / (256 * perToken));
    const ids = Array.from({ length: fit + 2 }, (_, i) => `huge-${i + 2}`);
    for (const id of ids) session.send(open(id, token, 'node2', 256));
    const answers = [];
    for (let i = 0; i < ids.length; i++) answers.push(await session.next('opened'));
    expect(answers.some((a) => a.code === grpc.status.RESOURCE_EXHAUSTED && /KV cache budget exhausted/.test(a.message))).toBe(true);
    session.close();
    // The session is gone: every sequence it opened is released.
    const until = Date.now() + EVENT_TIMEOUT_MS;
    while (nodes.node('node1').runtime.kvStats().sequences > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    expect(nodes.node('node1').runtime.kvStats().sequences).toBe(0);
  });
});
