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
  /** ms since the request was sent. */
  readonly atMs: number;
  /** Which network read delivered it (0 for the first). */
  readonly read: number;
}

/** POSTs and parses a text/event-stream answer into events, noting when each arrived. */
export async function postSse(url: string, body: unknown, options: { signal?: AbortSignal; onEvent?: (event: SseEvent) => void } = {}): Promise<{ status: number; contentType: string; events: SseEvent[] }> {
  const started = performance.now();
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: 'text/event-stream' },
    body: JSON.stringify(body),
    signal: options.signal ?? AbortSignal.timeout(60_000),
  });
  const events: SseEvent[] = [];
  const reader = (response.body as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (let read = 0; ; read++) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let boundary: number;
    while ((boundary = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, boundary);
      buffer = buffer.slice(boundary + 2);
      let event = 'message';
      const data: string[] = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) event = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      if (data.length === 0) continue;
      const parsed: SseEvent = { event, data: JSON.parse(data.join('\n')) as Record<string, unknown>, atMs: performance.now() - started, read };
      events.push(parsed);
      options.onEvent?.(parsed);
    }
  }
  return { status: response.status, contentType: response.headers.get('content-type') ?? '', events };
}
