import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import * as path from 'node:path';
import type { Gpt2Config } from './gpt2-config';

/**
 * `manifest.json` of a compiled model folder. Produced by tools/compiler, read by the node
 * service and the in-process pipeline. File paths are relative to the folder.
 */
export interface ModelManifest {
  readonly formatVersion: 1;
  readonly modelName: string;
  readonly config: Gpt2Config;
  /** 'plain' = standard ONNX ops only; 'fused' = onnxruntime com.microsoft contrib ops. */
  readonly ops: 'plain' | 'fused';
  readonly stages: readonly StageManifest[];
  /** tokenizer.json, tokenizer_config.json (copied next to the manifest). */
  readonly tokenizerFiles: readonly ManifestFile[];
}

export interface StageManifest {
  readonly index: number;
  /** Global layer indices [layerStart, layerEnd). */
  readonly layerStart: number;
  readonly layerEnd: number;
  readonly isFirst: boolean;
  readonly isLast: boolean;
  /** The .onnx graph and its external-data file(s). The graph is files[0]. */
  readonly files: readonly ManifestFile[];
}

export interface ManifestFile {
  readonly path: string;
  readonly sha256: string;
  readonly bytes: number;
}

export const MANIFEST_FILE_NAME = 'manifest.json';

/**
 * Reads and parses `<dir>/manifest.json` once into a typed value; anything malformed is
 * rejected with an error naming the file and the field (`stages[1].layerStart: ...`).
 */
export async function readManifest(dir: string): Promise<ModelManifest> {
  const file = path.join(dir, MANIFEST_FILE_NAME);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new Error(`${file}: cannot read the manifest: ${(error as Error).message}`, { cause: error });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new Error(`${file}: not valid JSON: ${(error as Error).message}`, { cause: error });
  }
  try {
    return parseManifest(json);
  } catch (error) {
    throw new Error(`${file}: ${(error as Error).message}`, { cause: error });
  }
}

/**
 * Checks that every file of `stage` in `dir` has the size and sha256 the manifest records;
 * the error names the file and what differs.
 */
export async function verifyStageFiles(dir: string, stage: StageManifest): Promise<void> {
  for (const file of stage.files) {
    const full = path.join(dir, file.path);
    const { bytes, sha256 } = await fileDigest(full).catch((error: unknown) => {
      throw new Error(`stage ${stage.index} file ${full}: ${(error as Error).message}`, { cause: error });
    });
    if (bytes !== file.bytes) {
      throw new Error(`stage ${stage.index} file ${full}: size is ${bytes} bytes, the manifest says ${file.bytes}`);
    }
    if (sha256 !== file.sha256) {
      throw new Error(`stage ${stage.index} file ${full}: sha256 is ${sha256}, the manifest says ${file.sha256}`);
    }
  }
}

/** sha256 (hex) and size of a file, read as a stream so a multi-gigabyte weight file is fine. */
export async function fileDigest(file: string): Promise<{ sha256: string; bytes: number }> {
  const { size } = await stat(file);
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return { sha256: hash.digest('hex'), bytes: size };
}

/** Parses a manifest already decoded from JSON. Exported for callers that get it another way. */
export function parseManifest(json: unknown): ModelManifest {
  const root = object(json, 'manifest');
  if (root.formatVersion !== 1) throw new Error(`formatVersion: expected 1, got ${JSON.stringify(root.formatVersion)}`);
  const modelName = nonEmptyString(root.modelName, 'modelName');
  const config = parseConfig(root.config);
  const ops = root.ops;
  if (ops !== 'plain' && ops !== 'fused') throw new Error(`ops: expected "plain" or "fused", got ${JSON.stringify(ops)}`);
  const stages = array(root.stages, 'stages').map((value, i) => parseStage(value, `stages[${i}]`));
  if (stages.length === 0) throw new Error('stages: expected at least one stage');
  stages.forEach((stage, i) => {
    const at = `stages[${i}]`;
    const expectedStart = i === 0 ? 0 : stages[i - 1].layerEnd;
    if (stage.index !== i) throw new Error(`${at}.index: expected ${i}, got ${stage.index}`);
    if (stage.layerStart !== expectedStart) throw new Error(`${at}.layerStart: expected ${expectedStart}, got ${stage.layerStart}`);
    if (stage.layerEnd <= stage.layerStart) {
      throw new Error(`${at}.layerEnd: expected more than layerStart ${stage.layerStart}, got ${stage.layerEnd}`);
    }
    if (stage.isFirst !== (i === 0)) throw new Error(`${at}.isFirst: expected ${i === 0}`);
    if (stage.isLast !== (i === stages.length - 1)) throw new Error(`${at}.isLast: expected ${i === stages.length - 1}`);
  });
  const lastEnd = stages[stages.length - 1].layerEnd;
  if (lastEnd !== config.nLayer) {
    throw new Error(`stages[${stages.length - 1}].layerEnd: expected config.nLayer ${config.nLayer}, got ${lastEnd}`);
  }
  const tokenizerFiles = array(root.tokenizerFiles, 'tokenizerFiles').map((value, i) => parseFile(value, `tokenizerFiles[${i}]`));
  return { formatVersion: 1, modelName, config, ops, stages, tokenizerFiles };
}

function parseConfig(value: unknown): Gpt2Config {
  const c = object(value, 'config');
  if (c.modelType !== 'gpt2') throw new Error(`config.modelType: expected "gpt2", got ${JSON.stringify(c.modelType)}`);
  const positive = (key: string): number => integer(c[key], `config.${key}`, 1);
  const vocabSize = positive('vocabSize');
  const nEmbd = positive('nEmbd');
  const nHead = positive('nHead');
  if (nEmbd % nHead !== 0) throw new Error(`config.nHead: ${nHead} does not divide config.nEmbd ${nEmbd}`);
  const layerNormEpsilon = c.layerNormEpsilon;
  if (typeof layerNormEpsilon !== 'number' || !(layerNormEpsilon > 0) || !Number.isFinite(layerNormEpsilon)) {
    throw new Error(`config.layerNormEpsilon: expected a positive number, got ${JSON.stringify(layerNormEpsilon)}`);
  }
  const activation = c.activation;
  if (activation !== 'gelu_new' && activation !== 'gelu') {
    throw new Error(`config.activation: expected "gelu_new" or "gelu", got ${JSON.stringify(activation)}`);
  }
  const tokenId = (key: string): number => {
    const id = integer(c[key], `config.${key}`, 0);
    if (id >= vocabSize) throw new Error(`config.${key}: ${id} is outside the vocabulary of ${vocabSize}`);
    return id;
  };
  return {
    modelType: 'gpt2',
    vocabSize,
    nPositions: positive('nPositions'),
    nEmbd,
    nLayer: positive('nLayer'),
    nHead,
    nInner: positive('nInner'),
    layerNormEpsilon,
    activation,
    bosTokenId: tokenId('bosTokenId'),
    eosTokenId: tokenId('eosTokenId'),
  };
}

function parseStage(value: unknown, at: string): StageManifest {
  const s = object(value, at);
  const files = array(s.files, `${at}.files`).map((file, i) => parseFile(file, `${at}.files[${i}]`));
  if (files.length === 0) throw new Error(`${at}.files: expected the stage graph and its data file`);
  if (!files[0].path.endsWith('.onnx')) throw new Error(`${at}.files[0].path: expected the .onnx graph, got ${files[0].path}`);
  return {
    index: integer(s.index, `${at}.index`, 0),
    layerStart: integer(s.layerStart, `${at}.layerStart`, 0),
    layerEnd: integer(s.layerEnd, `${at}.layerEnd`, 0),
    isFirst: boolean(s.isFirst, `${at}.isFirst`),
    isLast: boolean(s.isLast, `${at}.isLast`),
    files,
  };
}

function parseFile(value: unknown, at: string): ManifestFile {
  const f = object(value, at);
  const file = nonEmptyString(f.path, `${at}.path`);
  // Files live in the model folder itself: an absolute path or `..` would read outside it.
  if (path.isAbsolute(file) || file.split(/[\\/]/).includes('..')) {
    throw new Error(`${at}.path: expected a path inside the model folder, got ${file}`);
  }
  const sha256 = f.sha256;
  if (typeof sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(sha256)) {
    throw new Error(`${at}.sha256: expected 64 lowercase hex digits, got ${JSON.stringify(sha256)}`);
  }
  return { path: file, sha256, bytes: integer(f.bytes, `${at}.bytes`, 0) };
}

function object(value: unknown, at: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new Error(`${at}: expected an object, got ${JSON.stringify(value)}`);
  }
  return value as Record<string, unknown>;
}

function array(value: unknown, at: string): unknown[] {
  if (!Array.isArray(value)) throw new Error(`${at}: expected an array, got ${JSON.stringify(value)}`);
  return value;
}

function integer(value: unknown, at: string, min: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) {
    throw new Error(`${at}: expected an integer >= ${min}, got ${JSON.stringify(value)}`);
  }
  return value;
}

function boolean(value: unknown, at: string): boolean {
  if (typeof value !== 'boolean') throw new Error(`${at}: expected true or false, got ${JSON.stringify(value)}`);
  return value;
}

function nonEmptyString(value: unknown, at: string): string {
  if (typeof value !== 'string' || value === '') throw new Error(`${at}: expected a non-empty string, got ${JSON.stringify(value)}`);
  return value;
}
