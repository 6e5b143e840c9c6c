import type { TensorLayout } from '../../shared/model/checkpoint-folder';
import type { ModelShape } from '../../shared/model/model-shape';
import type { Weight } from '../../shared/model/weight';
import type { StageBuilder } from '../compiler/stage-builder';

/** Estimated multiply-adds per token of each part of a model, for the split planner. */
export interface ModelCosts {
  readonly embedding: number;
  /** One transformer block, attention over a typical context included. */
  readonly layer: number;
  /** Final norm and LM head. */
  readonly head: number;
}

/** A checkpoint's weights by canonical (Hugging Face) tensor name. */
export type TensorMap = ReadonlyMap<string, Weight>;

/**
 * A parsed config.json of one family: everything the compiler, the split planner and the
 * checkpoint reader need, with the family's own block graphs behind `embed`, `blocks` and
 * `head`. The rest of the project reads only `shape` and `costs`.
 */
export interface ModelDefinition {
  /** The family module's name ('gpt2', 'llama'). */
  readonly family: string;
  /** The Hugging Face architecture class this definition was parsed for. */
  readonly architecture: string;
  readonly shape: ModelShape;
  readonly costs: ModelCosts;
  readonly tensorLayout: TensorLayout;
  /** config.json as Hugging Face writes it for this definition. */
  toConfigJson(): Record<string, unknown>;
  /** First stage: token ids [B, S] → residual stream [B, S, hidden]. */
  embed(stage: StageBuilder, tensors: TensorMap): string;
  /** The stage's blocks: residual stream in → residual stream out (before the final norm). */
  blocks(stage: StageBuilder, tensors: TensorMap, hidden: string): string;
  /** Last stage: residual stream of each row's last token [B, hidden] → logits [B, vocab]. */
  head(stage: StageBuilder, tensors: TensorMap, lastHidden: string): string;
}

/** One model family module (tools/families/<name>/), as in vLLM's model_executor/models/. */
export interface ModelFamily {
  readonly name: string;
  /** Hugging Face `architectures` entries this family compiles. */
  readonly architectures: readonly string[];
  /**
   * Parses config.json into a definition; an unsupported field value is refused with an error
   * naming the field (`<source>: field rope_scaling.rope_type: unsupported "yarn" (llama3, linear)`).
   */
  parseConfig(json: Record<string, unknown>, architecture: string, source: string): ModelDefinition;
}
