import { mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import * as path from 'node:path';
import { CHECKPOINT_FILES, parseWeightMap } from '../../shared/model/checkpoint-folder';
import { loadCheckpoint, type CheckpointFolder } from '../families/checkpoint';
import { moveIntoPlace } from '../output-folder';

export const DEFAULT_HF_ENDPOINT = 'https://huggingface.co';
const REQUIRED_FILES = [CHECKPOINT_FILES.config, CHECKPOINT_FILES.tokenizer, CHECKPOINT_FILES.tokenizerConfig];
/** Fetched when the repository has them (Llama-family repositories do): a 404 is fine. */
const OPTIONAL_FILES = [CHECKPOINT_FILES.generationConfig, CHECKPOINT_FILES.specialTokensMap];
const WEIGHTS_FILE = CHECKPOINT_FILES.weights;
const WEIGHTS_INDEX_FILE = CHECKPOINT_FILES.weightsIndex;
const INCOMPLETE_SUFFIX = '.incomplete';
/** Downloads survive this many dropped connections, each attempt resuming where the last stopped. */
const MAX_ATTEMPTS_PER_FILE = 4;
/** owner/name, as the Hub spells repositories (a bare name is a legacy top-level model like gpt2). */
const REPO_PATTERN = /^(?:[A-Za-z0-9][\w.-]*\/)?[A-Za-z0-9][\w.-]*$/;

export interface HubDownloadOptions {
  /** `owner/name` on the Hub. */
  readonly repo: string;
  readonly revision: string;
  /** Final folder; files are gathered in `<out>.download/` (kept between runs, so they resume) and renamed into place once valid. */
  readonly out: string;
  readonly endpoint: string;
  /** Sent as `Authorization: Bearer <token>`. */
  readonly token?: string;
  /** Replace an existing non-empty `out`. */
  readonly force?: boolean;
  readonly onFileDone?: (file: string, bytes: number) => void;
  /**
   * Called as a file's bytes arrive, and once when its transfer starts: the bytes it has on disk
   * (a resumed file starts where the last attempt stopped) and its announced size, when known.
   * A file already complete from an earlier run reports only `onFileDone`.
   */
  readonly onProgress?: (file: string, doneBytes: number, totalBytes: number | undefined) => void;
}

type ProgressListener = (doneBytes: number, totalBytes: number | undefined) => void;

/** A failed HTTP answer for one file; `status` lets callers tell "not there" (404) from other failures. */
export class HubFileError extends Error {
  constructor(
    readonly file: string,
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'HubFileError';
  }
}

export function isValidRepoId(repo: string): boolean {
  return REPO_PATTERN.test(repo) && !repo.includes('..');
}

/**
 * Downloads a checkpoint of any supported family from the Hub (config, tokenizer files,
 * generation_config.json when present, and model.safetensors or a sharded index with its
 * shards), validates it with `loadCheckpoint`, then moves it to `out`.
 */
export async function hubDownload(options: HubDownloadOptions): Promise<CheckpointFolder> {
  if (!isValidRepoId(options.repo)) throw new Error(`repo: '${options.repo}' is not a Hub repository id (owner/name)`);
  const target = path.resolve(options.out);
  const targetExists = await isNonEmptyFolder(target);
  if (targetExists && options.force !== true) throw new Error(`out: ${target} exists and is not empty; pass --force to replace it`);
  const staging = `${target}.download`;
  await mkdir(staging, { recursive: true });

  const fetchFile = async (file: string): Promise<void> => {
    const onProgress: ProgressListener = (done, total) => options.onProgress?.(file, done, total);
    const bytes = await downloadResumable(fileUrl(options, file), path.join(staging, file), file, options.token, onProgress);
    options.onFileDone?.(file, bytes);
  };
  for (const file of REQUIRED_FILES) await fetchFile(file);
  for (const file of OPTIONAL_FILES) {
    try {
      await fetchFile(file);
    } catch (error) {
      if (!(error instanceof HubFileError && error.status === 404)) throw error;
    }
  }
  try {
    await fetchFile(WEIGHTS_FILE);
  } catch (error) {
    if (!(error instanceof HubFileError && error.status === 404)) throw error;
    try {
      await fetchFile(WEIGHTS_INDEX_FILE);
    } catch (indexError) {
      if (indexError instanceof HubFileError && indexError.status === 404) {
        throw new Error(`${options.repo}@${options.revision}: neither ${WEIGHTS_FILE} nor ${WEIGHTS_INDEX_FILE} exists (only safetensors checkpoints are supported)`);
      }
      throw indexError;
    }
    const indexPath = path.join(staging, WEIGHTS_INDEX_FILE);
    const weightMap = parseWeightMap(JSON.parse(await readFile(indexPath, 'utf8')), indexPath);
    for (const shard of new Set(Object.values(weightMap))) await fetchFile(shard);
  }
  const checkpoint = await loadCheckpoint(staging);
  await moveIntoPlace(staging, target, targetExists);
  return {
    ...checkpoint,
    dir: target,
    tokenizerFiles: checkpoint.tokenizerFiles.map((file) => path.join(target, path.relative(staging, file))),
  };
}

function fileUrl(options: HubDownloadOptions, file: string): string {
  const endpoint = options.endpoint.replace(/\/+$/, '');
  return `${endpoint}/${options.repo}/resolve/${encodeURIComponent(options.revision)}/${file}`;
}

/**
 * Downloads `url` to `dest` through `dest.incomplete`, resuming a previous partial file with a Range
 * request. A server that answers 200 to a Range restarts the file. The byte count is checked
 * against x-linked-size (the Hub's size of an LFS file) or Content-Length. Returns the file size.
 */
async function downloadResumable(url: string, dest: string, file: string, token: string | undefined, onProgress: ProgressListener): Promise<number> {
  const done = await stat(dest).catch(() => undefined);
  if (done?.isFile()) return done.size;
  const partial = `${dest}${INCOMPLETE_SUFFIX}`;
  let lastError: unknown;
  for (let attempt = 0; attempt < MAX_ATTEMPTS_PER_FILE; attempt++) {
    try {
      const size = await downloadOnce(url, partial, file, token, onProgress);
      await rename(partial, dest);
      return size;
    } catch (error) {
      // HTTP answers and size mismatches will not change on retry; dropped connections may.
      if (error instanceof HubFileError) throw error;
      lastError = error;
    }
  }
  throw new Error(`${file}: download from ${url} failed ${MAX_ATTEMPTS_PER_FILE} times: ${describeError(lastError)}`, { cause: lastError });
}

async function downloadOnce(url: string, partial: string, file: string, token: string | undefined, onProgress: ProgressListener): Promise<number> {
  const have = (await stat(partial).catch(() => undefined))?.size ?? 0;
  // Byte ranges and size checks refer to the stored bytes, so ask for no content encoding.
  const headers: Record<string, string> = { 'Accept-Encoding': 'identity' };
  if (token !== undefined && token !== '') headers.Authorization = `Bearer ${token}`;
  if (have > 0) headers.Range = `bytes=${have}-`;
  const response = await fetch(url, { headers, redirect: 'follow' });

  if (response.status === 416 && have > 0) {
    // The partial file is not a prefix of what the server has now: start over.
    await response.body?.cancel();
    await rm(partial, { force: true });
    return downloadOnce(url, partial, file, token, onProgress);
  }
  if (response.status === 404) {
    await response.body?.cancel();
    throw new HubFileError(file, 404, `${file}: not found at ${url} (HTTP 404)`);
  }
  if (response.status === 401 || response.status === 403) {
    await response.body?.cancel();
    throw new HubFileError(file, response.status, `${file}: access denied at ${url} (HTTP ${response.status}); set HF_TOKEN for gated or private repositories`);
  }
  if (response.status !== 200 && response.status !== 206) {
    await response.body?.cancel();
    throw new HubFileError(file, response.status, `${file}: HTTP ${response.status} ${response.statusText} from ${url}`);
  }

  const resuming = response.status === 206;
  let expected: number | undefined;
  if (resuming) {
    const range = /^bytes (\d+)-\d+\/(\d+|\*)$/.exec(response.headers.get('content-range') ?? '');
    if (range === null || Number(range[1]) !== have) {
      await response.body?.cancel();
      throw new HubFileError(file, 206, `${file}: server answered Range bytes=${have}- with Content-Range '${response.headers.get('content-range')}'`);
    }
    expected = range[2] === '*' ? undefined : Number(range[2]);
  } else {
    expected = headerNumber(response, 'x-linked-size') ?? headerNumber(response, 'content-length');
  }
  if (response.body === null) throw new HubFileError(file, response.status, `${file}: empty response body from ${url}`);
  await appendBody(response.body, partial, resuming ? have : 0, (done) => onProgress(done, expected));
  const written = (await stat(partial)).size;
  if (expected !== undefined && written !== expected) {
    await rm(partial, { force: true });
    throw new HubFileError(file, response.status, `${file}: size mismatch: the server announced ${expected} bytes, ${written} were written`);
  }
  return written;
}

/**
 * Each chunk is on disk before the next is read, so when the connection drops every byte received
 * so far is kept for the next Range request (a piped write stream may drop its queued writes).
 * Appends to the `have` bytes already in `partial` (0 starts it over), reporting the total on disk.
 */
async function appendBody(body: ReadableStream<Uint8Array>, partial: string, have: number, onWritten: (doneBytes: number) => void): Promise<void> {
  const handle = await open(partial, have > 0 ? 'a' : 'w');
  let onDisk = have;
  onWritten(onDisk);
  try {
    for await (const chunk of body as AsyncIterable<Uint8Array>) {
      let done = 0;
      while (done < chunk.length) done += (await handle.write(chunk, done)).bytesWritten;
      onDisk += chunk.length;
      onWritten(onDisk);
    }
  } finally {
    await handle.close();
  }
}

function headerNumber(response: Response, name: string): number | undefined {
  const value = response.headers.get(name);
  return value !== null && /^\d+$/.test(value) ? Number(value) : undefined;
}

async function isNonEmptyFolder(folder: string): Promise<boolean> {
  try {
    return (await readdir(folder)).length > 0;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw new Error(`out: ${folder} is not a readable folder (${(error as NodeJS.ErrnoException).code ?? String(error)})`, { cause: error });
  }
}

function describeError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = error.cause instanceof Error ? ` (${error.cause.message})` : '';
  return `${error.message}${cause}`;
}
