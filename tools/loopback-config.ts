import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { freeLoopbackPort } from './free-port';

export interface LoopbackConfigOptions {
  readonly modelDir: string;
  readonly modelName?: string;
  readonly logLevel?: string;
  /** Entries of config.json's `limits`, in its snake_case names. */
  readonly limits?: Readonly<Record<string, number>>;
  /** config.json's `runtime` (e.g. `intra_op_threads`). */
  readonly runtime?: Readonly<Record<string, number>>;
  /** Replicas of each stage (default one each); replicas are named node2a, node2b, … */
  readonly replicas?: readonly number[];
  /** Each node listens on a port of its own behind its public address, for a proxy in between (the benchmark's link delay). */
  readonly separateNodeListenPorts?: boolean;
  /** config.json's `security` section as written there (`cluster_secret`, `tls: {ca_file, cert_file, key_file}`). */
  readonly security?: Readonly<Record<string, unknown>>;
  /** `api.api_key`. */
  readonly apiKey?: string;
}

export interface LoopbackNode {
  readonly id: string;
  readonly address: string;
  readonly model_part: number;
  readonly metrics_port: number;
  /** Where the node listens, when a proxy stands at `address`. */
  readonly bind_address?: string;
}

/** Where the services of a loopback system listen. */
export interface LoopbackSystem {
  readonly apiUrl: string;
  readonly tokenizerAddress: string;
  readonly coordinatorAddress: string;
  readonly nodes: readonly LoopbackNode[];
  /** host:port of each /metrics endpoint, by Prometheus job. */
  readonly metricsTargets: Record<'tokenizer' | 'coordinator' | 'nodes' | 'api', string[]>;
}

/**
 * Writes a config.json of its own for a whole system on 127.0.0.1 (one node per stage of the
 * model, every port a free one) into a new temporary folder: what tests and the benchmark
 * start the real services with, through CONFIG_PATH.
 */
export async function writeLoopbackConfig(options: LoopbackConfigOptions): Promise<{ dir: string; configPath: string; system: LoopbackSystem }> {
  const manifest = JSON.parse(await readFile(path.join(options.modelDir, 'manifest.json'), 'utf8')) as { stages: unknown[] };
  const port = freeLoopbackPort;
  const [apiPort, tokenizerPort, tokenizerMetrics, coordinatorPort, coordinatorMetrics] = [await port(), await port(), await port(), await port(), await port()];
  const nodes: LoopbackNode[] = [];
  for (let stage = 0; stage < manifest.stages.length; stage++) {
    const replicas = options.replicas?.[stage] ?? 1;
    for (let replica = 0; replica < replicas; replica++) {
      const id = replicas === 1 ? `node${stage + 1}` : `node${stage + 1}${String.fromCharCode(97 + replica)}`;
      const node: LoopbackNode = { id, address: `127.0.0.1:${await port()}`, model_part: stage, metrics_port: await port() };
      nodes.push(options.separateNodeListenPorts === true ? { ...node, bind_address: `127.0.0.1:${await port()}` } : node);
    }
  }
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pipeserve-loopback-'));
  const configPath = path.join(dir, 'config.json');
  await writeFile(
    configPath,
    JSON.stringify({
      model_name: options.modelName ?? path.basename(options.modelDir),
      model_dir: options.modelDir,
      log_level: options.logLevel ?? 'info',
      api: { port: apiPort, host: '127.0.0.1', ...(options.apiKey === undefined ? {} : { api_key: options.apiKey }) },
      tokenizer: { address: `127.0.0.1:${tokenizerPort}`, metrics_port: tokenizerMetrics },
      coordinator: { address: `127.0.0.1:${coordinatorPort}`, metrics_port: coordinatorMetrics },
      nodes,
      limits: options.limits ?? {},
      ...(options.runtime === undefined ? {} : { runtime: options.runtime }),
      ...(options.security === undefined ? {} : { security: options.security }),
    }),
  );
  const system: LoopbackSystem = {
    apiUrl: `http://127.0.0.1:${apiPort}`,
    tokenizerAddress: `127.0.0.1:${tokenizerPort}`,
    coordinatorAddress: `127.0.0.1:${coordinatorPort}`,
    nodes,
    metricsTargets: {
      api: [`127.0.0.1:${apiPort}`],
      tokenizer: [`127.0.0.1:${tokenizerMetrics}`],
      coordinator: [`127.0.0.1:${coordinatorMetrics}`],
      nodes: nodes.map((n) => `127.0.0.1:${n.metrics_port}`),
    },
  };
  return { dir, configPath, system };
}
