import { Metadata } from '@grpc/grpc-js';
import type { HealthClient } from '../../protos/generated/grpc/health/v1/Health';
import type { HealthCheckRequest } from '../../protos/generated/grpc/health/v1/HealthCheckRequest';
import type { HealthCheckResponse__Output } from '../../protos/generated/grpc/health/v1/HealthCheckResponse';
import type { CoordinatorClient } from '../../protos/generated/pipeserve/v1/Coordinator';
import type { TopologyRequest } from '../../protos/generated/pipeserve/v1/TopologyRequest';
import type { TopologyResponse__Output } from '../../protos/generated/pipeserve/v1/TopologyResponse';
import { ServiceError } from '../../shared/errors';
import { callOptions, requestMetadata, unary } from '../../shared/grpc/channel';

/** A readiness probe must answer before the orchestrator's own probe timeout (typically 1-3 s). */
export const READY_CHECK_DEADLINE_MS = 1_000;

export interface ReadinessTargets {
  readonly tokenizer: { readonly address: string; readonly health: HealthClient };
  readonly coordinator: { readonly address: string; readonly health: HealthClient; readonly client: CoordinatorClient };
}

export interface NodeReadiness {
  readonly node_id: string;
  readonly stage: number;
  readonly address: string;
  readonly serving: boolean;
}

export type Readiness =
  | { readonly ready: true; readonly model_name: string; readonly stages: number; readonly nodes: readonly NodeReadiness[]; readonly degraded: readonly string[] }
  | { readonly ready: false; readonly missing: readonly string[] };

/**
 * Ready when the tokenizer and the coordinator report SERVING (grpc.health.v1) and every stage
 * has at least one serving node. Otherwise lists what is down, one line each: "node2 (stage 1)
 * at localhost:50052: connection refused". A replica that is down while its stage still has a
 * serving one keeps the system ready, and is listed under `degraded`.
 */
export async function checkReadiness(targets: ReadinessTargets, deadlineMs = READY_CHECK_DEADLINE_MS): Promise<Readiness> {
  const [tokenizerProblem, coordinatorProblem, topology] = await Promise.all([
    servingProblem(targets.tokenizer.health, deadlineMs),
    servingProblem(targets.coordinator.health, deadlineMs),
    unary<TopologyRequest, TopologyResponse__Output>(
      (argument, metadata, options, callback) => targets.coordinator.client.Topology(argument, metadata, options, callback),
      {},
      requestMetadata(''),
      callOptions(deadlineMs),
    ).then(
      (response): TopologyResponse__Output | ServiceError => response,
      (error: unknown) => ServiceError.from(error),
    ),
  ]);
  const missing: string[] = [];
  if (tokenizerProblem !== undefined) missing.push(`tokenizer at ${targets.tokenizer.address}: ${tokenizerProblem}`);
  if (coordinatorProblem !== undefined) {
    missing.push(`coordinator at ${targets.coordinator.address}: ${coordinatorProblem}`);
  } else if (topology instanceof ServiceError) {
    missing.push(`coordinator topology at ${targets.coordinator.address}: ${topology.message}`);
  }
  if (topology instanceof ServiceError) return { ready: false, missing };

  const degraded: string[] = [];
  for (let stage = 0; stage < topology.stages; stage++) {
    const replicas = topology.nodes.filter((n) => n.stage === stage);
    if (replicas.length === 0) missing.push(`stage ${stage}: the coordinator knows no node for it`);
    const down = replicas.filter((n) => !n.serving).map((n) => `${n.node_id} (stage ${n.stage}) at ${n.address}: ${n.detail || 'not serving'}`);
    if (replicas.some((n) => n.serving)) degraded.push(...down);
    else missing.push(...down);
  }
  if (topology.stages === 0) missing.push(`coordinator at ${targets.coordinator.address}: its topology has no stages`);
  if (missing.length > 0) return { ready: false, missing };
  return {
    ready: true,
    model_name: topology.model_name,
    stages: topology.stages,
    nodes: topology.nodes.map((n) => ({ node_id: n.node_id, stage: n.stage, address: n.address, serving: n.serving })),
    degraded,
  };
}

/** undefined when SERVING; otherwise what is wrong, in words. */
async function servingProblem(health: HealthClient, deadlineMs: number): Promise<string | undefined> {
  try {
    const response = await unary<HealthCheckRequest, HealthCheckResponse__Output>(
      (argument, metadata, options, callback) => health.Check(argument, metadata, options, callback),
      { service: '' },
      new Metadata(),
      callOptions(deadlineMs),
    );
    return response.status === 'SERVING' ? undefined : `health status ${response.status}`;
  } catch (error) {
    return ServiceError.from(error).message;
  }
}
