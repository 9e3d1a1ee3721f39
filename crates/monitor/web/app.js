// acs dashboard: one page, hash navigation, live data over SSE (/api/v1/events), history from
// /api/v1/stats, actions as POSTs with the session's CSRF header. No build step: a plain ES
// module; Chart.js is the vendored UMD build (window.Chart).

const Chart = window.Chart;
const MAX_POINTS = 120;     // live chart points per series (2 min at 1/s)
const MAX_FEED = 300;       // decisions and events kept
const HOUR_MS = 3600 * 1000;
const PAGES = ['overview', 'hosts', 'replicas', 'services', 'decisions', 'alarms'];
const COLORS = ['#2f6fde', '#1f9d55', '#d98a00', '#d33a3a', '#8e44ad', '#16a2b8', '#7f8c8d', '#c0392b'];

const state = {
  csrf: '',
  status: null,            // the last StatusReply
  statusError: null,
  workers: new Map(),      // worker id -> last WorkerMetrics
  replicaMetrics: new Map(), // replica id -> ReplicaStatus (cpu, mem) from its worker
  proxies: new Map(),      // proxy id -> last ProxyMetrics
  decisions: [],           // newest first
  events: [],              // replica/worker/leader events, newest first
  alarms: new Map(),       // "rule|id" -> AlarmView (or what an AlarmEvent tells)
  alarmFeed: [],
  alarmApi: null,          // why the alarm API is unavailable, if it is
  lastUpdate: 0,
};

// ---- small helpers --------------------------------------------------------------------------

const $ = (id) => document.getElementById(id);
const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('data-')) e.setAttribute(k, v);
    else if (k === 'onclick') e.addEventListener('click', v);
    else e[k] = v;
  }
  for (const k of kids) e.append(k instanceof Node ? k : String(k));
  return e;
};
const time = (ms) => (ms ? new Date(ms).toLocaleTimeString() : '');
const pct = (x) => (x == null || Number.isNaN(x) ? '–' : `${x.toFixed(1)}%`);
const bytes = (b) => {
  if (b == null) return '–';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; }
  return `${b.toFixed(i ? 1 : 0)} ${u[i]}`;
};
const num = (x, d = 1) => (x == null || Number.isNaN(x) ? '–' : Number(x).toFixed(d));
const pill = (text, kind = '') => el('span', { class: `pill ${kind}` }, text);
const bar = (p) => {
  const fill = el('span');
  fill.style.width = `${Math.min(100, Math.max(0, p || 0))}%`; // CSSOM, allowed by the CSP
  return el('div', { class: 'bar', title: pct(p) }, fill);
};

function flash(text, ok = true) {
  const f = $('flash');
  f.hidden = false;
  f.textContent = text;
  f.className = ok ? '' : 'error';
  f.dataset.ok = String(ok);
  clearTimeout(flash.timer);
  flash.timer = setTimeout(() => { f.hidden = true; }, 8000);
}

async function api(path, opts = {}) {
  const headers = { ...(opts.headers || {}) };
  if (opts.method === 'POST') {
    headers['X-ACS-CSRF'] = state.csrf;
    headers['Content-Type'] = 'application/json';
  }
  const r = await fetch(path, { ...opts, headers, credentials: 'same-origin' });
  if (r.status === 401) { location.reload(); throw new Error('session ended; log in again'); }
  let body = null;
  try { body = await r.json(); } catch { body = { ok: false, error: `${r.status} ${r.statusText}` }; }
  return { status: r.status, body };
}

async function action(path, payload, what) {
  try {
    const { body } = await api(path, { method: 'POST', body: JSON.stringify(payload || {}) });
    if (body.ok) flash(`${what}: ${body.note || 'done'}`, true);
    else flash(`${what} failed: ${body.error || 'unknown error'}`, false);
    return body;
  } catch (e) {
    flash(`${what} failed: ${e.message}`, false);
    return { ok: false, error: e.message };
  }
}

/** Keeps table rows by key so inputs in them survive updates. cols: {h, v(item, tr), fixed, cls}. */
function syncTable(tbl, cols, items, keyOf) {
  if (!tbl.tHead) {
    const tr = tbl.createTHead().insertRow();
    for (const c of cols) tr.append(el('th', c.cls ? { class: c.cls } : {}, c.h));
  }
  const body = tbl.tBodies[0] || tbl.createTBody();
  const byKey = new Map([...body.rows].map((tr) => [tr.dataset.key, tr]));
  const seen = new Set();
  for (const it of items) {
    const k = String(keyOf(it));
    seen.add(k);
    let tr = byKey.get(k);
    if (!tr) {
      tr = body.insertRow();
      tr.dataset.key = k;
      tr._item = it;
      for (const c of cols) {
        const td = tr.insertCell();
        if (c.cls) td.className = c.cls;
        if (c.fixed) put(td, c.v(it, tr));
      }
    }
    tr._item = it;
    cols.forEach((c, i) => { if (!c.fixed) put(tr.cells[i], c.v(it, tr)); });
  }
  for (const [k, tr] of byKey) if (!seen.has(k)) tr.remove();
  if (!items.length && !body.rows.length) {
    const tr = body.insertRow();
    tr.dataset.key = '';
    const td = tr.insertCell();
    td.colSpan = cols.length;
    td.className = 'muted';
    td.textContent = 'nothing yet';
  } else if (items.length) {
    body.querySelector('tr[data-key=""]')?.remove();
  }
}

function put(td, v) {
  if (v instanceof Node) td.replaceChildren(v);
  else if (td.textContent !== String(v ?? '')) td.textContent = v ?? '';
}

// ---- charts ---------------------------------------------------------------------------------

const charts = {};

/** An x-axis tick label: hours (with the day) on the hourly chart, seconds elsewhere. A label
 *  equal to the one before is left out, so a short range never shows one time many times. */
function tickLabel(hourly) {
  const fmt = (v) => (hourly
    ? new Date(v).toLocaleString([], { weekday: 'short', hour: '2-digit', minute: '2-digit' })
    : new Date(v).toLocaleTimeString());
  return (v, i, ticks) => {
    const label = fmt(v);
    return i > 0 && fmt(ticks[i - 1].value) === label ? '' : label;
  };
}

function lineChart(id, { yMax, yLabel, hourly } = {}) {
  const c = new Chart($(id), {
    type: 'line',
    data: { datasets: [] },
    options: {
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      parsing: false,
      normalized: true,
      elements: { point: { radius: 0 }, line: { borderWidth: 2, tension: 0.2 } },
      scales: {
        x: {
          type: 'linear',
          // The hourly chart spans its day whatever the data, with a tick per whole hour.
          ...(hourly ? { min: Date.now() - 24 * HOUR_MS, max: Date.now() } : {}),
          ticks: { maxTicksLimit: 6, stepSize: hourly ? 4 * HOUR_MS : undefined, callback: tickLabel(hourly) },
        },
        y: { beginAtZero: true, suggestedMax: yMax, title: { display: !!yLabel, text: yLabel } },
      },
      plugins: { legend: { position: 'bottom', labels: { boxWidth: 12 } }, tooltip: { mode: 'nearest', intersect: false } },
    },
  });
  c.$box = $(`${id}-box`);
  return c;
}

/** Appends a point to series `name` of `chart`, keeping MAX_POINTS. */
function push(chart, name, x, y, max = MAX_POINTS) {
  if (!chart || y == null || Number.isNaN(y)) return;
  let ds = chart.data.datasets.find((d) => d.label === name);
  if (!ds) {
    const color = COLORS[chart.data.datasets.length % COLORS.length];
    ds = { label: name, data: [], borderColor: color, backgroundColor: color };
    chart.data.datasets.push(ds);
  }
  const last = ds.data[ds.data.length - 1];
  if (last && x <= last.x) return;
  ds.data.push({ x, y });
  while (ds.data.length > max) ds.data.shift();
  dirty.add(chart);
}

const dirty = new Set();
function flushCharts() {
  for (const c of dirty) {
    c.update('none');
    if (c.$box) c.$box.dataset.points = String(c.data.datasets.reduce((n, d) => n + d.data.length, 0));
  }
  dirty.clear();
}

// ---- incoming data --------------------------------------------------------------------------

function touched(ts) {
  state.lastUpdate = Math.max(state.lastUpdate, ts || Date.now());
  const lu = $('last-update');
  lu.dataset.ts = String(state.lastUpdate);
  lu.textContent = `last update ${time(state.lastUpdate)}`;
}

function onWorkerMetrics(m) {
  const first = !state.workers.has(m.worker);
  state.workers.set(m.worker, m);
  for (const r of m.replicas || []) state.replicaMetrics.set(r.id, { ...r, worker: m.worker, ts_ms: m.ts_ms });
  const memPct = m.host.mem_total_bytes ? (100 * m.host.mem_used_bytes) / m.host.mem_total_bytes : null;
  push(charts.ovCpu, m.worker, m.ts_ms, m.host.cpu_pct);
  push(charts.hostsCpu, m.worker, m.ts_ms, m.host.cpu_pct);
  push(charts.hostsMem, m.worker, m.ts_ms, memPct);
  if (first) loadWorkerHistory(m.worker, m.host.mem_total_bytes);
  touched(m.ts_ms);
  schedule();
}

/** Per service: requests/s summed over the proxies' latest reports, p99 the worst of them. */
function serviceTraffic() {
  const out = new Map();
  for (const p of state.proxies.values()) {
    for (const s of p.services || []) {
      const t = out.get(s.service) || { rps: 0, p99: 0, p50: 0, in_flight: 0, errors: 0 };
      t.rps += s.rps || 0;
      t.in_flight += s.in_flight || 0;
      t.errors += s.errors || 0;
      t.p99 = Math.max(t.p99, s.p99_ms || 0);
      t.p50 = Math.max(t.p50, s.p50_ms || 0);
      out.set(s.service, t);
    }
  }
  return out;
}

function onProxyMetrics(m) {
  state.proxies.set(m.proxy, m);
  for (const [svc, t] of serviceTraffic()) {
    push(charts.svcRps, svc, m.ts_ms, t.rps);
    push(charts.svcLat, svc, m.ts_ms, t.p99);
  }
  touched(m.ts_ms);
  schedule();
}

function onStatus(s) {
  state.status = s;
  state.statusError = null;
  touched(s.ts_ms);
  schedule();
}

function onDecision(d) {
  state.decisions.unshift(d);
  state.decisions.length = Math.min(state.decisions.length, MAX_FEED);
  prependFeed($('decisions-feed'), decisionItem(d));
  $('dec-count').textContent = `(${state.decisions.length})`;
  touched(d.ts_ms);
}

/** A leader event as a sentence (the monitor does not forward lease renewals). */
function leaderText(e) {
  const change = e.change === 'elected' ? 'became the leader'
    : e.change === 'stepped_down' ? 'stepped down as leader'
      : `leader lease: ${e.change}`;
  return `brain ${e.brain} ${change} (term ${e.term})`;
}

function eventText(kind, e) {
  return kind === 'replica'
    ? `replica ${e.replica?.id} (${e.replica?.service}) on ${e.worker}: ${e.replica?.state}${e.reason ? ` – ${e.reason}` : ''}`
    : kind === 'worker'
      ? `worker ${e.worker} is ${e.health}: ${e.reason || ''}`
      : leaderText(e);
}

function addEvent(kind, e, ts) {
  const text = eventText(kind, e);
  state.events.unshift({ kind, ts, text });
  state.events.length = Math.min(state.events.length, MAX_FEED);
  prependFeed($('events-feed'), el('li', {}, el('span', { class: 'when' }, time(ts)), pill(kind), ' ', text));
}

function onEvent(kind, e) {
  addEvent(kind, e, e.ts_ms || Date.now());
  touched(e.ts_ms);
}

const alarmItem = (a) => el('li', {}, el('span', { class: 'when' }, time(a.ts_ms)), alarmPill(a.state, a.severity), ' ', a.message || `${a.rule} ${a.id}`);

function onAlarmEvent(a) {
  const key = `${a.rule}|${a.id}`;
  const old = state.alarms.get(key) || {};
  state.alarms.set(key, { ...old, ...a, changed_ms: a.ts_ms });
  prependFeed($('alarm-feed'), alarmItem(a));
  touched(a.ts_ms);
  schedule();
}

function prependFeed(ol, li) {
  ol.prepend(li);
  while (ol.children.length > MAX_FEED) ol.lastChild.remove();
}

// ---- history --------------------------------------------------------------------------------

/// The feeds start with the last day's kept events (the monitor's ACS_EVENTS stream), oldest
/// first, before the live ones arrive on top.
async function loadHistory() {
  const get = (kind, limit) => api(`/api/v1/history?kind=${kind}&window=24h&limit=${limit}`)
    .then(({ status, body }) => (status === 200 ? body.events || [] : []))
    .catch(() => []);
  // Leader events are left out: the brain renews its lease (and says so) every half second.
  const [dec, alarms, rep, wk] = await Promise.all([get('decision', 200), get('alarm', 100), get('replica', 100), get('worker', 50)]);
  for (const e of dec) {
    state.decisions.unshift(e.data);
    prependFeed($('decisions-feed'), decisionItem(e.data));
  }
  state.decisions.length = Math.min(state.decisions.length, MAX_FEED);
  $('dec-count').textContent = `(${state.decisions.length})`;
  for (const e of alarms) prependFeed($('alarm-feed'), alarmItem(e.data));
  const evs = [...rep.map((e) => ['replica', e]), ...wk.map((e) => ['worker', e])].sort((a, b) => a[1].seq - b[1].seq);
  for (const [kind, e] of evs) addEvent(kind, e.data, e.data.ts_ms || e.ts_ms);
  $('history-note').textContent = `${dec.length} decisions and ${evs.length} events from the last 24 h, then live`;
}

async function stats(scope, id, metric, window, step) {
  const q = new URLSearchParams({ scope, id, metric, window, step });
  const { status, body } = await api(`/api/v1/stats?${q}`);
  if (status !== 200) throw new Error(body.error || `HTTP ${status}`);
  return body.series || [];
}

/** Seeds the live charts of a newly seen worker with its last two minutes. */
async function loadWorkerHistory(worker, memTotal) {
  try {
    const [cpu, mem] = await Promise.all([
      stats('worker', worker, 'cpu', '2m', '1s'),
      stats('worker', worker, 'memory', '2m', '1s'),
    ]);
    seed(charts.hostsCpu, worker, cpu.map((p) => ({ x: p.ts_ms, y: p.avg })));
    seed(charts.ovCpu, worker, cpu.map((p) => ({ x: p.ts_ms, y: p.avg })));
    if (memTotal) seed(charts.hostsMem, worker, mem.map((p) => ({ x: p.ts_ms, y: (100 * p.avg) / memTotal })));
  } catch (e) {
    console.warn('history', worker, e);
  }
}

function seed(chart, name, points) {
  const ds = chart.data.datasets.find((d) => d.label === name);
  if (!ds || !points.length) return;
  const firstLive = ds.data.length ? ds.data[0].x : Infinity;
  ds.data = points.filter((p) => p.x < firstLive).concat(ds.data).slice(-MAX_POINTS);
  dirty.add(chart);
}

async function loadHourly() {
  const ids = [...state.workers.keys()].sort();
  const note = $('hourly-note');
  if (!ids.length) { note.textContent = 'no worker has reported yet'; return; }
  const c = charts.hostsHourly;
  c.data.datasets = [];
  c.options.scales.x.min = Date.now() - 24 * HOUR_MS;
  c.options.scales.x.max = Date.now();
  const errors = [];
  for (const id of ids) {
    try {
      const s = await stats('worker', id, 'cpu', '1d', '1h');
      const color = COLORS[c.data.datasets.length % COLORS.length];
      c.data.datasets.push({ label: id, data: s.map((p) => ({ x: p.ts_ms, y: p.avg })), borderColor: color, backgroundColor: color, pointRadius: 3 });
    } catch (e) {
      errors.push(`${id}: ${e.message}`);
    }
  }
  dirty.add(c);
  note.textContent = errors.length ? errors.join('; ') : `hourly average CPU % per host (GET /api/v1/stats, step 1h), ${time(Date.now())}`;
}

async function loadAlarms() {
  try {
    const { status, body } = await api('/api/v1/alarms');
    if (status !== 200 || !body.ok) {
      state.alarmApi = body.error || `HTTP ${status}`;
    } else {
      state.alarmApi = null;
      for (const a of body.alarms || []) state.alarms.set(`${a.rule}|${a.id}`, a);
    }
  } catch (e) {
    state.alarmApi = e.message;
  }
  schedule();
}

// ---- rendering ------------------------------------------------------------------------------

let renderPending = false;
function schedule() {
  if (renderPending) return;
  renderPending = true;
  setTimeout(() => { renderPending = false; render(); }, 250);
}

function page() {
  const p = location.hash.replace('#', '');
  return PAGES.includes(p) ? p : 'overview';
}

function render() {
  const p = page();
  for (const name of PAGES) $(`page-${name}`).hidden = name !== p;
  for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.dataset.page === p);
  const firing = [...state.alarms.values()].filter((a) => a.state === 'firing');
  const badge = $('alarm-badge');
  badge.hidden = !firing.length;
  badge.textContent = String(firing.length);
  ({ overview: renderOverview, hosts: renderHosts, replicas: renderReplicas, services: renderServices, decisions: () => {}, alarms: renderAlarms })[p]();
  flushCharts();
}

const lifecyclePill = (l) => {
  const st = l?.state || 'creating';
  const kind = { running: 'ok', scaling: 'warn', partial_running: 'warn', creating: 'warn', failed: 'bad', suspended: '' }[st] ?? '';
  const name = { partial_running: 'Partial-Running' }[st] || st[0].toUpperCase() + st.slice(1);
  const p = pill(name, kind);
  if (l?.reason) p.title = l.reason;
  return p;
};
const healthPill = (h) => pill(h, h === 'up' ? 'ok' : 'bad');
const alarmPill = (st, sev) => pill(`${st}${sev ? ` ${sev}` : ''}`, st === 'firing' ? (sev === 'critical' ? 'bad' : 'warn') : st === 'pending' ? 'warn' : 'ok');

function services() {
  return (state.status?.services || []).slice().sort((a, b) => a.name.localeCompare(b.name));
}
function workers() {
  const fromStatus = new Map((state.status?.workers || []).map((w) => [w.id, w]));
  const ids = new Set([...fromStatus.keys(), ...state.workers.keys()]);
  return [...ids].sort().map((id) => ({ id, st: fromStatus.get(id), m: state.workers.get(id) }));
}

function renderOverview() {
  const svcs = services();
  const ws = workers();
  const running = svcs.reduce((n, s) => n + s.running, 0);
  const desired = svcs.reduce((n, s) => n + s.desired, 0);
  const up = ws.filter((w) => w.st?.health === 'up').length;
  const firing = [...state.alarms.values()].filter((a) => a.state === 'firing');
  const brain = state.status?.brain;
  const cards = [
    ['Services', svcs.length],
    ['Replicas running / desired', `${running} / ${desired}`],
    ['Workers up', `${up} / ${ws.length}`],
    ['Alarms firing', firing.length],
    ['Brain', state.statusError ? 'not answering' : brain ? `${brain.instance} (term ${brain.term})` : '–'],
  ];
  $('ov-cards').replaceChildren(...cards.map(([l, n]) => el('div', { class: 'card' }, el('div', { class: 'n' }, n), el('div', { class: 'l' }, l))));
  const traffic = serviceTraffic();
  syncTable($('ov-services'), [
    { h: 'Service', v: (s) => s.name },
    { h: 'State', v: (s) => lifecyclePill(s.lifecycle) },
    { h: 'Running', v: (s) => `${s.running} / ${s.desired}` },
    { h: 'Mode', v: (s) => s.mode },
    { h: 'Req/s', v: (s) => num(traffic.get(s.name)?.rps) },
  ], svcs, (s) => s.name);
  syncTable($('ov-workers'), [
    { h: 'Worker', v: (w) => w.id },
    { h: 'Health', v: (w) => healthPill(w.st?.health || 'unknown') },
    { h: 'CPU', v: (w) => bar(w.m?.host.cpu_pct ?? w.st?.cpu_pct) },
    { h: 'CPU %', v: (w) => pct(w.m?.host.cpu_pct ?? w.st?.cpu_pct) },
    { h: 'Replicas', v: (w) => `${w.st?.replicas ?? w.m?.capacity.running ?? 0} / ${w.st?.max_replicas ?? w.m?.capacity.max_replicas ?? '?'}` },
  ], ws, (w) => w.id);
  syncTable($('ov-alarms'), [
    { h: 'Rule', v: (a) => a.rule },
    { h: 'Target', v: (a) => `${a.scope} ${a.id}` },
    { h: 'State', v: (a) => alarmPill(a.state, a.severity) },
    { h: 'Value', v: (a) => num(a.value, 2) },
  ], firing, (a) => `${a.rule}|${a.id}`);
}

function renderHosts() {
  syncTable($('hosts-table'), [
    { h: 'Host', v: (w) => w.id },
    { h: 'Power', v: (w) => healthPill(w.st?.health || (w.m ? 'up' : 'unknown')) },
    { h: 'Placement', v: (w) => (w.st?.draining ? pill('draining', 'warn') : w.st?.cordoned ? pill('cordoned', 'warn') : pill('open', 'ok')) },
    { h: 'Capacity', v: (w) => `${w.st?.replicas ?? w.m?.capacity.running ?? 0} / ${w.st?.max_replicas ?? w.m?.capacity.max_replicas ?? '?'} replicas` },
    { h: 'CPU', v: (w) => pct(w.m?.host.cpu_pct ?? w.st?.cpu_pct) },
    { h: 'Cores', v: (w) => w.m?.host.cpus ?? '–', cls: 'wide' },
    { h: 'Memory', v: (w) => (w.m ? `${bytes(w.m.host.mem_used_bytes)} / ${bytes(w.m.host.mem_total_bytes)}` : '–') },
    { h: 'Load 1m', v: (w) => num(w.m?.host.load1, 2), cls: 'wide' },
    { h: 'Runtime', v: (w) => w.m?.runtime ?? '–', cls: 'wide' },
    { h: 'Last seen', v: (w) => (w.st ? `${(w.st.last_seen_ms_ago / 1000).toFixed(1)} s ago` : time(w.m?.ts_ms)) },
  ], workers(), (w) => w.id);
  if (!charts.hostsHourly.data.datasets.length && state.workers.size && !loadHourly.started) {
    loadHourly.started = true;
    loadHourly();
  }
}

function renderReplicas() {
  const rows = [];
  for (const s of services()) {
    for (const r of s.replicas) rows.push({ ...r, service: s.name, m: state.replicaMetrics.get(r.id) });
  }
  rows.sort((a, b) => a.service.localeCompare(b.service) || a.id.localeCompare(b.id));
  syncTable($('replicas-table'), [
    { h: 'Replica', v: (r) => r.id },
    { h: 'Service', v: (r) => r.service },
    { h: 'Worker', v: (r) => r.worker },
    { h: 'State', v: (r) => pill(r.draining ? `${r.state}, draining` : r.state, r.state === 'healthy' && !r.draining ? 'ok' : r.state === 'exited' || r.state === 'unhealthy' ? 'bad' : 'warn') },
    { h: 'CPU', v: (r) => (r.m ? `${num(r.m.cpu_pct)}% of a core` : '–') },
    { h: 'Memory', v: (r) => bytes(r.m?.mem_bytes) },
    { h: 'Address', v: (r) => r.addr || '–', cls: 'wide' },
    { h: 'Restarts', v: (r) => r.m?.restarts ?? '–', cls: 'wide' },
    {
      h: 'Actions', fixed: true, v: (r, tr) => el('button', {
        class: 'small danger', 'data-replace': r.id, title: 'Start a replacement, then drain and stop this replica',
        onclick: (e) => replaceReplica(e.target, tr._item.id),
      }, 'Replace'),
    },
  ], rows, (r) => r.id);
  syncTable($('maint-table'), [
    { h: 'Worker', v: (w) => w.id },
    { h: 'Health', v: (w) => healthPill(w.st?.health || 'unknown') },
    { h: 'Placement', v: (w) => (w.st?.draining ? pill('draining', 'warn') : w.st?.cordoned ? pill('cordoned', 'warn') : pill('open', 'ok')) },
    { h: 'Replicas', v: (w) => `${w.st?.replicas ?? 0} / ${w.st?.max_replicas ?? '?'}` },
    {
      h: 'Actions', fixed: true, v: (w, tr) => el('div', { class: 'actions' },
        ...['cordon', 'uncordon', 'drain'].map((a) => el('button', {
          class: `small ${a === 'drain' ? 'danger' : 'ghost'}`, 'data-maint': w.id, 'data-action': a,
          onclick: (e) => maintain(e.target, tr._item.id, a),
        }, a[0].toUpperCase() + a.slice(1)))),
    },
  ], workers(), (w) => w.id);
}

function renderServices() {
  const traffic = serviceTraffic();
  syncTable($('services-table'), [
    { h: 'Service', v: (s) => s.name },
    { h: 'Lifecycle', v: (s) => { const d = el('span', {}, lifecyclePill(s.lifecycle)); if (s.lifecycle?.reason) d.append(' ', el('span', { class: 'muted' }, s.lifecycle.reason)); return d; } },
    { h: 'Desired', v: (s) => s.desired },
    { h: 'Running', v: (s) => s.running },
    { h: 'Mode', v: (s) => pill(s.mode, s.mode === 'manual' ? 'warn' : '') },
    { h: 'Req/s', v: (s) => num(traffic.get(s.name)?.rps) },
    { h: 'p99 ms', v: (s) => num(traffic.get(s.name)?.p99), cls: 'wide' },
    {
      h: 'Scale', fixed: true, v: (s, tr) => {
        const input = el('input', { type: 'number', min: 0, max: 1000, value: s.desired, 'data-pin': s.name, title: 'replicas' });
        return el('div', { class: 'actions' }, input,
          el('button', { class: 'small', 'data-pin-btn': s.name, onclick: (e) => scale(e.target, tr._item.name, { replicas: Number(input.value) }) }, 'Pin'),
          el('button', { class: 'small ghost', 'data-auto-btn': s.name, onclick: (e) => scale(e.target, tr._item.name, { auto: true }) }, 'Auto'));
      },
    },
  ], services(), (s) => s.name);
}

function renderAlarms() {
  $('alarms-note').textContent = state.alarmApi ? `alarm API: ${state.alarmApi}` : '';
  const list = [...state.alarms.values()].sort((a, b) => (a.state === 'firing' ? 0 : 1) - (b.state === 'firing' ? 0 : 1) || (b.changed_ms || 0) - (a.changed_ms || 0));
  syncTable($('alarms-table'), [
    { h: 'Rule', v: (a) => a.rule },
    { h: 'Target', v: (a) => `${a.scope} ${a.id}` },
    { h: 'Metric', v: (a) => a.metric, cls: 'wide' },
    { h: 'State', v: (a) => alarmPill(a.state, a.severity) },
    { h: 'Value / threshold', v: (a) => `${num(a.value, 2)} / ${num(a.threshold, 2)}` },
    { h: 'Since', v: (a) => time(a.since_ms) },
    { h: 'Ack / silence', v: (a) => [a.ack ? `acked by ${a.ack.by}` : '', a.silenced_until_ms ? `silenced until ${time(a.silenced_until_ms)}` : ''].filter(Boolean).join(', ') || '–', cls: 'wide' },
    { h: 'Message', v: (a) => a.message || '', cls: 'wide' },
    {
      h: 'Actions', fixed: true, v: (a, tr) => el('div', { class: 'actions' },
        el('button', { class: 'small', 'data-ack': a.rule, onclick: (e) => alarmAction(e.target, tr._item, 'ack') }, 'Ack'),
        el('button', { class: 'small ghost', 'data-silence': a.rule, onclick: (e) => alarmAction(e.target, tr._item, 'silence') }, 'Silence 1 h')),
    },
  ], list, (a) => `${a.rule}|${a.id}`);
}

function decisionItem(d) {
  const what = d.action === 'scale' ? `scale ${d.from} → ${d.to}${d.manual ? ' (manual)' : ''}`
    : d.action === 'relocate' ? `relocate ${d.replica} ${d.from} → ${d.replacement} on ${d.to}`
      : d.action === 'lifecycle' ? `lifecycle ${d.from} → ${d.to}`
        : d.replica ? `${d.action} ${d.replica} on ${d.worker}` : d.action;
  const inputs = Object.entries(d.inputs || {}).map(([k, v]) => `${k}=${Number(v).toFixed(2).replace(/\.?0+$/, '')}`).join('  ');
  return el('li', { 'data-service': d.service },
    el('span', { class: 'when' }, time(d.ts_ms)), el('strong', {}, d.service), ' ', pill(what), ' ', d.reason,
    inputs ? el('div', { class: 'inputs' }, inputs) : '');
}

// ---- actions --------------------------------------------------------------------------------

async function withButton(btn, f) {
  btn.disabled = true;
  try { return await f(); } finally { btn.disabled = false; }
}

function scale(btn, service, body) {
  const what = body.auto ? `${service}: back to auto` : `${service}: pin at ${body.replicas}`;
  return withButton(btn, async () => {
    const r = await action(`/api/v1/services/${encodeURIComponent(service)}/scale`, body, what);
    if (r.ok) flash(`${what}: desired ${r.previous ?? '?'} → ${r.replicas ?? '?'} (${r.mode || ''})${r.note ? `. ${r.note}` : ''}`, true);
  });
}
const maintain = (btn, worker, a) => withButton(btn, () => action(`/api/v1/workers/${encodeURIComponent(worker)}/${a}`, {}, `${a} ${worker}`));
const replaceReplica = (btn, id) => withButton(btn, () => action(`/api/v1/replicas/${encodeURIComponent(id)}/replace`, {}, `replace ${id}`));

function alarmAction(btn, a, what) {
  const body = { id: a.id, by: 'dashboard' };
  if (what === 'silence') body.for_ms = 3600 * 1000;
  return withButton(btn, async () => {
    const { body: r } = await api(`/api/v1/alarms/${encodeURIComponent(a.rule)}/${what}`, { method: 'POST', body: JSON.stringify(body) })
      .catch((e) => ({ body: { ok: false, error: e.message } }));
    if (r.ok) {
      for (const v of r.alarms || []) state.alarms.set(`${v.rule}|${v.id}`, v);
      flash(`${what} ${a.rule} ${a.id}: done`, true);
    } else {
      flash(`${what} ${a.rule} failed: ${r.error || 'unknown error'}`, false);
    }
    schedule();
  });
}

// ---- start ----------------------------------------------------------------------------------

function connect() {
  const es = new EventSource('/api/v1/events');
  const on = (name, f) => es.addEventListener(name, (e) => {
    try { f(JSON.parse(e.data)); } catch (err) { console.warn(name, err); }
  });
  es.onopen = () => { $('conn').className = 'dot on'; };
  es.onerror = async () => {
    $('conn').className = 'dot off';
    if (es.readyState === EventSource.CLOSED) {
      // A refused reconnect: the session may have ended (api() reloads to the login page then).
      await api('/api/v1/session').catch(() => {});
      setTimeout(connect, 3000);
    }
  };
  on('status', onStatus);
  on('status_error', (e) => { state.statusError = e.error; schedule(); });
  on('worker_metrics', onWorkerMetrics);
  on('proxy_metrics', onProxyMetrics);
  on('decision', onDecision);
  on('replica', (e) => onEvent('replica', e));
  on('worker', (e) => onEvent('worker', e));
  on('leader', (e) => onEvent('leader', e));
  on('alarm', onAlarmEvent);
  // Events missed while disconnected that the monitor no longer keeps: say so, once.
  on('gap', (e) => { $('history-note').textContent = `some live events were missed (${e.reason}); reload for the full history`; });
}

async function start() {
  charts.ovCpu = lineChart('ov-cpu', { yMax: 100, yLabel: '%' });
  charts.hostsCpu = lineChart('hosts-cpu', { yMax: 100, yLabel: '%' });
  charts.hostsMem = lineChart('hosts-mem', { yMax: 100, yLabel: '%' });
  charts.hostsHourly = lineChart('hosts-hourly', { yMax: 100, yLabel: 'avg %', hourly: true });
  charts.svcRps = lineChart('svc-rps', { yLabel: 'req/s' });
  charts.svcLat = lineChart('svc-lat', { yLabel: 'ms' });
  $('hourly-refresh').addEventListener('click', loadHourly);
  window.addEventListener('hashchange', render);
  setInterval(flushCharts, 1000);
  const { body } = await api('/api/v1/session');
  state.csrf = body.csrf || '';
  await loadHistory();
  connect();
  api('/api/v1/status').then(({ status, body: s }) => { if (status === 200) onStatus(s); else state.statusError = s.error; schedule(); }).catch(() => {});
  loadAlarms();
  render();
}

start();
