/**
 * Input and output names of a stage graph (docs/stage-graph.md). Layers are numbered globally,
 * so a stage holding layers [4, 8) reads `past_key.4` … `past_key.7`.
 */
export const stageIoNames = {
  inputIds: 'input_ids',
  hiddenStates: 'hidden_states',
  positionIds: 'position_ids',
  attentionMask: 'attention_mask',
  /** An ONNX graph cannot name an input and an output alike, hence the suffix. */
  hiddenStatesOut: 'hidden_states_out',
  logits: 'logits',
  /** log Σ exp(logits) of each row, from the last stage. */
  logsumexp: 'logsumexp',
  /** Index of each row's largest logit (the first of equal ones), from the last stage. */
  argmax: 'argmax',
  pastKey: (layer: number): string => `past_key.${layer}`,
  pastValue: (layer: number): string => `past_value.${layer}`,
  presentKey: (layer: number): string => `present_key.${layer}`,
  presentValue: (layer: number): string => `present_value.${layer}`,
} as const;

/** Symbolic dims: B rows, S new tokens, P past columns, P + S in total. */
export const stageDims = {
  batch: 'batch',
  seq: 'seq',
  past: 'past',
  total: 'total',
} as const;
