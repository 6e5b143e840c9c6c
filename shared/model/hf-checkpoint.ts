import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import type { Gpt2Config } from './gpt2-config';
import type { Gpt2Checkpoint, Gpt2LayerWeights, Gpt2Weights, LayerNormWeights, LinearWeights, Weight } from './gpt2-weights';
import { readSafetensors, readSafetensorsHeader, writeSafetensors } from './safetensors';

/**
 * A Hugging Face GPT-2 checkpoint folder: config.json, model.safetensors (or a sharded
 * model.safetensors.index.json + shards), tokenizer.json and tokenizer_config.json. This module
 * parses one into a `Gpt2Checkpoint` (every failure names the file and the problem) and writes one.
 */
export interface HfCheckpoint extends Gpt2Checkpoint {
  /** Absolute path of the folder. */
  readonly dir: string;
  /** Absolute paths of tokenizer.json and tokenizer_config.json. */
  readonly tokenizerFiles: string[];
}

/** The JSON bodies of the two tokenizer files written next to the weights. */
export interface HfTokenizerFiles {
  readonly tokenizerJson: object;
  readonly tokenizerConfigJson: object;
}

/** The config.json fields this project reads and writes (Hugging Face names). */
export interface HfGpt2ConfigJson {
  readonly architectures: string[];
  readonly model_type: 'gpt2';
  readonly vocab_size: number;
  readonly n_positions: number;
  readonly n_ctx: number;
  readonly n_embd: number;
  readonly n_layer: number;
  readonly n_head: number;
  readonly n_inner: number;
  readonly layer_norm_epsilon: number;
  readonly activation_function: 'gelu_new' | 'gelu';
  readonly bos_token_id: number;
  readonly eos_token_id: number;
  readonly tie_word_embeddings: true;
}

const CONFIG_FILE = 'config.json';
const WEIGHTS_FILE = 'model.safetensors';
const WEIGHTS_INDEX_FILE = 'model.safetensors.index.json';
const TOKENIZER_FILE = 'tokenizer.json';
const TOKENIZER_CONFIG_FILE = 'tokenizer_config.json';
/** Written by GPT2LMHeadModel checkpoints, absent from GPT2Model ones. */
const TRANSFORMER_PREFIX = 'transformer.';
/** Causal-mask buffers some exports save, and the LM head that GPT-2 ties to wte. */
const IGNORED_TENSOR = /^(h\.\d+\.attn\.(bias|masked_bias)|lm_head\.weight)$/;
/** Hugging Face's GPT2Config defaults for the fields older config.json files leave out. */
const HF_DEFAULT_LAYER_NORM_EPSILON = 1e-5;
const HF_DEFAULT_ACTIVATION = 'gelu_new';
const HF_DEFAULT_SPECIAL_TOKEN_ID = 50256;

export function parseGpt2Config(json: unknown, source: string): Gpt2Config {
  if (!isPlainObject(json)) throw new Error(`${source}: expected a JSON object`);
  const field = (name: string): string => `${source}: field ${name}`;
  if (json.model_type !== 'gpt2') {
    throw new Error(`${field('model_type')}: unsupported model_type ${JSON.stringify(json.model_type)} (only gpt2 is supported)`);
  }
  const positive = (name: string, fallback?: number): number => {
    const value = json[name] ?? fallback;
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
      throw new Error(`${field(name)}: expected a positive integer, got ${JSON.stringify(value)}`);
    }
    return value;
  };
  const vocabSize = positive('vocab_size');
  const nPositions = positive('n_positions');
  const nEmbd = positive('n_embd');
  const nLayer = positive('n_layer');
  const nHead = positive('n_head');
  if (nEmbd % nHead !== 0) {
    throw new Error(`${field('n_head')}: n_embd ${nEmbd} is not divisible by n_head ${nHead}`);
  }
  const nInner = positive('n_inner', 4 * nEmbd);
  const layerNormEpsilon = json.layer_norm_epsilon ?? HF_DEFAULT_LAYER_NORM_EPSILON;
  if (typeof layerNormEpsilon !== 'number' || !(layerNormEpsilon > 0)) {
    throw new Error(`${field('layer_norm_epsilon')}: expected a positive number, got ${JSON.stringify(layerNormEpsilon)}`);
  }
  const activation = json.activation_function ?? HF_DEFAULT_ACTIVATION;
  if (activation !== 'gelu_new' && activation !== 'gelu') {
    throw new Error(`${field('activation_function')}: unsupported activation ${JSON.stringify(activation)} (gelu_new or gelu)`);
  }
  const tokenId = (name: string): number => {
    const value = json[name] ?? HF_DEFAULT_SPECIAL_TOKEN_ID;
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0 || value >= vocabSize) {
      throw new Error(`${field(name)}: expected a token id below vocab_size ${vocabSize}, got ${JSON.stringify(value)}`);
    }
    return value;
  };
  // These switches change the attention math that the stage graphs implement, so refuse them.
  if (json.scale_attn_weights === false) throw new Error(`${field('scale_attn_weights')}: false is not supported`);
  if (json.scale_attn_by_inverse_layer_idx === true) {
    throw new Error(`${field('scale_attn_by_inverse_layer_idx')}: true is not supported`);
  }
  if (json.add_cross_attention === true) throw new Error(`${field('add_cross_attention')}: true is not supported`);
  if (json.tie_word_embeddings === false) {
    throw new Error(`${field('tie_word_embeddings')}: false is not supported (the LM head is tied to wte)`);
  }
  return {
    modelType: 'gpt2',
    vocabSize,
    nPositions,
    nEmbd,
    nLayer,
    nHead,
    nInner,
    layerNormEpsilon,
    activation,
    bosTokenId: tokenId('bos_token_id'),
    eosTokenId: tokenId('eos_token_id'),
  };
}

export function toHfConfigJson(config: Gpt2Config): HfGpt2ConfigJson {
  return {
    architectures: ['GPT2LMHeadModel'],
    model_type: 'gpt2',
    vocab_size: config.vocabSize,
    n_positions: config.nPositions,
    n_ctx: config.nPositions,
    n_embd: config.nEmbd,
    n_layer: config.nLayer,
    n_head: config.nHead,
    n_inner: config.nInner,
    layer_norm_epsilon: config.layerNormEpsilon,
    activation_function: config.activation,
    bos_token_id: config.bosTokenId,
    eos_token_id: config.eosTokenId,
    tie_word_embeddings: true,
  };
}

export async function loadHfCheckpoint(dir: string): Promise<HfCheckpoint> {
  const root = path.resolve(dir);
  const configPath = path.join(root, CONFIG_FILE);
  const config = parseGpt2Config(await readJsonFile(configPath), configPath);
  const tokenizerFiles = await checkTokenizerFiles(root, config);
  const locations = await locateTensors(root, config);
  const loaded = new Map<string, Weight>();
  for (const [file, tensors] of groupByFile(locations)) {
    const read = await readSafetensors(file, tensors.map((t) => t.storedName));
    for (const { name, storedName } of tensors) loaded.set(name, read.get(storedName) as Weight);
  }
  return { dir: root, tokenizerFiles, config, weights: assembleWeights(config, loaded) };
}

/** Writes config.json, model.safetensors (Hugging Face names, no `transformer.` prefix) and the tokenizer files. */
export async function writeHfCheckpoint(dir: string, checkpoint: Gpt2Checkpoint, tokenizerFiles: HfTokenizerFiles): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, CONFIG_FILE), `${JSON.stringify(toHfConfigJson(checkpoint.config), null, 2)}\n`);
  // transformers refuses safetensors files whose metadata does not say which framework wrote them.
  await writeSafetensors(path.join(dir, WEIGHTS_FILE), flattenWeights(checkpoint.weights), { format: 'pt' });
  await writeFile(path.join(dir, TOKENIZER_FILE), JSON.stringify(tokenizerFiles.tokenizerJson));
  await writeFile(path.join(dir, TOKENIZER_CONFIG_FILE), `${JSON.stringify(tokenizerFiles.tokenizerConfigJson, null, 2)}\n`);
}

/** Every tensor a GPT-2 checkpoint must hold, with its shape, in Hugging Face order. */
function expectedShapes(config: Gpt2Config): Map<string, number[]> {
  const { nEmbd: e, nInner: inner } = config;
  const shapes = new Map<string, number[]>([
    ['wte.weight', [config.vocabSize, e]],
    ['wpe.weight', [config.nPositions, e]],
  ]);
  for (let i = 0; i < config.nLayer; i++) {
    const p = `h.${i}.`;
    shapes.set(`${p}ln_1.weight`, [e]).set(`${p}ln_1.bias`, [e]);
    shapes.set(`${p}attn.c_attn.weight`, [e, 3 * e]).set(`${p}attn.c_attn.bias`, [3 * e]);
    shapes.set(`${p}attn.c_proj.weight`, [e, e]).set(`${p}attn.c_proj.bias`, [e]);
    shapes.set(`${p}ln_2.weight`, [e]).set(`${p}ln_2.bias`, [e]);
    shapes.set(`${p}mlp.c_fc.weight`, [e, inner]).set(`${p}mlp.c_fc.bias`, [inner]);
    shapes.set(`${p}mlp.c_proj.weight`, [inner, e]).set(`${p}mlp.c_proj.bias`, [e]);
  }
  shapes.set('ln_f.weight', [e]).set('ln_f.bias', [e]);
  return shapes;
}

interface TensorLocation {
  /** Canonical name, without the `transformer.` prefix. */
  readonly name: string;
  readonly storedName: string;
  readonly file: string;
}

/** Finds every expected tensor's file and stored name, and checks names and shapes from the headers alone. */
async function locateTensors(root: string, config: Gpt2Config): Promise<TensorLocation[]> {
  const storedByFile = await listStoredTensors(root);
  const expected = expectedShapes(config);
  const found = new Map<string, TensorLocation>();
  for (const [file, storedNames] of storedByFile) {
    for (const storedName of storedNames) {
      const name = storedName.startsWith(TRANSFORMER_PREFIX) ? storedName.slice(TRANSFORMER_PREFIX.length) : storedName;
      if (IGNORED_TENSOR.test(name)) continue;
      if (!expected.has(name)) {
        throw new Error(`${file}: unexpected tensor ${storedName} for a GPT-2 with n_layer ${config.nLayer}`);
      }
      const previous = found.get(name);
      if (previous !== undefined) {
        throw new Error(`${file}: tensor ${name} is stored twice (as ${previous.storedName} and ${storedName})`);
      }
      found.set(name, { name, storedName, file });
    }
  }
  const missing = [...expected.keys()].filter((name) => !found.has(name));
  if (missing.length > 0) {
    const shown = missing.slice(0, 5).join(', ') + (missing.length > 5 ? `, … (${missing.length} in all)` : '');
    throw new Error(`${root}: checkpoint is missing tensors: ${shown}`);
  }
  for (const [file, locations] of groupByFile([...found.values()])) {
    const header = await readSafetensorsHeader(file);
    for (const { name, storedName } of locations) {
      const entry = header.tensors.get(storedName);
      if (entry === undefined) throw new Error(`${file}: tensor ${storedName} is listed in ${WEIGHTS_INDEX_FILE} but not stored here`);
      const want = expected.get(name) as number[];
      if (!sameShape(entry.shape, want)) {
        throw new Error(`${file}: wrong shape ${name}: expected [${want.join(', ')}], got [${entry.shape.join(', ')}]`);
      }
    }
  }
  return [...found.values()];
}

/** Stored tensor names per safetensors file: from the single file's header, or from the index's weight_map. */
async function listStoredTensors(root: string): Promise<Map<string, string[]>> {
  const single = path.join(root, WEIGHTS_FILE);
  if (await isFile(single)) {
    return new Map([[single, [...(await readSafetensorsHeader(single)).tensors.keys()]]]);
  }
  const indexPath = path.join(root, WEIGHTS_INDEX_FILE);
  if (!(await isFile(indexPath))) {
    throw new Error(`${root}: missing weights: neither ${WEIGHTS_FILE} nor ${WEIGHTS_INDEX_FILE} exists (only safetensors checkpoints are supported)`);
  }
  const byFile = new Map<string, string[]>();
  for (const [storedName, shard] of Object.entries(parseWeightMap(await readJsonFile(indexPath), indexPath))) {
    const file = path.join(root, shard);
    if (!byFile.has(file)) {
      if (!(await isFile(file))) throw new Error(`${file}: missing shard (listed in ${indexPath})`);
      byFile.set(file, []);
    }
    (byFile.get(file) as string[]).push(storedName);
  }
  return byFile;
}

/** weight_map of a sharded index: tensor name → shard file name in the same folder. */
export function parseWeightMap(json: unknown, source: string): Record<string, string> {
  if (!isPlainObject(json) || !isPlainObject(json.weight_map)) throw new Error(`${source}: field weight_map: expected an object`);
  for (const [name, shard] of Object.entries(json.weight_map)) {
    if (typeof shard !== 'string' || shard !== path.basename(shard) || !shard.endsWith('.safetensors')) {
      throw new Error(`${source}: field weight_map.${name}: expected a .safetensors file name in the same folder, got ${JSON.stringify(shard)}`);
    }
  }
  return json.weight_map as Record<string, string>;
}

async function checkTokenizerFiles(root: string, config: Gpt2Config): Promise<string[]> {
  const tokenizerPath = path.join(root, TOKENIZER_FILE);
  const tokenizer = await readJsonFile(tokenizerPath);
  if (!isPlainObject(tokenizer) || !isPlainObject(tokenizer.model)) throw new Error(`${tokenizerPath}: field model: expected an object`);
  const ids = [...vocabularyIds(tokenizer.model.vocab, tokenizerPath), ...addedTokenIds(tokenizer.added_tokens, tokenizerPath)];
  const largest = ids.reduce((max, id) => Math.max(max, id), -1);
  if (largest >= config.vocabSize) {
    throw new Error(
      `${tokenizerPath}: tokenizer too big for the model: it has token id ${largest}, but vocab_size in ${CONFIG_FILE} is ${config.vocabSize}`,
    );
  }
  const tokenizerConfigPath = path.join(root, TOKENIZER_CONFIG_FILE);
  if (!isPlainObject(await readJsonFile(tokenizerConfigPath))) throw new Error(`${tokenizerConfigPath}: expected a JSON object`);
  return [tokenizerPath, tokenizerConfigPath];
}

/** BPE / WordPiece vocabularies map token → id; Unigram ones are a list whose index is the id. */
function vocabularyIds(vocab: unknown, source: string): number[] {
  if (Array.isArray(vocab)) return vocab.map((_, index) => index);
  if (!isPlainObject(vocab)) throw new Error(`${source}: field model.vocab: expected an object or an array`);
  return Object.entries(vocab).map(([token, id]) => {
    if (!isTokenId(id)) throw new Error(`${source}: field model.vocab[${JSON.stringify(token)}]: expected a token id, got ${JSON.stringify(id)}`);
    return id;
  });
}

function addedTokenIds(addedTokens: unknown, source: string): number[] {
  if (addedTokens === undefined || addedTokens === null) return [];
  if (!Array.isArray(addedTokens)) throw new Error(`${source}: field added_tokens: expected an array`);
  return addedTokens.map((token: unknown, index) => {
    const id = isPlainObject(token) ? token.id : undefined;
    if (!isTokenId(id)) throw new Error(`${source}: field added_tokens[${index}].id: expected a token id, got ${JSON.stringify(id)}`);
    return id;
  });
}

function assembleWeights(config: Gpt2Config, tensors: ReadonlyMap<string, Weight>): Gpt2Weights {
  const get = (name: string): Weight => tensors.get(name) as Weight;
  const linear = (prefix: string): LinearWeights => ({ weight: get(`${prefix}.weight`), bias: get(`${prefix}.bias`) });
  const norm = (prefix: string): LayerNormWeights => ({ weight: get(`${prefix}.weight`), bias: get(`${prefix}.bias`) });
  const layers: Gpt2LayerWeights[] = [];
  for (let i = 0; i < config.nLayer; i++) {
    layers.push({
      ln1: norm(`h.${i}.ln_1`),
      attnQkv: linear(`h.${i}.attn.c_attn`),
      attnProj: linear(`h.${i}.attn.c_proj`),
      ln2: norm(`h.${i}.ln_2`),
      mlpFc: linear(`h.${i}.mlp.c_fc`),
      mlpProj: linear(`h.${i}.mlp.c_proj`),
    });
  }
  return { wte: get('wte.weight'), wpe: get('wpe.weight'), layers, lnF: norm('ln_f') };
}

function flattenWeights(weights: Gpt2Weights): Map<string, Weight> {
  const flat = new Map<string, Weight>([
    ['wte.weight', weights.wte],
    ['wpe.weight', weights.wpe],
  ]);
  weights.layers.forEach((layer, i) => {
    const pairs: [string, LinearWeights | LayerNormWeights][] = [
      ['ln_1', layer.ln1],
      ['attn.c_attn', layer.attnQkv],
      ['attn.c_proj', layer.attnProj],
      ['ln_2', layer.ln2],
      ['mlp.c_fc', layer.mlpFc],
      ['mlp.c_proj', layer.mlpProj],
    ];
    for (const [name, params] of pairs) {
      flat.set(`h.${i}.${name}.weight`, params.weight).set(`h.${i}.${name}.bias`, params.bias);
    }
  });
  flat.set('ln_f.weight', weights.lnF.weight).set('ln_f.bias', weights.lnF.bias);
  return flat;
}

function groupByFile(locations: readonly TensorLocation[]): Map<string, TensorLocation[]> {
  const groups = new Map<string, TensorLocation[]>();
  for (const location of locations) {
    const group = groups.get(location.file) ?? [];
    group.push(location);
    groups.set(location.file, group);
  }
  return groups;
}

async function readJsonFile(file: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new Error(code === 'ENOENT' ? `${file}: missing file` : `${file}: cannot read (${code ?? String(error)})`, { cause: error });
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new Error(`${file}: not valid JSON (${(error as Error).message})`, { cause: error });
  }
}

async function isFile(file: string): Promise<boolean> {
  try {
    return (await stat(file)).isFile();
  } catch {
    return false;
  }
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function isTokenId(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
