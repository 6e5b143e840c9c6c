import { parseConfig } from '../../shared/config';
import {
  containerPorts,
  entrypointOf,
  envOf,
  type K8sObject,
  type Labels,
  type LabelSelector,
  ofKind,
  OVERLAYS,
  renderOverlay,
  selects,
  type Workload,
  workloadsOf,
} from '../support/k8s-manifests';
import { serviceConnections, type ServiceConnection } from '../support/service-connections';

const NAMESPACE = 'model-inference';

interface PolicyPeer { podSelector?: LabelSelector; namespaceSelector?: LabelSelector; ipBlock?: { cidr: string } }
interface PolicyPort { port?: number | string; protocol?: string }
interface PolicyRule { from?: PolicyPeer[]; to?: PolicyPeer[]; ports?: PolicyPort[] }
interface NetworkPolicy extends K8sObject {
  spec: { podSelector: LabelSelector; policyTypes: ('Ingress' | 'Egress')[]; ingress?: PolicyRule[]; egress?: PolicyRule[] };
}

/** A pod that can open or accept a connection: one per workload here, and the peers outside the namespace. */
interface Pod {
  readonly name: string;
  readonly namespace: string;
  readonly labels: Labels;
  readonly ports: readonly { name?: string; port: number; protocol: string }[];
}

/** Peers outside model-inference, where no policy of these manifests applies. */
const PROMETHEUS: Pod = { name: 'prometheus', namespace: 'monitoring', labels: { 'app.kubernetes.io/name': 'prometheus' }, ports: [] };
const CLUSTER_DNS: Pod = {
  name: 'kube-dns',
  namespace: 'kube-system',
  labels: { 'k8s-app': 'kube-dns' },
  ports: [
    { name: 'dns', port: 53, protocol: 'UDP' },
    { name: 'dns-tcp', port: 53, protocol: 'TCP' },
  ],
};
/** Anything else: an ingress controller, another application, a port-forward. */
const CLIENT: Pod = { name: 'client', namespace: 'ingress', labels: { app: 'ingress-controller' }, ports: [] };

function podOf(workload: Workload): Pod {
  return {
    name: workload.name,
    namespace: workload.namespace,
    labels: workload.pod.metadata.labels,
    ports: containerPorts(workload.pod).map((p) => ({ name: p.name, port: p.containerPort, protocol: p.protocol ?? 'TCP' })),
  };
}

/**
 * NetworkPolicy semantics (networking.k8s.io/v1): a connection needs the source's egress and the
 * destination's ingress. A pod no policy of a direction selects is open in that direction; once
 * some policy selects it, a rule of one of them must match both the peer and the port. A peer
 * with only a podSelector means pods of the policy's own namespace; a named port means the
 * destination pod's containerPort of that name.
 */
class PolicyModel {
  constructor(private readonly policies: readonly NetworkPolicy[]) {}

  allows(from: Pod, to: Pod, port: Pod['ports'][number]): boolean {
    return this.admits('Egress', from, to, to, port) && this.admits('Ingress', to, from, to, port);
  }

  private admits(direction: 'Ingress' | 'Egress', subject: Pod, peer: Pod, destination: Pod, port: Pod['ports'][number]): boolean {
    const selecting = this.policies.filter(
      (p) => p.metadata.namespace === subject.namespace && p.spec.policyTypes.includes(direction) && selects(p.spec.podSelector, subject.labels),
    );
    if (selecting.length === 0) return true;
    return selecting.some((policy) =>
      ((direction === 'Ingress' ? policy.spec.ingress : policy.spec.egress) ?? []).some((rule) => {
        const peers = (direction === 'Ingress' ? rule.from : rule.to) ?? [];
        const peerMatches = peers.length === 0 || peers.some((p) => this.peerMatches(p, peer, policy.metadata.namespace ?? ''));
        const portMatches = (rule.ports ?? []).length === 0 || (rule.ports ?? []).some((p) => this.portMatches(p, destination, port));
        return peerMatches && portMatches;
      }),
    );
  }

  private peerMatches(peer: PolicyPeer, pod: Pod, policyNamespace: string): boolean {
    if (peer.ipBlock !== undefined) return false;
    const inNamespace =
      peer.namespaceSelector === undefined ? pod.namespace === policyNamespace : selects(peer.namespaceSelector, { 'kubernetes.io/metadata.name': pod.namespace });
    return inNamespace && (peer.podSelector === undefined || selects(peer.podSelector, pod.labels));
  }

  private portMatches(rulePort: PolicyPort, destination: Pod, port: Pod['ports'][number]): boolean {
    if ((rulePort.protocol ?? 'TCP') !== port.protocol) return false;
    if (rulePort.port === undefined) return true;
    if (typeof rulePort.port === 'number') return rulePort.port === port.port;
    return destination.ports.some((p) => p.name === rulePort.port && p.port === port.port && p.protocol === port.protocol);
  }
}

/** Who dials whom, read from the services' code (tests/support/service-connections.ts). */
const CONNECTIONS: readonly ServiceConnection[] = serviceConnections();

describe('the connections the services open, read from their code', () => {
  test('are api to tokenizer and coordinator, coordinator to the stages, stage to stage; the coordinator does not call the tokenizer', () => {
    const pairs = [...new Set(CONNECTIONS.map((c) => `${c.from} -> ${c.to}`))].sort();
    expect(pairs).toEqual(['api -> coordinator', 'api -> tokenizer', 'coordinator -> node', 'node -> node']);
    // The health checks are found too, not only the service clients.
    expect(CONNECTIONS.map((c) => c.where)).toEqual(expect.arrayContaining(['services/api/main.ts: Health', 'services/coordinator/replica-health.ts: Health']));
  });
});

function connection(from: Pod, to: Pod, port: Pod['ports'][number]): string {
  return `${from.name} -> ${to.name}:${port.name ?? port.port}/${port.protocol}`;
}

describe.each(OVERLAYS)('NetworkPolicies of overlay %s', (overlay) => {
  const objects = renderOverlay(overlay);
  const policies = ofKind<NetworkPolicy>(objects, 'NetworkPolicy');
  const workloads = workloadsOf(objects);
  const pods = workloads.map(podOf);
  const model = new PolicyModel(policies);
  const configMap = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name.startsWith('pipeserve-config-'));
  const config = parseConfig(JSON.parse(configMap?.data?.['config.json'] ?? '{}'), { baseDir: '/etc/pipeserve' });
  const podRunning = (entrypoint: string, nodeId?: string): Pod => {
    const workload = workloads.find((w) =>
      w.pod.spec.containers.some((c) => entrypointOf(c) === entrypoint && (nodeId === undefined || envOf(c).NODE_ID === nodeId)),
    );
    if (workload === undefined) throw new Error(`${overlay}: no workload runs ${entrypoint} ${nodeId ?? ''}`);
    return podOf(workload);
  };
  const portNamed = (pod: Pod, name: string): Pod['ports'][number] => {
    const port = pod.ports.find((p) => p.name === name);
    if (port === undefined) throw new Error(`${pod.name} declares no port ${name}`);
    return port;
  };

  test('a default-deny policy isolates every pod of the namespace both ways', () => {
    const denyAll = policies.filter(
      (p) => Object.keys(p.spec.podSelector).length === 0 && [...p.spec.policyTypes].sort().join() === 'Egress,Ingress' && (p.spec.ingress ?? []).length === 0 && (p.spec.egress ?? []).length === 0,
    );
    expect(denyAll.map((p) => p.metadata.namespace)).toEqual([NAMESPACE]);
  });

  test('every policy selects existing pods and names peers and ports that exist', () => {
    for (const policy of policies) {
      const name = policy.metadata.name;
      const selected = pods.filter((p) => selects(policy.spec.podSelector, p.labels));
      expect([name, selected.length > 0]).toEqual([name, true]);
      for (const direction of ['ingress', 'egress'] as const) {
        for (const rule of policy.spec[direction] ?? []) {
          const peers = (direction === 'ingress' ? rule.from : rule.to) ?? [];
          // A peer in this namespace must select pods here; other namespaces are the cluster's.
          const local = peers.filter((p) => p.namespaceSelector === undefined);
          for (const peer of local) {
            expect([name, direction, peer.podSelector, pods.some((p) => selects(peer.podSelector, p.labels))]).toEqual([name, direction, peer.podSelector, true]);
          }
          // A named port must exist on the pods it is resolved against: the selected pods for
          // ingress, the peers for egress.
          const targets = direction === 'ingress' ? selected : local.length > 0 ? pods.filter((p) => local.some((peer) => selects(peer.podSelector, p.labels))) : [];
          for (const port of (rule.ports ?? []).filter((p) => typeof p.port === 'string')) {
            for (const target of targets) {
              expect([name, direction, port.port, target.name, target.ports.some((p) => p.name === port.port)]).toEqual([name, direction, port.port, target.name, true]);
            }
          }
        }
      }
    }
  });

  test('exactly the connections the code opens are allowed, plus clients to the api, Prometheus to every metrics port and DNS for every process that dials', () => {
    const entrypoint = (service: string): string => `services/${service}/main.ts`;
    const stages = [...config.nodes].sort((a, b) => a.modelPart - b.modelPart).map((n) => podRunning(entrypoint('node'), n.id));
    const podsOf = (service: string): Pod[] => (service === 'node' ? stages : [podRunning(entrypoint(service))]);
    const expected = new Set<string>();
    const allow = (from: Pod, to: Pod, portName: string): void => {
      expected.add(connection(from, to, portNamed(to, portName)));
    };
    for (const { from, to } of CONNECTIONS) {
      if (from === 'node' && to === 'node') {
        // A stage's Forward stream goes to the next stage only (protos/node.proto).
        stages.forEach((stage, k) => {
          if (k + 1 < stages.length) allow(stage, stages[k + 1], 'grpc');
        });
      } else {
        for (const caller of podsOf(from)) for (const callee of podsOf(to)) allow(caller, callee, 'grpc');
      }
    }
    // Clients, Prometheus among them, reach the api's one port (which also serves /metrics).
    const api = podRunning(entrypoint('api'));
    for (const client of [CLIENT, PROMETHEUS]) allow(client, api, 'http');
    for (const pod of pods.filter((p) => p.ports.some((port) => port.name === 'metrics'))) allow(PROMETHEUS, pod, 'metrics');
    // A process that dials resolves names (config.json's addresses, the stages' headless Services).
    for (const pod of [...new Set(CONNECTIONS.map((c) => c.from))].flatMap(podsOf)) {
      for (const port of CLUSTER_DNS.ports) expected.add(connection(pod, CLUSTER_DNS, port));
    }

    const actual = new Set<string>();
    const sources = [...pods, PROMETHEUS, CLIENT];
    for (const from of sources) {
      for (const to of [...pods, CLUSTER_DNS]) {
        // Between two pods outside the namespace, the cluster's own policies decide.
        if (from === to || (from.namespace !== NAMESPACE && to.namespace !== NAMESPACE)) continue;
        for (const port of to.ports) if (model.allows(from, to, port)) actual.add(connection(from, to, port));
      }
    }
    expect([...actual].sort()).toEqual([...expected].sort());
  });

  test('the policy model itself tells an allowed connection from a denied one', () => {
    const stage0 = podRunning('services/node/main.ts', config.nodes.find((n) => n.modelPart === 0)?.id);
    const coordinator = podRunning('services/coordinator/main.ts');
    const grpc = portNamed(stage0, 'grpc');
    expect(model.allows(coordinator, stage0, grpc)).toBe(true);
    expect(model.allows(PROMETHEUS, stage0, grpc)).toBe(false);
    // Without any policy every connection is open.
    expect(new PolicyModel([]).allows(PROMETHEUS, stage0, grpc)).toBe(true);
    // A replica added by `kubectl scale` carries the template's labels, so the same rules apply to it.
    const replica: Pod = { ...stage0, name: `${stage0.name}-replica` };
    expect(model.allows(coordinator, replica, grpc)).toBe(true);
  });
});
