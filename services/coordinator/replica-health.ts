import type { HealthClient } from '../../protos/generated/grpc/health/v1/Health';
import type { HealthCheckResponse__Output } from '../../protos/generated/grpc/health/v1/HealthCheckResponse';
import type { ResilienceConfig } from '../../shared/config';
import { ServiceError } from '../../shared/errors';
import { callOptions, createClient, requestMetadata, unary } from '../../shared/grpc/channel';
import { protos } from '../../shared/grpc/proto-loader';
import type { Logger } from '../../shared/logger';
import type { NodeDirectory, NodeReplica } from '../../shared/node-directory';
import { CircuitBreaker } from './circuit-breaker';

export interface ReplicaState {
  readonly replica: NodeReplica;
  serving: boolean;
  /** false until the first check answered. */
  checked: boolean;
  detail: string;
  readonly breaker: CircuitBreaker;
}

/**
 * What the coordinator knows of every replica: its last grpc.health.v1 answer (checked every
 * `healthIntervalMs`, each check bounded by `healthTimeoutMs`, so a frozen replica is marked
 * down within about a second) and a circuit breaker fed by the outcome of the steps routed
 * through it. A replica takes new traffic only while it is serving and its breaker allows.
 */
export class ReplicaHealth {
  private readonly states = new Map<string, ReplicaState>();
  private readonly clients = new Map<string, HealthClient>();
  private timer: NodeJS.Timeout | undefined;
  private running = false;

  constructor(
    private readonly directory: NodeDirectory,
    private readonly config: ResilienceConfig,
    private readonly logger: Logger,
    private readonly onChange: (state: ReplicaState) => void,
  ) {
    this.sync();
    directory.onChange(() => this.sync());
  }

  start(): void {
    this.running = true;
    const tick = (): void => {
      void this.checkAll().finally(() => {
        if (this.running) this.timer = setTimeout(tick, this.config.healthIntervalMs);
      });
    };
    this.timer = setTimeout(tick, 0);
  }

  stop(): void {
    this.running = false;
    clearTimeout(this.timer);
    for (const client of this.clients.values()) client.close();
  }

  all(): readonly ReplicaState[] {
    return [...this.states.values()];
  }

  state(replicaId: string): ReplicaState | undefined {
    return this.states.get(replicaId);
  }

  /** Whether new sequences may be routed to the replica now. */
  routable(replicaId: string, nowMs = Date.now()): boolean {
    const state = this.states.get(replicaId);
    if (state === undefined) return false;
    return (state.serving || !state.checked) && state.breaker.allows(nowMs);
  }

  /** A replica found dead (its session broke, a probe timed out): down at once, breaker open. */
  markDown(replicaId: string, detail: string): void {
    const state = this.states.get(replicaId);
    if (state === undefined) return;
    state.breaker.trip(Date.now());
    this.update(state, false, detail);
  }

  recordSuccess(replicaId: string): void {
    this.states.get(replicaId)?.breaker.recordSuccess(Date.now());
  }

  recordFailure(replicaId: string): void {
    this.states.get(replicaId)?.breaker.recordFailure(Date.now());
  }

  /** One health check now; resolves whether the replica answered SERVING in time (and records it). */
  async probe(replicaId: string): Promise<boolean> {
    const state = this.states.get(replicaId);
    if (state === undefined) return false;
    return this.check(state);
  }

  async checkAll(): Promise<void> {
    await Promise.all(this.all().map((state) => this.check(state)));
  }

  private async check(state: ReplicaState): Promise<boolean> {
    const client = this.clients.get(state.replica.id);
    if (client === undefined) return false;
    try {
      const response = await unary<{ service: string }, HealthCheckResponse__Output>(
        client.Check.bind(client),
        { service: '' },
        requestMetadata(''),
        callOptions(this.config.healthTimeoutMs),
      );
      const serving = response.status === 'SERVING';
      this.update(state, serving, `health status ${response.status}`);
      return serving;
    } catch (error) {
      this.update(state, false, ServiceError.from(error).message);
      return false;
    }
  }

  private update(state: ReplicaState, serving: boolean, detail: string): void {
    const changed = state.serving !== serving || !state.checked;
    state.serving = serving;
    state.checked = true;
    state.detail = detail;
    if (changed) {
      const { replica } = state;
      this.logger.info(serving ? 'replica serving' : 'replica down', { node_id: replica.id, stage: replica.stage, address: replica.address, detail });
      this.onChange(state);
    }
  }

  /** Follows the directory: new replicas get a state and a client, vanished ones are dropped. */
  private sync(): void {
    const current = new Map(this.directory.replicas().map((r) => [r.id, r]));
    for (const [id, replica] of current) {
      const known = this.states.get(id);
      if (known !== undefined && known.replica.address === replica.address) continue;
      this.clients.get(id)?.close();
      this.states.set(id, {
        replica,
        serving: false,
        checked: false,
        detail: 'not checked yet',
        breaker: new CircuitBreaker({
          failureThreshold: this.config.breakerFailureThreshold,
          openMs: this.config.breakerOpenMs,
          successThreshold: this.config.breakerSuccessThreshold,
        }),
      });
      this.clients.set(id, createClient(protos().health.grpc.health.v1.Health, replica.address));
    }
    for (const id of [...this.states.keys()]) {
      if (current.has(id)) continue;
      const state = this.states.get(id) as ReplicaState;
      this.states.delete(id);
      this.clients.get(id)?.close();
      this.clients.delete(id);
      this.update(state, false, 'no longer discovered');
    }
  }
}
