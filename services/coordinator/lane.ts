import type { NodeReplica } from '../../shared/node-directory';
import type { Sequence } from './sequence';

/**
 * A micro-batch: sequences on one route that step together, at most one step in flight at a
 * time. A route has several lanes (one per stage by default) so that every stage has a
 * micro-batch to work on while the others compute. Members stay in their lane for their whole
 * life, so each stage sees the same batch step after step and feeds it from its KV cache in place.
 */
export class Lane {
  readonly members: Sequence[] = [];
  busy = false;

  constructor(
    readonly route: readonly NodeReplica[],
    readonly routeKey: string,
    readonly index: number,
  ) {}

  get key(): string {
    return `${this.routeKey}#${this.index}`;
  }

  add(sequence: Sequence): void {
    this.members.push(sequence);
  }

  remove(sequence: Sequence): void {
    const at = this.members.indexOf(sequence);
    if (at >= 0) this.members.splice(at, 1);
  }
}

export function routeKeyOf(route: readonly NodeReplica[]): string {
  return route.map((r) => r.id).join('>');
}
