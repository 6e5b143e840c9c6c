import { statSync } from 'node:fs';
import { startChromium, keepScreenshot, type HeadlessChromium } from '../support/chromium';
import { postJson } from '../support/http';
import { RunningSystem, SYSTEM_START_TIMEOUT_MS } from '../support/system';
import { tinyModel } from '../support/test-models';

/** A browser, a page load and a 24-token stream on a loaded machine. */
const BROWSER_TEST_TIMEOUT_MS = 90_000;
const PROMPT = 'Once upon a time';
const MAX_NEW_TOKENS = 24;

let system: RunningSystem;
let browser: HeadlessChromium;

beforeAll(async () => {
  system = await RunningSystem.start({ modelDir: await tinyModel({ stages: 3 }) });
  browser = await startChromium();
}, SYSTEM_START_TIMEOUT_MS * 2);

afterAll(async () => {
  await browser?.close();
  await system?.stop();
});

jest.setTimeout(BROWSER_TEST_TIMEOUT_MS);

/** The few browser globals the page functions below use: the project compiles without the DOM library. */
interface BrowserGlobals {
  readonly document: {
    querySelector(selector: string): { textContent: string | null } | null;
    querySelectorAll(selector: string): { readonly length: number };
  };
  readonly MutationObserver: new (callback: () => void) => { observe(target: unknown, options: Record<string, boolean>): void };
  readonly EventSource: { new (url: string): BrowserEventSource; readonly CLOSED: number };
  readonly MessageEvent: abstract new (...args: never[]) => { readonly data: string; readonly lastEventId: string };
  seenTexts?: string[];
}

interface BrowserEventSource {
  readonly readyState: number;
  onmessage: (() => void) | null;
  addEventListener(type: string, listener: (event: unknown) => void): void;
}

interface Reference {
  text: string;
  timings: { nodes: Array<{ node_id: string; stage: number; steps: number }> };
}

/** The same generation through the process route: what the page must end up showing. */
async function reference(body: Record<string, unknown>): Promise<Reference> {
  const response = await postJson(`${system.apiUrl}/api/model/process`, body);
  expect(response.status).toBe(200);
  return response.body as unknown as Reference;
}

describe('the playground in headless Chromium', () => {
  test('a click streams the completion into the page piece by piece, then shows per-node timings and the health of every stage', async () => {
    const { page, problems } = await browser.newPage();
    await page.setViewportSize({ width: 1280, height: 900 });
    await page.goto(`${system.apiUrl}/`);
    // The stage table comes from GET /ready: one row per node, all serving.
    await page.waitForFunction(() => (globalThis as unknown as BrowserGlobals).document.querySelectorAll('#stages tbody tr').length === 3);
    expect(await page.locator('#stages tbody tr').allInnerTexts()).toEqual([
      expect.stringMatching(/^node1\s+0\s+127\.0\.0\.1:\d+\s+● serving$/),
      expect.stringMatching(/^node2\s+1\s+127\.0\.0\.1:\d+\s+● serving$/),
      expect.stringMatching(/^node3\s+2\s+127\.0\.0\.1:\d+\s+● serving$/),
    ]);
    expect(await page.locator('#ready').innerText()).toBe('ready');

    await page.fill('#prompt', PROMPT);
    await page.fill('#max-new-tokens', String(MAX_NEW_TOKENS));
    await page.fill('#temperature', '0');
    // Every state the output goes through, as the browser renders it.
    await page.evaluate(() => {
      const browser = globalThis as unknown as BrowserGlobals;
      const seen: string[] = [];
      browser.seenTexts = seen;
      const generated = browser.document.querySelector('#generated');
      new browser.MutationObserver(() => seen.push(generated?.textContent ?? '')).observe(generated, { childList: true, characterData: true, subtree: true });
    });
    await page.click('#generate');
    await page.waitForSelector('#status[data-state="done"]');

    const expected = await reference({ text: PROMPT, max_new_tokens: MAX_NEW_TOKENS, temperature: 0, priority: 'interactive' });
    expect(await page.locator('#generated').textContent()).toBe(expected.text);
    const seen = await page.evaluate(() => (globalThis as unknown as BrowserGlobals).seenTexts ?? []);
    const distinct = [...new Set(seen.filter((t) => t !== ''))];
    // Streamed: the text grew through many prefixes of the final one, not in one piece.
    expect(distinct.length).toBeGreaterThan(MAX_NEW_TOKENS / 2);
    expect(distinct.every((t) => expected.text.startsWith(t))).toBe(true);

    const rows = await page.locator('#timings tbody tr').evaluateAll((trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent ?? '')));
    expect(rows.map((r) => [r[0], Number(r[1]), Number(r[3])])).toEqual(expected.timings.nodes.map((n) => [n.node_id, n.stage, n.steps]));
    expect(rows.every((r) => Number(r[2]) > 0)).toBe(true);
    expect(await page.locator('#status').innerText()).toMatch(new RegExp(`^done: ${MAX_NEW_TOKENS} tokens, length, \\d+ ms$`));

    const screenshot = await keepScreenshot(page, 'playground.png');
    expect(statSync(screenshot).size).toBeGreaterThan(10_000);
    expect(problems).toEqual([]);
    await page.close();
  });

  test("a browser EventSource reads the GET stream's named events, and its reconnect after the end is stopped by a 204", async () => {
    const { page, problems } = await browser.newPage();
    await page.goto(`${system.apiUrl}/`);
    const query = new URLSearchParams({ text: PROMPT, max_new_tokens: '8', temperature: '0' });
    const seen = await page.evaluate(async (url) => {
      const browser = globalThis as unknown as BrowserGlobals;
      const source = new browser.EventSource(url);
      const result = { unnamed: 0, tokens: [] as string[], done: 0, ids: [] as string[], serverErrors: 0 };
      source.onmessage = () => result.unnamed++;
      source.addEventListener('token', (event) => {
        const message = event as InstanceType<BrowserGlobals['MessageEvent']>;
        result.tokens.push((JSON.parse(message.data) as { text: string }).text);
        result.ids.push(message.lastEventId);
      });
      source.addEventListener('done', () => result.done++);
      // The connection's own errors are plain Events; the server's `error` events are MessageEvents.
      source.addEventListener('error', (event) => {
        if (event instanceof browser.MessageEvent) result.serverErrors++;
      });
      // Not closed on `done`: the browser reconnects with Last-Event-ID, and the 204 must stop it for good.
      const started = Date.now();
      while (source.readyState !== browser.EventSource.CLOSED && Date.now() - started < 20_000) await new Promise((resolve) => setTimeout(resolve, 50));
      return { ...result, closed: source.readyState === browser.EventSource.CLOSED };
    }, `/api/model/generate?${query.toString()}`);

    const expected = await reference({ text: PROMPT, max_new_tokens: 8, temperature: 0 });
    expect(seen.closed).toBe(true);
    expect(seen.done).toBe(1);
    expect(seen.unnamed).toBe(0);
    expect(seen.serverErrors).toBe(0);
    expect(seen.tokens.join('')).toBe(expected.text);
    expect(seen.ids).toEqual(seen.tokens.map((_t, i) => expect.stringMatching(new RegExp(`:${i}$`))));
    expect(problems.filter((p) => !p.includes('/api/model/generate'))).toEqual([]);
    await page.close();
  });

  test('the docs page renders every operation of the OpenAPI document with Swagger UI, from local assets only', async () => {
    const { page, problems } = await browser.newPage();
    const requested: string[] = [];
    page.on('request', (request) => requested.push(request.url()));
    await page.goto(`${system.apiUrl}/docs`);
    const openapi = (await (await fetch(`${system.apiUrl}/openapi.json`)).json()) as { paths: Record<string, Record<string, unknown>> };
    const operations = Object.values(openapi.paths).reduce((sum, item) => sum + Object.keys(item).length, 0);
    await page.waitForFunction((count) => (globalThis as unknown as BrowserGlobals).document.querySelectorAll('.opblock').length === count, operations);
    expect(await page.locator('.opblock-summary-path').first().innerText()).toBe('/api/model/process');
    expect(requested.every((url) => url.startsWith(system.apiUrl))).toBe(true);
    await keepScreenshot(page, 'docs.png');
    expect(problems).toEqual([]);
    await page.close();
  });
});
