import { timingSafeEqual } from 'node:crypto';
import type { SamplingParameters__Output } from '../../protos/generated/pipeserve/v1/SamplingParameters';
import type { CoordinatorSession } from './coordinator-session';

/** What a node knows of one open sequence. */
export interface OpenSequence {
  readonly sequenceId: string;
  readonly requestId: string;
  readonly owner: CoordinatorSession;
  /** Changes when the owner rewinds the sequence after a failover (steps of the failed placement then no longer match). */
  token: Buffer;
  /** The replica this stage passes the sequence's hidden states to; undefined on the last stage. Moves with a rewind. */
  nextNodeId: string | undefined;
  /** A rewind is cutting the sequence back: no step is accepted until it settles (one of the failed placement would write past the cut). */
  rewinding: boolean;
  readonly sampling: SamplingParameters__Output;
}

/**
 * The sequences open on a node, each bound to the session that opened it. Lookups that carry a
 * token compare it in constant time, and a wrong token looks exactly like an unknown sequence:
 * a stranger learns nothing, not even that the id exists.
 */
export class OpenSequences {
  private readonly sequences = new Map<string, OpenSequence>();

  get size(): number {
    return this.sequences.size;
  }

  has(sequenceId: string): boolean {
    return this.sequences.has(sequenceId);
  }

  add(sequence: OpenSequence): void {
    this.sequences.set(sequence.sequenceId, sequence);
  }

  /** The sequence if `token` is its token; undefined otherwise. */
  authorize(sequenceId: string, token: Buffer): OpenSequence | undefined {
    const sequence = this.sequences.get(sequenceId);
    if (sequence === undefined || sequence.rewinding || sequence.token.length !== token.length || !timingSafeEqual(sequence.token, token)) return undefined;
    return sequence;
  }

  /** The sequence if `owner` opened it. */
  ownedBy(sequenceId: string, owner: CoordinatorSession): OpenSequence | undefined {
    const sequence = this.sequences.get(sequenceId);
    return sequence?.owner === owner ? sequence : undefined;
  }

  delete(sequenceId: string): void {
    this.sequences.delete(sequenceId);
  }

  ownedBySession(owner: CoordinatorSession): string[] {
    return [...this.sequences.values()].filter((s) => s.owner === owner).map((s) => s.sequenceId);
  }

  ids(): string[] {
    return [...this.sequences.keys()];
  }
}
