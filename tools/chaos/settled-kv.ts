/** What one node said about its KV at the end of a run: the sequences it holds, or why it could not say. */
export type KvReading = { readonly sequences: number } | { readonly unknown: string };

export interface SettledKvOptions {
  readonly nodes: readonly { readonly id: string; readonly address: string }[];
  /** The ids of the nodes whose process runs now (one that does not cannot answer). */
  readonly running: () => ReadonlySet<string>;
  /** A node's Describe answer (tools/describe-node in the chaos run). */
  readonly describe: (address: string) => Promise<{ readonly kv_sequences: number }>;
  /** Nodes that all answered get this long for their releases to land. */
  readonly settleMs: number;
  /** A node that does not answer (restarted late, still loading its stage) gets this long; then its KV is unknown. */
  readonly answerWaitMs: number;
  readonly pollMs: number;
  /** Past the run's deadline the readings so far are the answer. */
  readonly signal: AbortSignal;
}

/**
 * Every node's KV once releases have had time to land: polled until every node answers with no
 * sequence held, or the time is up. A node that never answered is `unknown`, never 0: a silent
 * node may be holding anything.
 */
export async function settledKv(options: SettledKvOptions): Promise<Map<string, KvReading>> {
  const startedAt = Date.now();
  for (;;) {
    const running = options.running();
    const readings = new Map(await Promise.all(options.nodes.map(async (node) => [node.id, await readKv(node, running, options.describe)] as const)));
    const answered = [...readings.values()].every((r) => 'sequences' in r);
    const held = [...readings.values()].some((r) => 'sequences' in r && r.sequences > 0);
    const elapsedMs = Date.now() - startedAt;
    if ((answered && !held) || options.signal.aborted || elapsedMs >= options.answerWaitMs || (answered && elapsedMs >= options.settleMs)) return readings;
    await new Promise((resolve) => setTimeout(resolve, options.pollMs));
  }
}

async function readKv(node: { readonly id: string; readonly address: string }, running: ReadonlySet<string>, describe: SettledKvOptions['describe']): Promise<KvReading> {
  if (!running.has(node.id)) return { unknown: 'not running' };
  try {
    return { sequences: (await describe(node.address)).kv_sequences };
  } catch (error) {
    return { unknown: `no answer to Describe: ${error instanceof Error ? error.message : String(error)}` };
  }
}
