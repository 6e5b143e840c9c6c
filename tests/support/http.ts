/** Small HTTP helpers for tests against the api service. */
export interface JsonResponse {
  readonly status: number;
  readonly headers: Headers;
  readonly body: Record<string, unknown>;
}

export async function postJson(url: string, body: unknown, init: RequestInit = {}): Promise<JsonResponse> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    signal: AbortSignal.timeout(60_000),
    ...init,
  });
  const text = await response.text();
  let parsed: Record<string, unknown>;
  try {
    parsed = JSON.parse(text) as Record<string, unknown>;
  } catch {
    throw new Error(`${url} answered ${response.status} with non-JSON: ${text.slice(0, 500)}`);
  }
  return { status: response.status, headers: response.headers, body: parsed };
}

export interface SseEvent {
  readonly event: string;
  readonly data: Record<string, unknown>;
  /** Which network read delivered it (0 for the first). */
  readonly read: number;
}

export interface TimedSseEvent extends SseEvent {
  /** ms since the request was sent. */
  readonly atMs: number;
}

/**
 * Reads a text/event-stream body event by event, as a browser's EventSource frames it (a
 * blank line ends an event; `event:` and `data:` lines), independently of the api's writer.
 */
export async function* readSse(response: Response): AsyncGenerator<SseEvent> {
  if (response.body === null) throw new Error('the response has no body');
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffered = '';
  for (let read = 0; ; read++) {
    const { done, value } = await reader.read();
    if (done) break;
    buffered += decoder.decode(value, { stream: true });
    let end: number;
    while ((end = buffered.indexOf('\n\n')) >= 0) {
      const block = buffered.slice(0, end);
      buffered = buffered.slice(end + 2);
      let event = 'message';
      const data: string[] = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) event = line.slice('event:'.length).trim();
        else if (line.startsWith('data:')) data.push(line.slice('data:'.length).replace(/^ /, ''));
      }
      if (data.length > 0) yield { event, data: JSON.parse(data.join('\n')) as Record<string, unknown>, read };
    }
  }
  if (buffered.trim() !== '') throw new Error(`the stream ended inside an event: ${JSON.stringify(buffered)}`);
}

/** POSTs and collects a text/event-stream answer, noting when each event arrived. */
export async function postSse(
  url: string,
  body: unknown,
  options: { signal?: AbortSignal; onEvent?: (event: TimedSseEvent) => void } = {},
): Promise<{ status: number; contentType: string; events: TimedSseEvent[]; json?: unknown }> {
  const started = performance.now();
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: 'text/event-stream' },
    body: JSON.stringify(body),
    signal: options.signal ?? AbortSignal.timeout(60_000),
  });
  const events: TimedSseEvent[] = [];
  const contentType = response.headers.get('content-type') ?? '';
  // A request that fails before its first event is answered with an HTTP status and a JSON body.
  if (contentType.startsWith('application/json')) return { status: response.status, contentType, events, json: await response.json() };
  for await (const event of readSse(response)) {
    const timed = { ...event, atMs: performance.now() - started };
    events.push(timed);
    options.onEvent?.(timed);
  }
  return { status: response.status, contentType, events };
}
