import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import * as path from 'node:path';
import { writeOnnxModel, type WrittenFile } from '../compiler/write-onnx-model';
import { checkOutputFolder, moveIntoPlace } from '../output-folder';
import { buildGpt2ReferenceGraph } from './gpt2-reference-graph';
import { parseHfCausalLmConfig, type HfCausalLmConfig } from './hf-causal-lm-config';
import { HfCheckpointTensors } from './hf-checkpoint-tensors';
import { buildLlamaReferenceGraph } from './llama-reference-graph';
import { isFile } from './is-file';

export interface TransformersJsExportOptions {
  /** A Hugging Face checkpoint folder: config.json, safetensors weights, tokenizer.json, tokenizer_config.json. */
  readonly from: string;
  /** The folder to write; it must be absent or empty unless `force`. */
  readonly out: string;
  readonly force?: boolean;
}

export interface TransformersJsExport {
  /** Absolute path of the written folder, which `from_pretrained` takes as is. */
  readonly dir: string;
  readonly config: HfCausalLmConfig;
  /** The graph and its external weights, as written (absolute paths). */
  readonly onnxFiles: readonly WrittenFile[];
}

/** Where transformers.js looks: `${subfolder}/${model_file_name}${dtype suffix}.onnx`, by default onnx/model.onnx for fp32. */
const ONNX_SUBFOLDER = 'onnx';
const ONNX_FILE = 'model.onnx';
const CONFIG_FILE = 'config.json';
const GENERATION_CONFIG_FILE = 'generation_config.json';
const REQUIRED_TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json'];
const OPTIONAL_TOKENIZER_FILES = ['special_tokens_map.json', 'vocab.json', 'merges.txt', 'tokenizer.model', 'chat_template.jinja'];

/**
 * Exports a Hugging Face causal-LM checkpoint (GPT2LMHeadModel, LlamaForCausalLM,
 * MistralForCausalLM, Qwen2ForCausalLM) into the folder layout transformers.js loads with
 * `AutoModelForCausalLM.from_pretrained(dir)`: config.json, generation_config.json and the
 * tokenizer files at the top, and onnx/model.onnx (+ model.onnx.data) with an Optimum-style
 * decoder-with-past graph in plain opset-17 ops, written from the Hugging Face semantics by this
 * folder's own graph code (not the compiler's), so it is an independent reference. The folder
 * is built beside `out` and renamed into place, so a failure leaves `out` as it was.
 */
export async function exportForTransformersJs(options: TransformersJsExportOptions): Promise<TransformersJsExport> {
  const from = path.resolve(options.from);
  const target = path.resolve(options.out);
  const configPath = path.join(from, CONFIG_FILE);
  const configText = await readText(configPath);
  const config = parseHfCausalLmConfig(parseJson(configText, configPath), configPath);
  for (const file of REQUIRED_TOKENIZER_FILES) await readText(path.join(from, file));
  const targetExists = await checkOutputFolder(target, options.force === true);
  await mkdir(path.dirname(target), { recursive: true });
  const staging = await mkdtemp(`${target}.export-`);
  try {
    const tensors = await HfCheckpointTensors.open(from);
    const name = path.basename(from);
    const graph =
      config.family === 'gpt2' ? await buildGpt2ReferenceGraph(config, tensors, name) : await buildLlamaReferenceGraph(config, tensors, name);
    await mkdir(path.join(staging, ONNX_SUBFOLDER));
    const written = await writeOnnxModel(graph, path.join(staging, ONNX_SUBFOLDER, ONNX_FILE));
    await writeFile(path.join(staging, CONFIG_FILE), configText);
    await writeGenerationConfig(from, staging, config);
    for (const file of [...REQUIRED_TOKENIZER_FILES, ...OPTIONAL_TOKENIZER_FILES]) {
      if (await isFile(path.join(from, file))) await copyFile(path.join(from, file), path.join(staging, file));
    }
    await moveIntoPlace(staging, target, targetExists);
    const onnxFiles = written.map((file) => ({ ...file, path: path.join(target, path.relative(staging, file.path)) }));
    return { dir: target, config, onnxFiles };
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}

/** The checkpoint's own generation_config.json when it has one; otherwise the special token ids of config.json, as transformers does. */
async function writeGenerationConfig(from: string, staging: string, config: HfCausalLmConfig): Promise<void> {
  const source = path.join(from, GENERATION_CONFIG_FILE);
  if (await isFile(source)) {
    parseJson(await readText(source), source);
    await copyFile(source, path.join(staging, GENERATION_CONFIG_FILE));
    return;
  }
  const generation: Record<string, unknown> = { _from_model_config: true };
  if (config.bosTokenId !== null) generation.bos_token_id = config.bosTokenId;
  if (config.eosTokenId !== null) generation.eos_token_id = config.eosTokenId;
  await writeFile(path.join(staging, GENERATION_CONFIG_FILE), `${JSON.stringify(generation, null, 2)}\n`);
}

async function readText(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new Error(code === 'ENOENT' ? `${file}: missing file` : `${file}: cannot read (${code ?? String(error)})`, { cause: error });
  }
}

function parseJson(text: string, file: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new Error(`${file}: not valid JSON (${(error as Error).message})`, { cause: error });
  }
}
