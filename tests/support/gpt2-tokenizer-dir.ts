import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { buildGpt2TokenizerFiles } from '../../tools/init/gpt2-tokenizer-files';

/** The folder being (or already) written; one per module registry, i.e. per jest test file. */
let folder: Promise<string> | undefined;

/**
 * A temporary folder holding the GPT-2 tokenizer.json and tokenizer_config.json built by
 * tools/init/gpt2-tokenizer-files.ts, written on the first call and shared by later ones.
 * Pair with `removeGpt2TokenizerDir` in afterAll.
 */
export function gpt2TokenizerDir(): Promise<string> {
  folder ??= writeGpt2TokenizerDir();
  return folder;
}

/** Deletes the folder `gpt2TokenizerDir` made, if any; the next call writes a new one. */
export async function removeGpt2TokenizerDir(): Promise<void> {
  const written = folder;
  folder = undefined;
  if (written !== undefined) await rm(await written, { recursive: true, force: true });
}

async function writeGpt2TokenizerDir(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'gpt2-tokenizer-'));
  const files = buildGpt2TokenizerFiles();
  await writeFile(path.join(dir, 'tokenizer.json'), JSON.stringify(files.tokenizerJson));
  await writeFile(path.join(dir, 'tokenizer_config.json'), JSON.stringify(files.tokenizerConfigJson));
  return dir;
}
