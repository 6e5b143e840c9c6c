import { createHash } from 'node:crypto';
import { open, readFile } from 'node:fs/promises';
import * as path from 'node:path';
import type { ModelShape } from './model-shape';

/**
 * `manifest.json` of a compiled model folder. Produced by tools/compiler, read by the node
 * service, the coordinator and the in-process pipeline. File paths are relative to the folder.
 * Version 2: family-agnostic architecture numbers (`shape`), the family and architecture the
 * compiler read, and a weight format per stage.
 */
export interface ModelManifest {
  readonly formatVersion: 2;
  readonly modelName: string;
  /** The model family module that compiled it ('gpt2', 'llama'): informational for the runtime. */
  readonly family: string;
  /** The Hugging Face architecture (`GPT2LMHeadModel`, `LlamaForCausalLM`, …). */
  readonly architecture: string;
  readonly shape: ModelShape;
  /** 'plain' = standard ONNX ops only; 'fused' = onnxruntime com.microsoft contrib ops. */
  readonly ops: OpsVariant;
  /**
   * The attention kernel of a 'fused' graph (absent on 'plain' ones): 'split' scores the new and
   * the past keys apart in standard ops without concatenating them; 'gqa' is onnxruntime's
   * GroupQueryAttention. Informational: both keep the same stage graph contract. A fused manifest
   * written before the field existed used 'gqa'.
   */
  readonly attention?: AttentionKernel;
  readonly stages: readonly StageManifest[];
  /** tokenizer.json, tokenizer_config.json, … (copied next to the manifest). */
  readonly tokenizerFiles: readonly ManifestFile[];
  /** The checkpoint's config.json as compiled, for tools that rebuild a reference from the same weights. */
  readonly sourceConfig: Readonly<Record<string, unknown>>;
}

export type OpsVariant = 'plain' | 'fused';

export const ATTENTION_KERNELS = ['split', 'gqa'] as const;
export type AttentionKernel = (typeof ATTENTION_KERNELS)[number];
/**
 * What `--attention` defaults to for fused graphs, by measurement (docs/stage-graph.md): 'split'
 * under multi-head attention (GPT-2: up to 1.18x GroupQueryAttention's tokens/s at 64 streams),
 * 'gqa' under grouped-query attention, where split's per-query-head scores outweigh the smaller
 * past that GroupQueryAttention copies (SmolLM2's shape: as fast or faster at 1, 16 and 64).
 */
export function defaultAttentionKernel(shape: Pick<ModelShape, 'attentionHeads' | 'kvHeads'>): AttentionKernel {
  return shape.kvHeads < shape.attentionHeads ? 'gqa' : 'split';
}

export const WEIGHT_FORMATS = ['fp32', 'int8', 'int4'] as const;
export type WeightFormatName = (typeof WEIGHT_FORMATS)[number];

/** How a stage stores its weights. The runtime never looks at it: the graph is self-contained. */
export interface WeightFormat {
  readonly format: WeightFormatName;
  /** Elements per quantization block (int8/int4). */
  readonly blockSize?: number;
  /** Tensor kinds kept in fp32 in a quantized stage (e.g. "lm_head", "embedding"). */
  readonly keptFp32?: readonly string[];
}

export interface StageManifest {
  readonly index: number;
  /** Global layer indices [layerStart, layerEnd). */
  readonly layerStart: number;
  readonly layerEnd: number;
  readonly isFirst: boolean;
  readonly isLast: boolean;
  readonly weights: WeightFormat;
  /** The .onnx graph and its external-data file(s). The graph is files[0]. */
  readonly files: readonly ManifestFile[];
}

export interface ManifestFile {
  readonly path: string;
  readonly sha256: string;
  readonly bytes: number;
}

export const MANIFEST_FILE_NAME = 'manifest.json';
export const MANIFEST_FORMAT_VERSION = 2;

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

/** Read size of `fileDigest`: large enough for few syscalls, small next to any stage. */
const DIGEST_CHUNK_BYTES = 1 << 20;

/**
 * sha256 (hex) and size of a file, read through one reused buffer so a multi-gigabyte weight file
 * is fine. (A read stream allocates a buffer per chunk: hashing a 300 MB stage left ~30 MB of
 * garbage in a stage process at its peak, before the collector ran.)
 */
export async function fileDigest(file: string): Promise<{ sha256: string; bytes: number }> {
  const handle = await open(file, 'r');
  try {
    const hash = createHash('sha256');
    const buffer = Buffer.allocUnsafe(DIGEST_CHUNK_BYTES);
    let size = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buffer, 0, buffer.byteLength, size);
      if (bytesRead === 0) break;
      hash.update(buffer.subarray(0, bytesRead));
      size += bytesRead;
    }
    return { sha256: hash.digest('hex'), bytes: size };
  } finally {
    await handle.close();
  }
}

/** Parses a manifest already decoded from JSON. Exported for callers that get it another way. */
export function parseManifest(json: unknown): ModelManifest {
  const root = object(json, 'manifest');
  if (root.formatVersion !== MANIFEST_FORMAT_VERSION) {
    throw new Error(
      `formatVersion: expected ${MANIFEST_FORMAT_VERSION}, got ${JSON.stringify(root.formatVersion)}` +
        (root.formatVersion === 1 ? ' (compiled by an older version: compile the checkpoint again)' : ''),
    );
  }
  const modelName = nonEmptyString(root.modelName, 'modelName');
  const family = nonEmptyString(root.family, 'family');
  const architecture = nonEmptyString(root.architecture, 'architecture');
  const shape = parseShape(root.shape);
  const ops = root.ops;
  if (ops !== 'plain' && ops !== 'fused') throw new Error(`ops: expected "plain" or "fused", got ${JSON.stringify(ops)}`);
  const attention = parseAttention(root.attention, ops);
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
  if (lastEnd !== shape.layers) {
    throw new Error(`stages[${stages.length - 1}].layerEnd: expected shape.layers ${shape.layers}, got ${lastEnd}`);
  }
  const tokenizerFiles = array(root.tokenizerFiles, 'tokenizerFiles').map((value, i) => parseFile(value, `tokenizerFiles[${i}]`));
  const sourceConfig = object(root.sourceConfig, 'sourceConfig');
  return { formatVersion: MANIFEST_FORMAT_VERSION, modelName, family, architecture, shape, ops, ...(attention === undefined ? {} : { attention }), stages, tokenizerFiles, sourceConfig };
}

function parseAttention(value: unknown, ops: OpsVariant): AttentionKernel | undefined {
  if (ops === 'plain') {
    if (value !== undefined) throw new Error(`attention: applies only to ops "fused", got ${JSON.stringify(value)} with ops "plain"`);
    return undefined;
  }
  if (value === undefined) return 'gqa';
  if (!ATTENTION_KERNELS.includes(value as AttentionKernel)) {
    throw new Error(`attention: expected ${ATTENTION_KERNELS.map((k) => JSON.stringify(k)).join(' or ')}, got ${JSON.stringify(value)}`);
  }
  return value as AttentionKernel;
}

function parseShape(value: unknown): ModelShape {
  const s = object(value, 'shape');
  const positive = (key: string): number => integer(s[key], `shape.${key}`, 1);
  const vocabSize = positive('vocabSize');
  const attentionHeads = positive('attentionHeads');
  const kvHeads = positive('kvHeads');
  if (attentionHeads % kvHeads !== 0) throw new Error(`shape.kvHeads: ${kvHeads} does not divide shape.attentionHeads ${attentionHeads}`);
  const tokenId = (id: unknown, at: string): number => {
    const parsed = integer(id, at, 0);
    if (parsed >= vocabSize) throw new Error(`${at}: ${parsed} is outside the vocabulary of ${vocabSize}`);
    return parsed;
  };
  const eosTokenIds = array(s.eosTokenIds, 'shape.eosTokenIds').map((id, i) => tokenId(id, `shape.eosTokenIds[${i}]`));
  return {
    vocabSize,
    contextLength: positive('contextLength'),
    hiddenSize: positive('hiddenSize'),
    layers: positive('layers'),
    attentionHeads,
    kvHeads,
    headDim: positive('headDim'),
    bosTokenId: s.bosTokenId === null ? null : tokenId(s.bosTokenId, 'shape.bosTokenId'),
    eosTokenIds,
    slidingWindow: s.slidingWindow === null ? null : positive('slidingWindow'),
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
    weights: parseWeightFormat(s.weights, `${at}.weights`),
    files,
  };
}

function parseWeightFormat(value: unknown, at: string): WeightFormat {
  const w = object(value, at);
  const format = w.format;
  if (!WEIGHT_FORMATS.includes(format as WeightFormatName)) {
    throw new Error(`${at}.format: expected one of ${WEIGHT_FORMATS.join(', ')}, got ${JSON.stringify(format)}`);
  }
  const result: { format: WeightFormatName; blockSize?: number; keptFp32?: string[] } = { format: format as WeightFormatName };
  if (w.blockSize !== undefined) result.blockSize = integer(w.blockSize, `${at}.blockSize`, 1);
  if (w.keptFp32 !== undefined) result.keptFp32 = array(w.keptFp32, `${at}.keptFp32`).map((k, i) => nonEmptyString(k, `${at}.keptFp32[${i}]`));
  return result;
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
