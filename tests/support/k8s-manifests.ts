import { spawnSync } from 'node:child_process';
import path from 'node:path';
import YAML from 'yaml';

/**
 * The Kubernetes objects of a kustomize overlay, as `kubectl kustomize` renders them, and the few
 * Kubernetes semantics the deployment tests need (label selectors, workloads and their pods).
 */

export const ROOT = path.resolve(__dirname, '..', '..');
export const K8S_DIR = path.join(ROOT, 'k8s');
export const OVERLAYS = ['dev', 'prod'] as const;
export type Overlay = (typeof OVERLAYS)[number];

const RENDER_TIMEOUT_MS = 60_000;

export type Labels = Record<string, string>;
export interface LabelSelector {
  matchLabels?: Labels;
  matchExpressions?: { key: string; operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist'; values?: string[] }[];
}
export interface ObjectMeta { name: string; namespace?: string; labels?: Labels; annotations?: Labels }
export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  spec?: Record<string, unknown>;
  data?: Record<string, string>;
}

export interface ContainerPort { name?: string; containerPort: number; protocol?: string }
export interface Probe {
  grpc?: { port: number };
  httpGet?: { port: number | string; path: string };
  tcpSocket?: { port: number | string };
}
export interface EnvVar { name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string } } }
export interface VolumeMount { name: string; mountPath: string; readOnly?: boolean }
export interface Container {
  name: string;
  image?: string;
  command?: string[];
  args?: string[];
  env?: EnvVar[];
  ports?: ContainerPort[];
  readinessProbe?: Probe;
  livenessProbe?: Probe;
  startupProbe?: Probe;
  resources?: { requests?: Record<string, string | number>; limits?: Record<string, string | number> };
  securityContext?: {
    runAsNonRoot?: boolean;
    runAsUser?: number;
    readOnlyRootFilesystem?: boolean;
    allowPrivilegeEscalation?: boolean;
    capabilities?: { drop?: string[] };
  };
  volumeMounts?: VolumeMount[];
}
export interface Volume {
  name: string;
  emptyDir?: Record<string, unknown>;
  configMap?: { name: string };
  persistentVolumeClaim?: { claimName: string; readOnly?: boolean };
}
export interface AffinityTerm { topologyKey: string; labelSelector: LabelSelector }
export interface PodSpec {
  securityContext?: { runAsNonRoot?: boolean; runAsUser?: number };
  initContainers?: Container[];
  containers: Container[];
  volumes?: Volume[];
  automountServiceAccountToken?: boolean;
  restartPolicy?: string;
  affinity?: {
    podAntiAffinity?: {
      requiredDuringSchedulingIgnoredDuringExecution?: AffinityTerm[];
      preferredDuringSchedulingIgnoredDuringExecution?: { weight: number; podAffinityTerm: AffinityTerm }[];
    };
  };
}
export interface PodTemplate { metadata: { labels: Labels; annotations?: Labels }; spec: PodSpec }

export interface Deployment extends K8sObject {
  spec: { replicas?: number; strategy?: { type: string; rollingUpdate?: { maxSurge?: number | string; maxUnavailable?: number | string } }; selector: LabelSelector; template: PodTemplate };
}
export interface Job extends K8sObject {
  spec: { template: PodTemplate; backoffLimit?: number };
}
export interface ServicePort { name?: string; port: number; targetPort: number | string; protocol?: string }
export interface Service extends K8sObject {
  spec: { type?: string; clusterIP?: string; publishNotReadyAddresses?: boolean; selector: Labels; ports: ServicePort[] };
}

/** A Deployment or Job, through the pods its template makes. */
export interface Workload {
  readonly kind: 'Deployment' | 'Job';
  readonly name: string;
  readonly namespace: string;
  readonly object: Deployment | Job;
  readonly pod: PodTemplate;
}

/** Every object `kubectl kustomize <dir>` renders; throws with kubectl's own message when it cannot. */
export function renderKustomization(dir: string): K8sObject[] {
  const result = spawnSync('kubectl', ['kustomize', dir], { encoding: 'utf8', timeout: RENDER_TIMEOUT_MS, maxBuffer: 64 * 1024 * 1024 });
  if (result.error !== undefined) {
    throw new Error(`kubectl kustomize ${dir}: ${result.error.message} (.ci/run installs kubectl where it is missing)`);
  }
  if (result.status !== 0) throw new Error(`kubectl kustomize ${dir} failed: ${result.stderr}`);
  return YAML.parseAllDocuments(result.stdout).flatMap((document) => {
    if (document.errors.length > 0) throw new Error(`${dir}: ${document.errors.map((e) => e.message).join('; ')}`);
    const object = document.toJS() as K8sObject | null;
    return object === null ? [] : [object];
  });
}

export function renderOverlay(overlay: Overlay): K8sObject[] {
  return renderKustomization(path.join(K8S_DIR, 'overlays', overlay));
}

/** Label-selector semantics: every matchLabels pair and every expression must hold; an empty selector selects everything. */
export function selects(selector: LabelSelector | undefined, labels: Labels): boolean {
  if (selector === undefined) return false;
  const pairs = Object.entries(selector.matchLabels ?? {}).every(([key, value]) => labels[key] === value);
  const expressions = (selector.matchExpressions ?? []).every(({ key, operator, values = [] }) => {
    switch (operator) {
      case 'In':
        return key in labels && values.includes(labels[key]);
      case 'NotIn':
        return !(key in labels) || !values.includes(labels[key]);
      case 'Exists':
        return key in labels;
      case 'DoesNotExist':
        return !(key in labels);
    }
  });
  return pairs && expressions;
}

export function ofKind<T extends K8sObject>(objects: readonly K8sObject[], kind: string): T[] {
  return objects.filter((o): o is T => o.kind === kind);
}

export function workloadsOf(objects: readonly K8sObject[]): Workload[] {
  return objects.flatMap((object): Workload[] => {
    if (object.kind !== 'Deployment' && object.kind !== 'Job') return [];
    const typed = object as Deployment | Job;
    return [{ kind: object.kind, name: object.metadata.name, namespace: object.metadata.namespace ?? 'default', object: typed, pod: typed.spec.template }];
  });
}

export function allContainers(pod: PodTemplate): Container[] {
  return [...(pod.spec.initContainers ?? []), ...pod.spec.containers];
}

export function containerPorts(pod: PodTemplate): ContainerPort[] {
  return pod.spec.containers.flatMap((c) => c.ports ?? []);
}

/** The containerPort a port reference (a number, or the name of a containerPort) means on these pods. */
export function resolvePort(port: number | string, pod: PodTemplate): number | undefined {
  const ports = containerPorts(pod);
  return typeof port === 'number' ? ports.find((p) => p.containerPort === port)?.containerPort : ports.find((p) => p.name === port)?.containerPort;
}

/** `node <script>` of a container, as the source path of the script (`services/api/main.ts`). */
export function entrypointOf(container: Container): string | undefined {
  const argv = [...(container.command ?? []), ...(container.args ?? [])];
  if (argv[0] !== 'node' || argv[1] === undefined) return undefined;
  return argv[1].replace(/^dist\//, '').replace(/\.js$/, '.ts');
}

export function argvOf(container: Container): string[] {
  return [...(container.command ?? []), ...(container.args ?? [])];
}

export function envOf(container: Container): Record<string, string> {
  return Object.fromEntries((container.env ?? []).flatMap((e) => (e.value === undefined ? [] : [[e.name, e.value]])));
}

/** `<service>.<namespace>.svc.cluster.local` → [service, namespace]. */
export function parseServiceDnsName(host: string): [string, string] | undefined {
  const parts = /^([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.cluster\.local$/.exec(host);
  return parts === null ? undefined : [parts[1], parts[2]];
}
