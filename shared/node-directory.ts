import { lookup as dnsLookup } from 'node:dns/promises';
import type { NodeEntry } from './config';

/** One stage replica the project can route to. */
export interface NodeReplica {
  /** `node1` for a static entry, `node1@10.0.0.7` for a replica found through DNS. */
  readonly id: string;
  /** host:port its gRPC server answers on. */
  readonly address: string;
  readonly stage: number;
  /** The config.json entry it comes from. */
  readonly entryId: string;
  readonly metricsPort: number;
}

export type AddressLookup = (host: string) => Promise<readonly string[]>;

const DEFAULT_REFRESH_MS = 5_000;
/** `findOrRefresh` resolves again at most this often: an unknown id cannot make a node query DNS in a loop. */
const MIN_ON_DEMAND_REFRESH_MS = 1_000;

/**
 * The stage replicas of a topology: a static `nodes[]` entry is one replica; a `"discovery":
 * "dns"` entry is every address its host resolves to (a Kubernetes headless Service: scale the
 * Deployment and the new pods join), re-resolved every few seconds. The coordinator routes only
 * to replicas listed here, and a node passes hidden states only to replicas listed here: no
 * message can make either connect anywhere else.
 */
export class NodeDirectory {
  private discovered = new Map<string, readonly NodeReplica[]>();
  private timer: NodeJS.Timeout | undefined;
  private readonly listeners: (() => void)[] = [];
  private refreshing: Promise<void> | undefined;
  private lastOnDemandRefresh = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly entries: readonly NodeEntry[],
    private readonly lookup: AddressLookup = defaultLookup,
    private readonly refreshMs = DEFAULT_REFRESH_MS,
  ) {}

  /** Resolves the DNS entries once, then keeps them fresh until `stop`. */
  async start(): Promise<void> {
    await this.refresh();
    if (this.entries.some((e) => e.discovery === 'dns')) {
      this.timer = setInterval(() => void this.refresh(), this.refreshMs);
      this.timer.unref();
    }
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** Calls `listener` after a refresh that changed the replicas; returns what unsubscribes it. */
  onChange(listener: () => void): () => void {
    this.listeners.push(listener);
    return () => {
      const at = this.listeners.indexOf(listener);
      if (at >= 0) this.listeners.splice(at, 1);
    };
  }

  replicas(): NodeReplica[] {
    return this.entries.flatMap((entry) => (entry.discovery === 'dns' ? (this.discovered.get(entry.id) ?? []) : [staticReplica(entry)]));
  }

  find(id: string): NodeReplica | undefined {
    return this.replicas().find((replica) => replica.id === id);
  }

  /**
   * `find`, and for an id of a DNS entry that is not listed yet (`node2@10.0.0.9`: a replica
   * scaled up since the last refresh, which the coordinator may have found first) one refresh
   * before answering, at most once per MIN_ON_DEMAND_REFRESH_MS. Still only what DNS answers.
   */
  async findOrRefresh(id: string): Promise<NodeReplica | undefined> {
    const known = this.find(id);
    if (known !== undefined) return known;
    const at = id.indexOf('@');
    if (at < 0 || !this.entries.some((e) => e.discovery === 'dns' && e.id === id.slice(0, at))) return undefined;
    if (Date.now() - this.lastOnDemandRefresh >= MIN_ON_DEMAND_REFRESH_MS) {
      this.lastOnDemandRefresh = Date.now();
      await this.refresh();
    } else {
      await this.refreshing;
    }
    return this.find(id);
  }

  ofStage(stage: number): NodeReplica[] {
    return this.replicas().filter((replica) => replica.stage === stage);
  }

  /**
   * One resolution of every DNS entry at a time: a timer tick or an on-demand refresh that comes
   * while one runs (a slow resolver) joins it instead of starting another that could finish
   * first and be overwritten by the older answer.
   */
  private refresh(): Promise<void> {
    this.refreshing ??= this.resolveAll().finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  private async resolveAll(): Promise<void> {
    let changed = false;
    for (const entry of this.entries.filter((e) => e.discovery === 'dns')) {
      const { host, port } = splitAddress(entry.address);
      let addresses: readonly string[];
      try {
        addresses = [...new Set(await this.lookup(host))].sort();
      } catch {
        // A name that does not resolve right now keeps its last known replicas.
        continue;
      }
      const replicas = addresses.map((ip) => ({
        id: `${entry.id}@${ip}`,
        address: `${ip.includes(':') ? `[${ip}]` : ip}:${port}`,
        stage: entry.modelPart,
        entryId: entry.id,
        metricsPort: entry.metricsPort,
      }));
      const before = (this.discovered.get(entry.id) ?? []).map((r) => r.id).join(',');
      if (before !== replicas.map((r) => r.id).join(',')) changed = true;
      this.discovered.set(entry.id, replicas);
    }
    if (changed) for (const listener of this.listeners) listener();
  }
}

function staticReplica(entry: NodeEntry): NodeReplica {
  return { id: entry.id, address: entry.address, stage: entry.modelPart, entryId: entry.id, metricsPort: entry.metricsPort };
}

function splitAddress(address: string): { host: string; port: string } {
  const colon = address.lastIndexOf(':');
  return { host: address.slice(0, colon).replace(/^\[|\]$/g, ''), port: address.slice(colon + 1) };
}

async function defaultLookup(host: string): Promise<string[]> {
  return (await dnsLookup(host, { all: true, family: 4 })).map((a) => a.address);
}
