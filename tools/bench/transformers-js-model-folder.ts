import { readdir, stat } from 'node:fs/promises';
import * as path from 'node:path';
import { exportForTransformersJs } from './transformers-js-export';
import { isFile } from './is-file';

/** Inside a compiled model folder, the Hugging Face checkpoint it was compiled from (tools/init/init-default-model.ts). */
const CHECKPOINT_FOLDER = 'checkpoint';
const EXPORTED_GRAPH = path.join('onnx', 'model.onnx');

/**
 * The transformers.js export of a model for a benchmark: `modelDir` is a Hugging Face
 * checkpoint folder, or a compiled model folder with its checkpoint in `checkpoint/`. The export
 * goes beside it as `<modelDir>-transformers-js`, and is written again whenever a checkpoint
 * file is newer than the exported graph (`npm run model:init -- --force` replaces the weights).
 * Returns the export's absolute path.
 */
export async function ensureTransformersJsExport(modelDir: string): Promise<string> {
  const dir = path.resolve(modelDir);
  const checkpoint = (await isFile(path.join(dir, 'config.json'))) ? dir : path.join(dir, CHECKPOINT_FOLDER);
  if (!(await isFile(path.join(checkpoint, 'config.json')))) {
    throw new Error(`${dir}: neither a Hugging Face checkpoint (config.json) nor a compiled model with ${CHECKPOINT_FOLDER}/config.json`);
  }
  const out = `${dir}-transformers-js`;
  const exported = await modifiedMs(path.join(out, EXPORTED_GRAPH));
  if (exported !== undefined && (await newestFileMs(checkpoint)) < exported) return out;
  await exportForTransformersJs({ from: checkpoint, out, force: true });
  return out;
}

async function newestFileMs(dir: string): Promise<number> {
  let newest = 0;
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (entry.isFile()) newest = Math.max(newest, (await stat(path.join(dir, entry.name))).mtimeMs);
  }
  return newest;
}

async function modifiedMs(file: string): Promise<number | undefined> {
  try {
    return (await stat(file)).mtimeMs;
  } catch {
    return undefined;
  }
}
