import { readFile, stat } from 'node:fs/promises';
import * as path from 'node:path';
import { readSafetensors, readSafetensorsHeader } from './safetensors';
import type { Weight } from './weight';

/**
 * The family-agnostic side of a Hugging Face checkpoint folder: config.json, the safetensors
 * weights (a single model.safetensors or a sharded model.safetensors.index.json + shards), the
 * tokenizer files and generation_config.json. Which tensors a folder must hold is the model
 * family's business (tools/families); this module finds, checks and reads them, and every
 * failure names the file and the problem.
 */
export const CHECKPOINT_FILES = {
  config: 'config.json',
  weights: 'model.safetensors',
  weightsIndex: 'model.safetensors.index.json',
  tokenizer: 'tokenizer.json',
  tokenizerConfig: 'tokenizer_config.json',
  generationConfig: 'generation_config.json',
  specialTokensMap: 'special_tokens_map.json',
} as const;

/** What a family says about the tensors of its checkpoints. */
export interface TensorLayout {
  /** Canonical name → shape of every tensor the checkpoint must hold. */
  readonly expected: ReadonlyMap<string, readonly number[]>;
  /** Canonical name of a stored tensor, or null for one to skip (buffers some exports save). */
  canonicalName(storedName: string): string | null;
  /** For error messages: "a GPT-2 with n_layer 12". */
  readonly description: string;
}

interface TensorLocation {
  readonly name: string;
  readonly storedName: string;
  readonly file: string;
}

export async function readJsonFile(file: string): Promise<unknown> {
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

/** Reads every tensor `layout` expects as float32 (F16 and BF16 convert), after checking names and shapes from the headers alone. */
export async function readCheckpointTensors(root: string, layout: TensorLayout): Promise<Map<string, Weight>> {
  const locations = await locateTensors(root, layout);
  const loaded = new Map<string, Weight>();
  for (const [file, tensors] of groupByFile(locations)) {
    const read = await readSafetensors(file, tensors.map((t) => t.storedName));
    for (const { name, storedName } of tensors) loaded.set(name, read.get(storedName) as Weight);
  }
  return loaded;
}

async function locateTensors(root: string, layout: TensorLayout): Promise<TensorLocation[]> {
  const storedByFile = await listStoredTensors(root);
  const found = new Map<string, TensorLocation>();
  for (const [file, storedNames] of storedByFile) {
    for (const storedName of storedNames) {
      const name = layout.canonicalName(storedName);
      if (name === null) continue;
      if (!layout.expected.has(name)) throw new Error(`${file}: unexpected tensor ${storedName} for ${layout.description}`);
      const previous = found.get(name);
      if (previous !== undefined) {
        throw new Error(`${file}: tensor ${name} is stored twice (as ${previous.storedName} and ${storedName})`);
      }
      found.set(name, { name, storedName, file });
    }
  }
  const missing = [...layout.expected.keys()].filter((name) => !found.has(name));
  if (missing.length > 0) {
    const shown = missing.slice(0, 5).join(', ') + (missing.length > 5 ? `, … (${missing.length} in all)` : '');
    throw new Error(`${root}: checkpoint is missing tensors: ${shown}`);
  }
  for (const [file, locations] of groupByFile([...found.values()])) {
    const header = await readSafetensorsHeader(file);
    for (const { name, storedName } of locations) {
      const entry = header.tensors.get(storedName);
      if (entry === undefined) throw new Error(`${file}: tensor ${storedName} is listed in ${CHECKPOINT_FILES.weightsIndex} but not stored here`);
      const want = layout.expected.get(name) as readonly number[];
      if (!sameShape(entry.shape, want)) {
        throw new Error(`${file}: wrong shape ${name}: expected [${want.join(', ')}], got [${entry.shape.join(', ')}]`);
      }
    }
  }
  return [...found.values()];
}

/** Stored tensor names per safetensors file: from the single file's header, or from the index's weight_map. */
async function listStoredTensors(root: string): Promise<Map<string, string[]>> {
  const single = path.join(root, CHECKPOINT_FILES.weights);
  if (await isFile(single)) {
    return new Map([[single, [...(await readSafetensorsHeader(single)).tensors.keys()]]]);
  }
  const indexPath = path.join(root, CHECKPOINT_FILES.weightsIndex);
  if (!(await isFile(indexPath))) {
    throw new Error(
      `${root}: missing weights: neither ${CHECKPOINT_FILES.weights} nor ${CHECKPOINT_FILES.weightsIndex} exists (only safetensors checkpoints are supported)`,
    );
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

/**
 * Checks tokenizer.json (every id inside the model's vocabulary) and tokenizer_config.json, and
 * returns the absolute paths of the tokenizer-side files the folder has, the optional ones
 * (generation_config.json, special_tokens_map.json) included when present.
 */
export async function checkTokenizerFiles(root: string, vocabSize: number): Promise<string[]> {
  const tokenizerPath = path.join(root, CHECKPOINT_FILES.tokenizer);
  const tokenizer = await readJsonFile(tokenizerPath);
  if (!isPlainObject(tokenizer) || !isPlainObject(tokenizer.model)) throw new Error(`${tokenizerPath}: field model: expected an object`);
  const ids = [...vocabularyIds(tokenizer.model.vocab, tokenizerPath), ...addedTokenIds(tokenizer.added_tokens, tokenizerPath)];
  const largest = ids.reduce((max, id) => Math.max(max, id), -1);
  if (largest >= vocabSize) {
    throw new Error(
      `${tokenizerPath}: tokenizer too big for the model: it has token id ${largest}, but vocab_size in ${CHECKPOINT_FILES.config} is ${vocabSize}`,
    );
  }
  const tokenizerConfigPath = path.join(root, CHECKPOINT_FILES.tokenizerConfig);
  if (!isPlainObject(await readJsonFile(tokenizerConfigPath))) throw new Error(`${tokenizerConfigPath}: expected a JSON object`);
  const files = [tokenizerPath, tokenizerConfigPath];
  for (const optional of [CHECKPOINT_FILES.generationConfig, CHECKPOINT_FILES.specialTokensMap]) {
    const file = path.join(root, optional);
    if (!(await isFile(file))) continue;
    if (!isPlainObject(await readJsonFile(file))) throw new Error(`${file}: expected a JSON object`);
    files.push(file);
  }
  return files;
}

/** generation_config.json's eos_token_id (a number or a list), if the folder has the file and the field. */
export async function generationEosTokenIds(root: string): Promise<number[] | undefined> {
  const file = path.join(root, CHECKPOINT_FILES.generationConfig);
  if (!(await isFile(file))) return undefined;
  const json = await readJsonFile(file);
  if (!isPlainObject(json) || json.eos_token_id === undefined || json.eos_token_id === null) return undefined;
  const ids = Array.isArray(json.eos_token_id) ? json.eos_token_id : [json.eos_token_id];
  ids.forEach((id, i) => {
    if (!isTokenId(id)) throw new Error(`${file}: field eos_token_id[${i}]: expected a token id, got ${JSON.stringify(id)}`);
  });
  return ids as number[];
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

function groupByFile(locations: readonly TensorLocation[]): Map<string, TensorLocation[]> {
  const groups = new Map<string, TensorLocation[]>();
  for (const location of locations) {
    const group = groups.get(location.file) ?? [];
    group.push(location);
    groups.set(location.file, group);
  }
  return groups;
}

export async function isFile(file: string): Promise<boolean> {
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

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
