import type { StageTiming__Output } from '../../protos/generated/pipeserve/v1/StageTiming';
import type { Step__Output } from '../../protos/generated/pipeserve/v1/Step';
import { ServiceError } from '../../shared/errors';
import { safeRequestId } from '../../shared/grpc/channel';
import { idProblem, PROTOCOL_LIMITS } from '../../shared/protocol/limits';
import { decodeTensor } from '../../shared/tensor-codec';

/** One row of a step as a node trusts it once parsed. */
export interface IncomingRow {
  readonly sequenceId: string;
  readonly token: Buffer;
  readonly pastLength: number;
  readonly tokenIds: readonly number[];
  readonly sample: boolean;
  readonly generatedIndex: number;
}

/** A step message parsed once at the edge: shapes, sizes and numbers checked, activations finite. */
export interface IncomingStep {
  readonly stepId: number;
  readonly rows: readonly IncomingRow[];
  /** Packed [Σ new tokens, hidden]; present exactly when the receiving stage is not the first. */
  readonly hiddenStates: Float32Array | undefined;
  readonly timeoutMs: number;
  readonly requestId: string;
  readonly timings: readonly StageTiming__Output[];
  /** A refill: write the KV cache, pass nothing on, answer the owner with an empty result. */
  readonly fillOnly: boolean;
}

/**
 * Parses a step for a stage (`isFirst`, `hiddenSize`). Anything malformed — no rows, too many,
 * bad ids or tokens, activations of the wrong shape or with NaN/Infinity — is INVALID_ARGUMENT
 * naming the field, before anything changes. Whether the sequences exist and belong to the
 * sender is the caller's check.
 */
export function parseIncomingStep(step: Step__Output, stage: { readonly isFirst: boolean; readonly hiddenSize: number }): IncomingStep {
  const { rows } = step;
  if (rows.length === 0) throw ServiceError.invalidArgument('step.rows', 'a step needs at least one row');
  if (rows.length > PROTOCOL_LIMITS.maxStepRows) throw ServiceError.invalidArgument('step.rows', `${rows.length} rows, the limit is ${PROTOCOL_LIMITS.maxStepRows}`);
  if (step.timings.length > PROTOCOL_LIMITS.maxTimings) throw ServiceError.invalidArgument('step.timings', `${step.timings.length} entries, the limit is ${PROTOCOL_LIMITS.maxTimings}`);
  let tokens = 0;
  const parsed = rows.map((row, i): IncomingRow => {
    const at = `step.rows[${i}]`;
    const problem = idProblem(row.sequence_id);
    if (problem !== undefined) throw ServiceError.invalidArgument(`${at}.sequence_id`, problem);
    if (row.token.length < PROTOCOL_LIMITS.minTokenBytes || row.token.length > PROTOCOL_LIMITS.maxTokenBytes) {
      throw ServiceError.invalidArgument(`${at}.token`, `must be ${PROTOCOL_LIMITS.minTokenBytes}-${PROTOCOL_LIMITS.maxTokenBytes} bytes, got ${row.token.length}`);
    }
    if (row.token_ids.length === 0) throw ServiceError.invalidArgument(`${at}.token_ids`, 'a row needs at least one new token');
    tokens += row.token_ids.length;
    if (tokens > PROTOCOL_LIMITS.maxStepTokens) throw ServiceError.invalidArgument('step.rows', `more than ${PROTOCOL_LIMITS.maxStepTokens} new tokens in one step`);
    return { sequenceId: row.sequence_id, token: row.token, pastLength: row.past_length, tokenIds: row.token_ids, sample: row.sample, generatedIndex: row.generated_index };
  });
  let hiddenStates: Float32Array | undefined;
  if (stage.isFirst) {
    if (step.hidden_states !== null) throw ServiceError.invalidArgument('step.hidden_states', 'the first stage embeds token_ids itself and takes no hidden states');
  } else {
    if (step.hidden_states === null) throw ServiceError.invalidArgument('step.hidden_states', `required: [${tokens}, ${stage.hiddenSize}] float32`);
    const tensor = decodeTensor(step.hidden_states, 'step.hidden_states');
    if (tensor.dtype !== 'float32' || tensor.dims.length !== 2 || tensor.dims[0] !== tokens || tensor.dims[1] !== stage.hiddenSize) {
      throw ServiceError.invalidArgument('step.hidden_states', `expected float32[${tokens}, ${stage.hiddenSize}], got ${tensor.dtype}[${tensor.dims.join(', ')}]`);
    }
    hiddenStates = tensor.data as Float32Array;
    const bad = firstNonFinite(hiddenStates);
    if (bad >= 0) throw ServiceError.invalidArgument('step.hidden_states', `element ${bad} is ${hiddenStates[bad]}: activations must be finite`);
  }
  if (step.fill_only && parsed.some((row) => row.sample)) throw ServiceError.invalidArgument('step.rows', 'a fill_only step samples nothing: every row has sample false');
  return { stepId: step.step_id, rows: parsed, hiddenStates, timeoutMs: step.timeout_ms, requestId: safeRequestId(step.request_id), timings: step.timings, fillOnly: step.fill_only };
}

/** The largest finite float32. */
const FLOAT32_MAX = 3.4028234663852886e38;

function firstNonFinite(values: Float32Array): number {
  for (let i = 0; i < values.length; i++) {
    // NaN fails both comparisons and ±Infinity one of them: cheaper than Number.isFinite per element.
    const v = values[i];
    if (!(v >= -FLOAT32_MAX && v <= FLOAT32_MAX)) return i;
  }
  return -1;
}
