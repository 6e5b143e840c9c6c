import * as grpc from '@grpc/grpc-js';
import type { HealthClient } from '../../protos/generated/grpc/health/v1/Health';
import type { HealthCheckResponse__Output } from '../../protos/generated/grpc/health/v1/HealthCheckResponse';
import type { NodeEntry } from '../../shared/config';
import { ServiceError } from '../../shared/errors';
import { callOptions, createClient, unary } from '../../shared/grpc/channel';
import { protos } from '../../shared/grpc/proto-loader';
import type { Logger } from '../../shared/logger';

export const HEALTH_CHECK_INTERVAL_MS = 1_000;
export const HEALTH_CHECK_DEADLINE_MS = 1_000;

export interface NodeState {
  readonly node: NodeEntry;
  serving: boolean;
  /** false until the first check answered. */
  checked: boolean;
  detail: string;
}

/** Health-checks every node with grpc.health.v1 and keeps their last known state. */
export class NodeHealth {
  private readonly states = new Map<string, NodeState>();
  private readonly clients = new Map<string, HealthClient>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    nodes: readonly NodeEntry[],
    private readonly logger: Logger,
    private readonly onChange: (state: NodeState) => void,
  ) {
    for (const node of nodes) {
      this.states.set(node.id, { node, serving: false, checked: false, detail: 'not checked yet' });
      this.clients.set(node.id, createClient(protos().health.grpc.health.v1.Health, node.address));
    }
  }

  start(): void {
    const tick = (): void => {
      void this.checkAll().finally(() => {
        if (this.timer !== undefined) this.timer = setTimeout(tick, HEALTH_CHECK_INTERVAL_MS);
      });
    };
    this.timer = setTimeout(tick, 0);
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    for (const client of this.clients.values()) client.close();
  }

  all(): readonly NodeState[] {
    return [...this.states.values()];
  }

  state(nodeId: string): NodeState | undefined {
    return this.states.get(nodeId);
  }

  /** Marks a node down at once (a broken stream), without waiting for the next check. */
  markDown(nodeId: string, detail: string): void {
    const state = this.states.get(nodeId);
    if (state !== undefined) this.update(state, false, detail);
  }

  async checkAll(): Promise<void> {
    await Promise.all(this.all().map((state) => this.check(state)));
  }

  private async check(state: NodeState): Promise<void> {
    const client = this.clients.get(state.node.id);
    if (client === undefined) return;
    try {
      const response = await unary<{ service: string }, HealthCheckResponse__Output>(
        client.Check.bind(client),
        { service: '' },
        new grpc.Metadata(),
        callOptions(HEALTH_CHECK_DEADLINE_MS),
      );
      this.update(state, response.status === 'SERVING', `health status ${response.status}`);
    } catch (error) {
      this.update(state, false, ServiceError.from(error).message);
    }
  }

  private update(state: NodeState, serving: boolean, detail: string): void {
    const changed = state.serving !== serving || !state.checked;
    state.serving = serving;
    state.checked = true;
    state.detail = detail;
    if (changed) {
      this.logger.info(serving ? 'node serving' : 'node down', { node_id: state.node.id, stage: state.node.modelPart, address: state.node.address, detail });
      this.onChange(state);
    }
  }
}
