// The playground: streams POST /api/model/generate into the page, shows the timings of the
// last request (the `done` event) and the health of every stage (GET /ready). Plain browser
// JavaScript, no build step.
'use strict';

const READY_POLL_MS = 5000;
const NUMBER_FIELDS = ['max_new_tokens', 'temperature', 'top_k', 'top_p', 'repetition_penalty', 'seed'];

const $ = (selector) => document.querySelector(selector);
let running;

function setStatus(state, text) {
  const status = $('#status');
  status.dataset.state = state;
  status.textContent = text;
  status.classList.toggle('error', state === 'error');
}

function authHeaders() {
  const key = $('#api-key').value.trim();
  return key === '' ? {} : { Authorization: `Bearer ${key}` };
}

/** The form as the route's JSON body: empty fields are left out, so the api's defaults apply. */
function requestBody() {
  const form = new FormData($('#request'));
  const body = { text: form.get('text') };
  for (const name of NUMBER_FIELDS) {
    const value = String(form.get(name) ?? '').trim();
    if (value !== '') body[name] = Number(value);
  }
  const stop = String(form.get('stop') ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (stop.length > 0) body.stop = stop;
  body.priority = form.get('priority');
  return body;
}

/** Server-sent events from a fetch body: a blank line ends an event, `event:` names it, `data:` lines carry it. */
async function* readEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffered = '';
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    buffered += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffered.indexOf('\n\n')) >= 0) {
      const block = buffered.slice(0, end);
      buffered = buffered.slice(end + 2);
      let event = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) event = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      if (data.length > 0) yield { event, data: JSON.parse(data.join('\n')) };
    }
  }
}

async function errorMessage(response) {
  try {
    const body = await response.json();
    return `${response.status}: ${body.error.message}`;
  } catch {
    return `HTTP ${response.status}`;
  }
}

function renderTimings(done) {
  const t = done.timings;
  const summary = [
    ['tokens', `${done.tokens.prompt} + ${done.tokens.generated}`],
    ['finish', done.finish_reason],
    ['tokenize', `${t.tokenize_ms.toFixed(1)} ms`],
    ['queue', `${t.queue_ms.toFixed(1)} ms`],
    ['first token', `${t.time_to_first_token_ms.toFixed(1)} ms`],
    ['total', `${t.total_ms.toFixed(1)} ms`],
    ['rate', `${((done.tokens.generated * 1000) / Math.max(t.total_ms, 1)).toFixed(1)} tokens/s`],
  ];
  $('#timings-summary').replaceChildren(
    ...summary.flatMap(([name, value]) => {
      const dt = document.createElement('dt');
      dt.textContent = name;
      const dd = document.createElement('dd');
      dd.textContent = value;
      return [dt, dd];
    }),
  );
  $('#timings tbody').replaceChildren(
    ...t.nodes.map((node) => row([node.node_id, node.stage, node.forward_ms.toFixed(2), node.steps, (node.forward_ms / Math.max(node.steps, 1)).toFixed(2)], [2, 3, 4])),
  );
}

function row(cells, numericColumns = []) {
  const tr = document.createElement('tr');
  cells.forEach((cell, i) => {
    const td = document.createElement('td');
    if (cell instanceof Node) td.append(cell);
    else td.textContent = String(cell);
    if (numericColumns.includes(i)) td.className = 'num';
    tr.append(td);
  });
  return tr;
}

async function generate(event) {
  event.preventDefault();
  if (running !== undefined) return;
  const body = requestBody();
  const controller = new AbortController();
  running = controller;
  $('#generate').disabled = true;
  $('#cancel').disabled = false;
  $('#prompt-echo').textContent = body.text;
  $('#generated').textContent = '';
  setStatus('waiting', 'waiting for the first token…');
  let tokens = 0;
  try {
    const response = await fetch('/api/model/generate', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'text/event-stream', ...authHeaders() },
      body: JSON.stringify(body),
      signal: controller.signal,
    });
    if (!response.ok) {
      setStatus('error', await errorMessage(response));
      return;
    }
    for await (const { event: name, data } of readEvents(response)) {
      if (name === 'token') {
        tokens++;
        $('#generated').textContent += data.text;
        setStatus('streaming', `streaming… ${tokens} tokens`);
      } else if (name === 'done') {
        renderTimings(data);
        setStatus('done', `done: ${data.tokens.generated} tokens, ${data.finish_reason}, ${data.timings.total_ms.toFixed(0)} ms`);
      } else if (name === 'error') {
        setStatus('error', `failed after ${tokens} tokens: ${data.error.message}`);
      }
    }
  } catch (error) {
    setStatus(controller.signal.aborted ? 'stopped' : 'error', controller.signal.aborted ? `stopped after ${tokens} tokens` : String(error));
  } finally {
    running = undefined;
    $('#generate').disabled = false;
    $('#cancel').disabled = true;
  }
}

async function refreshStages() {
  const badge = $('#ready');
  try {
    const response = await fetch('/ready', { headers: authHeaders() });
    const ready = await response.json();
    badge.textContent = ready.ready ? 'ready' : 'not ready';
    badge.className = `badge ${ready.ready ? 'ok' : 'bad'}`;
    if (ready.ready) $('#model-name').textContent = `model ${ready.model_name}, ${ready.stages} stages`;
    const serving = (yes) => {
      const span = document.createElement('span');
      span.className = yes ? 'serving-yes' : 'serving-no';
      span.textContent = yes ? '● serving' : '● down';
      return span;
    };
    $('#stages tbody').replaceChildren(...(ready.nodes ?? []).map((n) => row([n.node_id, n.stage, n.address, serving(n.serving)])));
    const problems = [...(ready.missing ?? []), ...(ready.degraded ?? [])];
    $('#problems').replaceChildren(
      ...problems.map((text) => {
        const li = document.createElement('li');
        li.textContent = text;
        return li;
      }),
    );
  } catch (error) {
    badge.textContent = 'unreachable';
    badge.className = 'badge bad';
  }
}

document.addEventListener('DOMContentLoaded', () => {
  $('#request').addEventListener('submit', generate);
  $('#cancel').addEventListener('click', () => running?.abort());
  setStatus('idle', 'idle');
  void refreshStages();
  setInterval(refreshStages, READY_POLL_MS);
});
