import { mkdtemp, readFile, rm, truncate, unlink, writeFile } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { readSafetensors, writeSafetensors } from '../../shared/model/safetensors';
import type { Weight } from '../../shared/model/weight';
import { loadCheckpoint, writeCheckpoint } from '../../tools/families/checkpoint';
import { parseGpt2Config, toHfConfigJson } from '../../tools/families/gpt2/gpt2-config';
import { gpt2Checkpoint, gpt2Shape } from '../../tools/families/gpt2/gpt2-family';
import type { Gpt2Checkpoint } from '../../tools/families/gpt2/gpt2-weights';
import { randomGpt2Checkpoint } from '../../tools/init/random-gpt2';
import { MINI_GPT2_CONFIG } from '../support/mini-gpt2-config';

/** A 12-token BPE tokenizer: ids 0-10 in the vocabulary, 11 as an added special token. */
function miniTokenizerJson(extraId?: number): object {
  const vocab: Record<string, number> = {};
  'abcdefghijk'.split('').forEach((c, i) => (vocab[c] = i));
  if (extraId !== undefined) vocab.z = extraId;
  return {
    version: '1.0',
    added_tokens: [{ id: 11, content: '<|endoftext|>', special: true }],
    model: { type: 'BPE', vocab, merges: [] },
  };
}

const MINI_TOKENIZER = { tokenizerJson: miniTokenizerJson(), tokenizerConfigJson: { model_max_length: 16 } };

function hfTensors(checkpoint: Gpt2Checkpoint): Map<string, Weight> {
  const { weights } = checkpoint;
  const flat = new Map<string, Weight>([
    ['wte.weight', weights.wte],
    ['wpe.weight', weights.wpe],
  ]);
  weights.layers.forEach((layer, i) => {
    flat.set(`h.${i}.ln_1.weight`, layer.ln1.weight).set(`h.${i}.ln_1.bias`, layer.ln1.bias);
    flat.set(`h.${i}.attn.c_attn.weight`, layer.attnQkv.weight).set(`h.${i}.attn.c_attn.bias`, layer.attnQkv.bias);
    flat.set(`h.${i}.attn.c_proj.weight`, layer.attnProj.weight).set(`h.${i}.attn.c_proj.bias`, layer.attnProj.bias);
    flat.set(`h.${i}.ln_2.weight`, layer.ln2.weight).set(`h.${i}.ln_2.bias`, layer.ln2.bias);
    flat.set(`h.${i}.mlp.c_fc.weight`, layer.mlpFc.weight).set(`h.${i}.mlp.c_fc.bias`, layer.mlpFc.bias);
    flat.set(`h.${i}.mlp.c_proj.weight`, layer.mlpProj.weight).set(`h.${i}.mlp.c_proj.bias`, layer.mlpProj.bias);
  });
  flat.set('ln_f.weight', weights.lnF.weight).set('ln_f.bias', weights.lnF.bias);
  return flat;
}

function expectSameWeights(a: ReadonlyMap<string, Weight>, expected: Gpt2Checkpoint): void {
  const e = hfTensors(expected);
  expect([...a.keys()].sort()).toEqual([...e.keys()].sort());
  for (const [name, weight] of e) {
    expect({ name, dims: a.get(name)?.dims }).toEqual({ name, dims: weight.dims });
    expect(Buffer.from((a.get(name) as Weight).data.buffer).equals(Buffer.from(weight.data.buffer))).toBe(true);
  }
}

describe('parseGpt2Config', () => {
  const good = { ...toHfConfigJson(MINI_GPT2_CONFIG) } as Record<string, unknown>;

  test('reads Hugging Face field names into the camelCase config', () => {
    expect(parseGpt2Config(good, 'config.json')).toEqual(MINI_GPT2_CONFIG);
  });

  test('n_inner null means 4 * n_embd, and missing optional fields take GPT2Config defaults', () => {
    const { layer_norm_epsilon: _eps, activation_function: _act, ...rest } = good;
    const config = parseGpt2Config({ ...rest, n_inner: null, vocab_size: 50257, bos_token_id: undefined, eos_token_id: undefined }, 'c');
    expect(config.nInner).toBe(32);
    expect(config.layerNormEpsilon).toBe(1e-5);
    expect(config.activation).toBe('gelu_new');
    expect(config.bosTokenId).toBe(50256);
  });

  test.each([
    [{ model_type: 'llama' }, '/m/config.json: field model_type: unsupported model_type "llama"'],
    [{ n_head: 3 }, '/m/config.json: field n_head: n_embd 8 is not divisible by n_head 3'],
    [{ n_layer: 0 }, '/m/config.json: field n_layer: expected a positive integer, got 0'],
    [{ vocab_size: -5 }, '/m/config.json: field vocab_size: expected a positive integer, got -5'],
    [{ n_embd: 'wide' }, '/m/config.json: field n_embd: expected a positive integer, got "wide"'],
    [{ n_positions: null }, '/m/config.json: field n_positions: expected a positive integer, got undefined'],
    [{ activation_function: 'relu' }, '/m/config.json: field activation_function: unsupported activation "relu"'],
    [{ layer_norm_epsilon: 0 }, '/m/config.json: field layer_norm_epsilon: expected a positive number'],
    [{ eos_token_id: 12 }, '/m/config.json: field eos_token_id: expected a token id below vocab_size 12'],
    [{ tie_word_embeddings: false }, '/m/config.json: field tie_word_embeddings: false is not supported'],
  ])('rejects %j naming config.json and the field', (change, message) => {
    expect(() => parseGpt2Config({ ...good, ...change }, '/m/config.json')).toThrow(message);
  });

  test('rejects a config that is not an object', () => {
    expect(() => parseGpt2Config([1], 'config.json')).toThrow('config.json: expected a JSON object');
  });
});

describe('loadCheckpoint (GPT-2 folders)', () => {
  const checkpoint = randomGpt2Checkpoint(MINI_GPT2_CONFIG, 7);
  let root: string;
  let caseNumber = 0;

  beforeAll(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'hf-checkpoint-'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  async function writtenCheckpoint(): Promise<string> {
    const dir = path.join(root, `case-${caseNumber++}`);
    await writeCheckpoint(dir, gpt2Checkpoint(checkpoint), MINI_TOKENIZER);
    return dir;
  }

  test('loads back exactly what writeCheckpoint wrote, with absolute tokenizer paths', async () => {
    const dir = await writtenCheckpoint();
    const loaded = await loadCheckpoint(path.relative(process.cwd(), dir));
    expect(loaded.model.family).toBe('gpt2');
    expect(loaded.model.shape).toEqual(gpt2Shape(MINI_GPT2_CONFIG));
    expect(loaded.model.toConfigJson()).toEqual(toHfConfigJson(MINI_GPT2_CONFIG));
    expect(loaded.dir).toBe(dir);
    expect(loaded.tokenizerFiles).toEqual([path.join(dir, 'tokenizer.json'), path.join(dir, 'tokenizer_config.json')]);
    expectSameWeights(loaded.tensors, checkpoint);
    expect(JSON.parse(await readFile(path.join(dir, 'config.json'), 'utf8')).model_type).toBe('gpt2');
  });

  test('accepts the transformer. prefix and ignores attn.bias, attn.masked_bias and a tied lm_head.weight', async () => {
    const dir = await writtenCheckpoint();
    const prefixed = new Map<string, Weight>();
    for (const [name, weight] of hfTensors(checkpoint)) prefixed.set(`transformer.${name}`, weight);
    prefixed.set('transformer.h.0.attn.bias', { dims: [1, 1, 16, 16], data: new Float32Array(256) });
    prefixed.set('h.1.attn.masked_bias', { dims: [], data: Float32Array.from([-1e4]) });
    prefixed.set('lm_head.weight', checkpoint.weights.wte);
    await writeSafetensors(path.join(dir, 'model.safetensors'), prefixed);
    expectSameWeights((await loadCheckpoint(dir)).tensors, checkpoint);
  });

  test('loads a sharded checkpoint through model.safetensors.index.json', async () => {
    const dir = await writtenCheckpoint();
    await unlink(path.join(dir, 'model.safetensors'));
    const names = [...hfTensors(checkpoint).keys()];
    const shards = [names.slice(0, 10), names.slice(10)];
    const weightMap: Record<string, string> = {};
    for (const [i, shard] of shards.entries()) {
      const file = `model-0000${i + 1}-of-00002.safetensors`;
      await writeSafetensors(path.join(dir, file), new Map(shard.map((n) => [`transformer.${n}`, hfTensors(checkpoint).get(n) as Weight])));
      for (const n of shard) weightMap[`transformer.${n}`] = file;
    }
    await writeFile(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }));
    expectSameWeights((await loadCheckpoint(dir)).tensors, checkpoint);
  });

  describe('every bad input is an error naming the file and the problem', () => {
    type Breaker = (dir: string) => Promise<void>;
    const modelFile = (dir: string): string => path.join(dir, 'model.safetensors');
    const rewriteWeights = async (dir: string, change: (tensors: Map<string, Weight>) => void): Promise<void> => {
      const tensors = await readSafetensors(modelFile(dir));
      change(tensors);
      await writeSafetensors(modelFile(dir), tensors);
    };
    const cases: [string, Breaker, (dir: string) => string][] = [
      ['missing config.json', (dir) => unlink(path.join(dir, 'config.json')), (dir) => `${path.join(dir, 'config.json')}: missing file`],
      [
        'config.json that is not JSON',
        (dir) => writeFile(path.join(dir, 'config.json'), '{ nope'),
        (dir) => `${path.join(dir, 'config.json')}: not valid JSON`,
      ],
      [
        'unsupported model_type',
        (dir) => writeFile(path.join(dir, 'config.json'), JSON.stringify({ ...toHfConfigJson(MINI_GPT2_CONFIG), model_type: 'gpt_neox' })),
        (dir) => `${path.join(dir, 'config.json')}: field model_type: unsupported model_type "gpt_neox"`,
      ],
      [
        'an architecture no family supports',
        (dir) => writeFile(path.join(dir, 'config.json'), JSON.stringify({ ...toHfConfigJson(MINI_GPT2_CONFIG), architectures: ['MambaForCausalLM'] })),
        (dir) => `${path.join(dir, 'config.json')}: field architectures: unsupported architecture MambaForCausalLM (supported: GPT2LMHeadModel`,
      ],
      [
        'a generation_config.json whose eos_token_id is outside the vocabulary',
        (dir) => writeFile(path.join(dir, 'generation_config.json'), JSON.stringify({ eos_token_id: [11, 99] })),
        () => 'generation_config.json: field eos_token_id: 99 is outside the vocabulary of 12',
      ],
      [
        'missing weights',
        (dir) => unlink(modelFile(dir)),
        (dir) => `${dir}: missing weights: neither model.safetensors nor model.safetensors.index.json exists`,
      ],
      [
        'a wrong tensor shape',
        (dir) =>
          rewriteWeights(dir, (t) => {
            t.set('h.1.mlp.c_fc.weight', { dims: [32, 8], data: new Float32Array(256) });
          }),
        (dir) => `${modelFile(dir)}: wrong shape h.1.mlp.c_fc.weight: expected [8, 32], got [32, 8]`,
      ],
      [
        'a missing tensor',
        (dir) =>
          rewriteWeights(dir, (t) => {
            t.delete('h.0.ln_2.bias');
          }),
        (dir) => `${dir}: checkpoint is missing tensors: h.0.ln_2.bias`,
      ],
      [
        'a tensor for a layer the config does not have',
        (dir) =>
          rewriteWeights(dir, (t) => {
            t.set('h.2.ln_1.weight', { dims: [8], data: new Float32Array(8) });
          }),
        (dir) => `${modelFile(dir)}: unexpected tensor h.2.ln_1.weight for a GPT-2 with n_layer 2`,
      ],
      [
        'a truncated model.safetensors',
        async (dir) => truncate(modelFile(dir), 4000),
        (dir) => `${modelFile(dir)}: tensor h.`,
      ],
      [
        'a corrupt safetensors header',
        async (dir) => {
          const bytes = await readFile(modelFile(dir));
          bytes.write('#', 8);
          await writeFile(modelFile(dir), bytes);
        },
        (dir) => `${modelFile(dir)}: corrupt safetensors header: not valid JSON`,
      ],
      [
        'a header length past the end of the file',
        async (dir) => {
          const bytes = await readFile(modelFile(dir));
          bytes.writeBigUInt64LE(BigInt(bytes.length), 0);
          await writeFile(modelFile(dir), bytes);
        },
        (dir) => `${modelFile(dir)}: truncated safetensors file: header length`,
      ],
      [
        'a tokenizer vocabulary too big for vocab_size',
        (dir) => writeFile(path.join(dir, 'tokenizer.json'), JSON.stringify(miniTokenizerJson(12))),
        (dir) =>
          `${path.join(dir, 'tokenizer.json')}: tokenizer too big for the model: it has token id 12, but vocab_size in config.json is 12`,
      ],
      [
        'an added token id too big for vocab_size',
        (dir) =>
          writeFile(
            path.join(dir, 'tokenizer.json'),
            JSON.stringify({ ...miniTokenizerJson(), added_tokens: [{ id: 50256, content: '<|endoftext|>' }] }),
          ),
        (dir) => `${path.join(dir, 'tokenizer.json')}: tokenizer too big for the model: it has token id 50256`,
      ],
      [
        'a missing tokenizer.json',
        (dir) => unlink(path.join(dir, 'tokenizer.json')),
        (dir) => `${path.join(dir, 'tokenizer.json')}: missing file`,
      ],
      [
        'a tokenizer.json that is not JSON',
        (dir) => writeFile(path.join(dir, 'tokenizer.json'), 'not json'),
        (dir) => `${path.join(dir, 'tokenizer.json')}: not valid JSON`,
      ],
      [
        'a missing tokenizer_config.json',
        (dir) => unlink(path.join(dir, 'tokenizer_config.json')),
        (dir) => `${path.join(dir, 'tokenizer_config.json')}: missing file`,
      ],
      [
        'a sharded index naming a missing shard',
        async (dir) => {
          await unlink(modelFile(dir));
          await writeFile(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { 'wte.weight': 'gone.safetensors' } }));
        },
        (dir) => `${path.join(dir, 'gone.safetensors')}: missing shard (listed in ${path.join(dir, 'model.safetensors.index.json')})`,
      ],
      [
        'a sharded index listing a tensor its shard lacks',
        async (dir) => {
          const tensors = await readSafetensors(modelFile(dir));
          await unlink(modelFile(dir));
          await writeSafetensors(path.join(dir, 'only.safetensors'), tensors);
          tensors.delete('ln_f.bias');
          await writeSafetensors(path.join(dir, 'only.safetensors'), tensors);
          const weightMap = Object.fromEntries([...hfTensors(checkpoint).keys()].map((n) => [n, 'only.safetensors']));
          await writeFile(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: weightMap }));
        },
        (dir) => `${path.join(dir, 'only.safetensors')}: tensor ln_f.bias is listed in model.safetensors.index.json but not stored here`,
      ],
    ];
    test.each(cases)('%s', async (_, breakIt, message) => {
      const dir = await writtenCheckpoint();
      await breakIt(dir);
      await expect(loadCheckpoint(dir)).rejects.toThrow(message(dir));
    });
  });
});
