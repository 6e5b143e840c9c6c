import type { DescribeResponse__Output } from '../../protos/generated/pipeserve/v1/DescribeResponse';
import type { EncodeResponse__Output } from '../../protos/generated/pipeserve/v1/EncodeResponse';
import { InProcessPipeline } from '../../services/node/in-process-pipeline';
import { DEFAULT_GENERATION_CONFIG } from '../../shared/generation-config';
import { callOptions, createClient, requestMetadata, unary } from '../../shared/grpc/channel';
import { protos } from '../../shared/grpc/proto-loader';
import { LLAMA_PRESETS } from '../../tools/init/random-llama';
import { postJson } from '../support/http';
import { tinyLlamaModel } from '../support/llama-test-models';
import { RunningSystem, SYSTEM_START_TIMEOUT_MS } from '../support/system';

const REQUEST_TIMEOUT_MS = 120_000;
const RPC_DEADLINE_MS = 10_000;
const NEW_TOKENS = 24;
const FLOAT32_BYTES = 4;
const PROMPTS = ['The history of the world', 'Once upon a time', 'def main():'];

let system: RunningSystem;
let modelDir: string;

beforeAll(async () => {
  modelDir = await tinyLlamaModel({ stages: 3, split: { kind: 'balanced' }, ops: 'fused' });
  system = await RunningSystem.start({ modelDir });
}, SYSTEM_START_TIMEOUT_MS * 2);

afterAll(async () => {
  await system?.stop();
});

async function encode(text: string): Promise<number[]> {
  const tokenizer = createClient(protos().tokenizer.pipeserve.v1.Tokenizer, system.config.tokenizerAddress);
  try {
    const encoded = await unary<{ text: string }, EncodeResponse__Output>(tokenizer.Encode.bind(tokenizer), { text }, requestMetadata('llama-encode'), callOptions(RPC_DEADLINE_MS));
    return encoded.token_ids;
  } finally {
    tokenizer.close();
  }
}

describe('a llama-tiny model on the six services', () => {
  it(
    'REST greedy output equals the in-process pipeline on the same compiled folder, for each prompt',
    async () => {
      const pipeline = await InProcessPipeline.load(modelDir, { intraOpThreads: 1 });
      try {
        for (const text of PROMPTS) {
          const response = await postJson(`${system.apiUrl}/api/model/process`, { text, max_new_tokens: NEW_TOKENS, temperature: 0 });
          expect(response.status).toBe(200);
          const expected = await pipeline.generate(await encode(text), { ...DEFAULT_GENERATION_CONFIG, temperature: 0, maxNewTokens: NEW_TOKENS });
          expect(response.body.token_ids).toEqual(expected.tokenIds);
          expect(new Set(expected.tokenIds).size).toBeGreaterThan(NEW_TOKENS / 2);
        }
      } finally {
        await pipeline.close();
      }
    },
    REQUEST_TIMEOUT_MS,
  );

  it('each node describes its KV cost as 2 × its layers × 3 KV heads × 16 × 4 bytes per token', async () => {
    const { kvHeads, headDim, layers } = LLAMA_PRESETS.tiny;
    const described: DescribeResponse__Output[] = [];
    for (const node of system.config.nodes) {
      const client = createClient(protos().node.pipeserve.v1.ModelNode, node.address);
      try {
        described.push(await unary<object, DescribeResponse__Output>(client.Describe.bind(client), {}, requestMetadata('llama-describe'), callOptions(RPC_DEADLINE_MS)));
      } finally {
        client.close();
      }
    }
    expect(described.reduce((sum, d) => sum + d.layer_end - d.layer_start, 0)).toBe(layers);
    for (const d of described) expect(d.kv_bytes_per_token).toBe(2 * (d.layer_end - d.layer_start) * kvHeads * headDim * FLOAT32_BYTES);
  });
});
