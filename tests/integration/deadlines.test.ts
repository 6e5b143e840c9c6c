import * as grpc from '@grpc/grpc-js';
import type { GenerateEvent__Output } from '../../protos/generated/pipeserve/v1/GenerateEvent';
import type { GenerationSummary__Output } from '../../protos/generated/pipeserve/v1/GenerationSummary';
import type { CoordinatorClient } from '../../protos/generated/pipeserve/v1/Coordinator';
import { callOptions, createClient, requestMetadata, unary } from '../../shared/grpc/channel';
import { protos } from '../../shared/grpc/proto-loader';
import { RunningSystem, SYSTEM_START_TIMEOUT_MS } from '../support/system';
import { tinyModel } from '../support/test-models';

/** Far shorter than 240 tiny-model steps take, so the request certainly dies mid-generation. */
const SHORT_DEADLINE_MS = 100;
const LONG_DEADLINE_MS = 30_000;
const RELEASE_WAIT_MS = 10_000;
const PROMPT = [464, 2068, 286, 262, 995];

let system: RunningSystem;
let coordinator: CoordinatorClient;

beforeAll(async () => {
  // One stage: the running sequences share every decode step (micro-batches = running / stages).
  system = await RunningSystem.start({ modelDir: await tinyModel({ stages: 1 }), limits: { max_new_tokens: 250 } });
  coordinator = createClient(protos().coordinator.pipeserve.v1.Coordinator, system.config.coordinatorAddress);
  await processCall('warm-up', 16, LONG_DEADLINE_MS); // onnxruntime's first runs are slow
}, SYSTEM_START_TIMEOUT_MS * 2);

afterAll(async () => {
  coordinator?.close();
  await system?.stop();
});

function processCall(id: string, maxNewTokens: number, deadlineMs: number): Promise<GenerationSummary__Output> {
  return unary(coordinator.Process.bind(coordinator), { request_id: id, prompt_token_ids: PROMPT, parameters: { max_new_tokens: maxNewTokens } }, requestMetadata(id), callOptions(deadlineMs));
}

async function kvSequences(): Promise<number> {
  const text = await (await fetch(`http://${system.config.metricsTargets.nodes[0]}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('pipeserve_stage_kv_cache_sequences{'));
  return Number(line?.slice(line.lastIndexOf(' ') + 1));
}

async function waitForNoKv(): Promise<number> {
  const until = Date.now() + RELEASE_WAIT_MS;
  let held = await kvSequences();
  while (held !== 0 && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 100));
    held = await kvSequences();
  }
  return held;
}

it(
  'a request that passes its deadline fails alone: the request sharing its decode steps completes',
  async () => {
    const longTokens: number[] = [];
    let firstToken: () => void = () => undefined;
    const started = new Promise<void>((resolve) => (firstToken = resolve));
    const long = new Promise<void>((resolve, reject) => {
      const call = coordinator.Generate({ request_id: 'long', prompt_token_ids: PROMPT, parameters: { max_new_tokens: 240 } }, requestMetadata('long'), callOptions(LONG_DEADLINE_MS));
      call.on('data', (event: GenerateEvent__Output) => {
        if (event.token) {
          longTokens.push(event.token.token_id);
          firstToken();
        }
      });
      call.on('error', reject);
      call.on('end', resolve);
    });
    await started;
    const short = await processCall('short', 240, SHORT_DEADLINE_MS).catch((error: unknown) => error);
    expect(short).toMatchObject({ code: grpc.status.DEADLINE_EXCEEDED });
    await long;
    expect(longTokens).toHaveLength(240);
    expect(await waitForNoKv()).toBe(0);
  },
  LONG_DEADLINE_MS * 2,
);

it(
  'a request whose deadline passes while its step is in flight leaves no KV cache behind',
  async () => {
    const short = await processCall('alone', 240, SHORT_DEADLINE_MS).catch((error: unknown) => error);
    expect(short).toMatchObject({ code: grpc.status.DEADLINE_EXCEEDED });
    expect(await waitForNoKv()).toBe(0);
  },
  LONG_DEADLINE_MS,
);
