import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { type AppConfig, ENV_OVERRIDES, parseConfig, portOf } from '../../shared/config';
import { MANIFEST_FILE_NAME } from '../../shared/model/manifest';
import {
  allContainers,
  argvOf,
  type Container,
  containerPorts,
  type Deployment,
  entrypointOf,
  envOf,
  K8S_DIR,
  type K8sObject,
  type Labels,
  type LabelSelector,
  ofKind,
  type Overlay,
  OVERLAYS,
  parseServiceDnsName,
  renderKustomization,
  renderOverlay,
  resolvePort,
  ROOT,
  selects,
  type Service,
  type Workload,
  workloadsOf,
} from '../support/k8s-manifests';

const NAMESPACE = 'model-inference';
const MONITORING_NAMESPACE = 'monitoring';
const CONFIG_MAP = 'pipeserve-config';
const PROMETHEUS_CONFIGMAP = 'pipeserve-prometheus';
const MODEL_CLAIM = 'pipeserve-models';
const PROMETHEUS_DIR = path.join(ROOT, 'prometheus');
/** What a plain Prometheus in the cluster reads: the ConfigMap ships these files of prometheus/. */
const PROMETHEUS_FILES = ['prometheus-k8s.yml', 'alerts.yml'];
/** The job a pod is scraped by, by its app.kubernetes.io/component: the jobs of prometheus.yml and prometheus-k8s.yml. */
const JOB_OF_COMPONENT: Labels = { api: 'api', tokenizer: 'tokenizer', coordinator: 'coordinator', node: 'nodes' };
const COMPONENT = 'app.kubernetes.io/component';
const STAGE = 'pipeserve/stage';
const SCHEMA_CHECK_TIMEOUT_MS = 60_000;

/** Process entrypoints of the deployment contract, as source paths. */
const ENTRYPOINTS = new Set([
  'services/api/main.ts',
  'services/tokenizer/main.ts',
  'services/coordinator/main.ts',
  'services/node/main.ts',
  'tools/model-init.ts',
]);
/** The services that read the compiled model (manifest, tokenizer files or a stage); the api reads none. */
const MODEL_READERS = new Set(['services/tokenizer/main.ts', 'services/coordinator/main.ts', 'services/node/main.ts']);
/** Environment a container may set: what shared/config.ts reads, and a node's identity (NODE_ID, and POD_IP with DNS discovery). */
const NODE_IDENTITY_ENV = new Set(['NODE_ID', 'POD_IP']);
const CONFIG_ENV = new Set(Object.keys(ENV_OVERRIDES));

interface Located { where: string; doc: K8sObject }
interface Hpa extends K8sObject { spec: { scaleTargetRef: { apiVersion: string; kind: string; name: string }; minReplicas?: number; maxReplicas: number } }
interface Pdb extends K8sObject { spec: { selector: LabelSelector; minAvailable?: number; maxUnavailable?: number } }
interface Pvc extends K8sObject { spec: { accessModes: string[] } }
interface ServiceMonitor extends K8sObject {
  spec: { jobLabel?: string; namespaceSelector?: { matchNames?: string[] }; selector: LabelSelector; endpoints: { port?: string; path?: string }[] };
}
interface PrometheusConfig {
  scrape_configs: { job_name: string; dns_sd_configs?: { names: string[]; type?: string; port?: number }[] }[];
}

/**
 * kubernetes-models and @kubernetes-models/prometheus-operator ship as ES modules only, which this
 * CommonJS test cannot require (Node 20), so a child Node process imports the model class of each
 * object's apiVersion/kind and validates it; an apiVersion/kind without a model fails like an
 * invalid object.
 */
const VALIDATE_SCRIPT = `
const docs = JSON.parse(await new Promise((resolve) => { let s = ''; process.stdin.on('data', (c) => (s += c)); process.stdin.on('end', () => resolve(s)); }));
const PACKAGE_OF_GROUP = { 'monitoring.coreos.com': '@kubernetes-models/prometheus-operator' };
const problems = [];
for (const { where, doc } of docs) {
  const at = where + ' ' + doc.kind + '/' + (doc.metadata && doc.metadata.name);
  const slash = String(doc.apiVersion).indexOf('/');
  const group = slash < 0 ? '' : doc.apiVersion.slice(0, slash);
  const version = slash < 0 ? doc.apiVersion : doc.apiVersion.slice(slash + 1);
  const specifier = (PACKAGE_OF_GROUP[group] ?? 'kubernetes-models') + '/' + (group ? group + '/' : '') + version + '/' + doc.kind;
  let Model;
  try { Model = (await import(specifier))[doc.kind]; } catch (e) { Model = undefined; }
  if (typeof Model !== 'function') { problems.push(at + ': no Kubernetes model for ' + doc.apiVersion + ' ' + doc.kind); continue; }
  try { new Model(doc).validate(); } catch (e) { problems.push(at + ': ' + e.message); }
}
process.stdout.write(JSON.stringify(problems));
`;

function schemaProblems(docs: readonly Located[]): string[] {
  const result = spawnSync(process.execPath, ['--input-type=module', '-e', VALIDATE_SCRIPT], {
    cwd: ROOT,
    input: JSON.stringify(docs),
    encoding: 'utf8',
    timeout: SCHEMA_CHECK_TIMEOUT_MS,
  });
  if (result.status !== 0) throw new Error(`kubernetes-models validation did not run: ${result.stderr}`);
  return JSON.parse(result.stdout) as string[];
}

/** The rendered objects of one overlay, and what the tests look up in them. */
class Rendered {
  readonly workloads: Workload[];
  readonly deployments: Deployment[];
  readonly services: Service[];

  constructor(readonly overlay: Overlay, readonly objects: K8sObject[]) {
    this.workloads = workloadsOf(objects);
    this.deployments = ofKind<Deployment>(objects, 'Deployment');
    this.services = ofKind<Service>(objects, 'Service');
  }

  find<T extends K8sObject>(kind: string, name: string, namespace = NAMESPACE): T | undefined {
    return this.objects.find((o): o is T => o.kind === kind && o.metadata.name === name && (o.metadata.namespace ?? 'default') === namespace);
  }

  /** Workloads whose pods carry the labels a selector (of `namespace`) selects. */
  selectedBy(selector: LabelSelector | Labels, namespace = NAMESPACE): Workload[] {
    const labelSelector: LabelSelector = 'matchLabels' in selector || 'matchExpressions' in selector ? (selector as LabelSelector) : { matchLabels: selector as Labels };
    return this.workloads.filter((w) => w.namespace === namespace && selects(labelSelector, w.pod.metadata.labels));
  }

  /** The workload whose main container runs `entrypoint`. */
  running(entrypoint: string): Workload[] {
    return this.workloads.filter((w) => w.pod.spec.containers.some((c) => entrypointOf(c) === entrypoint));
  }

  /** The ConfigMap holding config.json, found as the api mounts it (kustomize adds a content hash to its name). */
  configMapName(): string {
    const [api] = this.running('services/api/main.ts');
    const name = api?.pod.spec.volumes?.find((v) => v.configMap?.name.startsWith(`${CONFIG_MAP}-`))?.configMap?.name;
    if (name === undefined) throw new Error(`${this.overlay}: the api mounts no ${CONFIG_MAP}-<hash> ConfigMap`);
    return name;
  }

  configJson(): unknown {
    const text = this.find(`ConfigMap`, this.configMapName())?.data?.['config.json'];
    if (text === undefined) throw new Error(`${this.overlay}: ConfigMap ${this.configMapName()} has no config.json`);
    return JSON.parse(text);
  }

  config(env: Record<string, string> = {}): AppConfig {
    return parseConfig(this.configJson(), { baseDir: '/etc/pipeserve', env });
  }

  nodeDeployment(nodeId: string): Deployment | undefined {
    return this.deployments.find((d) => d.spec.template.spec.containers.some((c) => entrypointOf(c) === 'services/node/main.ts' && envOf(c).NODE_ID === nodeId));
  }
}

const rendered = Object.fromEntries(OVERLAYS.map((overlay) => [overlay, new Rendered(overlay, renderOverlay(overlay))])) as Record<Overlay, Rendered>;
const repoConfig = parseConfig(JSON.parse(readFileSync(path.join(ROOT, 'config.json'), 'utf8')), { baseDir: ROOT });
const nodeMain = readFileSync(path.join(ROOT, 'services', 'node', 'main.ts'), 'utf8');

/** A selector no pod matches, for lookups that found nothing. */
const NO_POD: LabelSelector = { matchLabels: { 'pipeserve/no-such-label': 'none' } };

describe('k8s/ layout', () => {
  test('k8s/ is a kustomize base, a component and two overlays, with no flat manifests left beside them', () => {
    expect(readdirSync(K8S_DIR).sort()).toEqual(['base', 'components', 'overlays']);
    expect(readdirSync(path.join(K8S_DIR, 'overlays')).sort()).toEqual([...OVERLAYS].sort());
    for (const dir of ['base', 'components/prometheus-operator', ...OVERLAYS.map((o) => `overlays/${o}`)]) {
      expect([dir, readdirSync(path.join(K8S_DIR, dir)).includes('kustomization.yaml')]).toEqual([dir, true]);
    }
  });

  test('kubectl kustomize rejects a kustomization naming a missing resource, so a render that passes means something', () => {
    expect(() => renderKustomization(path.join(ROOT, 'tests', 'fixtures-that-do-not-exist'))).toThrow(/kubectl kustomize .* failed/);
  });

  test(
    'the schema check rejects a wrongly typed field, a wrong enum in a ServiceMonitor and an unknown kind',
    () => {
      const badDeployment = structuredClone(rendered.dev.deployments[0]);
      (badDeployment.spec.template.spec.containers[0].ports as unknown as { containerPort: string }[])[0].containerPort = 'grpc';
      const badMonitor = structuredClone(ofKind<ServiceMonitor>(rendered.prod.objects, 'ServiceMonitor')[0]);
      (badMonitor.spec.endpoints[0] as { scheme?: string }).scheme = 'gopher';
      const problems = schemaProblems([
        { where: 'bad', doc: badDeployment },
        { where: 'bad', doc: badMonitor },
        { where: 'bad', doc: { apiVersion: 'apps/v1', kind: 'Deploymnt', metadata: { name: 'x' } } },
      ]);
      expect(problems).toEqual([
        expect.stringMatching(/containerPort must be integer/),
        expect.stringMatching(/scheme must be equal to one of the allowed values/),
        expect.stringMatching(/no Kubernetes model for apps\/v1 Deploymnt/),
      ]);
    },
    SCHEMA_CHECK_TIMEOUT_MS,
  );

  test('every overlay renders the same objects by kind and name, bar what prod adds', () => {
    const names = (r: Rendered): string[] => r.objects.map((o) => `${o.kind}/${o.metadata.name}`);
    expect(names(rendered.prod)).toEqual(expect.arrayContaining(names(rendered.dev)));
    const added = names(rendered.prod).filter((n) => !names(rendered.dev).includes(n)).sort();
    expect(added).toEqual(
      ['HorizontalPodAutoscaler/api', 'PrometheusRule/pipeserve', 'ServiceMonitor/pipeserve', ...['api', 'tokenizer', ...repoConfig.nodes.map((n) => n.id)].map((n) => `PodDisruptionBudget/${n}`)].sort(),
    );
  });
});

describe.each(OVERLAYS)('overlay %s', (overlay) => {
  const r = rendered[overlay];

  test(
    'every object validates against the schema of its apiVersion and kind (kubernetes-models; the Prometheus Operator models for monitoring.coreos.com)',
    () => {
      expect(r.objects.length).toBeGreaterThan(20);
      expect(schemaProblems(r.objects.map((doc) => ({ where: overlay, doc })))).toEqual([]);
    },
    SCHEMA_CHECK_TIMEOUT_MS,
  );

  test('every object lives in model-inference, but the Prometheus ConfigMap in monitoring; both namespaces are objects here', () => {
    const namespaces = ofKind(r.objects, 'Namespace').map((n) => n.metadata.name).sort();
    expect(namespaces).toEqual([MONITORING_NAMESPACE, NAMESPACE].sort());
    const elsewhere = r.objects.filter((o) => o.kind !== 'Namespace' && o.metadata.namespace !== NAMESPACE).map((o) => `${o.kind}/${o.metadata.name}@${o.metadata.namespace}`);
    expect(elsewhere).toEqual([`ConfigMap/${PROMETHEUS_CONFIGMAP}@${MONITORING_NAMESPACE}`]);
  });

  test("the ConfigMap's config.json passes parseConfig, keeps the ports of the repository's config.json, and finds every stage's replicas by DNS", () => {
    const config = r.config();
    expect(config.api.port).toBe(repoConfig.api.port);
    expect([portOf(config.tokenizer.address), config.tokenizer.metricsPort]).toEqual([portOf(repoConfig.tokenizer.address), repoConfig.tokenizer.metricsPort]);
    expect([portOf(config.coordinator.address), config.coordinator.metricsPort]).toEqual([portOf(repoConfig.coordinator.address), repoConfig.coordinator.metricsPort]);
    expect(config.nodes.map((n) => [n.id, n.modelPart, portOf(n.address), n.metricsPort])).toEqual(
      repoConfig.nodes.map((n) => [n.id, n.modelPart, portOf(n.address), n.metricsPort]),
    );
    const entries = (r.configJson() as { nodes: { id: string; discovery?: string }[] }).nodes;
    expect(entries.map((n) => [n.id, n.discovery])).toEqual(config.nodes.map((n) => [n.id, 'dns']));
  });

  test('every address of config.json is the DNS name of a Service here exposing that port to pods listening on it', () => {
    const config = r.config();
    const entries: [string, string][] = [
      ['tokenizer', config.tokenizer.address],
      ['coordinator', config.coordinator.address],
      ...config.nodes.map((n): [string, string] => [n.id, n.address]),
    ];
    for (const [name, address] of entries) {
      const host = address.slice(0, address.lastIndexOf(':'));
      const [serviceName, namespace] = parseServiceDnsName(host) ?? [];
      const service = r.find<Service>('Service', serviceName ?? '', namespace);
      const servicePort = service?.spec.ports.find((p) => p.port === portOf(address));
      expect([name, serviceName, servicePort === undefined]).toEqual([name, name, false]);
      for (const workload of r.selectedBy(service?.spec.selector ?? NO_POD)) {
        expect([name, workload.name, resolvePort(servicePort?.targetPort ?? -1, workload.pod)]).toEqual([name, workload.name, portOf(address)]);
      }
    }
  });

  test('a stage scaled with kubectl scale joins the pipeline: its entry names a headless Service of ready pods that selects that Deployment alone', () => {
    const config = r.config();
    for (const node of config.nodes) {
      const [serviceName] = parseServiceDnsName(node.address.slice(0, node.address.lastIndexOf(':'))) ?? [];
      const service = r.find<Service>('Service', serviceName ?? '');
      // Headless: one A record per pod, so every replica the Deployment gains is resolved; ready
      // ones only, so a replica still loading its stage is not routed to.
      expect([node.id, service?.spec.clusterIP, service?.spec.publishNotReadyAddresses ?? false]).toEqual([node.id, 'None', false]);
      const deployment = r.nodeDeployment(node.id);
      expect([node.id, r.selectedBy(service?.spec.selector ?? NO_POD).map((w) => w.object)]).toEqual([node.id, [deployment]]);
      // The Deployment's own selector is the stage, so `kubectl scale` adds pods the Service selects.
      expect([node.id, deployment !== undefined && selects(deployment.spec.selector, deployment.spec.template.metadata.labels)]).toEqual([node.id, true]);
      expect([node.id, deployment?.spec.template.metadata.labels[STAGE]]).toEqual([node.id, String(node.modelPart)]);
    }
    // NODE_ADDRESSES would pin each stage to one static address again.
    const pinned = r.workloads.flatMap((w) => allContainers(w.pod).filter((c) => 'NODE_ADDRESSES' in envOf(c)).map((c) => `${w.name}/${c.name}`));
    expect(pinned).toEqual([]);
  });

  test("clients reach the api at one virtual IP that kube-proxy balances over all its pods (the autoscaler's too); only the stages and the metrics Services are headless", () => {
    const config = r.config();
    const [api] = r.running('services/api/main.ts');
    // A headless api Service would hand each client the pod IPs to pick from, and most pick the first.
    const balanced = r.services.filter((s) => s.spec.clusterIP !== 'None' && r.selectedBy(s.spec.selector).includes(api));
    expect(balanced.map((s) => [s.metadata.name, s.spec.type ?? 'ClusterIP', s.spec.clusterIP, s.spec.ports.map((p) => p.port)])).toEqual([['api', 'ClusterIP', undefined, [config.api.port]]]);
    const headless = r.services.filter((s) => s.spec.clusterIP === 'None').map((s) => s.metadata.name);
    expect(headless.sort()).toEqual([...config.nodes.map((n) => n.id), 'api-metrics', 'coordinator-metrics', 'tokenizer-metrics'].sort());
  });

  test('one node Deployment per config.json node: its NODE_ID, POD_IP from the Downward API, the ports of its entry, and no --node-id', () => {
    const config = r.config();
    const nodeWorkloads = r.running('services/node/main.ts');
    expect(nodeWorkloads.map((w) => w.name).sort()).toEqual(config.nodes.map((n) => n.id).sort());
    for (const node of config.nodes) {
      const deployment = r.nodeDeployment(node.id);
      const container = deployment?.spec.template.spec.containers[0];
      expect([node.id, deployment?.metadata.name, deployment?.spec.selector.matchLabels?.[STAGE]]).toEqual([node.id, node.id, String(node.modelPart)]);
      expect([node.id, container?.env?.find((e) => e.name === 'POD_IP')?.valueFrom]).toEqual([node.id, { fieldRef: { fieldPath: 'status.podIP' } }]);
      expect([node.id, argvOf(container ?? { name: '' }).includes('--node-id')]).toEqual([node.id, false]);
      expect([node.id, containerPorts(deployment?.spec.template ?? { metadata: { labels: {} }, spec: { containers: [] } }).map((p) => p.containerPort).sort()]).toEqual([
        node.id,
        [node.metricsPort, portOf(node.address)].sort(),
      ]);
    }
    // The node process takes its entry from NODE_ID when no --node-id is given.
    expect(nodeMain).toMatch(/env\.NODE_ID/);
  });

  test('every environment variable is one the services read, and parseConfig with each container\'s environment gives the ConfigMap\'s topology', () => {
    const config = r.config();
    for (const workload of r.workloads) {
      for (const container of allContainers(workload.pod)) {
        const where = `${workload.name}/${container.name}`;
        const isNode = entrypointOf(container) === 'services/node/main.ts';
        const names = (container.env ?? []).map((e) => e.name);
        const unknown = names.filter((n) => !CONFIG_ENV.has(n) && !(isNode && NODE_IDENTITY_ENV.has(n)));
        expect([where, unknown]).toEqual([where, []]);
        if (isNode) expect([where, names.filter((n) => NODE_IDENTITY_ENV.has(n)).sort()]).toEqual([where, [...NODE_IDENTITY_ENV].sort()]);
        const env = envOf(container);
        if (env.MODEL_DIR !== undefined) expect([where, env.MODEL_DIR]).toEqual([where, config.modelDir]);
        if (entrypointOf(container) === undefined || entrypointOf(container) === 'tools/model-init.ts') continue;
        const seen = r.config(env);
        expect([where, seen.modelDir, seen.tokenizer.address, seen.coordinator.address, seen.nodes.map((n) => n.address)]).toEqual([
          where,
          config.modelDir,
          config.tokenizer.address,
          config.coordinator.address,
          config.nodes.map((n) => n.address),
        ]);
        // CONFIG_PATH is where the pod mounts the ConfigMap.
        const mount = container.volumeMounts?.find((m) => workload.pod.spec.volumes?.find((v) => v.name === m.name)?.configMap?.name === r.configMapName());
        expect([where, env.CONFIG_PATH]).toEqual([where, `${mount?.mountPath}/config.json`]);
      }
    }
  });

  test('every container runs a contract entrypoint, or waits for the model manifest', () => {
    for (const workload of r.workloads) {
      for (const container of allContainers(workload.pod)) {
        const where = `${workload.name}/${container.name}`;
        const entrypoint = entrypointOf(container);
        if (entrypoint !== undefined) {
          expect([where, ENTRYPOINTS.has(entrypoint)]).toEqual([where, true]);
          continue;
        }
        // The only other program: a shell loop until model-init's manifest exists.
        const argv = argvOf(container);
        expect([where, container.name, argv.slice(0, 2)]).toEqual([where, 'wait-for-model', ['sh', '-c']]);
        expect([where, argv[2]]).toEqual([where, expect.stringContaining(`until [ -f "$MODEL_DIR/${MANIFEST_FILE_NAME}" ]`)]);
      }
    }
  });

  test('the model is built once: the Job model-init alone writes the claim; tokenizer, coordinator and nodes wait for it and mount it read-only; the api mounts no model', () => {
    const config = r.config();
    const builders = r.workloads.filter((w) => allContainers(w.pod).some((c) => entrypointOf(c) === 'tools/model-init.ts'));
    expect(builders.map((w) => `${w.kind}/${w.name}`)).toEqual(['Job/model-init']);
    const [job] = builders;
    expect(r.find('PersistentVolumeClaim', MODEL_CLAIM)).toBeDefined();
    const init = job.pod.spec.containers[0];
    const argv = argvOf(init);
    expect(argv).toContain('--if-missing');
    expect(argv[argv.indexOf('--out') + 1]).toBe(config.modelDir);
    const claimVolume = (w: Workload): string | undefined => w.pod.spec.volumes?.find((v) => v.persistentVolumeClaim?.claimName === MODEL_CLAIM)?.name;
    const jobMount = init.volumeMounts?.find((m) => m.name === claimVolume(job));
    expect([jobMount?.readOnly, config.modelDir.startsWith(`${jobMount?.mountPath}/`)]).toEqual([undefined, true]);
    expect(job.pod.spec.restartPolicy).toBe('OnFailure');

    for (const workload of r.workloads.filter((w) => w !== job)) {
      const main = workload.pod.spec.containers[0];
      const readsModel = MODEL_READERS.has(entrypointOf(main) ?? '');
      const volume = workload.pod.spec.volumes?.find((v) => v.persistentVolumeClaim?.claimName === MODEL_CLAIM);
      const where = workload.name;
      if (!readsModel) {
        expect([where, volume, workload.pod.spec.initContainers]).toEqual([where, undefined, undefined]);
        continue;
      }
      expect([where, volume?.persistentVolumeClaim?.readOnly]).toEqual([where, true]);
      for (const container of allContainers(workload.pod)) {
        const mount = container.volumeMounts?.find((m) => m.name === volume?.name);
        expect([where, container.name, mount?.readOnly, config.modelDir.startsWith(`${mount?.mountPath}/`)]).toEqual([where, container.name, true, true]);
      }
      expect([where, (workload.pod.spec.initContainers ?? []).map((c) => c.name)]).toEqual([where, ['wait-for-model']]);
    }
  });

  test('every Service selects the pods of a workload and targets ports those pods declare', () => {
    for (const service of r.services) {
      const name = service.metadata.name;
      const pods = r.selectedBy(service.spec.selector);
      expect([name, pods.length > 0]).toEqual([name, true]);
      for (const port of service.spec.ports) {
        for (const workload of pods) expect([name, port.targetPort, workload.name, resolvePort(port.targetPort, workload.pod) !== undefined]).toEqual([name, port.targetPort, workload.name, true]);
      }
    }
  });

  test('every reference resolves: volumes to ConfigMaps and claims, mounts to volumes, autoscalers to Deployments, budgets to pods', () => {
    for (const workload of r.workloads) {
      const volumes = workload.pod.spec.volumes ?? [];
      for (const volume of volumes) {
        if (volume.configMap !== undefined) expect([workload.name, volume.configMap.name, r.find('ConfigMap', volume.configMap.name) !== undefined]).toEqual([workload.name, volume.configMap.name, true]);
        if (volume.persistentVolumeClaim !== undefined) {
          const claim = volume.persistentVolumeClaim.claimName;
          expect([workload.name, claim, r.find('PersistentVolumeClaim', claim) !== undefined]).toEqual([workload.name, claim, true]);
        }
      }
      for (const container of allContainers(workload.pod)) {
        const unresolved = (container.volumeMounts ?? []).filter((m) => !volumes.some((v) => v.name === m.name)).map((m) => m.name);
        expect([workload.name, container.name, unresolved]).toEqual([workload.name, container.name, []]);
      }
    }
    for (const hpa of ofKind<Hpa>(r.objects, 'HorizontalPodAutoscaler')) {
      const target = hpa.spec.scaleTargetRef;
      expect([hpa.metadata.name, target.kind, r.find(target.kind, target.name) !== undefined]).toEqual([hpa.metadata.name, 'Deployment', true]);
    }
    for (const pdb of ofKind<Pdb>(r.objects, 'PodDisruptionBudget')) {
      expect([pdb.metadata.name, r.selectedBy(pdb.spec.selector).map((w) => w.name)]).toEqual([pdb.metadata.name, [pdb.metadata.name]]);
    }
  });

  test('every probe targets a port its container declares: httpGet /health for the api (readiness too), grpc on its config.json port for the gRPC services', () => {
    const config = r.config();
    const grpcPort: Record<string, number> = {
      'services/tokenizer/main.ts': portOf(config.tokenizer.address),
      'services/coordinator/main.ts': portOf(config.coordinator.address),
    };
    for (const deployment of r.deployments) {
      for (const container of deployment.spec.template.spec.containers) {
        const where = `${deployment.metadata.name}/${container.name}`;
        const entrypoint = entrypointOf(container) ?? '';
        const probes = [container.startupProbe, container.readinessProbe, container.livenessProbe];
        expect([where, probes.map((p) => p === undefined)]).toEqual([where, [false, false, false]]);
        if (entrypoint === 'services/api/main.ts') {
          // A stage outage answers 503 per request; it must not take the api out of its Service.
          for (const probe of probes) {
            expect([where, probe?.httpGet?.path, resolvePort(probe?.httpGet?.port ?? -1, deployment.spec.template)]).toEqual([where, '/health', config.api.port]);
          }
          continue;
        }
        const own = entrypoint === 'services/node/main.ts' ? portOf(config.nodes.find((n) => n.id === envOf(container).NODE_ID)?.address ?? ':0') : grpcPort[entrypoint];
        for (const probe of probes) expect([where, probe?.grpc?.port]).toEqual([where, own]);
      }
    }
  });

  test('every container runs as non-root, with a read-only root filesystem, no privilege escalation, no capabilities and no service-account token', () => {
    for (const workload of r.workloads) {
      const pod = workload.pod.spec;
      expect([workload.name, pod.automountServiceAccountToken]).toEqual([workload.name, false]);
      for (const container of allContainers(workload.pod)) {
        const where = `${workload.name}/${container.name}`;
        const security = container.securityContext ?? {};
        const uid = security.runAsUser ?? pod.securityContext?.runAsUser;
        expect([where, security.runAsNonRoot ?? pod.securityContext?.runAsNonRoot, typeof uid === 'number' && uid > 0]).toEqual([where, true, true]);
        expect([where, security.readOnlyRootFilesystem, security.allowPrivilegeEscalation, security.capabilities?.drop]).toEqual([where, true, false, ['ALL']]);
        // With a read-only root, /tmp must be a writable emptyDir.
        const tmp = container.volumeMounts?.find((m) => m.mountPath === '/tmp');
        expect([where, pod.volumes?.find((v) => v.name === tmp?.name)?.emptyDir !== undefined, tmp?.readOnly]).toEqual([where, true, undefined]);
      }
    }
  });

  test('every container has CPU and memory requests and limits, and runs the project image', () => {
    const images = new Set<string>();
    for (const workload of r.workloads) {
      for (const container of allContainers(workload.pod)) {
        const where = `${workload.name}/${container.name}`;
        for (const kind of ['requests', 'limits'] as const) {
          expect([where, kind, Object.keys(container.resources?.[kind] ?? {}).sort()]).toEqual([where, kind, ['cpu', 'memory']]);
        }
        images.add(container.image ?? '');
      }
    }
    expect([...images]).toEqual([expect.stringMatching(/^pipeserve:\d+\.\d+\.\d+$/)]);
  });

  test('every Deployment is annotated for annotation-based Prometheus discovery with a metrics port it declares', () => {
    for (const deployment of r.deployments) {
      const annotations = deployment.spec.template.metadata.annotations ?? {};
      const where = deployment.metadata.name;
      expect([where, annotations['prometheus.io/scrape'], annotations['prometheus.io/path']]).toEqual([where, 'true', '/metrics']);
      expect([where, resolvePort(Number(annotations['prometheus.io/port']), deployment.spec.template) !== undefined]).toEqual([where, true]);
    }
  });

  test('a stage keeps its capacity through an update: the rollout starts a replica before it stops one', () => {
    for (const node of r.config().nodes) {
      const strategy = r.nodeDeployment(node.id)?.spec.strategy;
      expect([node.id, strategy]).toEqual([node.id, { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } }]);
    }
  });

  test('the coordinator runs alone and is replaced, never rolled: two coordinators would drive the same nodes', () => {
    const [coordinator] = r.running('services/coordinator/main.ts');
    const spec = (coordinator?.object as Deployment).spec;
    expect([spec.replicas, spec.strategy?.type]).toEqual([1, 'Recreate']);
    expect(ofKind<Hpa>(r.objects, 'HorizontalPodAutoscaler').filter((h) => h.spec.scaleTargetRef.name === coordinator?.name)).toEqual([]);
  });

  test('the ConfigMap for a plain Prometheus holds prometheus-k8s.yml and alerts.yml of prometheus/ byte for byte', () => {
    const configMap = r.find<K8sObject>('ConfigMap', PROMETHEUS_CONFIGMAP, MONITORING_NAMESPACE);
    expect(Object.keys(configMap?.data ?? {}).sort()).toEqual([...PROMETHEUS_FILES].sort());
    for (const file of PROMETHEUS_FILES) {
      expect([file, configMap?.data?.[file]]).toEqual([file, readFileSync(path.join(PROMETHEUS_DIR, file), 'utf8')]);
    }
  });

  test('every name prometheus-k8s.yml resolves is a headless Service here, scraped on a port of that Service and of its pods; every Deployment by its component\'s job', () => {
    const config = YAML.parse(readFileSync(path.join(PROMETHEUS_DIR, 'prometheus-k8s.yml'), 'utf8')) as PrometheusConfig;
    const targets = config.scrape_configs.flatMap((job) => (job.dns_sd_configs ?? []).flatMap((sd) => sd.names.map((name) => ({ job: job.job_name, name, type: sd.type, port: sd.port }))));
    expect(targets.length).toBeGreaterThan(0);
    const jobsOf = new Map<Workload, Set<string>>();
    for (const { job, name, type, port } of targets) {
      const [serviceName, namespace] = parseServiceDnsName(name) ?? [];
      const service = r.find<Service>('Service', serviceName ?? '', namespace);
      // A records of a headless Service are the pod IPs, one per replica; a ClusterIP Service would answer with one virtual IP.
      expect([job, name, type, service?.spec.clusterIP]).toEqual([job, name, 'A', 'None']);
      const servicePort = service?.spec.ports.find((p) => p.port === port);
      expect([name, port, servicePort === undefined]).toEqual([name, port, false]);
      for (const workload of r.selectedBy(service?.spec.selector ?? NO_POD)) {
        expect([name, workload.name, resolvePort(servicePort?.targetPort ?? -1, workload.pod)]).toEqual([name, workload.name, port]);
        jobsOf.set(workload, (jobsOf.get(workload) ?? new Set()).add(job));
      }
    }
    for (const deployment of r.workloads.filter((w) => w.kind === 'Deployment')) {
      const component = deployment.pod.metadata.labels[COMPONENT];
      expect([deployment.name, [...(jobsOf.get(deployment) ?? [])]]).toEqual([deployment.name, [JOB_OF_COMPONENT[component]]]);
    }
  });
});

describe('overlay dev', () => {
  const r = rendered.dev;

  test('runs one replica of everything on one machine: no autoscaler, budget or Prometheus Operator object, the claim ReadWriteOnce', () => {
    expect(r.deployments.map((d) => [d.metadata.name, d.spec.replicas])).toEqual(r.deployments.map((d) => [d.metadata.name, 1]));
    expect(r.objects.filter((o) => ['HorizontalPodAutoscaler', 'PodDisruptionBudget'].includes(o.kind) || o.apiVersion.startsWith('monitoring.coreos.com/'))).toEqual([]);
    expect(r.find<Pvc>('PersistentVolumeClaim', MODEL_CLAIM)?.spec.accessModes).toEqual(['ReadWriteOnce']);
  });
});

describe('overlay prod', () => {
  const r = rendered.prod;
  const config = r.config();

  test('two replicas of every stage and of the tokenizer; the api scaled by an autoscaler that alone sets its replica count', () => {
    for (const node of config.nodes) expect([node.id, r.nodeDeployment(node.id)?.spec.replicas]).toEqual([node.id, 2]);
    expect(r.running('services/tokenizer/main.ts').map((w) => (w.object as Deployment).spec.replicas)).toEqual([2]);
    const [api] = r.running('services/api/main.ts');
    const hpas = ofKind<Hpa>(r.objects, 'HorizontalPodAutoscaler');
    expect(hpas.map((h) => [h.apiVersion, h.spec.scaleTargetRef])).toEqual([['autoscaling/v2', { apiVersion: 'apps/v1', kind: 'Deployment', name: api.name }]]);
    expect(hpas[0].spec.minReplicas).toBeGreaterThanOrEqual(2);
    expect((api.object as Deployment).spec.replicas).toBeUndefined();
  });

  test('a PodDisruptionBudget keeps one replica of the api, the tokenizer and every stage through a drain, and still lets one go', () => {
    const budgets = ofKind<Pdb>(r.objects, 'PodDisruptionBudget');
    const covered = ['services/api/main.ts', 'services/tokenizer/main.ts', 'services/node/main.ts'].flatMap((e) => r.running(e));
    for (const workload of covered) {
      const budget = budgets.filter((b) => r.selectedBy(b.spec.selector).includes(workload));
      const replicas = (workload.object as Deployment).spec.replicas ?? ofKind<Hpa>(r.objects, 'HorizontalPodAutoscaler').find((h) => h.spec.scaleTargetRef.name === workload.name)?.spec.minReplicas ?? 1;
      expect([workload.name, budget.map((b) => b.spec.minAvailable)]).toEqual([workload.name, [1]]);
      expect([workload.name, replicas > (budget[0]?.spec.minAvailable ?? Infinity)]).toEqual([workload.name, true]);
    }
  });

  test('replicas of one Deployment prefer different machines', () => {
    for (const deployment of r.deployments.filter((d) => (d.spec.replicas ?? 2) > 1)) {
      const terms = deployment.spec.template.spec.affinity?.podAntiAffinity?.preferredDuringSchedulingIgnoredDuringExecution ?? [];
      const term = terms.find((t) => t.podAffinityTerm.topologyKey === 'kubernetes.io/hostname')?.podAffinityTerm;
      // The term selects this Deployment's own pods and no other's.
      expect([deployment.metadata.name, r.selectedBy(term?.labelSelector ?? NO_POD).map((w) => w.name)]).toEqual([
        deployment.metadata.name,
        [deployment.metadata.name],
      ]);
    }
  });

  test('each stage gives onnxruntime as many threads as its CPU limit (stages spread over machines); dev keeps the one-per-stage default for co-located stages', () => {
    for (const node of config.nodes) {
      const container = r.nodeDeployment(node.id)?.spec.template.spec.containers.find((c) => entrypointOf(c) === 'services/node/main.ts');
      const cpuLimit = Number(container?.resources?.limits?.cpu);
      expect([node.id, r.config((container === undefined ? {} : envOf(container))).nodes.find((n) => n.id === node.id)?.intraOpThreads]).toEqual([node.id, cpuLimit]);
    }
    for (const node of rendered.dev.config().nodes) {
      const container = rendered.dev.nodeDeployment(node.id)?.spec.template.spec.containers.find((c) => entrypointOf(c) === 'services/node/main.ts');
      expect([node.id, (container === undefined ? {} : envOf(container)).INTRA_OP_THREADS, node.intraOpThreads]).toEqual([node.id, undefined, 1]);
    }
  });

  test('the model claim is ReadWriteMany: the Job and pods on several machines mount it', () => {
    expect(r.find<Pvc>('PersistentVolumeClaim', MODEL_CLAIM)?.spec.accessModes).toEqual(['ReadWriteMany']);
  });

  test('the ServiceMonitor scrapes every Deployment once, on a port named metrics that its pods declare, with the job of its component', () => {
    const [monitor, ...others] = ofKind<ServiceMonitor>(r.objects, 'ServiceMonitor');
    expect(others).toEqual([]);
    expect(monitor.spec.namespaceSelector?.matchNames).toEqual([NAMESPACE]);
    const scraped = r.services.filter((s) => s.metadata.namespace === NAMESPACE && selects(monitor.spec.selector, s.metadata.labels ?? {}));
    const jobsOf = new Map<Workload, string[]>();
    for (const service of scraped) {
      const job = service.metadata.labels?.[monitor.spec.jobLabel ?? ''];
      for (const endpoint of monitor.spec.endpoints) {
        const port = service.spec.ports.find((p) => p.name === endpoint.port);
        expect([service.metadata.name, endpoint.port, port === undefined]).toEqual([service.metadata.name, endpoint.port, false]);
        for (const workload of r.selectedBy(service.spec.selector)) {
          expect([service.metadata.name, workload.name, resolvePort(port?.targetPort ?? -1, workload.pod) !== undefined]).toEqual([service.metadata.name, workload.name, true]);
          jobsOf.set(workload, [...(jobsOf.get(workload) ?? []), job ?? '']);
        }
      }
    }
    for (const deployment of r.workloads.filter((w) => w.kind === 'Deployment')) {
      expect([deployment.name, jobsOf.get(deployment)]).toEqual([deployment.name, [JOB_OF_COMPONENT[deployment.pod.metadata.labels[COMPONENT]]]]);
    }
    // The metrics port of each scraped pod is the one config.json gives it.
    const metricsPorts = [config.tokenizer.metricsPort, config.coordinator.metricsPort, config.api.port, ...config.nodes.map((n) => n.metricsPort)].sort();
    const scrapedPorts = scraped.flatMap((s) => s.spec.ports.filter((p) => monitor.spec.endpoints.some((e) => e.port === p.name)).map((p) => p.port)).sort();
    expect(scrapedPorts).toEqual(metricsPorts);
  });

  test('the PrometheusRule holds the rules of prometheus/alerts.yml', () => {
    const rule = r.find<K8sObject>('PrometheusRule', 'pipeserve');
    const alerts = YAML.parse(readFileSync(path.join(PROMETHEUS_DIR, 'alerts.yml'), 'utf8')) as unknown;
    // Edit prometheus/alerts.yml, then copy its groups into k8s/components/prometheus-operator/prometheus-rule.yaml.
    expect(rule?.spec).toEqual(alerts);
  });

});
