import { mkdir, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { CHECKPOINT_FILES, checkTokenizerFiles, generationEosTokenIds, readCheckpointTensors, readJsonFile } from '../../shared/model/checkpoint-folder';
import { writeSafetensors } from '../../shared/model/safetensors';
import type { ModelDefinition, TensorMap } from './model-family';
import { parseModelConfig } from './model-families';

/** A model in memory: its parsed definition and its weights by Hugging Face name. */
export interface Checkpoint {
  readonly model: ModelDefinition;
  readonly tensors: TensorMap;
}

/** A checkpoint read from a Hugging Face folder. */
export interface CheckpointFolder extends Checkpoint {
  /** Absolute path of the folder. */
  readonly dir: string;
  /** Absolute paths of tokenizer.json, tokenizer_config.json and the optional tokenizer-side files present. */
  readonly tokenizerFiles: readonly string[];
}

/** The JSON bodies of the files written next to the weights. */
export interface CheckpointSideFiles {
  readonly tokenizerJson: object;
  readonly tokenizerConfigJson: object;
  readonly generationConfigJson?: object;
}

/** Parses a folder's config.json (no weights read), for checks that must fail in milliseconds. */
export async function readModelDefinition(dir: string): Promise<ModelDefinition> {
  const configPath = path.join(path.resolve(dir), CHECKPOINT_FILES.config);
  return withGenerationEos(parseModelConfig(await readJsonFile(configPath), configPath), await generationEosTokenIds(path.resolve(dir)));
}

/** Reads a Hugging Face folder: its family's config, every tensor the family expects (checked by name and shape), the tokenizer files. */
export async function loadCheckpoint(dir: string): Promise<CheckpointFolder> {
  const root = path.resolve(dir);
  const model = await readModelDefinition(root);
  const tokenizerFiles = await checkTokenizerFiles(root, model.shape.vocabSize);
  const tensors = await readCheckpointTensors(root, model.tensorLayout);
  return { dir: root, model, tensors, tokenizerFiles };
}

/** Writes config.json, model.safetensors (Hugging Face names) and the tokenizer files: a folder `loadCheckpoint` and Hugging Face both read. */
export async function writeCheckpoint(dir: string, checkpoint: Checkpoint, files: CheckpointSideFiles): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, CHECKPOINT_FILES.config), `${JSON.stringify(checkpoint.model.toConfigJson(), null, 2)}\n`);
  // transformers refuses safetensors files whose metadata does not say which framework wrote them.
  await writeSafetensors(path.join(dir, CHECKPOINT_FILES.weights), checkpoint.tensors, { format: 'pt' });
  await writeFile(path.join(dir, CHECKPOINT_FILES.tokenizer), JSON.stringify(files.tokenizerJson));
  await writeFile(path.join(dir, CHECKPOINT_FILES.tokenizerConfig), `${JSON.stringify(files.tokenizerConfigJson, null, 2)}\n`);
  if (files.generationConfigJson !== undefined) {
    await writeFile(path.join(dir, CHECKPOINT_FILES.generationConfig), `${JSON.stringify(files.generationConfigJson, null, 2)}\n`);
  }
}

/** generation_config.json may name more end-of-sequence ids than config.json (Llama 3's <|eot_id|>): any of them ends a generation. */
function withGenerationEos(model: ModelDefinition, extra: readonly number[] | undefined): ModelDefinition {
  if (extra === undefined) return model;
  const eosTokenIds = [...new Set([...model.shape.eosTokenIds, ...extra])];
  const outside = eosTokenIds.find((id) => id >= model.shape.vocabSize);
  if (outside !== undefined) throw new Error(`${CHECKPOINT_FILES.generationConfig}: field eos_token_id: ${outside} is outside the vocabulary of ${model.shape.vocabSize}`);
  return { ...model, shape: { ...model.shape, eosTokenIds } };
}
