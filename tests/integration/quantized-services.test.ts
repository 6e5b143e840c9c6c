import { InProcessPipeline } from '../../services/node/in-process-pipeline';
import { TextTokenizer } from '../../services/tokenizer/text-tokenizer';
import { DEFAULT_GENERATION_CONFIG } from '../../shared/generation-config';
import { readManifest } from '../../shared/model/manifest';
import { postJson } from '../support/http';
import { RunningSystem, SYSTEM_START_TIMEOUT_MS } from '../support/system';
import { tinyModel } from '../support/test-models';

const REQUEST_TIMEOUT_MS = 60_000;
const NEW_TOKENS = 24;
const PROMPTS = ['The history of the world', 'Once upon a time', 'def main():', 'Breaking news:'];

let system: RunningSystem;
let modelDir: string;

beforeAll(async () => {
  modelDir = await tinyModel({ stages: 3, ops: 'fused', weights: { format: 'int4' } });
  system = await RunningSystem.start({ modelDir });
}, SYSTEM_START_TIMEOUT_MS * 2);

afterAll(async () => {
  await system?.stop();
});

describe('a quantized model served by the six processes', () => {
  it(
    'int4, 3 stage processes: REST greedy tokens equal the in-process pipeline on the same model, alone and concurrent',
    async () => {
      expect((await readManifest(modelDir)).stages.map((s) => s.weights.format)).toEqual(['int4', 'int4', 'int4']);
      const tokenizer = await TextTokenizer.load(modelDir);
      const pipeline = await InProcessPipeline.load(modelDir);
      let expected: number[][];
      try {
        expected = [];
        for (const prompt of PROMPTS) {
          expected.push((await pipeline.generate(tokenizer.encode(prompt), { ...DEFAULT_GENERATION_CONFIG, temperature: 0, maxNewTokens: NEW_TOKENS })).tokenIds);
        }
      } finally {
        await pipeline.close();
      }
      const rest = async (text: string): Promise<number[]> => {
        const response = await postJson(`${system.apiUrl}/api/model/process`, { text, max_new_tokens: NEW_TOKENS, temperature: 0 });
        if (response.status !== 200) throw new Error(`process answered ${response.status}: ${JSON.stringify(response.body)}`);
        return response.body.token_ids as number[];
      };
      expect(await rest(PROMPTS[0])).toEqual(expected[0]);
      expect(await Promise.all(PROMPTS.map(rest))).toEqual(expected);
      expected.forEach((tokens) => expect(tokens).toHaveLength(NEW_TOKENS));
    },
    REQUEST_TIMEOUT_MS,
  );
});
