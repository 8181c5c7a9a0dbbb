// app.js - the orproxy operator console.  Plain ES modules, no build step.
//
// Every page reads /admin/v1/ with the admin key kept in sessionStorage and
// sent as "Authorization: Bearer" (never in a URL, never in a cookie).  The
// page state lives in the hash ("#/requests?client=alice&status=500"), so a
// view can be linked.  Nothing from the API is ever parsed as HTML: the DOM
// is built with textContent only.
import uPlot from './vendor/uplot/uPlot.esm.js';

const KEY_SLOT = 'orproxy_admin_key';
const PAGES = { overview, requests, clients, models, health };
const COLORS = ['#3b6fd4', '#e07b39', '#3aa57a', '#c94f7c', '#8c6bd1', '#c9a227', '#4aa3c2',
  '#9c5a3c', '#6c8a2b', '#d45b5b', '#999999'];

let authMode = 'keys';     // /ui/auth.json: "none" needs no login
let timer = null;          // the live refresh of the current page
let generation = 0;        // bumps on every navigation: late answers are dropped
const charts = [];         // uPlot instances of the current page

// ---------- small helpers ----------

function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'text') el.textContent = v;
    else if (k === 'class') el.className = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k in el && typeof v !== 'string') el[k] = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const kid of kids.flat()) {
    if (kid === null || kid === undefined || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return el;
}

function fmtTime(ms) {
  if (ms === null || ms === undefined || ms === '') return '';
  const n = typeof ms === 'string' && !/^\d+$/.test(ms) ? Date.parse(ms) : Number(ms);
  if (!Number.isFinite(n) || n <= 0) return String(ms);
  return new Date(n).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

function fmtInt(n) {
  return n === null || n === undefined ? '' : Number(n).toLocaleString('en-US');
}

function usd(s) {
  return s === null || s === undefined || s === '' ? '' : '$' + s;
}

function num(s) {
  const n = parseFloat(s);
  return Number.isFinite(n) ? n : 0;
}

function fmtCell(v) {
  if (v === null || v === undefined) return '';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

function setStatus(text, isError) {
  const s = document.getElementById('status');
  s.textContent = text || '';
  s.classList.toggle('error', !!isError);
}

// ---------- CSV ----------

// RFC 4180: a field with a comma, a quote, CR or LF is quoted and its quotes doubled.
export function csvField(v) {
  const s = fmtCell(v);
  return /[",\r\n]/.test(s) || /^\s|\s$/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
}

function toCSV(columns, rows) {
  const lines = [columns.map((c) => csvField(c.key)).join(',')];
  for (const r of rows) lines.push(columns.map((c) => csvField(r[c.key])).join(','));
  return lines.join('\r\n') + '\r\n';
}

function download(name, text) {
  const url = URL.createObjectURL(new Blob([text], { type: 'text/csv;charset=utf-8' }));
  const a = h('a', { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// A table with a CSV export of its data (not of its cells: full values, raw).
// columns: [{key, label, fmt?(value,row), cls?}]
function table(name, columns, rows, opts = {}) {
  const body = h('tbody');
  for (const r of rows) {
    const tr = h('tr', { class: opts.rowClass ? opts.rowClass(r) : null });
    for (const c of columns) {
      const v = c.fmt ? c.fmt(r[c.key], r) : fmtCell(r[c.key]);
      tr.append(h('td', { class: c.cls }, v));
    }
    if (opts.onRow) {
      tr.classList.add('clickable');
      tr.tabIndex = 0;
      tr.addEventListener('click', (e) => { if (!e.target.closest('button')) opts.onRow(r); });
      tr.addEventListener('keydown', (e) => { if (e.key === 'Enter') opts.onRow(r); });
    }
    body.append(tr);
  }
  const exportCols = opts.exportColumns || columns;
  const exportBtn = h('button', {
    type: 'button', class: 'quiet csv', 'data-csv': name, text: 'Export CSV',
    onclick: () => download(name + '.csv', toCSV(exportCols, opts.exportRows ? opts.exportRows() : rows)),
  });
  return h('div', { class: 'table-block', 'data-table': name },
    h('div', { class: 'table-head' }, opts.title ? h('h3', { text: opts.title }) : null, exportBtn),
    h('div', { class: 'table-scroll' },
      h('table', {},
        h('thead', {}, h('tr', {}, columns.map((c) => h('th', { class: c.cls, text: 'label' in c ? c.label : c.key })))),
        body)),
    rows.length ? null : h('p', { class: 'empty', text: opts.empty || 'Nothing yet.' }));
}

// Every key found in the rows, in first-seen order: for answers whose shape may grow.
function columnsOf(rows, first = []) {
  const keys = [...first];
  for (const r of rows) for (const k of Object.keys(r)) if (!keys.includes(k)) keys.push(k);
  return keys.map((k) => ({ key: k }));
}

// ---------- the API ----------

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(path, opts = {}) {
  const headers = { Accept: 'application/json' };
  const key = sessionStorage.getItem(KEY_SLOT);
  if (key) headers.Authorization = 'Bearer ' + key;
  if (opts.body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch('/admin/v1/' + path, {
    method: opts.method || 'GET',
    headers,
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
    credentials: 'omit',
    cache: 'no-store',
  });
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!res.ok) {
    const err = data && data.error ? data.error : {};
    throw new ApiError(res.status, err.code || String(res.status),
      err.message || ('HTTP ' + res.status));
  }
  return data;
}

// ---------- routing ----------

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '');
  const q = raw.indexOf('?');
  const page = (q < 0 ? raw : raw.slice(0, q)) || 'overview';
  return { page, params: new URLSearchParams(q < 0 ? '' : raw.slice(q + 1)) };
}

function hashFor(page, params) {
  const clean = new URLSearchParams();
  for (const [k, v] of params) if (v !== '' && v !== null && v !== undefined) clean.set(k, v);
  const qs = clean.toString();
  return '#/' + page + (qs ? '?' + qs : '');
}

function go(page, params) {
  const target = hashFor(page, params);
  if (location.hash === target) render();
  else location.hash = target;
}

function stopPage() {
  generation++;
  if (timer) clearInterval(timer);
  timer = null;
  while (charts.length) charts.pop().destroy();
}

function showLogin(message) {
  stopPage();
  document.getElementById('view').replaceChildren();
  document.getElementById('login').hidden = false;
  document.getElementById('logout').hidden = true;
  document.getElementById('login-error').textContent = message || '';
  document.querySelector('#login input[name=admin_key]').focus();
}

async function render() {
  const { page, params } = parseHash();
  const fn = PAGES[page];
  stopPage();
  const gen = generation;
  for (const a of document.querySelectorAll('#nav a'))
    a.classList.toggle('active', a.dataset.page === page);
  const view = document.getElementById('view');
  if (!fn) {
    view.replaceChildren(h('p', { class: 'error', text: 'No such page: ' + page }));
    return;
  }
  if (authMode === 'keys' && !sessionStorage.getItem(KEY_SLOT)) {
    showLogin('');
    return;
  }
  document.getElementById('login').hidden = true;
  document.getElementById('logout').hidden = !sessionStorage.getItem(KEY_SLOT);
  try {
    const el = await fn(params, gen);
    if (gen !== generation) return;
    view.replaceChildren(el);
    view.dataset.page = page;
    setStatus('');
    afterMount.splice(0).forEach((f) => f());
  } catch (e) {
    if (gen !== generation) return;
    handleError(e);
  }
}

const afterMount = [];   // work that needs the page in the document (charts)

function handleError(e) {
  if (e instanceof ApiError && (e.status === 401 || e.status === 403)) {
    sessionStorage.removeItem(KEY_SLOT);
    showLogin(e.status === 403 ? 'That key is not an admin key.' : (e.message || 'A key is needed.'));
    return;
  }
  setStatus(e.message || String(e), true);
}

// ---------- Overview ----------

function card(label, value, id) {
  return h('div', { class: 'card' }, h('div', { class: 'label', text: label }),
    h('div', { class: 'value', id, text: value }));
}

function budgetRow(b) {
  const limit = num(b.limit_usd), spent = num(b.spent_usd);
  const pct = limit > 0 ? Math.round((spent / limit) * 100) : 0;
  const who = b.client ? b.client : 'all clients';
  return h('div', { class: 'budget' },
    h('span', { class: 'who', text: who + ' · ' + b.period }),
    h('meter', { min: 0, max: limit || 1, low: (limit || 1) * 0.8, high: (limit || 1) * 0.95,
      optimum: 0, value: Math.min(spent, limit || 1), title: pct + '%' }),
    h('span', { class: 'amount', text: usd(b.spent_usd) + ' of ' + usd(b.limit_usd) + ' (' + pct + '%)' }));
}

const TOP_COLUMNS = (key) => [
  { key, label: key, fmt: (v) => (v === '' ? '(none)' : fmtCell(v)) },
  { key: 'requests', fmt: fmtInt, cls: 'num' },
  { key: 'errors', fmt: fmtInt, cls: 'num' },
  { key: 'tokens', fmt: fmtInt, cls: 'num' },
  { key: 'cost_usd', label: 'cost', fmt: usd, cls: 'num' },
];

async function overview(params, gen) {
  const bucket = params.get('bucket') === 'day' ? 'day' : 'hour';
  const by = params.get('by') === 'model' ? 'model' : 'client';
  const now = Date.now();
  const span = bucket === 'day' ? 30 * 86400e3 : 48 * 3600e3;
  const [ov, ts] = await Promise.all([
    api('overview'),
    api(`timeseries?since=${now - span}&until=${now}&bucket=${bucket}&by=${by}`),
  ]);
  const spend = ov.spend || {};
  const tok = ov.tokens || {};
  const sources = ov.cost_by_source || [];
  const total = sources.reduce((a, s) => a + num(s.cost_usd), 0);

  const controls = h('form', { class: 'controls', onchange: (e) => {
    const f = e.currentTarget;
    go('overview', new URLSearchParams({ bucket: f.bucket.value, by: f.by.value }));
  } },
  h('label', {}, 'Buckets ', h('select', { name: 'bucket' },
    h('option', { value: 'hour', selected: bucket === 'hour', text: 'hours (48 h)' }),
    h('option', { value: 'day', selected: bucket === 'day', text: 'days (30 d)' }))),
  h('label', {}, 'Stacked by ', h('select', { name: 'by' },
    h('option', { value: 'client', selected: by === 'client', text: 'top clients' }),
    h('option', { value: 'model', selected: by === 'model', text: 'top models' }))));

  const chartBox = h('div', { class: 'chart', id: 'spend-chart' });
  afterMount.push(() => { if (gen === generation) drawSpend(chartBox, ts); });
  timer = setInterval(() => { if (!document.hidden) render(); }, 30000);

  return h('div', { class: 'page overview' },
    h('h2', { text: 'Overview' }),
    h('div', { class: 'cards' },
      card('Spend today', usd(spend.today), 'spend-today'),
      card('This month', usd(spend.month), 'spend-month'),
      card('Last 30 days', usd(spend.last_30_days), 'spend-30d'),
      card('Requests (30 d)', fmtInt(ov.requests), 'requests-30d'),
      card('Errors (30 d)', fmtInt(ov.errors), 'errors-30d')),
    h('section', {}, h('h3', { text: 'Budgets' }),
      (ov.budgets || []).length
        ? h('div', { class: 'budgets' }, ov.budgets.map(budgetRow))
        : h('p', { class: 'empty', text: 'No budget is set.' })),
    h('section', { class: 'split' },
      h('div', {}, table('tokens', [{ key: 'kind' }, { key: 'tokens', fmt: fmtInt, cls: 'num' }],
        ['prompt', 'completion', 'cached', 'reasoning'].map((k) => ({ kind: k, tokens: tok[k] || 0 })),
        { title: 'Tokens (30 d)' })),
      h('div', {}, table('cost_by_source', [
        { key: 'cost_source', label: 'source' },
        { key: 'requests', fmt: fmtInt, cls: 'num' },
        { key: 'cost_usd', label: 'cost', fmt: usd, cls: 'num' },
        { key: 'share', fmt: (v, r) => (total > 0 ? ((num(r.cost_usd) / total) * 100).toFixed(1) : '0.0') + '%', cls: 'num' },
      ], sources, { title: 'Cost by source (30 d)', exportColumns: [
        { key: 'cost_source' }, { key: 'requests' }, { key: 'cost_usd' }] }))),
    h('section', {}, h('h3', { text: 'Spend over time' }), controls, chartBox),
    h('section', { class: 'split' },
      h('div', {}, table('top_clients', TOP_COLUMNS('client'), ov.top_clients || [], { title: 'Top clients (30 d)' })),
      h('div', {}, table('top_models', TOP_COLUMNS('model'), ov.top_models || [], { title: 'Top models (30 d)' }))));
}

// Stacked bars: series i is drawn at the sum of series i..n-1, biggest
// first, so each opaque bar shows its own slice; the legend shows raw values.
function drawSpend(box, ts) {
  const t = (ts.t || []).map((ms) => ms / 1000);
  const series = ts.series || [];
  if (!t.length || !series.length) {
    box.replaceChildren(h('p', { class: 'empty', text: 'No spend in this range.' }));
    return;
  }
  const raw = series.map((s) => (s.cost_usd || []).map(num));
  const stacked = raw.map((_, i) => t.map((_, j) => raw.slice(i).reduce((a, r) => a + (r[j] || 0), 0)));
  const width = Math.max(320, (box.clientWidth || 824) - 24); // less the box's padding
  const bars = uPlot.paths.bars({ size: [0.8, 64] });
  const opts = {
    width, height: 260,
    scales: { x: { time: true }, y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] } },
    axes: [{}, { values: (u, vals) => vals.map((v) => '$' + Number(v.toPrecision(3))), size: 80 }],
    series: [{ value: (u, v) => (v == null ? '' : fmtTime(v * 1000)) }].concat(series.map((s, i) => ({
      label: s.name || '(none)',
      stroke: COLORS[i % COLORS.length],
      fill: COLORS[i % COLORS.length],
      paths: bars,
      points: { show: false },
      value: (u, v, si, di) => (di == null ? '' : '$' + raw[i][di].toFixed(6)),
    }))),
  };
  box.replaceChildren();
  charts.push(new uPlot(opts, [t, ...stacked], box));
}

// ---------- Requests ----------

const REQ_FILTERS = ['client', 'model', 'status', 'outcome', 'stream', 'since', 'until'];

function toMs(v) {
  if (!v) return '';
  if (/^\d+$/.test(v)) return v;
  const ms = Date.parse(v.endsWith('Z') || /[+-]\d\d:\d\d$/.test(v) ? v : v + 'Z');
  return Number.isFinite(ms) ? String(ms) : '';
}

async function requests(params, gen) {
  const q = new URLSearchParams({ limit: params.get('limit') || '100' });
  for (const k of REQ_FILTERS) {
    let v = params.get(k);
    if (!v) continue;
    if (k === 'since' || k === 'until') v = toMs(v);
    if (v) q.set(k, v);
  }
  if (params.get('before')) q.set('before', params.get('before'));
  const data = await api('requests?' + q);
  const rows = data.requests || [];
  const live = !params.get('before') && params.get('live') !== '0';

  const input = (name, label, attrs = {}) => h('label', {}, label + ' ',
    h('input', { name, value: params.get(name) || '', ...attrs }));
  const form = h('form', { class: 'controls filters', onsubmit: (e) => {
    e.preventDefault();
    const f = e.currentTarget;
    const p = new URLSearchParams();
    for (const k of REQ_FILTERS) p.set(k, f[k].value.trim());
    if (!f.live.checked) p.set('live', '0');
    go('requests', p);
  } },
  input('client', 'Client'), input('model', 'Model'),
  input('status', 'Status', { inputmode: 'numeric', size: 4 }),
  h('label', {}, 'Outcome ', h('select', { name: 'outcome' },
    ['', 'ok', 'rejected', 'upstream_error', 'proxy_error', 'stream_error', 'cancelled']
      .map((o) => h('option', { value: o, selected: params.get('outcome') === o, text: o || 'any' })))),
  h('label', {}, 'Stream ', h('select', { name: 'stream' },
    [['', 'any'], ['1', 'yes'], ['0', 'no']].map(([v, t]) =>
      h('option', { value: v, selected: (params.get('stream') || '') === v, text: t })))),
  input('since', 'Since (UTC)', { placeholder: '2026-12-01T00:00' }),
  input('until', 'Until (UTC)', { placeholder: '2026-12-01T12:00' }),
  h('label', {}, h('input', { type: 'checkbox', name: 'live', checked: live }), ' live'),
  h('button', { type: 'submit', text: 'Apply' }));

  const columns = [
    { key: 'started_ms', label: 'time', fmt: fmtTime },
    { key: 'client' }, { key: 'model' },
    { key: 'status', cls: 'num' },
    { key: 'stream', fmt: (v) => (Number(v) ? 'yes' : 'no') },
    { key: 'total_tokens', label: 'tokens', cls: 'num',
      fmt: (v, r) => fmtInt(v ?? (Number(r.prompt_tokens || 0) + Number(r.completion_tokens || 0))) },
    { key: 'cost_usd', label: 'cost', cls: 'num', fmt: (v, r) => usd(v) + (r.cost_source ? ' · ' + r.cost_source : '') },
    { key: 'latency_ms', label: 'latency ms', cls: 'num', fmt: (v) => (v == null ? '' : Math.round(v)) },
    { key: 'ttfb_ms', label: 'ttfb ms', cls: 'num', fmt: (v) => (v == null || v < 0 ? '' : Math.round(v)) },
  ];
  const pager = h('div', { class: 'pager' },
    params.get('before') ? h('button', { type: 'button', class: 'quiet', text: 'Newest',
      onclick: () => { const p = new URLSearchParams(params); p.delete('before'); go('requests', p); } }) : null,
    data.next_before ? h('button', { type: 'button', class: 'quiet', text: 'Older', onclick: () => {
      const p = new URLSearchParams(params); p.set('before', data.next_before); go('requests', p);
    } }) : null);
  if (live) {
    timer = setInterval(async () => {
      if (document.hidden) return;
      try {
        const fresh = await api('requests?' + q);
        if (gen !== generation) return;
        const old = document.querySelector('[data-table=requests]');
        if (old) old.replaceWith(reqTable(fresh.requests || [], columns));
      } catch (e) { if (gen === generation) handleError(e); }
    }, 2000);
  }
  return h('div', { class: 'page requests' }, h('h2', { text: 'Requests' }), form,
    reqTable(rows, columns), pager);
}

function reqTable(rows, columns) {
  return table('requests', columns, rows, {
    onRow: showRow,
    exportColumns: columnsOf(rows),
    rowClass: (r) => (Number(r.status) >= 400 ? 'bad' : null),
    empty: 'No request matches.',
  });
}

function showRow(row) {
  const dl = h('dl', { class: 'kv' });
  for (const [k, v] of Object.entries(row)) {
    const shown = k.endsWith('_ms') && /started|ended|time/.test(k) && v ? `${v} (${fmtTime(v)})` : fmtCell(v);
    dl.append(h('dt', { text: k }), h('dd', { text: shown }));
  }
  openDialog('Request ' + (row.request_id || row.id || ''), dl);
}

// ---------- dialogs ----------

function openDialog(title, content, actions = []) {
  const d = document.getElementById('dialog');
  const close = h('button', { type: 'button', class: 'quiet', text: 'Close', onclick: () => d.close() });
  d.replaceChildren(h('h3', { text: title }), content, h('div', { class: 'actions' }, actions, close));
  if (!d.open) d.showModal();
  return d;
}

function confirmDialog(title, text, label) {
  return new Promise((resolve) => {
    const d = document.getElementById('dialog');
    const yes = h('button', { type: 'button', class: 'danger', 'data-confirm': '1', text: label,
      onclick: () => { resolve(true); d.close(); } });
    openDialog(title, h('p', { text }), [yes]);
    d.addEventListener('close', () => resolve(false), { once: true });
  });
}

function showKey(title, name, key, note) {
  openDialog(title, h('div', {},
    h('p', { text: `The key for ${name}. It is shown this once: copy it now.` }),
    h('output', { class: 'secret', id: 'new-key', text: key }),
    note ? h('p', { text: note }) : null,
    h('button', { type: 'button', class: 'quiet', text: 'Copy',
      onclick: () => navigator.clipboard && navigator.clipboard.writeText(key).catch(() => {}) })));
}

// ---------- Clients ----------

function spendCell(spent, limit) {
  if (limit === null || limit === undefined || limit === '') return usd(spent) || '$0';
  const l = num(limit), s = num(spent);
  return h('span', { class: 'spend' },
    h('meter', { min: 0, max: l || 1, high: (l || 1) * 0.9, optimum: 0, value: Math.min(s, l || 1) }),
    ' ' + (usd(spent) || '$0') + ' / ' + usd(limit));
}

// 0 or absent is no limit.
function limitText(v) {
  return v ? fmtInt(v) : '—';
}

function listText(v) {
  return Array.isArray(v) ? (v.length ? v.join(', ') : 'all') : v == null ? 'all' : fmtCell(v);
}

async function clients(params) {
  const data = await api('clients');
  const rows = data.clients || [];
  const columns = [
    { key: 'name' },
    { key: 'source', fmt: (v) => (v === 'config'
      ? h('span', { class: 'badge ro', title: 'from the config file: read-only here', text: 'config · read-only' })
      : h('span', { class: 'badge', text: v || '' })) },
    { key: 'models', fmt: listText },
    { key: 'admin', fmt: (v) => (v ? h('span', { class: 'badge admin', text: 'admin' }) : '') },
    { key: 'rpm', cls: 'num', fmt: limitText }, { key: 'tpm', cls: 'num', fmt: limitText },
    { key: 'max_concurrent', label: 'concurrent', cls: 'num', fmt: limitText },
    { key: 'spent_usd_day', label: 'day', fmt: (v, r) => spendCell(v, r.budget_usd_day) },
    { key: 'spent_usd_month', label: 'month', fmt: (v, r) => spendCell(v, r.budget_usd_month) },
    { key: 'expires_at', label: 'expires', fmt: (v, r) => fmtTime(v) +
      (r.old_key_until ? (v ? '; ' : '') + 'old key until ' + fmtTime(r.old_key_until) : '') },
    { key: 'actions', label: '', fmt: (v, r) => (r.source === 'config' ? '' : h('span', { class: 'row-actions' },
      h('button', { type: 'button', class: 'quiet', 'data-action': 'edit', text: 'Edit', onclick: () => editClient(r) }),
      h('button', { type: 'button', class: 'quiet', 'data-action': 'rotate', text: 'Rotate', onclick: () => rotateClient(r) }),
      h('button', { type: 'button', class: 'danger', 'data-action': 'revoke', text: 'Revoke', onclick: () => revokeClient(r) }))) },
  ];
  const exportCols = columnsOf(rows, ['name', 'source']);
  const t = table('clients', columns, rows, {
    exportColumns: exportCols, rowClass: (r) => 'client-' + (r.source || 'managed'),
  });
  for (const tr of t.querySelectorAll('tbody tr')) {
    const r = rows[tr.sectionRowIndex];
    tr.dataset.client = r.name;
    tr.dataset.source = r.source || '';
  }
  return h('div', { class: 'page clients' }, h('h2', { text: 'Clients' }),
    h('p', { class: 'hint', text: 'Clients from the config file are read-only here; edit the file and reload.' }),
    h('div', { class: 'toolbar' }, h('button', { type: 'button', id: 'new-client', text: 'New client',
      onclick: () => editClient(null) })), t);
}

function msToInput(ms) {
  if (!ms) return '';
  const n = typeof ms === 'number' ? ms : Date.parse(ms);
  return Number.isFinite(n) ? new Date(n).toISOString().slice(0, 16) : '';
}

// The create/edit form.  Only fields the operator filled in are sent.
function clientForm(c) {
  const d = (c && c.defaults) || {};
  const field = (name, label, value, attrs = {}) => h('label', {}, h('span', { text: label }),
    h('input', { name, value: value == null ? '' : String(value), ...attrs }));
  const area = (name, label, value) => h('label', { class: 'wide' }, h('span', { text: label }),
    h('textarea', { name, rows: 3, text: value || '' }));
  return h('form', { class: 'client-form', method: 'dialog' },
    field('name', 'Name', c ? c.name : '', c ? { readonly: true } : { required: true, pattern: '[A-Za-z0-9._\\-]{1,63}' }),
    field('models', 'Models (comma-separated patterns; empty = all)', Array.isArray(c && c.models) ? c.models.join(', ') : ''),
    field('rpm', 'Requests per minute (empty = no limit)', (c && c.rpm) || '', { inputmode: 'numeric' }),
    field('tpm', 'Tokens per minute', (c && c.tpm) || '', { inputmode: 'numeric' }),
    field('max_concurrent', 'Max concurrent requests', (c && c.max_concurrent) || '', { inputmode: 'numeric' }),
    field('budget_usd_day', 'Budget per day (USD)', c && c.budget_usd_day, { inputmode: 'decimal' }),
    field('budget_usd_month', 'Budget per month (USD)', c && c.budget_usd_month, { inputmode: 'decimal' }),
    field('expires_at', 'Expires (UTC)', msToInput(c && c.expires_at), { type: 'datetime-local' }),
    h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'admin', checked: !!(c && c.admin) }),
      h('span', { text: 'Admin (may use this console and the admin API)' })),
    area('system_prompt', 'Default system prompt', d.system_prompt),
    area('context', 'Context (added as a second system message "Context:\\n…" where a request has none)', d.context),
    h('p', { class: 'error', id: 'form-error', role: 'alert' }));
}

// Only what the operator filled in is sent; on an edit, a field emptied
// clears it (null; a limit goes back to 0, which is no limit).
function formBody(f, c) {
  const editing = !!c;
  const body = {};
  if (!editing) body.name = f.name.value.trim();
  const models = f.models.value.split(',').map((s) => s.trim()).filter(Boolean);
  if (models.length || editing) body.models = models;
  for (const k of ['rpm', 'tpm', 'max_concurrent']) {
    const v = f[k].value.trim();
    if (v !== '') body[k] = Number(v);
    else if (editing && c[k]) body[k] = 0;
  }
  for (const k of ['budget_usd_day', 'budget_usd_month']) {
    const v = f[k].value.trim();
    if (v !== '') body[k] = v;
    else if (editing && c[k] != null) body[k] = null;
  }
  if (f.admin.checked || (editing && c.admin)) body.admin = f.admin.checked;
  const exp = f.expires_at.value;
  if (exp) body.expires_at = new Date(Date.parse(exp + 'Z')).toISOString().replace(/\.\d{3}Z$/, 'Z');
  else if (editing && c.expires_at) body.expires_at = null;
  const defaults = { ...((c && c.defaults) || {}) };
  delete defaults.system_prompt;
  delete defaults.context;
  if (f.system_prompt.value) defaults.system_prompt = f.system_prompt.value;
  if (f.context.value) defaults.context = f.context.value;
  if (Object.keys(defaults).length || editing) body.defaults = defaults;
  return body;
}

function editClient(c) {
  const form = clientForm(c);
  const save = h('button', { type: 'button', id: 'save-client', text: c ? 'Save' : 'Create', onclick: async () => {
    if (!form.reportValidity()) return;
    try {
      if (c) {
        await api('clients/' + encodeURIComponent(c.name), { method: 'PATCH', body: formBody(form, c) });
        document.getElementById('dialog').close();
        render();
      } else {
        const body = formBody(form, null);
        const made = await api('clients', { method: 'POST', body });
        render();
        showKey('Client created', made.name || body.name, made.key);
      }
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) { document.getElementById('dialog').close(); handleError(e); return; }
      form.querySelector('#form-error').textContent = e.message;
    }
  } });
  openDialog(c ? 'Edit ' + c.name : 'New client', form, [save]);
}

function rotateClient(c) {
  const grace = h('input', { name: 'grace_s', value: '3600', inputmode: 'numeric', required: true, pattern: '\\d+' });
  const err = h('p', { class: 'error', role: 'alert' });
  const go2 = h('button', { type: 'button', id: 'do-rotate', text: 'Rotate', onclick: async () => {
    if (!grace.reportValidity()) return;
    try {
      const res = await api('clients/' + encodeURIComponent(c.name) + '/rotate',
        { method: 'POST', body: { grace_s: Number(grace.value) } });
      const s = Number(grace.value);
      showKey('Key rotated', c.name, res.key, s > 0
        ? `The old key keeps working for ${s} s, then only this one does.`
        : 'The old key no longer works.');
      render();
    } catch (e) { err.textContent = e.message; }
  } });
  openDialog('Rotate the key of ' + c.name, h('div', {},
    h('label', {}, 'Grace period, seconds (the old key keeps working this long) ', grace), err), [go2]);
}

async function revokeClient(c) {
  if (!(await confirmDialog('Revoke ' + c.name, `Every key of ${c.name} stops working within a second, including an old key in its grace period.`, 'Revoke'))) return;
  try {
    await api('clients/' + encodeURIComponent(c.name), { method: 'DELETE' });
    await render(); /* a render clears the status line: set it after */
    setStatus(c.name + ' revoked');
  } catch (e) { handleError(e); }
}

// ---------- Models ----------

async function models() {
  const data = await api('models');
  const rows = data.models || [];
  const parts = [h('h2', { text: 'Models' })];
  const fetched = data.prices_fetched_at ?? data.fetched_at ?? data.fetched_ms ?? (data.prices && data.prices.fetched_at);
  if (fetched) parts.push(h('p', { class: 'hint', text: 'Price table fetched ' + fmtTime(fetched) }));
  const first = ['model', 'requests', 'tokens', 'cost_usd'];
  const cols = columnsOf(rows, first).map((c) => ({
    ...c, cls: c.key === 'model' ? null : 'num',
    fmt: c.key === 'cost_usd' ? usd : ['requests', 'tokens'].includes(c.key) ? fmtInt
      : c.key === 'model' ? (v) => (v === '' ? '(none: refused before a model was read)' : fmtCell(v)) : fmtCell,
  }));
  parts.push(table('models', cols, rows, { title: 'Spend per model (30 d)' }));
  // Any other list in the answer (a price table kept apart) gets its own table.
  for (const [k, v] of Object.entries(data))
    if (k !== 'models' && Array.isArray(v) && v.length && typeof v[0] === 'object')
      parts.push(table(k, columnsOf(v), v,
        { title: k === 'prices' ? 'Price table in use (USD)' : k.replace(/_/g, ' ') }));
  for (const [k, v] of Object.entries(data))
    if (k !== 'models' && v && typeof v === 'object' && !Array.isArray(v))
      parts.push(h('section', {}, h('h3', { text: k.replace(/_/g, ' ') }), kvList(v)));
  return h('div', { class: 'page models' }, parts);
}

// ---------- Health ----------

function kvList(obj) {
  const dl = h('dl', { class: 'kv' });
  for (const [k, v] of Object.entries(obj)) {
    let shown = v;
    if (v && typeof v === 'object' && !Array.isArray(v)) shown = kvList(v);
    else if (/_ms$|_at$/.test(k) && typeof v === 'number' && v > 1e12) shown = fmtTime(v);
    else if (/uptime/.test(k) && typeof v === 'number') shown = fmtDuration(v, k);
    else shown = fmtCell(v);
    dl.append(h('dt', { text: k.replace(/_/g, ' ') }), h('dd', {}, shown));
  }
  return dl;
}

function fmtDuration(v, key) {
  let s = /_ms$/.test(key) ? v / 1000 : v;
  const d = Math.floor(s / 86400); s -= d * 86400;
  const hh = Math.floor(s / 3600); s -= hh * 3600;
  const m = Math.floor(s / 60); s = Math.floor(s - m * 60);
  return (d ? d + 'd ' : '') + (d || hh ? hh + 'h ' : '') + m + 'm ' + s + 's';
}

async function health() {
  const data = await api('health');
  const scalars = {}, parts = [];
  for (const [k, v] of Object.entries(data)) {
    if (Array.isArray(v) && v.length && typeof v[0] === 'object')
      parts.push(table(k, columnsOf(v), v, { title: k.replace(/_/g, ' ') }));
    else if (v && typeof v === 'object' && !Array.isArray(v))
      parts.push(h('section', {}, h('h3', { text: k.replace(/_/g, ' ') }), kvList(v)));
    else scalars[k] = v;
  }
  timer = setInterval(() => { if (!document.hidden) render(); }, 10000);
  return h('div', { class: 'page health' }, h('h2', { text: 'Health' }), kvList(scalars), parts);
}

// ---------- start ----------

async function start() {
  try {
    const res = await fetch('auth.json', { cache: 'no-store', credentials: 'omit' });
    if (res.ok) authMode = (await res.json()).mode === 'none' ? 'none' : 'keys';
  } catch { /* keep asking for a key */ }
  document.getElementById('login-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const input = e.currentTarget.admin_key;
    const key = input.value.trim();
    input.value = '';
    if (!key) return;
    sessionStorage.setItem(KEY_SLOT, key);
    render();
  });
  document.getElementById('logout').addEventListener('click', () => {
    sessionStorage.removeItem(KEY_SLOT);
    if (authMode === 'none') render();
    else showLogin('Logged out.');
  });
  window.addEventListener('hashchange', render);
  window.addEventListener('resize', () => {
    for (const c of charts) c.setSize({ width: Math.max(320, c.root.parentElement.clientWidth - 24), height: 260 });
  });
  render();
}

start();
