import { readFile } from 'node:fs/promises';
import * as path from 'node:path';
import { parseWeightMap } from '../../shared/model/checkpoint-folder';
import type { Weight } from '../../shared/model/weight';
import { readSafetensors, readSafetensorsHeader, type SafetensorsEntry } from '../../shared/model/safetensors';
import { isFile } from './is-file';

const WEIGHTS_FILE = 'model.safetensors';
const WEIGHTS_INDEX_FILE = 'model.safetensors.index.json';

interface StoredTensor {
  readonly file: string;
  readonly entry: SafetensorsEntry;
}

/**
 * The tensors of a Hugging Face checkpoint folder (model.safetensors, or the shards a
 * model.safetensors.index.json lists), located from the headers alone and read one at a time as
 * float32 (F16, BF16 and F64 convert on reading). A reader asks for each tensor with the shape it
 * expects, and at the end says which stored tensors it may leave unread: anything else left over
 * means the config was misread, which is an error rather than a silently different model.
 */
export class HfCheckpointTensors {
  private readonly read = new Set<string>();

  private constructor(
    readonly dir: string,
    private readonly stored: ReadonlyMap<string, StoredTensor>,
  ) {}

  static async open(dir: string): Promise<HfCheckpointTensors> {
    const root = path.resolve(dir);
    const stored = new Map<string, StoredTensor>();
    for (const file of await weightFiles(root)) {
      const header = await readSafetensorsHeader(file);
      for (const [name, entry] of header.tensors) {
        const previous = stored.get(name);
        if (previous !== undefined) throw new Error(`${file}: tensor ${name} is also stored in ${previous.file}`);
        stored.set(name, { file, entry });
      }
    }
    return new HfCheckpointTensors(root, stored);
  }

  has(name: string): boolean {
    return this.stored.has(name);
  }

  /** Reads `name` as float32, after checking that it has the shape `dims`. */
  async get(name: string, dims: readonly number[]): Promise<Weight> {
    const stored = this.stored.get(name);
    if (stored === undefined) throw new Error(`${this.dir}: checkpoint has no tensor ${name}`);
    const shape = stored.entry.shape;
    if (shape.length !== dims.length || shape.some((d, i) => d !== dims[i])) {
      throw new Error(`${stored.file}: tensor ${name}: expected shape [${dims.join(', ')}], got [${shape.join(', ')}]`);
    }
    const weight = (await readSafetensors(stored.file, [name])).get(name) as Weight;
    this.read.add(name);
    return weight;
  }

  /** Fails when a stored tensor was neither read nor matches `ignorable` (buffers such as rotary inv_freq). */
  assertAllRead(ignorable: RegExp): void {
    const leftOver = [...this.stored.keys()].filter((name) => !this.read.has(name) && !ignorable.test(name));
    if (leftOver.length > 0) {
      const shown = leftOver.slice(0, 5).join(', ') + (leftOver.length > 5 ? `, … (${leftOver.length} in all)` : '');
      throw new Error(`${this.dir}: the config does not account for tensors ${shown}`);
    }
  }
}

async function weightFiles(root: string): Promise<string[]> {
  const single = path.join(root, WEIGHTS_FILE);
  if (await isFile(single)) return [single];
  const indexPath = path.join(root, WEIGHTS_INDEX_FILE);
  if (!(await isFile(indexPath))) {
    throw new Error(`${root}: missing weights: neither ${WEIGHTS_FILE} nor ${WEIGHTS_INDEX_FILE} exists (only safetensors checkpoints are supported)`);
  }
  let index: unknown;
  try {
    index = JSON.parse(await readFile(indexPath, 'utf8'));
  } catch (error) {
    throw new Error(`${indexPath}: not valid JSON (${(error as Error).message})`, { cause: error });
  }
  const shards = [...new Set(Object.values(parseWeightMap(index, indexPath)))].map((shard) => path.join(root, shard));
  for (const shard of shards) if (!(await isFile(shard))) throw new Error(`${shard}: missing shard (listed in ${indexPath})`);
  return shards;
}
