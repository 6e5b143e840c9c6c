import { isPlainObject } from '../../shared/model/checkpoint-folder';
import { gpt2Family } from './gpt2/gpt2-family';
import { llamaFamily } from './llama/llama-family';
import type { ModelDefinition, ModelFamily } from './model-family';

/** Every family the compiler knows, in the order `--help` and errors list them. */
export const MODEL_FAMILIES: readonly ModelFamily[] = [gpt2Family, llamaFamily];

/** Configs written before `architectures` existed name only their model_type. */
const ARCHITECTURE_OF_MODEL_TYPE: Readonly<Record<string, string>> = {
  gpt2: 'GPT2LMHeadModel',
  llama: 'LlamaForCausalLM',
  mistral: 'MistralForCausalLM',
  qwen2: 'Qwen2ForCausalLM',
};

export function supportedArchitectures(): string[] {
  return MODEL_FAMILIES.flatMap((family) => family.architectures);
}

/**
 * Parses a Hugging Face config.json with the family that owns its architecture. An architecture
 * no family owns is refused with an error naming it and listing the supported ones.
 */
export function parseModelConfig(json: unknown, source: string): ModelDefinition {
  if (!isPlainObject(json)) throw new Error(`${source}: expected a JSON object`);
  const architecture = architectureOf(json, source);
  const family = MODEL_FAMILIES.find((f) => f.architectures.includes(architecture));
  if (family === undefined) {
    throw new Error(`${source}: field architectures: unsupported architecture ${architecture} (supported: ${supportedArchitectures().join(', ')})`);
  }
  return family.parseConfig(json, architecture, source);
}

function architectureOf(json: Record<string, unknown>, source: string): string {
  const { architectures } = json;
  if (architectures === undefined || architectures === null) {
    const fromType = typeof json.model_type === 'string' ? ARCHITECTURE_OF_MODEL_TYPE[json.model_type] : undefined;
    if (fromType === undefined) {
      throw new Error(
        `${source}: field architectures: missing, and model_type ${JSON.stringify(json.model_type)} names no supported architecture (supported: ${supportedArchitectures().join(', ')})`,
      );
    }
    return fromType;
  }
  if (!Array.isArray(architectures) || architectures.length !== 1 || typeof architectures[0] !== 'string') {
    throw new Error(`${source}: field architectures: expected one architecture name, got ${JSON.stringify(architectures)}`);
  }
  return architectures[0];
}
