import { randomBytes } from 'node:crypto';
import type { Step__Output } from '../../protos/generated/pipeserve/v1/Step';
import { safeRequestId } from '../../shared/grpc/channel';
import { parseIncomingStep } from '../../services/node/incoming-step';

/**
 * Request ids inside node messages (open, rewind, step) are only logged and passed on; like the
 * REST header and the gRPC metadata, anything but a short safe token is dropped, so no sender
 * can forge log lines or carry arbitrary bytes down the pipeline.
 */
function step(requestId: string): Step__Output {
  return {
    step_id: 1,
    rows: [{ sequence_id: 'seq-1', token: randomBytes(16), past_length: 0, token_ids: [1, 2], sample: true, generated_index: 0 }],
    hidden_states: null,
    timeout_ms: 1_000,
    request_id: requestId,
    timings: [],
    fill_only: false,
  };
}

describe('request ids in node messages', () => {
  test('a safe token is kept; a newline, a tab, a non-ASCII byte or an over-long id becomes empty', () => {
    expect(safeRequestId('0b6c6a1e-5f6d-4c1b-9d0c-3f0e2f9a7b11')).toBe('0b6c6a1e-5f6d-4c1b-9d0c-3f0e2f9a7b11');
    expect(safeRequestId('req:42/a.b@c+d=e_f')).toBe('req:42/a.b@c+d=e_f');
    for (const bad of ['line\n{"level":"error","message":"forged"}', 'a\tb', 'caf\u00e9', 'x'.repeat(129), '']) expect(safeRequestId(bad)).toBe('');
  });

  test('a step keeps a safe request id and drops an unsafe one without refusing the step', () => {
    const stage = { isFirst: true, hiddenSize: 64 };
    expect(parseIncomingStep(step('client-req-7'), stage).requestId).toBe('client-req-7');
    const forged = parseIncomingStep(step('r\n{"level":"error","message":"forged"}'), stage);
    expect(forged.requestId).toBe('');
    expect(forged.rows.map((r) => r.tokenIds)).toEqual([[1, 2]]);
  });
});
