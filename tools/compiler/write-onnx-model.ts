import { createHash, type Hash } from 'node:crypto';
import { open, writeFile, type FileHandle } from 'node:fs/promises';
import { endianness } from 'node:os';
import * as path from 'node:path';
import { onnx } from 'onnx-proto';
import { MICROSOFT_DOMAIN, type Attribute, type ElementType, type Initializer, type OnnxGraph, type ValueInfo } from './onnx-graph';

/** Initializers above this many bytes go to the external data file (the stage graph contract). */
const EXTERNAL_DATA_THRESHOLD_BYTES = 1024;
/** Page-aligned tensors let onnxruntime map them straight from the file instead of copying. */
const EXTERNAL_DATA_ALIGNMENT_BYTES = 4096;
const AI_ONNX_OPSET = 17;
const MICROSOFT_OPSET = 1;
/** IR version 8 is the first that carries opset 17. */
const IR_VERSION = 8;
const PRODUCER_NAME = 'pipeserve-model-compiler';

export interface WrittenFile {
  readonly path: string;
  readonly sha256: string;
  readonly bytes: number;
}

interface ExternalLocation {
  readonly offset: number;
  readonly length: number;
}

const ELEMENT_TYPES: Record<ElementType, onnx.TensorProto.DataType> = {
  float32: onnx.TensorProto.DataType.FLOAT,
  int64: onnx.TensorProto.DataType.INT64,
  int32: onnx.TensorProto.DataType.INT32,
  uint8: onnx.TensorProto.DataType.UINT8,
  bool: onnx.TensorProto.DataType.BOOL,
};

/**
 * Writes `graph` as `onnxPath` and, when any initializer is above the threshold, its weights
 * as `<onnxPath>.data` (ONNX external data, located relative to the model file). Weights are
 * streamed to disk one tensor at a time straight from their typed arrays, so no buffer ever
 * holds a whole stage. Returns the written files (graph first) with their sha256 and size.
 */
export async function writeOnnxModel(graph: OnnxGraph, onnxPath: string): Promise<WrittenFile[]> {
  if (endianness() !== 'LE') throw new Error('ONNX raw tensor data is little-endian; this machine is big-endian');
  const dataPath = `${onnxPath}.data`;
  const dataName = path.basename(dataPath);
  const external = graph.initializers.filter((init) => init.data.byteLength > EXTERNAL_DATA_THRESHOLD_BYTES);
  const locations = new Map<Initializer, ExternalLocation>();
  const data = external.length > 0 ? await streamExternalData(dataPath, external, locations) : undefined;
  const tensors = graph.initializers.map((init) => {
    const location = locations.get(init);
    return location === undefined ? inlineTensor(init) : externalTensor(init, dataName, location);
  });

  const opsetImport: onnx.IOperatorSetIdProto[] = [{ domain: '', version: AI_ONNX_OPSET }];
  if (graph.usedDomains.includes(MICROSOFT_DOMAIN)) opsetImport.push({ domain: MICROSOFT_DOMAIN, version: MICROSOFT_OPSET });
  const model: onnx.IModelProto = {
    irVersion: IR_VERSION,
    producerName: PRODUCER_NAME,
    opsetImport,
    graph: {
      name: graph.name,
      input: graph.inputs.map(valueInfo),
      output: graph.outputs.map(valueInfo),
      initializer: tensors,
      node: graph.nodes.map((node) => ({
        name: node.name,
        opType: node.opType,
        domain: node.domain,
        input: [...node.inputs],
        output: [...node.outputs],
        attribute: Object.entries(node.attributes).map(([name, value]) => attribute(name, value)),
      })),
    },
  };
  const bytes = onnx.ModelProto.encode(model).finish();
  await writeFile(onnxPath, bytes, { flag: 'wx' });
  const written: WrittenFile = { path: onnxPath, sha256: createHash('sha256').update(bytes).digest('hex'), bytes: bytes.byteLength };
  return data === undefined ? [written] : [written, data];
}

async function streamExternalData(
  dataPath: string,
  initializers: readonly Initializer[],
  locations: Map<Initializer, ExternalLocation>,
): Promise<WrittenFile> {
  const hash = createHash('sha256');
  const handle = await open(dataPath, 'wx');
  let position = 0;
  try {
    for (const init of initializers) {
      const padding = (EXTERNAL_DATA_ALIGNMENT_BYTES - (position % EXTERNAL_DATA_ALIGNMENT_BYTES)) % EXTERNAL_DATA_ALIGNMENT_BYTES;
      if (padding > 0) position += await writeFully(handle, new Uint8Array(padding), position, hash);
      const view = new Uint8Array(init.data.buffer, init.data.byteOffset, init.data.byteLength);
      locations.set(init, { offset: position, length: view.byteLength });
      position += await writeFully(handle, view, position, hash);
    }
  } finally {
    await handle.close();
  }
  return { path: dataPath, sha256: hash.digest('hex'), bytes: position };
}

async function writeFully(handle: FileHandle, bytes: Uint8Array, position: number, hash: Hash): Promise<number> {
  let written = 0;
  while (written < bytes.byteLength) {
    const { bytesWritten } = await handle.write(bytes, written, bytes.byteLength - written, position + written);
    written += bytesWritten;
  }
  hash.update(bytes);
  return written;
}

function externalTensor(init: Initializer, dataName: string, location: ExternalLocation): onnx.ITensorProto {
  return {
    name: init.name,
    dataType: ELEMENT_TYPES[init.elementType],
    dims: [...init.dims],
    dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
    externalData: [
      { key: 'location', value: dataName },
      { key: 'offset', value: String(location.offset) },
      { key: 'length', value: String(location.length) },
    ],
  };
}

function inlineTensor(init: Initializer): onnx.ITensorProto {
  return {
    name: init.name,
    dataType: ELEMENT_TYPES[init.elementType],
    dims: [...init.dims],
    rawData: new Uint8Array(init.data.buffer, init.data.byteOffset, init.data.byteLength),
  };
}

function valueInfo(info: ValueInfo): onnx.IValueInfoProto {
  return {
    name: info.name,
    type: {
      tensorType: {
        elemType: ELEMENT_TYPES[info.elementType],
        shape: { dim: info.dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

function attribute(name: string, value: Attribute): onnx.IAttributeProto {
  const types = onnx.AttributeProto.AttributeType;
  switch (value.type) {
    case 'int':
      return { name, type: types.INT, i: value.value };
    case 'float':
      return { name, type: types.FLOAT, f: value.value };
    case 'ints':
      return { name, type: types.INTS, ints: [...value.value] };
    case 'string':
      return { name, type: types.STRING, s: new TextEncoder().encode(value.value) };
  }
}
