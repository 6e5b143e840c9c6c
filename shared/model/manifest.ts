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
