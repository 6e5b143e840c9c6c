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
  /** Health checks failed in a row. */
  failedChecks: number;
  /** Date.now() of the replica's last sign of life (a SERVING answer or a step through it); undefined before the first. */
  lastSeenAt: number | undefined;
}

/** A probe after a step timed out answers within this, or the replica is taken for hung. */
const MAX_PROBE_TIMEOUT_MS = 500;

/**
 * What the coordinator knows of every replica: its grpc.health.v1 answers (checked every
 * `healthIntervalMs`, each check bounded by `healthTimeoutMs`; `healthFailuresToDown` misses in
 * a row mark it down, so one slow answer from a busy host costs nothing while a frozen replica is
 * down within a couple of seconds) and a circuit breaker fed by those checks and by the outcome
 * of the steps routed through it. A replica takes new traffic only while it is serving and its
 * breaker allows. A replica found dead for sure — its session broke, or it did not answer a
 * probe after one of its steps timed out — is marked down at once and its breaker opened.
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

  /** Whether the replica's last health check answered SERVING (whatever its breaker says). */
  serving(replicaId: string): boolean {
    return this.states.get(replicaId)?.serving === true;
  }

  /** How the replica looks for an error message: its health and, when open, its breaker. */
  describe(replicaId: string, nowMs = Date.now()): string {
    const state = this.states.get(replicaId);
    if (state === undefined) return 'unknown';
    return state.breaker.allows(nowMs) ? state.detail : `${state.detail}, breaker open after recent failures`;
  }

  /** A replica found dead (its session broke, a probe timed out): down at once, breaker open. */
  markDown(replicaId: string, detail: string): void {
    const state = this.states.get(replicaId);
    if (state === undefined) return;
    state.breaker.trip(Date.now());
    this.update(state, false, detail);
  }

  /** A new sequence was placed on the replica (a half-open breaker's probe). */
  admitted(replicaId: string, nowMs = Date.now()): void {
    this.states.get(replicaId)?.breaker.admit(nowMs);
  }

  recordSuccess(replicaId: string): void {
    const state = this.states.get(replicaId);
    if (state === undefined) return;
    state.lastSeenAt = Date.now();
    state.breaker.recordSuccess(state.lastSeenAt);
  }

  /** When the replica last answered a health check or carried a step (Date.now()); undefined if never. */
  lastSeen(replicaId: string): number | undefined {
    return this.states.get(replicaId)?.lastSeenAt;
  }

  recordFailure(replicaId: string): void {
    this.states.get(replicaId)?.breaker.recordFailure(Date.now());
  }

  /**
   * One quick health check now (a step through the replica is overdue or timed out); resolves
   * whether it answered SERVING within `timeoutMs` (at most MAX_PROBE_TIMEOUT_MS and the
   * configured health timeout).
   */
  async probe(replicaId: string, timeoutMs = MAX_PROBE_TIMEOUT_MS): Promise<boolean> {
    const state = this.states.get(replicaId);
    if (state === undefined) return false;
    return this.check(state, Math.min(timeoutMs, MAX_PROBE_TIMEOUT_MS, this.config.healthTimeoutMs));
  }

  async checkAll(): Promise<void> {
    await Promise.all(this.all().map((state) => this.check(state)));
  }

  private async check(state: ReplicaState, timeoutMs = this.config.healthTimeoutMs): Promise<boolean> {
    const client = this.clients.get(state.replica.id);
    if (client === undefined) return false;
    let detail: string;
    try {
      const response = await unary<{ service: string }, HealthCheckResponse__Output>(client.Check.bind(client), { service: '' }, requestMetadata(''), callOptions(timeoutMs));
      if (response.status === 'SERVING') {
        state.failedChecks = 0;
        state.lastSeenAt = Date.now();
        this.update(state, true, 'health status SERVING');
        return true;
      }
      detail = `health status ${response.status}`;
    } catch (error) {
      detail = ServiceError.from(error).message;
    }
    state.failedChecks += 1;
    state.breaker.recordFailure(Date.now());
    if (state.failedChecks >= this.config.healthFailuresToDown || !state.checked) this.update(state, false, detail);
    return false;
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
        failedChecks: 0,
        lastSeenAt: undefined,
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
