/**
 * The status page's script (docs/status-page.md), compiled by `npm run build` into dist/ui/app.js
 * and served at /ui/app.js.
 *
 * It reads the manager's event stream (GET /events) with fetch() and a streaming body, not
 * EventSource, so it can send the admin key as `Authorization: Bearer ...`: the key is typed in
 * when /events answers 401 or 403, kept in this tab's sessionStorage, and never put in a URL. The
 * first event is a snapshot; later events update the tables in place (no reload). The stream is
 * reopened with back-off when it ends; the new snapshot replaces what is shown.
 *
 * Everything from the server is inserted as text (textContent, attributes by setAttribute): log
 * lines and reasons are attacker-controlled, and never parsed as HTML.
 */

const KEY_STORE = 'teiplex.adminKey';
const LOG_STORE = 'teiplex.logs';
/** Lines kept in the log view. */
const LOG_LINES = 500;
/** Changes kept in the list. */
const CHANGES = 100;

interface LastExit {
  code: number | null;
  signal: string | null;
  time: string;
}
interface InstanceView {
  name: string;
  model_id: string;
  runtime: string;
  status: string;
  pid: number | null;
  gpu_ids: number[];
  uptime_secs: number;
  restarts: number;
  last_exit: LastExit | null;
  last_error: string | null;
  model: string | null;
  memory_mb: number | null;
}
interface Replica {
  instance: string;
  status: string;
}
interface ModelView {
  name: string;
  model_id: string;
  state: string;
  failure: { reason: string; at: string } | null;
  min_replicas: number;
  max_replicas: number;
  memory_mb: number | null;
  footprint_mb: number | null;
  replicas: Replica[];
  last_used: string | null;
}
interface DeviceMemory {
  device: string;
  budget_mb: number | null;
  budget_source: string;
  used_mb: number;
  standby: unknown[];
}
interface StateChange {
  time: string;
  kind: 'instance' | 'model';
  name: string;
  from: string;
  to: string;
  reason: string;
}
interface Snapshot {
  time: string;
  instances: InstanceView[];
  models: ModelView[];
  memory: { devices: DeviceMemory[] };
  changes: StateChange[];
  logs: string | null;
}
interface LogEvent {
  instance: string;
  n: number;
  line: string;
}

const $ = <T extends HTMLElement>(id: string): T => {
  const e = document.getElementById(id);
  if (e === null) throw new Error(`the page has no #${id}`);
  return e as T;
};

/** An element with text (never HTML) and classes. */
function el<K extends keyof HTMLElementTagNameMap>(tag: K, text?: string | number | null, ...classes: string[]): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  for (const c of classes) if (c !== '') e.classList.add(c);
  return e;
}

/** A status as a class name: letters, digits, '-' and '_' only. */
const statusClass = (s: string): string => `status-${s.replace(/[^a-z0-9_-]/gi, '')}`;

function duration(secs: number): string {
  const s = Math.max(0, Math.floor(secs));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

const mb = (v: number | null | undefined): string => (v === null || v === undefined ? '—' : v >= 1024 ? `${(v / 1024).toFixed(1)} GiB` : `${Math.round(v)} MiB`);
const clock = (iso: string | null): string => (iso === null ? '—' : new Date(iso).toLocaleTimeString());

function lastExit(x: LastExit | null): string {
  if (x === null) return '—';
  const how = x.signal !== null ? x.signal : `exit ${x.code ?? '?'}`;
  return `${how} at ${clock(x.time)}`;
}

// ---- what is shown ----

const instances = new Map<string, { v: InstanceView; at: number }>();
const models = new Map<string, ModelView>();
let devices: DeviceMemory[] = [];
let changes: StateChange[] = [];
let logName: string | null = sessionStorage.getItem(LOG_STORE);
const uptimeCells = new Map<string, HTMLTableCellElement>();

function renderInstances(flash?: string): void {
  const body = $('instances').querySelector('tbody')!;
  const rows: HTMLTableRowElement[] = [];
  uptimeCells.clear();
  for (const { v, at } of [...instances.values()].sort((a, b) => a.v.name.localeCompare(b.v.name))) {
    const tr = el('tr');
    tr.setAttribute('data-name', v.name);
    if (v.name === flash) tr.classList.add('changed');
    const status = el('td', v.status, 'status', statusClass(v.status));
    status.setAttribute('data-field', 'status');
    if (v.last_error !== null) status.title = v.last_error;
    const restarts = el('td', v.restarts, 'num');
    restarts.setAttribute('data-field', 'restarts');
    const uptime = el('td', duration(uptimeOf(v, at)), 'num');
    uptime.setAttribute('data-field', 'uptime');
    uptimeCells.set(v.name, uptime);
    const button = el('button', v.name === logName ? 'following' : 'log');
    button.type = 'button';
    button.setAttribute('data-log', v.name);
    button.addEventListener('click', () => follow(v.name));
    const logCell = el('td');
    logCell.append(button);
    const modelCell = el('td', v.model_id);
    if (v.model !== null) modelCell.append(el('span', ` (replica of ${v.model})`, 'muted'));
    tr.append(
      el('td', v.name),
      modelCell,
      el('td', v.runtime),
      status,
      restarts,
      uptime,
      el('td', lastExit(v.last_exit)),
      el('td', mb(v.memory_mb), 'num'),
      el('td', v.gpu_ids.length > 0 ? v.gpu_ids.join(',') : 'cpu'),
      el('td', v.pid ?? '—', 'num'),
      logCell,
    );
    rows.push(tr);
  }
  body.replaceChildren(...rows);
  $('instances-empty').hidden = rows.length > 0;
  $('instances-count').textContent = `(${rows.length})`;
}

/** Uptime now: the server's value plus the time since it was received, while running. */
function uptimeOf(v: InstanceView, at: number): number {
  return v.status === 'running' ? v.uptime_secs + (Date.now() - at) / 1000 : v.uptime_secs;
}

function renderModels(flash?: string): void {
  const body = $('models').querySelector('tbody')!;
  const rows = [...models.values()]
    .sort((a, b) => a.name.localeCompare(b.name))
    .map((m) => {
      const tr = el('tr');
      tr.setAttribute('data-name', m.name);
      if (m.name === flash) tr.classList.add('changed');
      const state = el('td', m.state, 'status', statusClass(m.state));
      state.setAttribute('data-field', 'state');
      const running = m.replicas.filter((r) => r.status === 'running').length;
      const memory = m.footprint_mb !== null ? `${mb(m.footprint_mb)} measured` : m.memory_mb !== null ? `${mb(m.memory_mb)} declared` : '—';
      tr.append(
        el('td', m.name),
        el('td', m.model_id),
        state,
        el('td', `${running}/${m.replicas.length} running (min ${m.min_replicas}, max ${m.max_replicas})`),
        el('td', memory),
        el('td', clock(m.last_used)),
        el('td', m.failure === null ? '' : m.failure.reason, 'error'),
      );
      return tr;
    });
  body.replaceChildren(...rows);
  $('models-empty').hidden = rows.length > 0;
  $('models-count').textContent = `(${rows.length})`;
}

function renderMemory(): void {
  const body = $('memory').querySelector('tbody')!;
  const rows = devices.map((d) => {
    const tr = el('tr');
    tr.setAttribute('data-device', d.device);
    const meter = el('meter');
    meter.min = 0;
    meter.max = d.budget_mb ?? Math.max(d.used_mb, 1);
    meter.value = d.used_mb;
    if (d.budget_mb !== null) meter.high = d.budget_mb * 0.9;
    const cell = el('td');
    cell.append(meter);
    const pct = d.budget_mb !== null && d.budget_mb > 0 ? ` (${Math.round((100 * d.used_mb) / d.budget_mb)} %)` : '';
    tr.append(el('td', d.device), el('td', `${mb(d.used_mb)}${pct}`, 'num'), el('td', mb(d.budget_mb), 'num'), cell, el('td', d.budget_source), el('td', d.standby.length, 'num'));
    return tr;
  });
  body.replaceChildren(...rows);
  $('memory-empty').hidden = rows.length > 0;
}

function renderChanges(): void {
  const items = [...changes].reverse().map((c) => {
    const li = el('li');
    li.append(el('span', `${clock(c.time)} `, 'muted'), el('strong', c.name), el('span', ` ${c.kind === 'model' ? 'model ' : ''}${c.from} → `), el('span', c.to, 'status', statusClass(c.to)), el('span', ` ${c.reason}`, 'muted'));
    return li;
  });
  $('changes').replaceChildren(...items);
}

function addChange(c: StateChange): void {
  changes.push(c);
  if (changes.length > CHANGES) changes = changes.slice(-CHANGES);
  renderChanges();
}

function addLogLine(e: LogEvent): void {
  if (e.instance !== logName) return;
  const view = $('log');
  const atBottom = view.scrollTop + view.clientHeight >= view.scrollHeight - 4;
  const line = el('div', e.line, 'log-line');
  if (e.line.startsWith('[teiplex]')) line.classList.add('manager');
  line.setAttribute('data-n', String(e.n));
  view.append(line);
  while (view.childElementCount > LOG_LINES) view.firstElementChild?.remove();
  if (atBottom) view.scrollTop = view.scrollHeight;
}

function showLogName(): void {
  $('log-name').textContent = logName === null ? '(choose an instance)' : logName;
}

function applySnapshot(s: Snapshot): void {
  const now = Date.now();
  instances.clear();
  for (const v of s.instances) instances.set(v.name, { v, at: now });
  models.clear();
  for (const m of s.models) models.set(m.name, m);
  devices = s.memory.devices;
  changes = s.changes.slice(-CHANGES);
  logName = s.logs;
  $('log').replaceChildren();
  showLogName();
  renderInstances();
  renderModels();
  renderMemory();
  renderChanges();
}

function apply(event: string, data: string): void {
  const d = JSON.parse(data) as unknown;
  switch (event) {
    case 'snapshot':
      applySnapshot(d as Snapshot);
      break;
    case 'instance': {
      const v = d as InstanceView;
      instances.set(v.name, { v, at: Date.now() });
      renderInstances(v.name);
      break;
    }
    case 'instance_deleted':
      instances.delete((d as { name: string }).name);
      renderInstances();
      break;
    case 'model': {
      const m = d as ModelView;
      models.set(m.name, m);
      renderModels(m.name);
      break;
    }
    case 'model_deleted':
      models.delete((d as { name: string }).name);
      renderModels();
      break;
    case 'memory':
      devices = (d as { devices: DeviceMemory[] }).devices;
      renderMemory();
      break;
    case 'change':
      addChange(d as StateChange);
      break;
    case 'log':
      addLogLine(d as LogEvent);
      break;
    default:
      // An event this page does not know (a newer manager): ignored.
      break;
  }
  $('updated').textContent = `updated ${new Date().toLocaleTimeString()}`;
}

// ---- the stream ----

let controller: AbortController | undefined;
let retryMs = 1000;
let retryTimer: number | undefined;

function setConn(state: 'live' | 'connecting' | 'down', text: string): void {
  const c = $('conn');
  c.className = `conn conn-${state}`;
  c.textContent = text;
}

function askKey(reason: string): void {
  setConn('down', 'needs an admin key');
  $('key-reason').textContent = reason;
  $('key-form').hidden = false;
  $<HTMLInputElement>('key-input').focus();
}

function retry(why: string): void {
  setConn('down', `disconnected (${why}); retrying in ${Math.round(retryMs / 1000)} s`);
  window.clearTimeout(retryTimer);
  retryTimer = window.setTimeout(connect, retryMs);
  retryMs = Math.min(retryMs * 2, 15_000);
}

async function errorText(res: Response): Promise<string> {
  const body = (await res.json().catch(() => ({}))) as { code?: unknown; error?: unknown };
  return `${res.status}${typeof body.code === 'string' ? ` ${body.code}` : ''}${typeof body.error === 'string' ? `: ${body.error}` : ''}`;
}

/** Reads `text/event-stream` blocks from a body and applies each event. */
async function read(body: ReadableStream<Uint8Array>, signal: AbortSignal): Promise<void> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  while (!signal.aborted) {
    const { done, value } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, '\n');
    let end = buffer.indexOf('\n\n');
    while (end >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      end = buffer.indexOf('\n\n');
      let event = 'message';
      const data: string[] = [];
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'event') event = value;
        else if (field === 'data') data.push(value);
      }
      if (data.length > 0) apply(event, data.join('\n'));
    }
  }
}

function connect(): void {
  controller?.abort();
  const c = new AbortController();
  controller = c;
  window.clearTimeout(retryTimer);
  const key = sessionStorage.getItem(KEY_STORE);
  $('forget-key').hidden = key === null;
  const url = logName === null ? '/events' : `/events?logs=${encodeURIComponent(logName)}`;
  setConn('connecting', 'connecting');
  fetch(url, { headers: key === null ? {} : { authorization: `Bearer ${key}` }, signal: c.signal, cache: 'no-store', credentials: 'same-origin' })
    .then(async (res) => {
      if (res.status === 401 || res.status === 403) {
        // A refused key is not kept: the next try asks again.
        sessionStorage.removeItem(KEY_STORE);
        $('forget-key').hidden = true;
        return askKey(`${await errorText(res)}${key === null ? '' : ' (the key was not accepted)'}`);
      }
      if (res.status === 404 && logName !== null) {
        // The followed instance is gone: follow nothing.
        logName = null;
        sessionStorage.removeItem(LOG_STORE);
        return connect();
      }
      if (!res.ok || res.body === null) return retry(await errorText(res));
      $('key-form').hidden = true;
      setConn('live', 'live');
      retryMs = 1000;
      await read(res.body, c.signal);
      if (!c.signal.aborted) retry('the stream ended');
    })
    .catch((err: unknown) => {
      if (!c.signal.aborted) retry(err instanceof Error ? err.message : String(err));
    });
}

function follow(name: string): void {
  logName = name;
  sessionStorage.setItem(LOG_STORE, name);
  $('log').replaceChildren();
  showLogName();
  connect();
}

function start(): void {
  $('key-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const input = $<HTMLInputElement>('key-input');
    const key = input.value.trim();
    if (key === '') return;
    sessionStorage.setItem(KEY_STORE, key);
    input.value = '';
    connect();
  });
  $('forget-key').addEventListener('click', () => {
    sessionStorage.removeItem(KEY_STORE);
    controller?.abort();
    askKey('key forgotten');
  });
  window.setInterval(() => {
    for (const [name, cell] of uptimeCells) {
      const i = instances.get(name);
      if (i !== undefined) cell.textContent = duration(uptimeOf(i.v, i.at));
    }
  }, 1000);
  showLogName();
  connect();
}

start();
export {};
