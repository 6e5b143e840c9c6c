import { randomInt } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import type { MethodDefinition } from '@grpc/proto-loader';
import { Writer } from 'protobufjs';
import type { CoordinatorMessage, CoordinatorMessage__Output } from '../../protos/generated/pipeserve/v1/CoordinatorMessage';
import type { ForwardMessage, ForwardMessage__Output } from '../../protos/generated/pipeserve/v1/ForwardMessage';
import type { ForwardReply, ForwardReply__Output } from '../../protos/generated/pipeserve/v1/ForwardReply';
import type { GenerateRequest } from '../../protos/generated/pipeserve/v1/GenerateRequest';
import type { GenerationParameters } from '../../protos/generated/pipeserve/v1/GenerationParameters';
import type { NodeEvent, NodeEvent__Output } from '../../protos/generated/pipeserve/v1/NodeEvent';
import type { OpenSequence } from '../../protos/generated/pipeserve/v1/OpenSequence';
import type { SamplingParameters } from '../../protos/generated/pipeserve/v1/SamplingParameters';
import type { Step } from '../../protos/generated/pipeserve/v1/Step';
import type { StepRow } from '../../protos/generated/pipeserve/v1/StepRow';
import type { Tensor } from '../../protos/generated/pipeserve/v1/Tensor';
import { protos } from '../../shared/grpc/proto-loader';
import { readManifest } from '../../shared/model/manifest';
import type { ModelShape } from '../../shared/model/model-shape';
import { SystemRunner } from '../../tools/bench/system-runner';
import { describeNode } from '../../tools/describe-node';
import { postJson } from '../support/http';
import { encodeRequest, rawCall, type CallOutcome } from '../support/raw-grpc-call';
import { SeededRandom } from '../support/seeded-random';
import { Inbox, StreamProbe } from '../support/stream-probe';
import { SYSTEM_START_TIMEOUT_MS } from '../support/system';
import { tinyModel } from '../support/test-models';

/**
 * Thousands of malformed messages to every RPC of real processes (the launcher, a tiny 3-stage
 * model): random bytes, mutated encodings, wrong wire types, and well-formed messages with wrong
 * contents, from a stateless stranger and from a rogue "coordinator" that opens sequences of
 * its own. Every call must end with a typed status (or a typed per-message answer on a
 * session), within its deadline; afterwards no process has restarted, no KV is held, and a
 * normal generation gives the tokens it gave before. FUZZ_SEED=<n> replays a run.
 */
const SEED = process.env.FUZZ_SEED !== undefined ? Number(process.env.FUZZ_SEED) : randomInt(2 ** 31);
const MIN_MESSAGES = 2_000;
const RANDOM_BODIES_PER_METHOD = 70;
const RANDOM_MESSAGES_PER_SERVICE = 250;
/** Every call and stream has this deadline: an answer that does not come within it is a hang. */
const CALL_DEADLINE_MS = 20_000;
/** A session answer a rogue coordinator waits for (a step runs through three stages on a busy machine). */
const ANSWER_WAIT_MS = 10_000;
const IN_FLIGHT = 8;
const KV_RELEASE_WAIT_MS = 10_000;
const FUZZ_TEST_TIMEOUT_MS = 170_000;
const PROMPT = 'Malformed messages must change nothing in';
const NEW_TOKENS = 16;
const LIMITS = { max_new_tokens: 16, kv_budget_bytes: 4 * 1024 * 1024 };

/** Codes that say "the server did not understand its own failure", or never answered in time. */
const UNTYPED = new Set<number>([grpc.status.UNKNOWN, grpc.status.INTERNAL, grpc.status.DEADLINE_EXCEEDED, grpc.status.UNAVAILABLE, grpc.status.CANCELLED, grpc.status.DATA_LOSS]);
/** A step that says it has no time left is rightly answered DEADLINE_EXCEEDED on the session. */
const UNTYPED_ANSWER = new Set<number>([...UNTYPED].filter((code) => code !== grpc.status.DEADLINE_EXCEEDED));

type AnyMethod = MethodDefinition<object, object, object, object>;

interface StageNode {
  readonly id: string;
  readonly address: string;
  readonly stage: number;
  readonly isFirst: boolean;
  readonly isLast: boolean;
  /** The next stage's node id (undefined on the last). */
  readonly next: string | undefined;
}

/** One fuzz call: request bodies for one method, and a check of its outcome (undefined = right). */
interface FuzzCall {
  readonly name: string;
  readonly address: string;
  readonly method: AnyMethod;
  readonly requests: readonly Buffer[];
  readonly endAfterResponses?: number;
  readonly check: (outcome: CallOutcome<object>) => string | undefined;
}

let system: SystemRunner;
let shape: ModelShape;
let nodes: StageNode[];
let reference: number[];
const rng = new SeededRandom(SEED);
const clients = new Map<string, grpc.Client>();

function client(address: string): grpc.Client {
  let found = clients.get(address);
  if (found === undefined) {
    found = new grpc.Client(address, grpc.credentials.createInsecure(), { 'grpc.max_send_message_length': -1, 'grpc.max_receive_message_length': -1 });
    clients.set(address, found);
  }
  return found;
}

const methods = () => ({
  tokenizer: protos().tokenizer.pipeserve.v1.Tokenizer.service,
  coordinator: protos().coordinator.pipeserve.v1.Coordinator.service,
  node: protos().node.pipeserve.v1.ModelNode.service,
});

async function generateReference(): Promise<number[]> {
  const answer = await postJson(`${system.apiUrl}/api/model/process`, { text: PROMPT, max_new_tokens: NEW_TOKENS });
  expect(answer.status).toBe(200);
  return answer.body.token_ids as number[];
}

beforeAll(async () => {
  process.stdout.write(`grpc-fuzz: seed ${SEED} (FUZZ_SEED=${SEED} reproduces this run)\n`);
  const modelDir = await tinyModel({ stages: 3 });
  shape = (await readManifest(modelDir)).shape;
  system = await SystemRunner.start({ modelDir, limits: LIMITS });
  const { config } = system;
  nodes = config.nodes.map((n, i) => ({
    id: n.id,
    address: n.address,
    stage: n.model_part,
    isFirst: i === 0,
    isLast: i === config.nodes.length - 1,
    next: config.nodes[i + 1]?.id,
  }));
  reference = await generateReference();
}, SYSTEM_START_TIMEOUT_MS * 2);

afterAll(async () => {
  for (const c of clients.values()) c.close();
  await system?.stop();
});

// ---------------------------------------------------------------------------------------------
// Checks

const codeName = (code: number): string => grpc.status[code] ?? `code ${code}`;

/** The codes a session or forward stream answered its messages with. */
function answerCodes(responses: readonly object[]): number[] {
  return responses.flatMap((response) => {
    const event = response as NodeEvent__Output & Partial<ForwardReply__Output>;
    if (event.opened) return [event.opened.code];
    if (event.failed) return [event.failed.code];
    if (event.kind === undefined && typeof event.code === 'number') return [event.code];
    return [];
  });
}

/** Any status but an untyped one; no per-message answer untyped either. */
function typed(outcome: CallOutcome<object>): string | undefined {
  if (UNTYPED.has(outcome.code)) return `ended ${codeName(outcome.code)}: ${outcome.details}`;
  const bad = answerCodes(outcome.responses).find((code) => UNTYPED_ANSWER.has(code));
  return bad === undefined ? undefined : `answered ${codeName(bad)} on the stream: ${JSON.stringify(outcome.responses).slice(0, 300)}`;
}

function endsWith(code: grpc.status): (outcome: CallOutcome<object>) => string | undefined {
  return (outcome) => (outcome.code === code ? undefined : `expected ${codeName(code)}, ended ${codeName(outcome.code)}: ${outcome.details}`);
}

function endsOkOr(code: grpc.status): (outcome: CallOutcome<object>) => string | undefined {
  return (outcome) => (outcome.code === code || outcome.code === grpc.status.OK ? undefined : `expected OK or ${codeName(code)}, ended ${codeName(outcome.code)}: ${outcome.details}`);
}

/** The session answered exactly these codes (in any order: releases answer a tick later) and ended OK. */
function answersWith(codes: readonly grpc.status[]): (outcome: CallOutcome<object>) => string | undefined {
  return (outcome) => {
    const got = answerCodes(outcome.responses).map(codeName).sort();
    const want = codes.map(codeName).sort();
    if (outcome.code !== grpc.status.OK) return `ended ${codeName(outcome.code)}: ${outcome.details}`;
    return JSON.stringify(got) === JSON.stringify(want) ? undefined : `answered ${JSON.stringify(got)}, expected ${JSON.stringify(want)}: ${JSON.stringify(outcome.responses).slice(0, 400)}`;
  };
}

/** A generation that succeeded must have produced real token ids, at most max_new_tokens of them. */
function generatedSanely(outcome: CallOutcome<object>): string | undefined {
  const problem = typed(outcome);
  if (problem !== undefined || outcome.code !== grpc.status.OK) return problem;
  const ids = outcome.responses.flatMap((r) => {
    const response = r as { token_ids?: number[]; token?: { token_id: number } | null; summary?: { token_ids: number[] } | null };
    return response.token_ids ?? response.summary?.token_ids ?? (response.token ? [response.token.token_id] : []);
  });
  const bad = ids.find((id) => !(id >= 0 && id < shape.vocabSize));
  return bad === undefined ? undefined : `generated ${bad}, not a token id`;
}

// ---------------------------------------------------------------------------------------------
// Message material

const U32 = [0, 1, 2, 255, 256, 50_256, 50_257, 65_535, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1];
const FLOATS = [0, -0, 1, -1, 0.5, 2, 1e-30, 1.4e-45, 3.4e38, -3.4e38, 1e30, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY];
const STRINGS = ['', 'a', 'fuzz', ' ', 'a b', '\u0000', '\n', 'é', '😀', '\ud800', 'x'.repeat(129), 'y'.repeat(5_000), '../../etc/passwd', 'node1', 'node2', 'node3', '%s%n', '<|endoftext|>'];
const TOKEN_LENGTHS = [0, 1, 15, 16, 32, 64, 65, 1_000];

let nextSequence = 0;
const sequenceId = (): string => `fuzz-${SEED}-${nextSequence++}`;
const token = (): Buffer => rng.bytes(16);
const validIds = (count: number): number[] => Array.from({ length: count }, () => rng.int(shape.vocabSize));

function anyU32(): number {
  return rng.chance(0.5) ? rng.pick(U32) : rng.int(2 ** 32);
}

function anyIds(): number[] {
  const length = rng.pick([0, 1, 3, 20, 300]);
  return Array.from({ length }, () => (rng.chance(0.8) ? rng.int(shape.vocabSize) : anyU32()));
}

function anyString(): string {
  return rng.chance(0.7) ? rng.pick(STRINGS) : rng.bytes(rng.int(40)).toString('latin1');
}

function hiddenTensor(tokens: number, fill: (i: number) => number = () => rng.next() * 2 - 1, hiddenSize = shape.hiddenSize): Tensor {
  const values = Float32Array.from({ length: tokens * hiddenSize }, (_, i) => fill(i));
  return { dtype: 'float32', dims: [tokens, hiddenSize], data: Buffer.from(values.buffer) };
}

function anyTensor(): Tensor {
  const dims = Array.from({ length: rng.pick([0, 1, 2, 3]) }, () => rng.pick([0, 1, 3, shape.hiddenSize, 2 ** 32 - 1]));
  return { dtype: rng.pick(['float32', 'float64', 'int32', 'int64', '', 'float32 ']), dims, data: rng.bytes(rng.pick([0, 3, 4, 256, 4 * shape.hiddenSize])) };
}

function anyRow(): StepRow {
  return {
    sequence_id: rng.chance(0.5) ? `fuzz-${SEED}-${rng.int(nextSequence + 1)}` : anyString(),
    token: rng.bytes(rng.pick(TOKEN_LENGTHS)),
    past_length: rng.chance(0.5) ? rng.int(4) : anyU32(),
    token_ids: anyIds(),
    sample: rng.chance(0.5),
    generated_index: anyU32(),
  };
}

function anyStep(): Step {
  return {
    step_id: rng.int(2 ** 32),
    rows: Array.from({ length: rng.pick([0, 1, 2, 3]) }, anyRow),
    hidden_states: rng.chance(0.5) ? anyTensor() : null,
    timeout_ms: rng.chance(0.5) ? 5_000 : anyU32(),
    request_id: anyString(),
    timings: rng.chance(0.9) ? [] : Array.from({ length: 70 }, () => ({ node_id: anyString(), stage: anyU32(), forward_ms: rng.pick(FLOATS), rows: anyU32() })),
  };
}

function anySampling(): SamplingParameters {
  return { temperature: rng.pick(FLOATS), top_k: anyU32(), top_p: rng.pick(FLOATS), repetition_penalty: rng.pick(FLOATS), seed: anyU32(), top_logprobs: rng.pick([0, 1, 5, 6, 1_000, 2 ** 32 - 1]) };
}

function anyOpen(): OpenSequence {
  return {
    sequence_id: rng.chance(0.5) ? sequenceId() : anyString(),
    request_id: anyString(),
    token: rng.bytes(rng.pick(TOKEN_LENGTHS)),
    reserve_tokens: rng.chance(0.5) ? 1 + rng.int(shape.contextLength) : anyU32(),
    next_node_id: rng.pick(['', 'node1', 'node2', 'node3', 'node9', anyString()]),
    sampling: rng.chance(0.3) ? null : anySampling(),
  };
}

function anyCoordinatorMessage(): CoordinatorMessage {
  switch (rng.int(5)) {
    case 0:
      return { hello: { coordinator_id: anyString() } };
    case 1:
    case 2:
      return { open: anyOpen() };
    case 3:
      return { step: anyStep() };
    default:
      return { release: { sequence_ids: Array.from({ length: rng.pick([0, 1, 5000]) }, () => (rng.chance(0.5) ? `fuzz-${SEED}-${rng.int(nextSequence + 1)}` : anyString())), request_id: anyString() } };
  }
}

function anyParameters(): GenerationParameters | null {
  if (rng.chance(0.2)) return null;
  const maybe = <T>(value: () => T): T | undefined => (rng.chance(0.5) ? value() : undefined);
  return {
    max_new_tokens: maybe(() => rng.pick([0, 1, 4, 16, 17, 2 ** 32 - 1])),
    temperature: maybe(() => rng.pick(FLOATS)),
    top_k: maybe(anyU32),
    top_p: maybe(() => rng.pick(FLOATS)),
    repetition_penalty: maybe(() => rng.pick(FLOATS)),
    seed: maybe(anyU32),
    stop: Array.from({ length: rng.pick([0, 0, 1, 5]) }, anyString),
    top_logprobs: rng.pick([0, 0, 1, 5, 6, 2 ** 32 - 1]),
    ignore_eos: rng.chance(0.3),
  };
}

function anyGenerateRequest(): GenerateRequest {
  return { request_id: anyString(), prompt_token_ids: anyIds(), parameters: anyParameters(), priority: rng.pick(['', 'interactive', 'batch', 'urgent', anyString()]) };
}

/** A valid encoding with a few bytes flipped, cut short, or repeated. */
function mutate(bytes: Buffer): Buffer {
  const out = Buffer.from(bytes);
  switch (rng.int(4)) {
    case 0:
      for (let i = 0; i < 1 + rng.int(4) && out.length > 0; i++) out[rng.int(out.length)] ^= 1 << rng.int(8);
      return out;
    case 1:
      return out.subarray(0, rng.int(out.length + 1));
    case 2:
      return Buffer.concat([out, out.subarray(rng.int(out.length + 1))]);
    default:
      return Buffer.concat([out.subarray(0, rng.int(out.length + 1)), rng.bytes(1 + rng.int(8)), out.subarray(rng.int(out.length + 1))]);
  }
}

/** Field `field` written with a wire type its declaration does not have. */
function wrongWireType(field: number): Buffer {
  const writer = Writer.create();
  switch (rng.int(4)) {
    case 0:
      writer.uint32((field << 3) | 0).uint64(rng.int(2 ** 32));
      break;
    case 1:
      writer.uint32((field << 3) | 1).fixed64(rng.int(2 ** 32));
      break;
    case 2:
      writer.uint32((field << 3) | 5).fixed32(rng.int(2 ** 32));
      break;
    default:
      writer.uint32((field << 3) | 2).bytes(rng.bytes(rng.int(20)));
  }
  return Buffer.from(writer.finish());
}

/** Random bytes, mutations of an example, and wrong wire types for one method: anything typed is fine. */
function bodiesFor(name: string, address: string, method: AnyMethod, example: object, fields: number): FuzzCall[] {
  const encoded = encodeRequest(method, example);
  return Array.from({ length: RANDOM_BODIES_PER_METHOD }, (_, i): FuzzCall => {
    const kind = i % 3;
    const body = kind === 0 ? rng.bytes(rng.pick([1, 2, 5, 17, 100, 1_000])) : kind === 1 ? mutate(encoded) : wrongWireType(1 + rng.int(fields));
    return { name: `${name} ${['random bytes', 'mutated', 'wrong wire type'][kind]} #${i}`, address, method, requests: [body], check: typed };
  });
}

// ---------------------------------------------------------------------------------------------
// The stateless calls: every one stands alone

function tokenizerCalls(): FuzzCall[] {
  const { tokenizer } = methods();
  const at = system.config.tokenizerAddress;
  const call = (name: string, method: AnyMethod, message: object, check: FuzzCall['check']): FuzzCall => ({ name: `tokenizer.${name}`, address: at, method, requests: [encodeRequest(method, message)], check });
  const stream = (name: string, messages: object[], check: FuzzCall['check']): FuzzCall => ({ name: `tokenizer.DecodeStream ${name}`, address: at, method: tokenizer.DecodeStream, requests: messages.map((m) => encodeRequest(tokenizer.DecodeStream, m)), check });
  const invalid = endsWith(grpc.status.INVALID_ARGUMENT);
  const fixed: FuzzCall[] = [
    call('Encode text over the limit', tokenizer.Encode, { text: 'a'.repeat(16 * shape.contextLength + 1) }, invalid),
    call('Encode multibyte text over the limit', tokenizer.Encode, { text: 'é'.repeat(8 * shape.contextLength + 1) }, invalid),
    call('Encode control characters and a lone surrogate', tokenizer.Encode, { text: '\u0000\ud800\u0007<|endoftext|>', parse_special_tokens: true }, endsWith(grpc.status.OK)),
    call('Decode an id past the vocabulary', tokenizer.Decode, { token_ids: [shape.vocabSize] }, invalid),
    call('Decode 2^32-1', tokenizer.Decode, { token_ids: [1, 2 ** 32 - 1] }, invalid),
    call('Decode more ids than the limit', tokenizer.Decode, { token_ids: validIds(shape.contextLength + 1) }, invalid),
    call('Decode a million ids (a huge repeated field under the size limit)', tokenizer.Decode, { token_ids: new Array(1_000_000).fill(7) }, invalid),
    call('Decode nothing', tokenizer.Decode, { token_ids: [] }, endsWith(grpc.status.OK)),
    call('RenderChat no messages', tokenizer.RenderChat, { messages: [] }, invalid),
    call('RenderChat an unknown role', tokenizer.RenderChat, { messages: [{ role: 'wizard', content: 'hi' }] }, invalid),
    call('RenderChat an empty role', tokenizer.RenderChat, { messages: [{ role: '', content: 'hi' }] }, invalid),
    call('RenderChat too many messages', tokenizer.RenderChat, { messages: Array.from({ length: 1_025 }, () => ({ role: 'user', content: '' })) }, invalid),
    call('RenderChat contents over the limit', tokenizer.RenderChat, { messages: [{ role: 'user', content: 'b'.repeat(16 * shape.contextLength + 1) }] }, invalid),
    call('RenderChat many small messages rendering past the limit', tokenizer.RenderChat, { messages: Array.from({ length: 1_000 }, () => ({ role: 'user', content: 'hi' })) }, invalid),
    call('RenderChat template syntax in a message', tokenizer.RenderChat, { messages: [{ role: 'user', content: '{{ 7 * 7 }}{% for x in range(10**9) %}{% endfor %}' }] }, endsWith(grpc.status.OK)),
    stream('an id past the vocabulary', [{ token_ids: [shape.vocabSize] }], invalid),
    stream('one message over the per-message limit', [{ token_ids: new Array(8_193).fill(1) }], invalid),
    stream('messages adding up past the per-stream limit', [{ token_ids: validIds(100) }, { token_ids: validIds(100) }, { token_ids: validIds(100) }], invalid),
    stream('flush with nothing', [{ token_ids: [], flush: true }], endsWith(grpc.status.OK)),
  ];
  const random: FuzzCall[] = Array.from({ length: RANDOM_MESSAGES_PER_SERVICE }, (_, i) => {
    switch (i % 4) {
      case 0:
        return call(`Encode random #${i}`, tokenizer.Encode, { text: anyString(), parse_special_tokens: rng.chance(0.5) }, typed);
      case 1:
        return call(`Decode random #${i}`, tokenizer.Decode, { token_ids: anyIds(), skip_special_tokens: rng.chance(0.5) }, typed);
      case 2:
        return call(`RenderChat random #${i}`, tokenizer.RenderChat, { messages: Array.from({ length: rng.pick([0, 1, 3]) }, () => ({ role: rng.pick(['user', 'system', 'assistant', 'tool', anyString()]), content: anyString() })), add_generation_prompt: rng.chance(0.5) }, typed);
      default:
        return stream(`random #${i}`, Array.from({ length: 1 + rng.int(4) }, () => ({ token_ids: anyIds(), flush: rng.chance(0.3) })), typed);
    }
  });
  return [
    ...fixed,
    ...random,
    ...bodiesFor('tokenizer.Encode', at, tokenizer.Encode, { text: 'hello', parse_special_tokens: true }, 2),
    ...bodiesFor('tokenizer.Decode', at, tokenizer.Decode, { token_ids: [1, 2, 3] }, 2),
    ...bodiesFor('tokenizer.DecodeStream', at, tokenizer.DecodeStream, { token_ids: [1, 2, 3], flush: true }, 2),
    ...bodiesFor('tokenizer.RenderChat', at, tokenizer.RenderChat, { messages: [{ role: 'user', content: 'hi' }], add_generation_prompt: true }, 2),
  ];
}

function coordinatorCalls(): FuzzCall[] {
  const { coordinator } = methods();
  const at = system.config.coordinatorAddress;
  const prompt = validIds(5);
  const both = (name: string, request: GenerateRequest, check: FuzzCall['check']): FuzzCall[] =>
    [coordinator.Process as AnyMethod, coordinator.Generate as AnyMethod].map((method) => ({ name: `coordinator.${method === coordinator.Process ? 'Process' : 'Generate'} ${name}`, address: at, method, requests: [encodeRequest(method, request)], check }));
  const invalid = endsWith(grpc.status.INVALID_ARGUMENT);
  const withParameters = (parameters: GenerationParameters): GenerateRequest => ({ prompt_token_ids: prompt, parameters: { max_new_tokens: 2, ...parameters } });
  const fixed: FuzzCall[] = [
    ...both('an empty request', {}, invalid),
    ...both('an id past the vocabulary', { prompt_token_ids: [1, shape.vocabSize] }, invalid),
    ...both('2^32-1 as a prompt id', { prompt_token_ids: [2 ** 32 - 1] }, invalid),
    ...both('a prompt longer than the context', { prompt_token_ids: validIds(shape.contextLength + 1) }, invalid),
    ...both('a million prompt ids', { prompt_token_ids: new Array(1_000_000).fill(3) }, invalid),
    ...both('prompt + max_new_tokens past the context', { prompt_token_ids: validIds(shape.contextLength - 4), parameters: { max_new_tokens: 8 } }, invalid),
    ...[0, LIMITS.max_new_tokens + 1, 2 ** 32 - 1].flatMap((n) => both(`max_new_tokens ${n}`, withParameters({ max_new_tokens: n }), invalid)),
    ...[Number.NaN, -1, Number.POSITIVE_INFINITY].flatMap((t) => both(`temperature ${t}`, withParameters({ temperature: t }), invalid)),
    ...[0, -0.5, 1.5, Number.NaN].flatMap((p) => both(`top_p ${p}`, withParameters({ top_p: p }), invalid)),
    ...[0, -1, Number.NaN, Number.POSITIVE_INFINITY].flatMap((r) => both(`repetition_penalty ${r}`, withParameters({ repetition_penalty: r }), invalid)),
    ...both('five stop strings', withParameters({ stop: ['a', 'b', 'c', 'd', 'e'] }), invalid),
    ...both('an empty stop string', withParameters({ stop: [''] }), invalid),
    ...both('a stop string of 300 characters', withParameters({ stop: ['s'.repeat(300)] }), invalid),
    ...both('top_logprobs 6', withParameters({ top_logprobs: 6 }), invalid),
    ...both('an unknown priority', { prompt_token_ids: prompt, priority: 'urgent' }, invalid),
    // Legal extremes: they must generate, and what they generate must be token ids.
    ...[1e-30, 1.4e-45, 3.4e38].flatMap((t) => both(`temperature ${t}`, withParameters({ temperature: t, seed: 2 ** 32 - 1 }), generatedSanely)),
    ...both('top_k 2^32-1 and top_p 1e-30', withParameters({ temperature: 1, top_k: 2 ** 32 - 1, top_p: 1e-30 }), generatedSanely),
    ...[1e-30, 1e30].flatMap((r) => both(`repetition_penalty ${r}`, withParameters({ repetition_penalty: r, top_logprobs: 5 }), generatedSanely)),
    ...both('an unsafe request id and odd stop strings', { request_id: 'a b\n\u0000', prompt_token_ids: prompt, parameters: { max_new_tokens: 3, stop: ['\u0000', '😀', '\ud800'], ignore_eos: true } }, generatedSanely),
  ];
  const random: FuzzCall[] = Array.from({ length: RANDOM_MESSAGES_PER_SERVICE }, (_, i) => {
    const method = (i % 2 === 0 ? coordinator.Process : coordinator.Generate) as AnyMethod;
    return { name: `coordinator.${i % 2 === 0 ? 'Process' : 'Generate'} random #${i}`, address: at, method, requests: [encodeRequest(method, anyGenerateRequest())], check: generatedSanely };
  });
  const example: GenerateRequest = { request_id: 'r', prompt_token_ids: prompt, parameters: { max_new_tokens: 2, temperature: 0.5, stop: ['x'] }, priority: 'batch' };
  return [
    ...fixed,
    ...random,
    ...bodiesFor('coordinator.Process', at, coordinator.Process, example, 4).map((c) => ({ ...c, check: generatedSanely })),
    ...bodiesFor('coordinator.Generate', at, coordinator.Generate, example, 4).map((c) => ({ ...c, check: generatedSanely })),
    ...bodiesFor('coordinator.Topology', at, coordinator.Topology, {}, 1),
  ];
}

function nodeCalls(node: StageNode): FuzzCall[] {
  const { node: service } = methods();
  const session = (name: string, messages: CoordinatorMessage[], check: FuzzCall['check'], endAfterResponses?: number): FuzzCall => ({
    name: `${node.id}.Connect ${name}`,
    address: node.address,
    method: service.Connect,
    requests: messages.map((m) => encodeRequest(service.Connect, m)),
    endAfterResponses,
    check,
  });
  const forward = (name: string, messages: ForwardMessage[], check: FuzzCall['check']): FuzzCall => ({
    name: `${node.id}.Forward ${name}`,
    address: node.address,
    method: service.Forward,
    requests: messages.map((m) => encodeRequest(service.Forward, m)),
    endAfterResponses: messages.length,
    check,
  });
  const open = (changes: Partial<OpenSequence>): CoordinatorMessage => ({ open: { sequence_id: sequenceId(), token: token(), reserve_tokens: 8, next_node_id: node.next ?? '', ...changes } });
  const hidden = node.isFirst ? null : hiddenTensor(1);
  const step = (changes: Partial<Step>, row: Partial<StepRow> = {}): Step => ({
    step_id: rng.int(2 ** 32),
    rows: [{ sequence_id: sequenceId(), token: token(), past_length: 0, token_ids: [1], sample: true, ...row }],
    hidden_states: hidden,
    timeout_ms: 5_000,
    ...changes,
  });
  const I = grpc.status.INVALID_ARGUMENT;
  // Each message of these sessions is answered on its own, whatever came before it.
  const badOpens: [string, CoordinatorMessage][] = [
    ['an empty sequence id', open({ sequence_id: '' })],
    ['a sequence id with a space', open({ sequence_id: 'a b' })],
    ['a sequence id of 129 characters', open({ sequence_id: 's'.repeat(129) })],
    ...[0, 15, 65].map((n): [string, CoordinatorMessage] => [`a token of ${n} bytes`, open({ token: rng.bytes(n) })]),
    ...[0, shape.contextLength + 1, 2 ** 32 - 1].map((n): [string, CoordinatorMessage] => [`reserve_tokens ${n}`, open({ reserve_tokens: n })]),
    ...(node.isLast
      ? [
          ['a next hop on the last stage', open({ next_node_id: 'node1' })] as [string, CoordinatorMessage],
          ...[Number.NaN, -1, Number.POSITIVE_INFINITY].map((t): [string, CoordinatorMessage] => [`sampling temperature ${t}`, open({ sampling: { temperature: t } })]),
          ...[Number.NaN, 1.5, -1].map((p): [string, CoordinatorMessage] => [`sampling top_p ${p}`, open({ sampling: { top_p: p } })]),
          ...[Number.NaN, -2, Number.NEGATIVE_INFINITY].map((r): [string, CoordinatorMessage] => [`sampling repetition_penalty ${r}`, open({ sampling: { repetition_penalty: r } })]),
          ['sampling top_logprobs 6', open({ sampling: { top_logprobs: 6 } })] as [string, CoordinatorMessage],
        ]
      : [
          ['no next hop', open({ next_node_id: '' })] as [string, CoordinatorMessage],
          ['an unknown next hop', open({ next_node_id: 'node9' })] as [string, CoordinatorMessage],
          ['itself as the next hop', open({ next_node_id: node.id })] as [string, CoordinatorMessage],
          ['an address as the next hop', open({ next_node_id: system.config.nodes[nodes.length - 1].address })] as [string, CoordinatorMessage],
        ]),
  ];
  const badSteps: [string, Step][] = [
    ['no rows', step({ rows: [] })],
    ['1025 rows', step({ rows: Array.from({ length: 1_025 }, () => ({ sequence_id: sequenceId(), token: token(), token_ids: [1] })) })],
    ['a row without tokens', step({}, { token_ids: [] })],
    ['a row with an empty sequence id', step({}, { sequence_id: '' })],
    ['a row with a short token', step({}, { token: rng.bytes(3) })],
    ['70,000 new tokens (a huge repeated field)', step({}, { token_ids: new Array(70_000).fill(1) })],
    ['65 stage timings', step({ timings: Array.from({ length: 65 }, () => ({ node_id: 'x', stage: 0, forward_ms: 1, rows: 1 })) })],
    ['a sequence never opened', step({})],
    ...(node.isFirst
      ? [['hidden states on the first stage', step({ hidden_states: hiddenTensor(1) })] as [string, Step]]
      : [
          ['no hidden states', step({ hidden_states: null })] as [string, Step],
          ['NaN hidden states', step({ hidden_states: hiddenTensor(1, (i) => (i === 3 ? Number.NaN : 0)) })] as [string, Step],
          ['infinite hidden states', step({ hidden_states: hiddenTensor(1, (i) => (i === 0 ? Number.NEGATIVE_INFINITY : 0)) })] as [string, Step],
          ['hidden states one wider than the model', step({ hidden_states: hiddenTensor(1, () => 0, shape.hiddenSize + 1) })] as [string, Step],
          ['hidden states for two tokens, one token stepped', step({ hidden_states: hiddenTensor(2) })] as [string, Step],
          ['float64 hidden states', step({ hidden_states: { ...hiddenTensor(1), dtype: 'float64' } })] as [string, Step],
          ['hidden states whose bytes do not fit their dims', step({ hidden_states: { ...hiddenTensor(1), data: rng.bytes(7) } })] as [string, Step],
          ['hidden dims of 2^32-1', step({ hidden_states: { dtype: 'float32', dims: [2 ** 32 - 1, 2 ** 32 - 1], data: rng.bytes(8) } })] as [string, Step],
        ]),
  ];
  const stepCode = (name: string): grpc.status => (name === 'a sequence never opened' ? grpc.status.NOT_FOUND : I);
  const fixed: FuzzCall[] = [
    ...badOpens.map(([name, message]) => session(`open with ${name}`, [message], answersWith([I]), 1)),
    ...badSteps.map(([name, message]) => session(`step with ${name}`, [{ step: message }], answersWith([stepCode(name)]), 1)),
    session('every bad open and step in one session', [...badOpens.map(([, m]) => m), ...badSteps.map(([, s]) => ({ step: s }))], answersWith([...badOpens.map(() => I), ...badSteps.map(([name]) => stepCode(name))]), badOpens.length + badSteps.length),
    session('a release of unknown ids, and of 5000 ids', [{ release: { sequence_ids: ['nope', ''] } }, { release: { sequence_ids: Array.from({ length: 5_000 }, (_, i) => `x${i}`) } }], answersWith([]), 2),
    session('a message of no kind', [{}], endsWith(I)),
    session('a hello with a bad coordinator id', [{ hello: { coordinator_id: 'a b' } }], endsWith(I)),
    ...badSteps
      .filter(([name]) => name !== 'a sequence never opened')
      .map(([name, s]): FuzzCall => forward(`a step with ${name}`, [{ forward_id: rng.int(2 ** 32), step: s }], answersWith([I]))),
    forward('a step for a sequence never opened', [{ forward_id: 7, step: step({}) }], answersWith([grpc.status.NOT_FOUND])),
    forward('no step', [{ forward_id: 8 }], answersWith([I])),
  ];
  const random: FuzzCall[] = Array.from({ length: Math.ceil(RANDOM_MESSAGES_PER_SERVICE / nodes.length) }, (_, i): FuzzCall => {
    if (i % 3 === 2) return forward(`random #${i}`, [{ forward_id: rng.int(2 ** 32), step: rng.chance(0.9) ? anyStep() : null }], typed);
    return { ...session(`random #${i}`, Array.from({ length: 1 + rng.int(6) }, anyCoordinatorMessage), typed), endAfterResponses: undefined };
  });
  const exampleStep = step({}, { token_ids: [5, 6] });
  return [
    ...fixed,
    ...random,
    ...bodiesFor(`${node.id}.Connect`, node.address, service.Connect, open({}), 4),
    ...bodiesFor(`${node.id}.Connect step`, node.address, service.Connect, { step: exampleStep }, 4).slice(0, RANDOM_BODIES_PER_METHOD / 2),
    ...bodiesFor(`${node.id}.Forward`, node.address, service.Forward, { forward_id: 1, step: exampleStep }, 2),
    ...bodiesFor(`${node.id}.Describe`, node.address, service.Describe, {}, 1).slice(0, RANDOM_BODIES_PER_METHOD / 2),
  ];
}

// ---------------------------------------------------------------------------------------------
// A rogue coordinator: sequences of its own on every stage, driven message by message

type RogueAnswer = NodeEvent__Output | ForwardReply__Output;

function codeOf(answer: RogueAnswer): grpc.status {
  if ('kind' in answer && answer.kind !== undefined) return answer.failed?.code ?? answer.opened?.code ?? grpc.status.OK;
  return (answer as ForwardReply__Output).code;
}

function resultOf(answer: RogueAnswer | undefined): NodeEvent__Output['result'] | undefined {
  return answer !== undefined && 'kind' in answer ? answer.result : undefined;
}

/**
 * What a rogue coordinator does and sees: a session with every node and Forward streams into
 * the later stages, all answering into one inbox (it does one thing at a time, and each thing
 * is answered once, by whichever node it concerns). Every problem is one line in `problems`.
 */
class RogueCoordinator {
  readonly problems: string[] = [];
  private readonly inbox = new Inbox<RogueAnswer>();
  private readonly sessions: StreamProbe<CoordinatorMessage, NodeEvent, CoordinatorMessage__Output, NodeEvent__Output>[];
  private readonly forwards = new Map<number, StreamProbe<ForwardMessage, ForwardReply, ForwardMessage__Output, ForwardReply__Output>>();

  constructor(private readonly label: string) {
    this.sessions = nodes.map((node) => new StreamProbe(client(node.address), methods().node.Connect, FUZZ_TEST_TIMEOUT_MS, { inbox: this.inbox }));
  }

  get messagesSent(): number {
    return [...this.sessions, ...this.forwards.values()].reduce((n, probe) => n + probe.sent, 0);
  }

  /** Opens a sequence on every stage, last first, each with the next stage as its next hop; the codes, first stage first. */
  async open(id: string, secret: Buffer, reserveTokens: number, sampling: SamplingParameters | null = null): Promise<grpc.status[]> {
    const codes: grpc.status[] = [];
    for (let i = nodes.length - 1; i >= 0; i--) {
      this.sessions[i].send({ open: { sequence_id: id, token: secret, reserve_tokens: reserveTokens, next_node_id: nodes[i].next ?? '', sampling } });
      const answer = await this.inbox.next(ANSWER_WAIT_MS);
      this.expectTyped(`open ${id} on ${nodes[i].id}`, answer);
      codes.unshift(answer === undefined ? grpc.status.DEADLINE_EXCEEDED : codeOf(answer));
    }
    return codes;
  }

  /** Sends a step into a stage (the first by its session, the others by a Forward stream) and returns the one answer it causes. */
  step(stage: number, message: Step): Promise<RogueAnswer | undefined> {
    if (stage === 0) this.sessions[0].send({ step: message });
    else this.forwardTo(stage).send({ forward_id: Number(message.step_id), step: message });
    return this.inbox.next(ANSWER_WAIT_MS);
  }

  expectTyped(what: string, answer: RogueAnswer | undefined): void {
    if (answer === undefined) this.problems.push(`${this.label}: ${what}: no answer within ${ANSWER_WAIT_MS} ms`);
    else if (UNTYPED_ANSWER.has(codeOf(answer))) this.problems.push(`${this.label}: ${what}: answered ${codeName(codeOf(answer))}: ${JSON.stringify(answer).slice(0, 300)}`);
  }

  expectCode(what: string, answer: RogueAnswer | undefined, code: grpc.status): void {
    if (answer === undefined || codeOf(answer) !== code) this.problems.push(`${this.label}: ${what}: expected ${codeName(code)}, got ${answer === undefined ? 'no answer' : JSON.stringify(answer).slice(0, 300)}`);
  }

  /** Ends every stream (the nodes release what the sessions opened); one that ended untyped is a problem. */
  async close(): Promise<void> {
    const probes = [...this.sessions, ...this.forwards.values()];
    const statuses = await Promise.all(probes.map((probe) => probe.end()));
    statuses.forEach((status, i) => {
      if (status.code !== grpc.status.OK) this.problems.push(`${this.label}: stream ${i} ended ${codeName(status.code)}: ${status.details}`);
    });
  }

  private forwardTo(stage: number): StreamProbe<ForwardMessage, ForwardReply, ForwardMessage__Output, ForwardReply__Output> {
    let probe = this.forwards.get(stage);
    if (probe === undefined) {
      probe = new StreamProbe(client(nodes[stage].address), methods().node.Forward, FUZZ_TEST_TIMEOUT_MS, { inbox: this.inbox });
      this.forwards.set(stage, probe);
    }
    return probe;
  }
}

/** Legal sampling parameters at the edges of their ranges; `greedy` ones must pick what temperature 0 picks. */
const EXTREME_SAMPLING: { readonly sampling: SamplingParameters; readonly greedy: boolean }[] = [
  { sampling: { temperature: 1e-30, seed: 2 ** 32 - 1 }, greedy: true },
  { sampling: { temperature: 1.4e-45, top_logprobs: 5 }, greedy: true },
  { sampling: { temperature: 1, top_k: 2 ** 32 - 1, top_p: 1.4e-45 }, greedy: true },
  { sampling: { temperature: 0.7, top_k: 1 }, greedy: true },
  { sampling: { temperature: 3.4e38, top_logprobs: 5 }, greedy: false },
  { sampling: { temperature: 0.7, repetition_penalty: 3.4e38 }, greedy: false },
  { sampling: { temperature: 0, repetition_penalty: 1.4e-45, top_logprobs: 5 }, greedy: false },
  { sampling: { temperature: 1, repetition_penalty: 1.4e-45 }, greedy: false },
];

/** A sampled token is a token id, with finite log-probabilities (<= 0) for it and its alternatives. */
function tokenProblem(tokens: readonly { token_id: number; logprob: number; top_logprobs: readonly { token_id: number; logprob: number }[] }[]): string | undefined {
  for (const t of tokens) {
    if (!(t.token_id >= 0 && t.token_id < shape.vocabSize)) return `token ${t.token_id} is not a token id`;
    for (const { logprob } of [t, ...t.top_logprobs]) if (!(Number.isFinite(logprob) && logprob <= 1e-6)) return `log-probability ${logprob} is not a log-probability`;
    if (t.top_logprobs.length > 5) return `${t.top_logprobs.length} alternatives`;
  }
  return undefined;
}

/** Rogue scenarios: their problems, and the number of messages they sent. */
async function rogueScenarios(promptIds: readonly number[]): Promise<{ problems: string[]; messages: number }> {
  const rogue = new RogueCoordinator('rogue coordinator');
  const opened = (codes: readonly grpc.status[]): boolean => codes.every((code) => code === grpc.status.OK);

  // A whole step through the pipeline: the last stage samples what the real system samples.
  const id = sequenceId();
  const secret = token();
  if (opened(await rogue.open(id, secret, promptIds.length + 4))) {
    const row = { sequence_id: id, token: secret, past_length: 0, token_ids: [...promptIds], sample: true, generated_index: 0 };
    const first = await rogue.step(0, { step_id: 1, rows: [row], timeout_ms: 5_000 });
    if (resultOf(first)?.tokens[0]?.token_id !== reference[0]) rogue.problems.push(`rogue prefill gave ${JSON.stringify(first).slice(0, 300)}; the system's first token is ${reference[0]}`);
    rogue.expectCode('a second prefill at past_length 0', await rogue.step(0, { step_id: 2, rows: [row], timeout_ms: 5_000 }), grpc.status.FAILED_PRECONDITION);
    const decode = { ...row, past_length: promptIds.length, token_ids: [reference[0]], generated_index: 1 };
    rogue.expectCode('a decode step with the wrong token', await rogue.step(0, { step_id: 3, rows: [{ ...decode, token: token() }], timeout_ms: 5_000 }), grpc.status.NOT_FOUND);
    rogue.expectCode('a decode step with an id past the vocabulary', await rogue.step(0, { step_id: 4, rows: [{ ...decode, token_ids: [shape.vocabSize + 5] }], timeout_ms: 5_000 }), grpc.status.INVALID_ARGUMENT);
    rogue.expectCode('a decode step with no time left', await rogue.step(0, { step_id: 5, rows: [decode], timeout_ms: 0 }), grpc.status.DEADLINE_EXCEEDED);
    rogue.expectCode('a row twice in one step', await rogue.step(0, { step_id: 6, rows: [decode, decode], timeout_ms: 5_000 }), grpc.status.INVALID_ARGUMENT);
    rogue.expectCode('positions past the context', await rogue.step(0, { step_id: 7, rows: [{ ...decode, past_length: shape.contextLength }], timeout_ms: 5_000 }), grpc.status.INVALID_ARGUMENT);
    const second = await rogue.step(0, { step_id: 8, rows: [decode], timeout_ms: 5_000 });
    if (resultOf(second)?.tokens[0]?.token_id !== reference[1]) rogue.problems.push(`rogue decode gave ${JSON.stringify(second).slice(0, 300)}; the system's second token is ${reference[1]}`);
    // Straight into the middle stage: bad activations are answered on the Forward stream, a stale past to the owner.
    const middle = { ...decode, past_length: promptIds.length + 1, token_ids: [7], generated_index: 2 };
    rogue.expectCode('NaN into the middle stage', await rogue.step(1, { step_id: 9, rows: [middle], hidden_states: hiddenTensor(1, () => Number.NaN), timeout_ms: 5_000 }), grpc.status.INVALID_ARGUMENT);
    rogue.expectCode('a stale past into the middle stage', await rogue.step(1, { step_id: 10, rows: [{ ...middle, past_length: 1 }], hidden_states: hiddenTensor(1), timeout_ms: 5_000 }), grpc.status.FAILED_PRECONDITION);
    rogue.expectTyped('float32-max activations into the middle stage', await rogue.step(1, { step_id: 11, rows: [middle], hidden_states: hiddenTensor(1, () => 3e38), timeout_ms: 5_000 }));
  }

  // Legal but extreme sampling parameters on the last stage: real token ids with real log-probabilities, and where the limit is greedy, greedy's token.
  const samplePrompt = async (sampling: SamplingParameters | null, stepId: number): Promise<RogueAnswer | undefined> => {
    const sequence = sequenceId();
    const key = token();
    if (!opened(await rogue.open(sequence, key, 4, sampling))) return undefined;
    return rogue.step(0, { step_id: stepId, rows: [{ sequence_id: sequence, token: key, past_length: 0, token_ids: promptIds.slice(0, 3), sample: true }], timeout_ms: 5_000 });
  };
  const greedy = resultOf(await samplePrompt(null, 99))?.tokens[0]?.token_id;
  for (const [i, { sampling, greedy: mustBeGreedy }] of EXTREME_SAMPLING.entries()) {
    const answer = await samplePrompt(sampling, 100 + i);
    const result = resultOf(answer);
    if (result === undefined || result === null) {
      rogue.expectTyped(`sampling ${JSON.stringify(sampling)}`, answer);
      continue;
    }
    const problem = tokenProblem(result.tokens) ?? (mustBeGreedy && result.tokens[0]?.token_id !== greedy ? `picked ${result.tokens[0]?.token_id}, greedy picks ${greedy}` : undefined);
    if (problem !== undefined) rogue.problems.push(`sampling ${JSON.stringify(sampling)}: ${problem}`);
  }

  // Another session can neither step nor release the rogue's sequences.
  const stranger = new StreamProbe(client(nodes[0].address), methods().node.Connect, CALL_DEADLINE_MS);
  stranger.send({ step: { step_id: 200, rows: [{ sequence_id: id, token: secret, past_length: promptIds.length + 1, token_ids: [1], sample: true }], timeout_ms: 5_000 } });
  const refused = await stranger.next(ANSWER_WAIT_MS);
  rogue.expectCode("a stranger stepping the rogue's sequence", refused, grpc.status.NOT_FOUND);
  stranger.send({ release: { sequence_ids: [id] } });
  const notReleased = await stranger.next(ANSWER_WAIT_MS);
  if (JSON.stringify(notReleased?.released?.sequence_ids) !== '[]') rogue.problems.push(`a stranger's release of the rogue's sequence answered ${JSON.stringify(notReleased)}`);
  await stranger.end();

  // The KV budget: full-context reservations past it are refused RESOURCE_EXHAUSTED.
  const budget: grpc.status[] = [];
  for (let i = 0; i < 24; i++) budget.push(...(await rogue.open(sequenceId(), token(), shape.contextLength)));
  if (!budget.includes(grpc.status.RESOURCE_EXHAUSTED)) rogue.problems.push(`24 full-context reservations within a ${LIMITS.kv_budget_bytes}-byte budget were all admitted`);

  await rogue.close();
  return { problems: rogue.problems, messages: rogue.messagesSent + stranger.sent };
}

// ---------------------------------------------------------------------------------------------

async function runAll(calls: readonly FuzzCall[]): Promise<string[]> {
  const problems: string[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < calls.length) {
      const call = calls[next++];
      const outcome = await rawCall(client(call.address), call.method, call.requests, { deadlineMs: CALL_DEADLINE_MS, endAfterResponses: call.endAfterResponses });
      const problem = call.check(outcome);
      if (problem !== undefined) problems.push(`${call.name}: ${problem}`);
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
  return problems;
}

async function kvSequences(): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const node of nodes) counts[node.id] = (await describeNode(node.address)).kv_sequences;
  return counts;
}

it(
  `malformed messages to every RPC get typed errors, and the system serves as before (seed ${SEED})`,
  async () => {
    const pidsBefore = system.services();
    const calls = [...tokenizerCalls(), ...coordinatorCalls(), ...nodes.flatMap(nodeCalls)];
    // The rogue's greedy tokens are checked against the system's own, from the prompt's ids.
    const promptIds = (await rawCall(client(system.config.tokenizerAddress), methods().tokenizer.Encode, [encodeRequest(methods().tokenizer.Encode, { text: PROMPT })], { deadlineMs: CALL_DEADLINE_MS })).responses[0].token_ids;

    const problems = await runAll(calls);
    const rogue = await rogueScenarios(promptIds);
    const messages = calls.reduce((n, c) => n + c.requests.length, 0) + rogue.messages;
    process.stdout.write(`grpc-fuzz: seed ${SEED}, ${calls.length} calls and rogue sessions, ${messages} messages\n`);

    expect({ seed: SEED, problems: [...problems, ...rogue.problems] }).toEqual({ seed: SEED, problems: [] });
    expect(messages).toBeGreaterThanOrEqual(MIN_MESSAGES);

    const until = Date.now() + KV_RELEASE_WAIT_MS;
    let held = await kvSequences();
    while (Object.values(held).some((n) => n !== 0) && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 200));
      held = await kvSequences();
    }
    expect(held).toEqual(Object.fromEntries(nodes.map((n) => [n.id, 0])));
    expect(system.services()).toEqual(pidsBefore);
    expect(await generateReference()).toEqual(reference);
  },
  FUZZ_TEST_TIMEOUT_MS,
);
