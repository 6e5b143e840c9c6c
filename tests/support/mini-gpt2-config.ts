import type { Gpt2Config } from '../../tools/families/gpt2/gpt2-config';

/**
 * A GPT-2 shape small enough that a checkpoint is a few kilobytes: for tests of file formats
 * and transfers, where the numbers do not matter. Its 12-token vocabulary ends with the
 * <|endoftext|> id 11.
 */
export const MINI_GPT2_CONFIG: Gpt2Config = {
  modelType: 'gpt2',
  vocabSize: 12,
  nPositions: 16,
  nEmbd: 8,
  nLayer: 2,
  nHead: 2,
  nInner: 32,
  layerNormEpsilon: 1e-5,
  activation: 'gelu_new',
  bosTokenId: 11,
  eosTokenId: 11,
};
