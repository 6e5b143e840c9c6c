import { postJson } from '../support/http';
import { RunningSystem, SYSTEM_START_TIMEOUT_MS } from '../support/system';
import { tinyModel } from '../support/test-models';

const REQUEST_TIMEOUT_MS = 60_000;
const PROMPTS = ['The history of the world', 'Once upon a time', 'Dear Sir or Madam,', 'In 1998, the company', 'def main():', 'Breaking news:'];

let system: RunningSystem;

beforeAll(async () => {
  system = await RunningSystem.start({ modelDir: await tinyModel({ stages: 3 }), replicas: [1, 2, 1] });
}, SYSTEM_START_TIMEOUT_MS * 2);

afterAll(async () => {
  await system?.stop();
});

async function forwardSteps(nodeId: string): Promise<number> {
  const node = system.config.nodes.find((n) => n.id === nodeId);
  const text = await (await fetch(`http://127.0.0.1:${node?.metrics_port}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('pipeserve_stage_forward_seconds_count{'));
  return Number(line?.slice(line.lastIndexOf(' ') + 1) ?? 0);
}

async function process(text: string): Promise<Record<string, unknown>> {
  const answer = await postJson(`${system.apiUrl}/api/model/process`, { text, max_new_tokens: 12 });
  if (answer.status !== 200) throw new Error(`${answer.status}: ${JSON.stringify(answer.body)}`);
  return answer.body;
}

it(
  'a stage with two replicas shares the sequences between them, and either replica gives the same tokens',
  async () => {
    const alone: Record<string, unknown>[] = [];
    for (const text of PROMPTS) alone.push(await process(text));
    const together = await Promise.all(PROMPTS.map((text) => process(text)));
    together.forEach((answer, i) => expect(answer.token_ids).toEqual(alone[i].token_ids));
    expect(await forwardSteps('node2a')).toBeGreaterThan(0);
    expect(await forwardSteps('node2b')).toBeGreaterThan(0);
    const usedNodes = new Set(together.flatMap((a) => (a.timings as { nodes: { node_id: string }[] }).nodes.map((n) => n.node_id)));
    expect(usedNodes).toEqual(new Set(['node1', 'node2a', 'node2b', 'node3']));
  },
  REQUEST_TIMEOUT_MS,
);

it(
  'when one replica of a stage crashes, at most one request fails before traffic moves to the other, and the system stays ready (degraded)',
  async () => {
    await system.killProcess('node2a');
    // The first request may still be routed to the dead replica; its failure marks it down at
    // once, without waiting for the next health check.
    const results = [];
    for (const text of PROMPTS) {
      const answer = await postJson(`${system.apiUrl}/api/model/process`, { text, max_new_tokens: 12 });
      results.push(answer.status);
    }
    expect(results.filter((status) => status !== 200).length).toBeLessThanOrEqual(1);
    const after = await process(PROMPTS[0]);
    expect((after.timings as { nodes: { node_id: string }[] }).nodes.map((n) => n.node_id)).toEqual(['node1', 'node2b', 'node3']);

    const ready = await fetch(`${system.apiUrl}/ready`);
    const body = (await ready.json()) as { ready: boolean; degraded?: string[] };
    expect(ready.status).toBe(200);
    expect(body.degraded?.join(' ')).toContain('node2a');
  },
  REQUEST_TIMEOUT_MS,
);
