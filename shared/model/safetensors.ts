import { open, type FileHandle } from 'node:fs/promises';
import { endianness } from 'node:os';
import type { Weight } from './weight';

/**
 * The safetensors format: an 8-byte little-endian header length N, N bytes of JSON
 * (`{ name: { dtype, shape, data_offsets: [begin, end] }, __metadata__?: {...} }`, offsets relative
 * to the data section), then the data section. Tensors are read one by one with positional reads,
 * so a checkpoint larger than a Buffer (gpt2-xl is 6 GB) loads tensor by tensor.
 */

/** Bytes per element of every dtype the format defines. */
const DTYPE_BYTES = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  F64: 8,
  I64: 8,
  U64: 8,
} as const;

export type SafetensorsDtype = keyof typeof DTYPE_BYTES;

/** The reference implementation refuses headers above 100 MB; a real one is a few hundred KB. */
const MAX_HEADER_BYTES = 100_000_000;
const LENGTH_PREFIX_BYTES = 8;
/** The format asks for the data section to start 8-byte aligned (the header is padded with spaces). */
const HEADER_ALIGNMENT = 8;
const METADATA_KEY = '__metadata__';
/** Node refuses a single read or write above 2 GiB; one tensor may be bigger. */
const MAX_IO_CHUNK_BYTES = 1 << 30;

export interface SafetensorsEntry {
  readonly name: string;
  readonly dtype: SafetensorsDtype;
  readonly shape: readonly number[];
  /** Absolute byte offset of the tensor in the file. */
  readonly fileOffset: number;
  readonly byteLength: number;
}

export interface SafetensorsHeader {
  readonly file: string;
  readonly tensors: ReadonlyMap<string, SafetensorsEntry>;
  readonly metadata: Readonly<Record<string, string>>;
  /** Absolute byte offset where the data section starts. */
  readonly dataStart: number;
}

export async function readSafetensorsHeader(file: string): Promise<SafetensorsHeader> {
  const handle = await openForReading(file);
  try {
    return await readHeaderFrom(handle, file);
  } finally {
    await handle.close();
  }
}

/**
 * Reads tensors (all of them, or only `names`) as float32. F32, F16, BF16 and F64 convert; other
 * dtypes are an error naming the tensor. Each tensor gets its own positional read.
 */
export async function readSafetensors(file: string, names?: readonly string[]): Promise<Map<string, Weight>> {
  const handle = await openForReading(file);
  try {
    const header = await readHeaderFrom(handle, file);
    const wanted = names ?? [...header.tensors.keys()];
    const result = new Map<string, Weight>();
    for (const name of wanted) {
      const entry = header.tensors.get(name);
      if (entry === undefined) throw new Error(`${file}: no tensor named ${name}`);
      result.set(name, { dims: [...entry.shape], data: await readAsFloat32(handle, file, entry) });
    }
    return result;
  } finally {
    await handle.close();
  }
}

/**
 * Writes float32 tensors (in the map's order) as F32. The header is padded with spaces to a
 * multiple of 8 bytes, then each tensor is written straight from its Float32Array.
 */
export async function writeSafetensors(
  file: string,
  tensors: ReadonlyMap<string, Weight>,
  metadata?: Readonly<Record<string, string>>,
): Promise<void> {
  assertLittleEndianHost();
  const headerJson: Record<string, unknown> = {};
  if (metadata !== undefined) headerJson[METADATA_KEY] = { ...metadata };
  let offset = 0;
  for (const [name, weight] of tensors) {
    if (name === METADATA_KEY) throw new Error(`${file}: ${METADATA_KEY} is reserved and cannot name a tensor`);
    const expected = weight.dims.reduce((n, d) => n * d, 1);
    if (weight.data.length !== expected) {
      throw new Error(`${file}: tensor ${name} has shape [${weight.dims.join(', ')}] but ${weight.data.length} values`);
    }
    const byteLength = weight.data.byteLength;
    headerJson[name] = { dtype: 'F32', shape: [...weight.dims], data_offsets: [offset, offset + byteLength] };
    offset += byteLength;
  }
  const json = Buffer.from(JSON.stringify(headerJson), 'utf8');
  const paddedLength = Math.ceil(json.length / HEADER_ALIGNMENT) * HEADER_ALIGNMENT;
  const prefix = Buffer.alloc(LENGTH_PREFIX_BYTES + paddedLength, 0x20);
  prefix.writeBigUInt64LE(BigInt(paddedLength), 0);
  json.copy(prefix, LENGTH_PREFIX_BYTES);

  const handle = await open(file, 'w');
  try {
    await writeFully(handle, prefix);
    for (const weight of tensors.values()) {
      await writeFully(handle, new Uint8Array(weight.data.buffer, weight.data.byteOffset, weight.data.byteLength));
    }
  } finally {
    await handle.close();
  }
}

async function openForReading(file: string): Promise<FileHandle> {
  try {
    return await open(file, 'r');
  } catch (error) {
    throw new Error(`${file}: cannot open safetensors file (${(error as NodeJS.ErrnoException).code ?? String(error)})`, {
      cause: error,
    });
  }
}

async function readHeaderFrom(handle: FileHandle, file: string): Promise<SafetensorsHeader> {
  const fileBytes = (await handle.stat()).size;
  if (fileBytes < LENGTH_PREFIX_BYTES) {
    throw new Error(`${file}: truncated safetensors file (${fileBytes} bytes, the header length alone takes 8)`);
  }
  const lengthPrefix = await readExactly(handle, file, LENGTH_PREFIX_BYTES, 0);
  const headerBytes = Buffer.from(lengthPrefix).readBigUInt64LE(0);
  if (headerBytes > BigInt(MAX_HEADER_BYTES)) {
    throw new Error(`${file}: corrupt safetensors header: header length ${headerBytes} is above the ${MAX_HEADER_BYTES}-byte limit`);
  }
  const dataStart = LENGTH_PREFIX_BYTES + Number(headerBytes);
  if (dataStart > fileBytes) {
    throw new Error(
      `${file}: truncated safetensors file: header length ${headerBytes} runs past the end of the file (${fileBytes} bytes)`,
    );
  }
  const headerText = Buffer.from(await readExactly(handle, file, Number(headerBytes), LENGTH_PREFIX_BYTES)).toString('utf8');
  let parsed: unknown;
  try {
    parsed = JSON.parse(headerText);
  } catch (error) {
    throw new Error(`${file}: corrupt safetensors header: not valid JSON (${(error as Error).message})`, { cause: error });
  }
  if (!isPlainObject(parsed)) throw new Error(`${file}: corrupt safetensors header: expected a JSON object`);
  return parseHeader(parsed, file, dataStart, fileBytes - dataStart);
}

function parseHeader(
  json: Record<string, unknown>,
  file: string,
  dataStart: number,
  dataBytes: number,
): SafetensorsHeader {
  const tensors = new Map<string, SafetensorsEntry>();
  let metadata: Record<string, string> = {};
  const ranges: { name: string; begin: number; end: number }[] = [];
  for (const [name, value] of Object.entries(json)) {
    if (name === METADATA_KEY) {
      metadata = parseMetadata(value, file);
      continue;
    }
    const where = `${file}: tensor ${name}`;
    if (!isPlainObject(value)) throw new Error(`${where}: header entry is not an object`);
    const { dtype, shape, data_offsets: offsets } = value;
    if (typeof dtype !== 'string' || !(dtype in DTYPE_BYTES)) {
      throw new Error(`${where}: unknown dtype ${JSON.stringify(dtype)}`);
    }
    if (!Array.isArray(shape) || !shape.every(isNonNegativeInteger)) {
      throw new Error(`${where}: shape must be an array of non-negative integers, got ${JSON.stringify(shape)}`);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isNonNegativeInteger)) {
      throw new Error(`${where}: data_offsets must be [begin, end], got ${JSON.stringify(offsets)}`);
    }
    const [begin, end] = offsets as [number, number];
    if (begin > end || end > dataBytes) {
      throw new Error(`${where}: data_offsets [${begin}, ${end}] fall outside the ${dataBytes}-byte data section`);
    }
    const knownDtype = dtype as SafetensorsDtype;
    const expectedBytes = (shape as number[]).reduce((n, d) => n * d, 1) * DTYPE_BYTES[knownDtype];
    if (end - begin !== expectedBytes) {
      throw new Error(
        `${where}: data_offsets [${begin}, ${end}] hold ${end - begin} bytes, ` +
          `but ${knownDtype}[${(shape as number[]).join(', ')}] needs ${expectedBytes}`,
      );
    }
    ranges.push({ name, begin, end });
    tensors.set(name, { name, dtype: knownDtype, shape: shape as number[], fileOffset: dataStart + begin, byteLength: end - begin });
  }
  assertNoOverlap(ranges, file);
  return { file, tensors, metadata, dataStart };
}

function assertNoOverlap(ranges: { name: string; begin: number; end: number }[], file: string): void {
  const sorted = ranges.filter((r) => r.end > r.begin).sort((a, b) => a.begin - b.begin);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i].begin < sorted[i - 1].end) {
      throw new Error(`${file}: tensor ${sorted[i].name}: data_offsets overlap those of ${sorted[i - 1].name}`);
    }
  }
}

function parseMetadata(value: unknown, file: string): Record<string, string> {
  if (!isPlainObject(value) || !Object.values(value).every((v) => typeof v === 'string')) {
    throw new Error(`${file}: corrupt safetensors header: __metadata__ must map strings to strings`);
  }
  return value as Record<string, string>;
}

async function readAsFloat32(handle: FileHandle, file: string, entry: SafetensorsEntry): Promise<Float32Array> {
  assertLittleEndianHost();
  const count = entry.shape.reduce((n, d) => n * d, 1);
  switch (entry.dtype) {
    case 'F32': {
      const out = new Float32Array(count);
      await readInto(handle, file, new Uint8Array(out.buffer), entry.fileOffset);
      return out;
    }
    case 'F64': {
      const raw = new Float64Array(count);
      await readInto(handle, file, new Uint8Array(raw.buffer), entry.fileOffset);
      return Float32Array.from(raw);
    }
    case 'F16': {
      const raw = new Uint16Array(count);
      await readInto(handle, file, new Uint8Array(raw.buffer), entry.fileOffset);
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = float16ToFloat32(raw[i]);
      return out;
    }
    case 'BF16': {
      // bfloat16 is the top half of a float32: shift each value into the high 16 bits.
      const raw = new Uint16Array(count);
      await readInto(handle, file, new Uint8Array(raw.buffer), entry.fileOffset);
      const bits = new Uint32Array(count);
      for (let i = 0; i < count; i++) bits[i] = raw[i] << 16;
      return new Float32Array(bits.buffer);
    }
    default:
      throw new Error(`${file}: tensor ${entry.name}: dtype ${entry.dtype} cannot be read as float32 (F32, F16, BF16, F64 can)`);
  }
}

function float16ToFloat32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >> 10) & 0x1f;
  const mantissa = h & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 0x1f) return mantissa === 0 ? sign * Infinity : NaN;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

async function readExactly(handle: FileHandle, file: string, length: number, position: number): Promise<Uint8Array> {
  const buffer = new Uint8Array(length);
  await readInto(handle, file, buffer, position);
  return buffer;
}

/** `read` may return short counts (large reads, network filesystems), so loop until full. */
async function readInto(handle: FileHandle, file: string, target: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < target.length) {
    const chunk = Math.min(target.length - done, MAX_IO_CHUNK_BYTES);
    const { bytesRead } = await handle.read(target, done, chunk, position + done);
    if (bytesRead === 0) throw new Error(`${file}: unexpected end of file at byte ${position + done}`);
    done += bytesRead;
  }
}

async function writeFully(handle: FileHandle, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.length) {
    const { bytesWritten } = await handle.write(bytes, done, Math.min(bytes.length - done, MAX_IO_CHUNK_BYTES));
    done += bytesWritten;
  }
}

/** Safetensors data is little-endian and is viewed in place as typed arrays. */
function assertLittleEndianHost(): void {
  if (endianness() !== 'LE') throw new Error('safetensors I/O needs a little-endian host');
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isNonNegativeInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}
