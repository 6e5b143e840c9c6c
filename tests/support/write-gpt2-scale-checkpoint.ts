import { writeCheckpoint } from '../../tools/families/checkpoint';
import { gpt2Checkpoint } from '../../tools/families/gpt2/gpt2-family';
import type { Gpt2Config } from '../../tools/families/gpt2/gpt2-config';
import { buildGpt2TokenizerFiles } from '../../tools/init/gpt2-tokenizer-files';
import { GPT2_PRESETS, gpt2ScaleCheckpoint } from '../../tools/init/random-gpt2';

/**
 * GPT-2 small's width, heads and vocabulary (the logit scale KL depends on) with 4 of its 12
 * layers, for speed: measured KL there int8 7.1e-5, int4 9.0e-3, against 8.1e-5 and 1.1e-2 with
 * all 12 layers.
 */
export const QUALITY_CONFIG: Gpt2Config = { ...GPT2_PRESETS.small, nLayer: 4, nPositions: 256 };

/**
 * `node dist/tests/support/write-gpt2-scale-checkpoint.js <dir> <seed>` writes a Hugging Face
 * folder of QUALITY_CONFIG at GPT-2's own init with the GPT-2 tokenizer. Run as its own process:
 * inside jest's realm, stores into Node's shared Float32Arrays are ~40x slower (measured), which
 * turns seconds of weight generation into minutes.
 */
if (require.main === module) {
  const [dir, seed] = process.argv.slice(2);
  writeCheckpoint(dir, gpt2Checkpoint(gpt2ScaleCheckpoint(QUALITY_CONFIG, Number(seed))), buildGpt2TokenizerFiles()).catch((error: unknown) => {
    process.stderr.write(`${String(error)}\n`);
    process.exitCode = 1;
  });
}
