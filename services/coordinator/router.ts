import * as grpc from '@grpc/grpc-js';
import { ServiceError } from '../../shared/errors';
import type { NodeDirectory, NodeReplica } from '../../shared/node-directory';
import type { ReplicaHealth } from './replica-health';

/**
 * Routing: one replica per stage for a sequence (sticky for its life, since its KV cache lives
 * there), the least loaded of those that are serving and whose breaker allows traffic; when a
 * stage has none of those, one that still answers its health checks though its breaker is open.
 * Only replicas of the coordinator's own directory are ever chosen.
 */
export class Router {
  constructor(
    private readonly directory: NodeDirectory,
    private readonly health: ReplicaHealth,
    private readonly stages: number,
    /** Sequences currently placed on a replica. */
    private readonly load: (replicaId: string) => number,
  ) {}

  /**
   * A route, avoiding the replicas in `avoid` (the ones a sequence just failed on) where a stage
   * has another usable one; UNAVAILABLE naming the first stage left without a usable replica.
   */
  pick(avoid: ReadonlySet<string> = new Set()): NodeReplica[] {
    const now = Date.now();
    const route = Array.from({ length: this.stages }, (_, stage) => this.choose(stage, avoid, now));
    for (const replica of route) this.health.admitted(replica.id, now);
    return route;
  }

  /**
   * One replica of `stage`, by the same rules as `pick` (a partial replay replaces one stage's
   * replica). Both count as new traffic for the chosen replicas' breakers (a half-open one takes
   * it as its probe).
   */
  pickStage(stage: number, avoid: ReadonlySet<string> = new Set(), now = Date.now()): NodeReplica {
    const replica = this.choose(stage, avoid, now);
    this.health.admitted(replica.id, now);
    return replica;
  }

  private choose(stage: number, avoid: ReadonlySet<string>, now: number): NodeReplica {
    const replicas = this.directory.ofStage(stage);
    const routable = replicas.filter((r) => this.health.routable(r.id, now));
    const preferred = routable.filter((r) => !avoid.has(r.id));
    // A breaker diverts traffic to the other replicas; it never takes the last one that answers its health checks out.
    const lastResort = routable.length === 0 ? replicas.filter((r) => this.health.serving(r.id)) : [];
    const usable = preferred.length > 0 ? preferred : routable.length > 0 ? routable : lastResort;
    if (usable.length === 0) {
      const detail = replicas.map((r) => `${r.id} at ${r.address}: ${this.health.describe(r.id, now)}`).join('; ');
      throw new ServiceError(grpc.status.UNAVAILABLE, `no serving replica of stage ${stage} (${detail || 'none configured'})`);
    }
    return usable.reduce((best, r) => (this.load(r.id) < this.load(best.id) ? r : best));
  }

  /** Whether every stage has a usable replica now. */
  available(): boolean {
    const now = Date.now();
    try {
      for (let stage = 0; stage < this.stages; stage++) this.choose(stage, new Set(), now);
      return true;
    } catch {
      return false;
    }
  }
}
