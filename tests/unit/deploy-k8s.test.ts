import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { type AppConfig, parseConfig, portOf } from '../../shared/config';

const ROOT = path.resolve(__dirname, '..', '..');
const K8S_DIR = path.join(ROOT, 'k8s');
const PROMETHEUS_DIR = path.join(ROOT, 'prometheus');
const NAMESPACE = 'model-inference';
const MONITORING_NAMESPACE = 'monitoring';
const PROMETHEUS_CONFIGMAP = 'pipeserve-prometheus';
/** What Prometheus in the cluster reads: the ConfigMap ships these files of prometheus/. */
const PROMETHEUS_FILES = ['prometheus-k8s.yml', 'alerts.yml'];
/** The pods a NetworkPolicy must admit on every port Prometheus scrapes. */
const PROMETHEUS_POD = { namespace: MONITORING_NAMESPACE, labels: { 'app.kubernetes.io/name': 'prometheus' } };
/** The job of prometheus-k8s.yml that scrapes a pod, by its app.kubernetes.io/component. */
const JOB_OF_COMPONENT: Labels = { api: 'api', tokenizer: 'tokenizer', coordinator: 'coordinator', node: 'nodes' };
const SCHEMA_CHECK_TIMEOUT_MS = 60_000;

/** Process entrypoints of the deployment contract, as source paths. */
const ENTRYPOINTS = new Set([
  'services/api/main.ts',
  'services/tokenizer/main.ts',
  'services/coordinator/main.ts',
  'services/node/main.ts',
  'tools/model-init.ts',
  'tools/healthcheck.ts',
]);

type Labels = Record<string, string>;
interface Port { name?: string; containerPort: number }
interface Probe { grpc?: { port: number }; httpGet?: { port: number | string; path: string }; tcpSocket?: { port: number | string } }
interface Container {
  name: string;
  command?: string[];
  args?: string[];
  env?: { name: string; value?: string }[];
  ports?: Port[];
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
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean }[];
}
interface PodSpec {
  securityContext?: { runAsNonRoot?: boolean; runAsUser?: number };
  initContainers?: Container[];
  containers: Container[];
  volumes?: { name: string; emptyDir?: Record<string, unknown>; configMap?: { name: string } }[];
}
interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Labels; annotations?: Labels };
  spec?: Record<string, unknown>;
  data?: Record<string, string>;
}
interface Deployment extends Manifest {
  spec: { replicas: number; selector: { matchLabels: Labels }; template: { metadata: { labels: Labels; annotations?: Labels }; spec: PodSpec } };
}
interface Service extends Manifest {
  spec: { clusterIP?: string; selector: Labels; ports: { name?: string; port: number; targetPort: number | string }[] };
}
interface PrometheusConfig {
  scrape_configs: { job_name: string; dns_sd_configs?: { names: string[]; type?: string; port?: number }[] }[];
}
/** One name a prometheus-k8s.yml job resolves, and the port it scrapes each address on. */
interface DnsTarget { job: string; name: string; type?: string; port?: number }
interface PeerSelector { podSelector?: { matchLabels?: Labels }; namespaceSelector?: { matchLabels?: Labels } }
interface NetworkPolicy extends Manifest {
  spec: {
    podSelector: { matchLabels: Labels };
    policyTypes: string[];
    ingress: { from: PeerSelector[]; ports: { port: number | string; protocol?: string }[] }[];
  };
}
interface Located { file: string; doc: Manifest }

function loadManifests(): Located[] {
  const files = readdirSync(K8S_DIR).filter((f) => /\.ya?ml$/.test(f)).sort();
  return files.flatMap((file) =>
    YAML.parseAllDocuments(readFileSync(path.join(K8S_DIR, file), 'utf8')).flatMap((document) => {
      if (document.errors.length > 0) throw new Error(`${file}: ${document.errors.map((e) => e.message).join('; ')}`);
      const doc = document.toJS() as Manifest | null;
      return doc === null ? [] : [{ file, doc }];
    }),
  );
}

/**
 * kubernetes-models ships as ES modules only, which this CommonJS test cannot require, so a
 * child Node process imports the model class of each document's apiVersion/kind and validates
 * it; an apiVersion/kind without a model fails like an invalid document.
 */
const VALIDATE_SCRIPT = `
const docs = JSON.parse(await new Promise((resolve) => { let s = ''; process.stdin.on('data', (c) => (s += c)); process.stdin.on('end', () => resolve(s)); }));
const problems = [];
for (const { file, doc } of docs) {
  const where = file + ' ' + doc.kind + '/' + (doc.metadata && doc.metadata.name);
  const slash = String(doc.apiVersion).indexOf('/');
  const group = slash < 0 ? '' : doc.apiVersion.slice(0, slash);
  const version = slash < 0 ? doc.apiVersion : doc.apiVersion.slice(slash + 1);
  const specifier = 'kubernetes-models/' + (group ? group + '/' : '') + version + '/' + doc.kind;
  let Model;
  try { Model = (await import(specifier))[doc.kind]; } catch (e) { Model = undefined; }
  if (typeof Model !== 'function') { problems.push(where + ': no Kubernetes model for ' + doc.apiVersion + ' ' + doc.kind); continue; }
  try { new Model(doc).validate(); } catch (e) { problems.push(where + ': ' + e.message); }
}
process.stdout.write(JSON.stringify(problems));
`;

function schemaProblems(docs: readonly Located[]): string[] {
  const result = spawnSync(process.execPath, ['--input-type=module', '-e', VALIDATE_SCRIPT], {
    cwd: ROOT,
    input: JSON.stringify(docs),
    encoding: 'utf8',
  });
  if (result.status !== 0) throw new Error(`kubernetes-models validation did not run: ${result.stderr}`);
  return JSON.parse(result.stdout) as string[];
}

function matches(selector: Labels, labels: Labels): boolean {
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

function containerPorts(deployments: readonly Deployment[]): Port[] {
  return deployments.flatMap((d) => d.spec.template.spec.containers.flatMap((c) => c.ports ?? []));
}

function portMatches(port: number | string, ports: readonly Port[]): boolean {
  return ports.some((p) => (typeof port === 'number' ? p.containerPort === port : p.name === port));
}

function allContainers(spec: PodSpec): Container[] {
  return [...(spec.initContainers ?? []), ...spec.containers];
}

function entrypointOf(container: Container): string {
  const argv = [...(container.command ?? []), ...(container.args ?? [])];
  if (argv[0] !== 'node' || argv[1] === undefined) throw new Error(`container ${container.name} does not run node <script>`);
  return argv[1].replace(/^dist\//, '').replace(/\.js$/, '.ts');
}

function hostOf(address: string): string {
  return address.slice(0, address.lastIndexOf(':'));
}

/** The containerPort a Service targetPort or NetworkPolicy port (number or name) means on a Deployment's pods. */
function resolvePort(port: number | string, deployment: Deployment): number | undefined {
  return typeof port === 'number' ? port : containerPorts([deployment]).find((p) => p.name === port)?.containerPort;
}

interface Peer { namespace: string; labels: Labels }

/**
 * Whether a pod of `deployment` accepts `peer` on `port` under NetworkPolicy semantics (matchLabels
 * selectors only): open while no Ingress policy selects the pod, else some selecting policy must
 * have a rule whose peers and ports both match (an empty list matches everything).
 */
function admits(deployment: Deployment, port: number, peer: Peer): boolean {
  const podLabels = deployment.spec.template.metadata.labels;
  const isolating = policies.filter((p) => p.spec.policyTypes.includes('Ingress') && matches(p.spec.podSelector.matchLabels, podLabels));
  if (isolating.length === 0) return true;
  return isolating.some((policy) =>
    policy.spec.ingress.some((rule) => {
      const peerMatches = (rule.from ?? []).length === 0 || rule.from.some((from) => {
        const inNamespace =
          from.namespaceSelector === undefined
            ? peer.namespace === policy.metadata.namespace
            : matches(from.namespaceSelector.matchLabels ?? {}, { 'kubernetes.io/metadata.name': peer.namespace });
        return inNamespace && matches(from.podSelector?.matchLabels ?? {}, peer.labels);
      });
      const portMatches = (rule.ports ?? []).length === 0 || rule.ports.some((p) => resolvePort(p.port, deployment) === port);
      return peerMatches && portMatches;
    }),
  );
}

/** Every name the jobs of prometheus/prometheus-k8s.yml resolve. */
function dnsTargets(): DnsTarget[] {
  const config = YAML.parse(readFileSync(path.join(PROMETHEUS_DIR, 'prometheus-k8s.yml'), 'utf8')) as PrometheusConfig;
  return config.scrape_configs.flatMap((job) =>
    (job.dns_sd_configs ?? []).flatMap((sd) => sd.names.map((name) => ({ job: job.job_name, name, type: sd.type, port: sd.port }))),
  );
}

/** The Service a cluster DNS name `<service>.<namespace>.svc.cluster.local` stands for. */
function serviceOfDnsName(name: string): Service | undefined {
  const parts = /^([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.cluster\.local$/.exec(name);
  return services.find((s) => parts !== null && s.metadata.name === parts[1] && s.metadata.namespace === parts[2]);
}

const manifests = loadManifests();
const docs = manifests.map((m) => m.doc);
const deployments = docs.filter((d): d is Deployment => d.kind === 'Deployment');
const services = docs.filter((d): d is Service => d.kind === 'Service');
const policies = docs.filter((d): d is NetworkPolicy => d.kind === 'NetworkPolicy');
const selected = (selector: Labels): Deployment[] => deployments.filter((d) => matches(selector, d.spec.template.metadata.labels));
const repoConfig = parseConfig(JSON.parse(readFileSync(path.join(ROOT, 'config.json'), 'utf8')), { baseDir: ROOT });

function clusterConfig(): AppConfig {
  const configMap = docs.find((d) => d.kind === 'ConfigMap' && d.metadata.name === 'pipeserve-config');
  const text = configMap?.data?.['config.json'];
  if (text === undefined) throw new Error('ConfigMap pipeserve-config has no config.json');
  return parseConfig(JSON.parse(text), { baseDir: '/etc/pipeserve' });
}

describe('k8s manifests', () => {
  test('the Namespace comes first in apply order and every PipeServe object lives in it', () => {
    expect(docs[0]).toMatchObject({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: NAMESPACE } });
    const elsewhere = docs.slice(1).filter((d) => d.metadata.namespace !== NAMESPACE).map((d) => `${d.kind}/${d.metadata.name}`);
    expect(elsewhere).toEqual([`Namespace/${MONITORING_NAMESPACE}`, `ConfigMap/${PROMETHEUS_CONFIGMAP}`]);
  });

  test('every namespaced object comes after the Namespace it lives in', () => {
    const seen = new Set<string>();
    for (const { file, doc } of manifests) {
      if (doc.kind === 'Namespace') seen.add(doc.metadata.name);
      else expect([file, doc.kind, doc.metadata.name, doc.metadata.namespace, seen.has(doc.metadata.namespace ?? '')]).toEqual([file, doc.kind, doc.metadata.name, doc.metadata.namespace, true]);
    }
  });

  test(
    'every document validates against the kubernetes-models schema of its apiVersion and kind',
    () => {
      expect(manifests.length).toBeGreaterThan(10);
      expect(schemaProblems(manifests)).toEqual([]);
    },
    SCHEMA_CHECK_TIMEOUT_MS,
  );

  test(
    'the schema check rejects a wrongly typed field and an unknown kind',
    () => {
      const badDeployment = structuredClone(deployments[0]);
      (badDeployment.spec.template.spec.containers[0].ports as unknown as { containerPort: string }[])[0].containerPort = 'grpc';
      const problems = schemaProblems([
        { file: 'bad.yaml', doc: badDeployment },
        { file: 'bad.yaml', doc: { apiVersion: 'apps/v1', kind: 'Deploymnt', metadata: { name: 'x' } } },
      ]);
      expect(problems).toEqual([
        expect.stringMatching(/containerPort must be integer/),
        expect.stringMatching(/no Kubernetes model for apps\/v1 Deploymnt/),
      ]);
    },
    SCHEMA_CHECK_TIMEOUT_MS,
  );

  test('every Service selects the pods of a Deployment and targets ports those pods declare', () => {
    for (const service of services) {
      const pods = selected(service.spec.selector);
      expect([service.metadata.name, pods.length > 0]).toEqual([service.metadata.name, true]);
      for (const port of service.spec.ports) {
        for (const deployment of pods) {
          expect([service.metadata.name, port.targetPort, portMatches(port.targetPort, containerPorts([deployment]))]).toEqual([
            service.metadata.name,
            port.targetPort,
            true,
          ]);
        }
      }
    }
  });

  test('every probe targets a port its container declares: httpGet for the api, grpc for the gRPC services', () => {
    for (const deployment of deployments) {
      for (const container of deployment.spec.template.spec.containers) {
        const where = `${deployment.metadata.name}/${container.name}`;
        const isApi = entrypointOf(container) === 'services/api/main.ts';
        for (const probe of [container.readinessProbe, container.livenessProbe]) {
          expect([where, probe === undefined]).toEqual([where, false]);
          const port = isApi ? probe?.httpGet?.port : probe?.grpc?.port;
          expect([where, port !== undefined && portMatches(port, container.ports ?? [])]).toEqual([where, true]);
        }
        const startupPort = container.startupProbe?.grpc?.port ?? container.startupProbe?.httpGet?.port;
        if (startupPort !== undefined) expect([where, portMatches(startupPort, container.ports ?? [])]).toEqual([where, true]);
      }
    }
  });

  test('every NetworkPolicy selects existing pods, admits existing peers and opens ports those pods declare', () => {
    expect(policies.length).toBeGreaterThan(0);
    for (const policy of policies) {
      const name = policy.metadata.name;
      const pods = selected(policy.spec.podSelector.matchLabels);
      expect([name, pods.length > 0]).toEqual([name, true]);
      for (const rule of policy.spec.ingress) {
        for (const peer of rule.from) {
          // Peers in another namespace (Prometheus) are outside these manifests.
          if (peer.namespaceSelector === undefined) {
            expect([name, peer.podSelector?.matchLabels, selected(peer.podSelector?.matchLabels ?? {}).length > 0]).toEqual([
              name,
              peer.podSelector?.matchLabels,
              true,
            ]);
          }
        }
        for (const { port } of rule.ports) {
          expect([name, port, pods.every((d) => portMatches(port, containerPorts([d])))]).toEqual([name, port, true]);
        }
      }
    }
  });

  test("only the coordinator and the previous stage reach a node's gRPC port; only Prometheus its metrics port", () => {
    const config = clusterConfig();
    for (const node of config.nodes) {
      const policy = policies.find((p) => p.spec.podSelector.matchLabels['pipeserve/stage'] === String(node.modelPart));
      expect([node.id, policy === undefined]).toEqual([node.id, false]);
      const grpcRule = policy?.spec.ingress.find((r) => r.ports.some((p) => p.port === portOf(node.address)));
      const peerComponents = (grpcRule?.from ?? []).map((peer) => {
        const labels = peer.podSelector?.matchLabels ?? {};
        return labels['pipeserve/stage'] === undefined
          ? labels['app.kubernetes.io/component']
          : `stage ${labels['pipeserve/stage']}`;
      });
      expect(peerComponents.sort()).toEqual(node.modelPart === 0 ? ['coordinator'] : ['coordinator', `stage ${node.modelPart - 1}`]);
      expect(grpcRule?.ports.map((p) => p.port)).toEqual([portOf(node.address)]);
      const metricsRule = policy?.spec.ingress.find((r) => r.ports.some((p) => p.port === node.metricsPort));
      expect(metricsRule?.ports.map((p) => p.port)).toEqual([node.metricsPort]);
      expect(metricsRule?.from).toEqual([
        expect.objectContaining({ namespaceSelector: expect.anything(), podSelector: { matchLabels: { 'app.kubernetes.io/name': 'prometheus' } } }),
      ]);
      expect(policy?.spec.policyTypes).toEqual(['Ingress']);
    }
  });

  test("the ConfigMap's config.json passes parseConfig and keeps the ports of the repository's config.json", () => {
    const config = clusterConfig();
    expect(config.modelDir).toBe('/models/default');
    expect(config.api.port).toBe(repoConfig.api.port);
    expect([portOf(config.tokenizer.address), config.tokenizer.metricsPort]).toEqual([portOf(repoConfig.tokenizer.address), repoConfig.tokenizer.metricsPort]);
    expect([portOf(config.coordinator.address), config.coordinator.metricsPort]).toEqual([
      portOf(repoConfig.coordinator.address),
      repoConfig.coordinator.metricsPort,
    ]);
    expect(config.nodes.map((n) => [n.id, n.modelPart, portOf(n.address), n.metricsPort])).toEqual(
      repoConfig.nodes.map((n) => [n.id, n.modelPart, portOf(n.address), n.metricsPort]),
    );
  });

  test('every address of the ConfigMap is the DNS name of a Service exposing that port', () => {
    const config = clusterConfig();
    const entries: [string, string][] = [
      ['tokenizer', config.tokenizer.address],
      ['coordinator', config.coordinator.address],
      ...config.nodes.map((n): [string, string] => [n.id, n.address]),
    ];
    for (const [name, address] of entries) {
      expect(hostOf(address)).toBe(`${name}.${NAMESPACE}.svc.cluster.local`);
      const service = services.find((s) => s.metadata.name === name);
      expect([name, service?.spec.ports.some((p) => p.port === portOf(address))]).toEqual([name, true]);
    }
    const nodeIds = new Set(config.nodes.map((n) => n.id));
    expect(services.filter((s) => nodeIds.has(s.metadata.name)).map((s) => s.spec.clusterIP)).toEqual(config.nodes.map(() => 'None'));
  });

  test('node Deployments cover every model_part by stage label, run their node id and listen on its ports', () => {
    const config = clusterConfig();
    const nodeDeployments = deployments.filter((d) => d.spec.template.metadata.labels['app.kubernetes.io/component'] === 'node');
    expect(new Set(nodeDeployments.map((d) => d.spec.selector.matchLabels['pipeserve/stage']))).toEqual(
      new Set(config.nodes.map((n) => String(n.modelPart))),
    );
    for (const node of config.nodes) {
      const deployment = nodeDeployments.find((d) => d.metadata.name === node.id);
      expect([node.id, deployment?.spec.selector.matchLabels['pipeserve/stage']]).toEqual([node.id, String(node.modelPart)]);
      const container = deployment?.spec.template.spec.containers[0];
      const argv = [...(container?.command ?? []), ...(container?.args ?? [])];
      expect(argv.slice(argv.indexOf('--node-id'))).toEqual(['--node-id', node.id]);
      expect((container?.ports ?? []).map((p) => p.containerPort).sort()).toEqual([node.metricsPort, portOf(node.address)].sort());
    }
  });

  test('every container runs a contract entrypoint', () => {
    for (const deployment of deployments) {
      for (const container of allContainers(deployment.spec.template.spec)) {
        expect([deployment.metadata.name, container.name, ENTRYPOINTS.has(entrypointOf(container))]).toEqual([
          deployment.metadata.name,
          container.name,
          true,
        ]);
      }
    }
  });

  test('every container runs as non-root, with a read-only root filesystem, no privilege escalation and no capabilities', () => {
    for (const deployment of deployments) {
      const pod = deployment.spec.template.spec;
      for (const container of allContainers(pod)) {
        const where = `${deployment.metadata.name}/${container.name}`;
        const security = container.securityContext ?? {};
        expect([where, security.runAsNonRoot ?? pod.securityContext?.runAsNonRoot]).toEqual([where, true]);
        expect([where, security.runAsUser ?? pod.securityContext?.runAsUser]).toEqual([where, expect.any(Number)]);
        expect([where, (security.runAsUser ?? pod.securityContext?.runAsUser) === 0]).toEqual([where, false]);
        expect([where, security.readOnlyRootFilesystem, security.allowPrivilegeEscalation, security.capabilities?.drop]).toEqual([
          where,
          true,
          false,
          ['ALL'],
        ]);
        // With a read-only root, /tmp must be a writable emptyDir.
        const tmp = container.volumeMounts?.find((m) => m.mountPath === '/tmp');
        expect([where, pod.volumes?.find((v) => v.name === tmp?.name)?.emptyDir !== undefined, tmp?.readOnly]).toEqual([where, true, undefined]);
      }
    }
  });

  test('every container has CPU and memory requests and limits', () => {
    for (const deployment of deployments) {
      for (const container of allContainers(deployment.spec.template.spec)) {
        const where = `${deployment.metadata.name}/${container.name}`;
        for (const kind of ['requests', 'limits'] as const) {
          expect([where, kind, Object.keys(container.resources?.[kind] ?? {}).sort()]).toEqual([where, kind, ['cpu', 'memory']]);
        }
      }
    }
  });

  test('every pod fills an emptyDir at /models with model-init and its service reads the model there read-only', () => {
    const config = clusterConfig();
    for (const deployment of deployments) {
      const pod = deployment.spec.template.spec;
      const where = deployment.metadata.name;
      const init = pod.initContainers?.find((c) => entrypointOf(c) === 'tools/model-init.ts');
      const argv = [...(init?.command ?? []), ...(init?.args ?? [])];
      expect([where, argv.slice(2)]).toEqual([where, ['--out', config.modelDir, '--if-missing']]);
      const initMount = init?.volumeMounts?.find((m) => config.modelDir.startsWith(`${m.mountPath}/`));
      expect([where, initMount?.readOnly]).toEqual([where, undefined]);
      expect([where, pod.volumes?.find((v) => v.name === initMount?.name)?.emptyDir]).toEqual([where, expect.any(Object)]);
      for (const container of pod.containers) {
        const mount = container.volumeMounts?.find((m) => m.name === initMount?.name);
        expect([where, mount?.mountPath, mount?.readOnly]).toEqual([where, initMount?.mountPath, true]);
        const configMount = container.volumeMounts?.find((m) => pod.volumes?.find((v) => v.name === m.name)?.configMap?.name === 'pipeserve-config');
        const configPath = container.env?.find((e) => e.name === 'CONFIG_PATH')?.value;
        expect([where, configPath]).toEqual([where, `${configMount?.mountPath}/config.json`]);
      }
    }
  });

  test('every pod is annotated for Prometheus with a metrics port it declares', () => {
    for (const deployment of deployments) {
      const annotations = deployment.spec.template.metadata.annotations ?? {};
      const where = deployment.metadata.name;
      expect([where, annotations['prometheus.io/scrape'], annotations['prometheus.io/path']]).toEqual([where, 'true', '/metrics']);
      expect([where, portMatches(Number(annotations['prometheus.io/port']), containerPorts([deployment]))]).toEqual([where, true]);
    }
  });

  test('api and tokenizer scale with autoscaling/v2 HPAs; every stage has a PodDisruptionBudget that still allows a drain', () => {
    const hpas = docs.filter((d) => d.kind === 'HorizontalPodAutoscaler');
    expect(hpas.map((h) => h.apiVersion)).toEqual(hpas.map(() => 'autoscaling/v2'));
    const targets = hpas.map((h) => (h.spec as { scaleTargetRef: { kind: string; name: string } }).scaleTargetRef);
    expect(targets.map((t) => t.name).sort()).toEqual(['api', 'tokenizer']);
    for (const target of targets) expect(deployments.some((d) => d.metadata.name === target.name && target.kind === 'Deployment')).toBe(true);

    const budgets = docs.filter((d) => d.kind === 'PodDisruptionBudget');
    for (const node of clusterConfig().nodes) {
      const budget = budgets.find((b) => (b.spec as { selector: { matchLabels: Labels } }).selector.matchLabels['pipeserve/stage'] === String(node.modelPart));
      const spec = budget?.spec as { selector: { matchLabels: Labels }; minAvailable?: number; maxUnavailable?: number } | undefined;
      const stagePods = selected(spec?.selector.matchLabels ?? { none: 'none' });
      expect([node.id, stagePods.map((d) => d.metadata.name)]).toEqual([node.id, [node.id]]);
      // A drain must still be possible: some pod of the stage may be evicted voluntarily.
      const replicas = stagePods[0].spec.replicas;
      const allowsDrain = spec?.maxUnavailable !== undefined ? spec.maxUnavailable >= 1 : spec?.minAvailable !== undefined && spec.minAvailable < replicas;
      expect([node.id, allowsDrain]).toEqual([node.id, true]);
    }
  });
});

describe('Prometheus in the cluster (prometheus/prometheus-k8s.yml)', () => {
  test('the ConfigMap for Prometheus holds prometheus-k8s.yml and alerts.yml of prometheus/ byte for byte', () => {
    const configMap = docs.find((d) => d.kind === 'ConfigMap' && d.metadata.name === PROMETHEUS_CONFIGMAP);
    expect(configMap?.metadata.namespace).toBe(PROMETHEUS_POD.namespace);
    expect(Object.keys(configMap?.data ?? {}).sort()).toEqual([...PROMETHEUS_FILES].sort());
    for (const file of PROMETHEUS_FILES) {
      expect([file, configMap?.data?.[file]]).toEqual([file, readFileSync(path.join(PROMETHEUS_DIR, file), 'utf8')]);
    }
  });

  test('every name it resolves is a headless Service here, scraped on a port of that Service and of the pods it selects', () => {
    const targets = dnsTargets();
    expect(targets.length).toBeGreaterThan(0);
    for (const { job, name, type, port } of targets) {
      const service = serviceOfDnsName(name);
      // A records of a headless Service are the pod IPs, one per replica; a ClusterIP Service would answer with one virtual IP.
      expect([job, name, type, service?.spec.clusterIP]).toEqual([job, name, 'A', 'None']);
      const servicePort = service?.spec.ports.find((p) => p.port === port);
      expect([name, port, servicePort === undefined]).toEqual([name, port, false]);
      const pods = selected(service?.spec.selector ?? { none: 'none' });
      expect([name, pods.length > 0]).toEqual([name, true]);
      for (const deployment of pods) {
        expect([name, deployment.metadata.name, resolvePort(servicePort?.targetPort ?? -1, deployment)]).toEqual([name, deployment.metadata.name, port]);
        expect([name, deployment.metadata.name, containerPorts([deployment]).some((p) => p.containerPort === port)]).toEqual([name, deployment.metadata.name, true]);
      }
    }
  });

  test('every Deployment is scraped, by the job named after its component', () => {
    const targets = dnsTargets();
    for (const deployment of deployments) {
      const jobs = new Set(targets.filter((t) => selected(serviceOfDnsName(t.name)?.spec.selector ?? { none: 'none' }).includes(deployment)).map((t) => t.job));
      const component = deployment.spec.template.metadata.labels['app.kubernetes.io/component'];
      expect([deployment.metadata.name, [...jobs]]).toEqual([deployment.metadata.name, [JOB_OF_COMPONENT[component]]]);
    }
  });

  test('NetworkPolicies let Prometheus reach every port it scrapes and keep it off the nodes\' gRPC ports', () => {
    for (const { name, port } of dnsTargets()) {
      for (const deployment of selected(serviceOfDnsName(name)?.spec.selector ?? { none: 'none' })) {
        expect([name, deployment.metadata.name, port, admits(deployment, port ?? -1, PROMETHEUS_POD)]).toEqual([name, deployment.metadata.name, port, true]);
      }
    }
    for (const node of clusterConfig().nodes) {
      const deployment = deployments.find((d) => d.metadata.name === node.id);
      expect([node.id, deployment !== undefined && admits(deployment, portOf(node.address), PROMETHEUS_POD)]).toEqual([node.id, false]);
      // The same check lets the coordinator through, so a false above is the policy, not the check.
      const coordinator = { namespace: NAMESPACE, labels: { 'app.kubernetes.io/name': 'pipeserve', 'app.kubernetes.io/component': 'coordinator' } };
      expect([node.id, deployment !== undefined && admits(deployment, portOf(node.address), coordinator)]).toEqual([node.id, true]);
    }
  });
});
