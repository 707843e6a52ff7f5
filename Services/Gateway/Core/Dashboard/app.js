// Tokenwatch dashboard: a single page over the gateway's public REST API and its live anomaly stream, with the
// user's API key (kept in sessionStorage, sent only in the Authorization header, never in a URL). No framework and
// no build step: DOM helpers, an SVG line chart and a hash router, below. All text from the API goes through
// textContent, never innerHTML.
'use strict';

// MARK: - Small helpers

const SVG_NS = 'http://www.w3.org/2000/svg';

function h(tag, props, ...children) {
  const el = document.createElement(tag);
  applyProps(el, props);
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function s(tag, props, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  applyProps(el, props);
  for (const child of children.flat()) if (child) el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return el;
}

function applyProps(el, props) {
  for (const [key, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key === 'text') el.textContent = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else el.setAttribute(key, value === true ? '' : String(value));
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const MINUTE = 60_000, HOUR = 60 * MINUTE, DAY = 24 * HOUR;
const STEPS = { '1m': MINUTE, '1h': HOUR, '1d': DAY };
const MAX_POINTS = 10_000;

const numberFormat = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const compactFormat = new Intl.NumberFormat(undefined, { notation: 'compact', maximumFractionDigits: 1 });
function fmtCount(v) { return v === null || v === undefined ? '–' : Math.abs(v) >= 100_000 ? compactFormat.format(v) : numberFormat.format(v); }
function fmtUSD(v) {
  if (v === null || v === undefined) return '–';
  // Costs are exact to the nano-dollar: a cheap call's cost shows its significant digits, not $0.0000.
  if (v !== 0 && Math.abs(v) < 0.01) return new Intl.NumberFormat(undefined, { style: 'currency', currency: 'USD', maximumSignificantDigits: 3 }).format(v);
  const digits = v !== 0 && Math.abs(v) < 1 ? 4 : 2;
  return new Intl.NumberFormat(undefined, { style: 'currency', currency: 'USD', minimumFractionDigits: digits, maximumFractionDigits: digits }).format(v);
}
function fmtPct(v) { return v === null || v === undefined ? '–' : (v * 100).toFixed(v < 0.001 && v > 0 ? 2 : 1) + '%'; }
function fmtMs(v) { return v === null || v === undefined ? '–' : v >= 10_000 ? (v / 1000).toFixed(1) + ' s' : numberFormat.format(Math.round(v)) + ' ms'; }
function fmtTime(ms, spanMs) {
  const d = new Date(ms);
  if (spanMs > 2 * DAY) return d.toLocaleDateString(undefined, { month: 'short', day: 'numeric' }) + ' ' + d.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
  return d.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
}
function fmtDateTime(ms) { return new Date(ms).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' }); }
function iso(ms) { return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z'); }

// MARK: - API

const state = {
  key: sessionStorage.getItem('tokenwatch.key'),
  tenant: null,
  range: JSON.parse(sessionStorage.getItem('tokenwatch.range') || 'null') || { preset: '1h', step: 'auto', from: null, to: null },
  anomalies: new Map(),      // anomaly_id -> anomaly (highest revision), from the list and the live stream
  freshIDs: new Set(),       // ids that arrived live since the anomalies view was last rendered
  stream: null,              // AbortController of the live stream
  onAnomaly: null,           // the current view's hook for live anomalies
  renderToken: 0,            // a view checks it after each await, so a stale render never writes
};

class APIError extends Error {
  constructor(status, message, body) { super(message); this.status = status; this.body = body; }
}

async function api(path, { method = 'GET', body, signingIn = false } = {}) {
  const headers = { Authorization: 'Bearer ' + state.key, Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store', credentials: 'omit' });
  } catch (e) {
    throw new APIError(0, 'The gateway could not be reached. Check that it is running and that this page was opened from it.');
  }
  const text = await response.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (e) { json = null; }
  if (!response.ok) {
    const message = (json && (json.detail || json.title)) || response.statusText || 'request failed';
    if (response.status === 401 && state.key && !signingIn) signOut('Your API key is no longer accepted (' + message + '). Enter a valid key.');
    throw new APIError(response.status, message, json);
  }
  return json;
}

// MARK: - Time range

function currentRange() {
  const r = state.range;
  const custom = r.preset === 'custom' && r.from && r.to;
  const span = custom ? r.to - r.from : { '1h': HOUR, '24h': DAY, '7d': 7 * DAY }[r.preset] || HOUR;
  let step = r.step;
  if (step === 'auto') step = span <= 6 * HOUR ? '1m' : span <= 8 * DAY ? '1h' : '1d';
  const stepMs = STEPS[step];
  // Whole windows: a preset ends with the window in progress and spans exactly its length (the last hour at 1m is
  // 60 points); a custom range widens to whole windows.
  const to = Math.ceil((custom ? r.to : Date.now()) / stepMs) * stepMs;
  const from = custom ? Math.floor(r.from / stepMs) * stepMs : to - Math.ceil(span / stepMs) * stepMs;
  return { from, to, step, stepMs, points: Math.round((to - from) / stepMs) };
}

function saveRange() { sessionStorage.setItem('tokenwatch.range', JSON.stringify(state.range)); }

function rangeControls(onChange) {
  const presets = [['1h', 'Last hour'], ['24h', 'Last 24 hours'], ['7d', 'Last 7 days'], ['custom', 'Custom']];
  const status = h('p', { class: 'muted', role: 'status', 'aria-live': 'polite', id: 'range-status' });
  const group = h('fieldset', {}, h('legend', { text: 'Time range' }),
    presets.map(([value, label]) => h('button', {
      type: 'button', class: 'seg', 'aria-pressed': state.range.preset === value ? 'true' : 'false', dataset: { range: value }, text: value === 'custom' ? 'Custom' : value,
      'aria-label': label,
      onclick: () => {
        state.range.preset = value;
        if (value === 'custom' && !state.range.from) { state.range.to = Date.now(); state.range.from = state.range.to - DAY; }
        saveRange(); onChange();
      },
    })));
  const stepSelect = h('select', { id: 'step', onchange: (e) => { state.range.step = e.target.value; saveRange(); onChange(); } },
    ['auto', '1m', '1h', '1d'].map((v) => h('option', { value: v, selected: state.range.step === v, text: v === 'auto' ? 'Auto' : v })));
  const controls = h('div', { class: 'controls' }, group, h('label', { for: 'step' }, 'Step', stepSelect));
  if (state.range.preset === 'custom') {
    const local = (ms) => { const d = new Date(ms - new Date(ms).getTimezoneOffset() * MINUTE); return d.toISOString().slice(0, 16); };
    const fromInput = h('input', { type: 'datetime-local', id: 'from', value: local(state.range.from) });
    const toInput = h('input', { type: 'datetime-local', id: 'to', value: local(state.range.to) });
    const apply = h('button', { type: 'button', class: 'secondary', text: 'Apply', onclick: () => {
      const from = new Date(fromInput.value).getTime(), to = new Date(toInput.value).getTime();
      if (!(from < to)) { status.textContent = 'The start must be before the end.'; return; }
      state.range.from = from; state.range.to = to; saveRange(); onChange();
    } });
    controls.append(h('label', { for: 'from' }, 'From', fromInput), h('label', { for: 'to' }, 'To', toInput), apply);
  }
  const r = currentRange();
  if (r.points > MAX_POINTS) status.textContent = `That range holds ${fmtCount(r.points)} steps of ${r.step}; choose a larger step (at most ${fmtCount(MAX_POINTS)} points).`;
  controls.append(status);
  return controls;
}

// MARK: - Chart

const COLORS = ['#1f5fbf', '#b54708', '#1e7b45', '#7a2e8e'];

/// A line chart in SVG: `series` = [{name, points: [{t, value}]}] sharing the time axis [from, to). Optional `band`
/// {low, high, from, to} (an expected range) and `mark` {from, to} (a highlighted window). Keyboard: focus the
/// chart, then the arrow keys move the readout across the points.
function lineChart({ title, format, series, from, to, band, mark, testid, width = 640, height = 220 }) {
  const W = width, H = height, M = { l: 58, r: 12, t: 10, b: 26 };
  const values = series.flatMap((sr) => sr.points.map((p) => p.value)).filter((v) => v !== null && Number.isFinite(v));
  if (band) values.push(band.high);
  let max = values.length ? Math.max(...values) : 0;
  // Nothing above zero: a fixed scale (100% for rates, 4 otherwise) rather than ticks of fractions of nothing.
  if (!(max > 0)) max = format === fmtPct ? 1 : 4;
  else max = niceCeil(max * 1.08);
  // Counts get whole-number ticks.
  if (format === fmtCount) max = Math.max(4, Math.ceil(max / 4) * 4);
  const x = (t) => M.l + ((t - from) / (to - from)) * (W - M.l - M.r);
  const y = (v) => H - M.b - (v / max) * (H - M.t - M.b);
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', tabindex: 0 });
  const grid = s('g', { class: 'grid' }), axis = s('g', { class: 'axis' });
  for (let i = 0; i <= 4; i++) {
    const v = (max / 4) * i;
    grid.append(s('line', { x1: M.l, x2: W - M.r, y1: y(v), y2: y(v) }));
    axis.append(s('text', { x: M.l - 6, y: y(v) + 4, 'text-anchor': 'end' }, format(v)));
  }
  for (let i = 0; i <= 4; i++) {
    const t = from + ((to - from) / 4) * i;
    axis.append(s('text', { x: x(t), y: H - 6, 'text-anchor': i === 0 ? 'start' : i === 4 ? 'end' : 'middle' }, fmtTime(t, to - from)));
  }
  svg.append(grid);
  if (band) {
    const bx1 = x(Math.max(from, band.from)), bx2 = x(Math.min(to, band.to));
    svg.append(s('rect', { class: 'band', x: bx1, width: Math.max(0, bx2 - bx1), y: y(band.high), height: Math.max(1, y(band.low) - y(band.high)), 'data-role': 'expected-band' }));
  }
  if (mark) {
    const mx1 = x(Math.max(from, mark.from)), mx2 = x(Math.min(to, mark.to));
    svg.append(s('rect', { class: 'window', x: mx1, width: Math.max(2, mx2 - mx1), y: M.t, height: H - M.t - M.b, 'data-role': 'anomalous-window' }));
  }
  series.forEach((sr, i) => {
    let d = '', pen = false;
    for (const p of sr.points) {
      if (p.value === null || !Number.isFinite(p.value)) { pen = false; continue; }
      d += (pen ? 'L' : 'M') + x(p.t).toFixed(1) + ' ' + y(p.value).toFixed(1);
      pen = true;
    }
    // A lone point between gaps has no segment: draw it as a dot.
    svg.append(s('path', { class: 'line', d: d || 'M0 0', stroke: sr.color || COLORS[i % COLORS.length] }));
    sr.points.forEach((p, k) => {
      const prev = sr.points[k - 1], next = sr.points[k + 1];
      if (p.value !== null && (!prev || prev.value === null) && (!next || next.value === null)) {
        svg.append(s('circle', { cx: x(p.t), cy: y(p.value), r: 2.5, fill: sr.color || COLORS[i % COLORS.length] }));
      }
    });
  });
  svg.append(axis);
  if (!series.some((sr) => sr.points.some((p) => p.value !== null))) {
    svg.append(s('text', { x: (M.l + W - M.r) / 2, y: (M.t + H - M.b) / 2, 'text-anchor': 'middle', class: 'nodata' }, 'No calls in this range'));
  }
  const cursor = s('line', { class: 'cursor', y1: M.t, y2: H - M.b, visibility: 'hidden' });
  svg.append(cursor);

  const first = series[0] ? series[0].points : [];
  const last = [...first].reverse().find((p) => p.value !== null);
  const summary = `${title}: ${first.length} points from ${fmtDateTime(from)} to ${fmtDateTime(to)}` +
    (values.length ? `, highest ${format(Math.max(...values))}, latest ${last ? format(last.value) : 'none'}` : ', no data');
  svg.setAttribute('aria-label', summary);
  const readout = h('span', { class: 'readout', 'aria-live': 'off' });
  const show = (index) => {
    const p = first[index];
    if (!p) return;
    cursor.setAttribute('x1', x(p.t)); cursor.setAttribute('x2', x(p.t)); cursor.setAttribute('visibility', 'visible');
    readout.textContent = fmtDateTime(p.t) + ': ' + series.map((sr) => (series.length > 1 ? sr.name + ' ' : '') + (sr.points[index] && sr.points[index].value !== null ? format(sr.points[index].value) : '–')).join(', ');
  };
  let current = first.length - 1;
  svg.addEventListener('pointermove', (e) => {
    const box = svg.getBoundingClientRect();
    const t = from + ((e.clientX - box.left) / box.width * W - M.l) / (W - M.l - M.r) * (to - from);
    current = Math.max(0, Math.min(first.length - 1, Math.round((t - from) / ((to - from) / Math.max(1, first.length)))));
    show(current);
  });
  svg.addEventListener('pointerleave', () => { cursor.setAttribute('visibility', 'hidden'); readout.textContent = ''; });
  svg.addEventListener('keydown', (e) => {
    if (e.key === 'ArrowLeft') current = Math.max(0, current - 1);
    else if (e.key === 'ArrowRight') current = Math.min(first.length - 1, current + 1);
    else return;
    e.preventDefault();
    show(current);
  });
  let legend = null;
  if (series.length > 1) {
    legend = h('div', { class: 'legend' }, series.map((sr, i) => {
      const swatch = h('i');
      swatch.style.background = sr.color || COLORS[i % COLORS.length];  // CSSOM, which the CSP allows
      return h('span', {}, swatch, sr.name);
    }));
  }
  return h('figure', { class: 'chart card', dataset: { testid, points: String(first.length), from: iso(from), to: iso(to) } },
    h('figcaption', {}, h('span', { class: 'title', text: title }), readout), svg, legend);
}

function niceCeil(v) {
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

// MARK: - Panels

/// A card whose body is loaded asynchronously, with loading and error states; `load` returns the body's nodes.
function panel(title, load, { testid } = {}) {
  const body = h('div', { class: 'loading', 'aria-busy': 'true', text: 'Loading…' });
  const card = h('section', { class: 'card', dataset: { testid } }, title ? h('h2', { text: title }) : null, body);
  const run = async () => {
    body.replaceChildren(document.createTextNode('Loading…'));
    body.className = 'loading';
    body.setAttribute('aria-busy', 'true');
    try {
      const nodes = await load();
      body.className = '';
      body.replaceChildren(...[nodes].flat().filter(Boolean));
      // Every table can be taken away as CSV, as shown.
      body.querySelectorAll('table').forEach((table) => body.append(csvButton(table, (title || testid || 'table').toLowerCase().replace(/[^a-z0-9]+/g, '-'))));
    } catch (e) {
      body.className = '';
      body.replaceChildren(errorNotice(e, run));
    }
    body.removeAttribute('aria-busy');
  };
  run();
  return card;
}

/// RFC 4180 CSV of a rendered table (header and body rows, cell text as shown); cells a spreadsheet would run as a
/// formula are prefixed with a quote.
function tableCSV(table) {
  const cell = (text) => {
    let t = text.trim();
    if (/^[=+\-@\t\r]/.test(t)) t = "'" + t;
    return /[",\r\n]/.test(t) ? '"' + t.replaceAll('"', '""') + '"' : t;
  };
  return [...table.querySelectorAll('tr')].map((tr) => [...tr.children].map((c) => cell(c.textContent)).join(',')).join('\r\n') + '\r\n';
}

function csvButton(table, name) {
  return h('button', { type: 'button', class: 'secondary small', text: 'Export CSV', dataset: { testid: 'csv-' + name }, onclick: () => {
    const url = URL.createObjectURL(new Blob([tableCSV(table)], { type: 'text/csv' }));
    const a = h('a', { href: url, download: name + '.csv' });
    document.body.append(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  } });
}

function errorNotice(error, retry) {
  let advice = '';
  if (error.status === 403) advice = ' This key lacks the scope this part needs.';
  else if (error.status === 429) advice = ' The tenant is over its request rate; wait a moment.';
  else if (error.status >= 500 || error.status === 0) advice = ' The service may be starting or one of its stores may be down; try again shortly.';
  return h('div', { class: 'notice error', role: 'alert' },
    h('p', { text: 'Could not load: ' + error.message + '.' + advice }),
    retry ? h('button', { type: 'button', class: 'secondary', text: 'Retry', onclick: retry }) : null);
}

// MARK: - Sign in

function renderSignIn(message) {
  document.getElementById('top').hidden = true;
  const input = h('input', { id: 'api-key', type: 'password', autocomplete: 'off', spellcheck: 'false', required: true, placeholder: 'tw_…', 'aria-describedby': 'key-help' });
  const feedback = h('div', { id: 'signin-feedback', role: 'alert' }, message ? h('p', { class: 'notice error', text: message }) : null);
  const button = h('button', { class: 'primary', type: 'submit', text: 'Open dashboard' });
  const form = h('form', { class: 'card signin', onsubmit: async (e) => {
    e.preventDefault();
    const key = input.value.trim();
    if (!key) { feedback.replaceChildren(h('p', { class: 'notice error', text: 'Enter an API key.' })); return; }
    button.disabled = true;
    feedback.replaceChildren(h('p', { class: 'muted', text: 'Checking the key…' }));
    state.key = key;
    try {
      const own = await api('/v1/tenant', { signingIn: true });
      sessionStorage.setItem('tokenwatch.key', key);
      state.tenant = own.tenant;
      start();
    } catch (err) {
      state.key = null;
      button.disabled = false;
      const text = err.status === 401 ? 'That API key was not accepted: ' + err.message + '. Check that it was copied whole (it starts with tw_), or ask your admin for a new one.'
        : err.status === 403 ? 'That key cannot read data: the dashboard needs a key with the query scope.'
        : 'Could not check the key: ' + err.message + '.';
      feedback.replaceChildren(h('p', { class: 'notice error', text }));
      input.focus();
    }
  } },
  h('h1', { text: 'Tokenwatch' }),
  h('p', { text: 'LLM traffic, costs and anomalies for your tenant.' }),
  h('label', { for: 'api-key' }, 'API key'), input,
  h('p', { id: 'key-help', class: 'muted', text: 'A key with the query scope. It stays in this browser tab only (session storage) and is sent only to this gateway, in the Authorization header.' }),
  h('div', { class: 'row' }, button), feedback);
  document.getElementById('view').replaceChildren(form);
  input.focus();
}

function signOut(message) {
  stopStream();
  sessionStorage.removeItem('tokenwatch.key');
  state.key = null; state.tenant = null; state.anomalies.clear(); state.freshIDs.clear();
  document.getElementById('live-count').hidden = true;
  document.getElementById('live-status').textContent = '';
  state.renderToken++;
  if (location.hash) history.replaceState(null, '', location.pathname);
  renderSignIn(message);
}

// MARK: - Live anomaly stream (fetch, so the key goes in a header: EventSource cannot send one)

function stopStream() {
  if (state.stream) state.stream.abort();
  state.stream = null;
}

async function runStream() {
  const controller = new AbortController();
  state.stream = controller;
  const status = document.getElementById('live-status');
  let delay = 1000;
  while (!controller.signal.aborted && state.key) {
    try {
      const response = await fetch('/v1/anomalies/stream', { headers: { Authorization: 'Bearer ' + state.key, Accept: 'text/event-stream' }, signal: controller.signal, cache: 'no-store', credentials: 'omit' });
      if (response.status === 401) { signOut('Your API key is no longer accepted. Enter a valid key.'); return; }
      if (!response.ok) throw new Error('stream answered ' + response.status);
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          if (block.startsWith(': connected')) { status.textContent = '● Live'; status.dataset.state = 'live'; delay = 1000; }
          const data = block.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trimStart()).join('\n');
          if (data && /(^|\n)event: anomaly/.test(block)) {
            try { receiveAnomaly(JSON.parse(data), true); } catch (e) { /* a malformed message is skipped */ }
          }
        }
      }
    } catch (e) {
      if (controller.signal.aborted) return;
    }
    status.textContent = '○ Reconnecting…'; status.dataset.state = 'reconnecting';
    await sleep(delay);
    delay = Math.min(delay * 2, 30_000);
  }
}

function receiveAnomaly(a, live) {
  const known = state.anomalies.get(a.anomaly_id);
  if (known && known.revision >= a.revision) return;
  state.anomalies.set(a.anomaly_id, a);
  if (live) {
    state.freshIDs.add(a.anomaly_id);
    const badge = document.getElementById('live-count');
    badge.textContent = String(state.freshIDs.size);
    badge.hidden = false;
    badge.setAttribute('aria-label', state.freshIDs.size + ' new or updated anomalies');
    if (state.onAnomaly) state.onAnomaly(a);
  }
}

// MARK: - Anomaly display

const METRIC_NAMES = {
  request_rate: 'Request rate', error_rate: 'Error rate', latency_p95: 'p95 latency',
  cost_per_request: 'Cost per request', output_tokens_per_request: 'Output tokens per request', ttft_p95: 'p95 time to first token',
};
/// The vocabularies the server declares (severities, anomaly metrics, the series dimensions a view filters by), read
/// from its OpenAPI document at start (`loadVocabulary`), not listed again here.
let SEVERITIES = [];
let ANOMALY_METRICS = [];
let FILTERS = [];

async function loadVocabulary() {
  const res = await fetch('/openapi.json');
  if (!res.ok) throw new Error('GET /openapi.json answered ' + res.status);
  const doc = await res.json();
  const anomalyParams = doc.paths['/v1/anomalies'].get.parameters;
  SEVERITIES = anomalyParams.find((p) => p.name === 'severity').schema.enum;
  ANOMALY_METRICS = anomalyParams.find((p) => p.name === 'metric').schema.enum;
  FILTERS = doc.paths['/v1/series'].get.parameters.filter((p) => p['x-tokenwatch-dimension']).map((p) => p.name);
}

function seriesName(a) { return a.provider ? `${a.provider}/${a.model}` : a.app ? `app ${a.app}` : a.environment ? `environment ${a.environment}` : 'all models'; }

function anomalyItem(a, fresh) {
  return h('li', { class: fresh ? 'fresh' : null, dataset: { anomalyId: a.anomaly_id, severity: a.severity, metric: a.metric } },
    h('div', { class: 'head' },
      h('span', { class: 'sev ' + a.severity, text: a.severity }),
      h('a', { href: '#anomaly/' + encodeURIComponent(a.anomaly_id), text: `${METRIC_NAMES[a.metric] || a.metric} · ${seriesName(a)}` }),
      h('span', { class: 'muted', text: `${fmtDateTime(Date.parse(a.window_start))} · ${a.status}` }),
      fresh ? h('span', { class: 'badge', text: 'new' }) : null),
    h('div', { text: a.explanation }));
}

// MARK: - Overview and drill-down

const CHARTS = [
  { id: 'requests', title: 'Requests', metrics: [['requests', 'requests']], format: fmtCount },
  { id: 'error_rate', title: 'Error rate', metrics: [['error_rate', 'error rate']], format: fmtPct },
  { id: 'cost', title: 'Cost (USD)', metrics: [['cost_usd', 'cost']], format: fmtUSD },
  { id: 'tokens', title: 'Tokens', metrics: [['input_tokens', 'input'], ['output_tokens', 'output']], format: fmtCount },
  { id: 'latency', title: 'Latency', metrics: [['latency_p50', 'p50'], ['latency_p95', 'p95'], ['latency_p99', 'p99']], format: fmtMs },
];

function filterTitle(filter) {
  if (filter.model) return `${filter.model} (${filter.provider})`;
  if (filter.provider) return `Provider ${filter.provider}`;
  return filter.app ? `App ${filter.app}` : `Environment ${filter.environment}`;
}

function seriesQuery(metric, range, filter) {
  const q = new URLSearchParams({ metric, from: iso(range.from), to: iso(range.to), step: range.step });
  for (const k of FILTERS) if (filter && filter[k]) q.set(k, filter[k]);
  return '/v1/series?' + q;
}

async function loadSeries(metric, range, filter) {
  const answer = await api(seriesQuery(metric, range, filter));
  return answer.points.map((p) => ({ t: Date.parse(p.t), value: p.value }));
}

function totalsCards(totals) {
  const card = (id, label, value, raw) => h('div', { class: 'total', dataset: { testid: 'total-' + id, value: String(raw) } },
    h('div', { class: 'label', text: label }), h('div', { class: 'value', text: value }));
  const lat = totals.latency_ms || {};
  return h('div', { class: 'totals', 'aria-label': 'Totals for the range' },
    card('requests', 'Requests', fmtCount(totals.requests), totals.requests),
    card('error_rate', 'Error rate', fmtPct(totals.error_rate), totals.error_rate === null ? '' : totals.error_rate),
    card('cost', 'Cost', fmtUSD(Number(totals.cost_usd)), totals.cost_usd),
    card('tokens', 'Tokens (in + out)', fmtCount(totals.input_tokens + totals.output_tokens), totals.input_tokens + totals.output_tokens),
    card('latency_p50', 'Latency p50', fmtMs(lat.p50), lat.p50 ?? ''),
    card('latency_p95', 'Latency p95', fmtMs(lat.p95), lat.p95 ?? ''),
    card('latency_p99', 'Latency p99', fmtMs(lat.p99), lat.p99 ?? ''));
}

function emptyState() {
  const now = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
  const example = `curl -X POST ${location.origin}/v1/events \\
  -H "Authorization: Bearer $TOKENWATCH_KEY" -H "Content-Type: application/json" \\
  -d '[{"event_id":"first-call-1","timestamp":"${now}","provider":"openai","model":"gpt-4o","input_tokens":1200,"output_tokens":300,"latency_ms":850,"status":"ok"}]'`;
  return h('section', { class: 'card', dataset: { testid: 'empty-state' } },
    h('h2', { text: 'No data yet' }),
    h('p', { text: 'Nothing was recorded for this tenant in the selected range. Send your first event with a key that has the ingest scope:' }),
    h('pre', { text: example }),
    h('p', {}, 'Or point an OpenTelemetry exporter at ', h('code', { text: location.origin + '/v1/traces' }),
      ' with the header ', h('code', { text: 'Authorization: Bearer <key>' }), '. Events appear here within seconds; widen the time range if you sent them earlier.'));
}

function breakdownTable(items, by) {
  if (!items.length) return h('p', { class: 'muted', text: 'No calls in this range.' });
  return h('div', { class: 'scroll' }, h('table', {},
    h('thead', {}, h('tr', {}, h('th', { scope: 'col', text: by === 'model' ? 'Model' : 'Provider' }), h('th', { class: 'num', scope: 'col', text: 'Requests' }),
      h('th', { class: 'num', scope: 'col', text: 'Cost' }), h('th', { class: 'num', scope: 'col', text: 'Tokens' }), h('th', { class: 'num', scope: 'col', text: 'Errors' }), h('th', { class: 'num', scope: 'col', text: 'p95' }))),
    h('tbody', {}, items.map((it) => h('tr', { dataset: { provider: it.provider, model: it.model || '' } },
      h('td', {}, h('a', { href: by === 'model' ? `#model/${encodeURIComponent(it.provider)}/${encodeURIComponent(it.model)}` : `#provider/${encodeURIComponent(it.provider)}`,
        text: by === 'model' ? `${it.model} (${it.provider})` : it.provider })),
      h('td', { class: 'num', text: fmtCount(it.values.requests) }), h('td', { class: 'num', text: fmtUSD(Number(it.values.cost_usd)) }),
      h('td', { class: 'num', text: fmtCount(it.values.input_tokens + it.values.output_tokens) }), h('td', { class: 'num', text: fmtPct(it.values.error_rate) }),
      h('td', { class: 'num', text: fmtMs(it.values.latency_ms && it.values.latency_ms.p95) }))))));
}

async function renderOverview(filter) {
  const token = ++state.renderToken;
  const view = document.getElementById('view');
  const range = currentRange();
  const title = filter ? filterTitle(filter) : 'Overview';
  const totalsSlot = h('div', { 'aria-busy': 'true' }, h('p', { class: 'loading', text: 'Loading totals…' }));
  const body = h('div');
  view.replaceChildren(...[
    filter ? h('p', {}, (filter.app || filter.environment) ? h('a', { href: '#attribution', text: '← Attribution' }) : h('a', { href: '#models', text: '← All models' })) : null,
    h('h1', { text: title }), rangeControls(() => renderOverview(filter)), totalsSlot, body].filter(Boolean));
  if (range.points > MAX_POINTS) { totalsSlot.replaceChildren(); return; }
  const q = (extra) => new URLSearchParams({ from: iso(range.from), to: iso(range.to), ...extra });
  let totals;
  try {
    if (!filter) {
      totals = (await api('/v1/breakdown?' + q({ by: 'model', limit: '1' }))).totals;
    } else if (filter.app || filter.environment) {
      // A breakdown's totals are those of the rows its filters select.
      totals = (await api('/v1/breakdown?' + q({ by: filter.app ? 'app' : 'environment', limit: '1', ...(filter.app ? { app: filter.app } : { environment: filter.environment }) }))).totals;
    } else {
      const answer = await api('/v1/breakdown?' + q({ by: filter.model ? 'model' : 'provider', order: 'requests', limit: '1000' }));
      const item = answer.items.find((it) => it.provider === filter.provider && (!filter.model || it.model === filter.model));
      totals = item ? item.values : { requests: 0, errors: 0, error_rate: null, input_tokens: 0, output_tokens: 0, cost_usd: '0', latency_ms: {} };
    }
  } catch (e) {
    if (token !== state.renderToken) return;
    totalsSlot.replaceChildren(errorNotice(e, () => renderOverview(filter)));
    totalsSlot.removeAttribute('aria-busy');
    return;
  }
  if (token !== state.renderToken) return;
  totalsSlot.removeAttribute('aria-busy');
  totalsSlot.replaceChildren(totalsCards(totals));
  if (!filter && totals.requests === 0) body.append(emptyState());

  const charts = h('div', { class: 'grid' }, CHARTS.map((c) => {
    const slot = h('div', { class: 'card loading', 'aria-busy': 'true', dataset: { testid: 'chart-slot-' + c.id } }, h('h2', { text: c.title }), h('p', { text: 'Loading…' }));
    Promise.all(c.metrics.map(([metric]) => loadSeries(metric, range, filter))).then((all) => {
      if (token !== state.renderToken) return;
      slot.replaceWith(lineChart({ title: c.title, format: c.format, from: range.from, to: range.to, testid: 'chart-' + c.id,
        series: all.map((points, i) => ({ name: c.metrics[i][1], points })) }));
    }, (e) => { if (token === state.renderToken) { slot.className = 'card'; slot.removeAttribute('aria-busy'); slot.replaceChildren(h('h2', { text: c.title }), errorNotice(e, () => renderOverview(filter))); } });
    return slot;
  }));
  body.append(charts);
  if (!filter) {
    body.append(h('div', { class: 'grid wide' },
      panel('Top models by cost', async () => breakdownTable((await api('/v1/breakdown?' + q({ by: 'model', order: 'cost', limit: '5' }))).items, 'model'), { testid: 'top-cost' }),
      panel('Top models by volume', async () => breakdownTable((await api('/v1/breakdown?' + q({ by: 'model', order: 'requests', limit: '5' }))).items, 'model'), { testid: 'top-volume' }),
      panel('Providers by cost', async () => breakdownTable((await api('/v1/breakdown?' + q({ by: 'provider', order: 'cost', limit: '5' }))).items, 'provider'), { testid: 'top-providers' }),
      panel('Providers by volume', async () => breakdownTable((await api('/v1/breakdown?' + q({ by: 'provider', order: 'requests', limit: '5' }))).items, 'provider'), { testid: 'top-providers-volume' })));
  }
  if (!filter) body.append(panel('Rejected input', () => deadLetters(range), { testid: 'dead-letters' }));
  body.append(panel('Recent anomalies', async () => {
    const aq = new URLSearchParams({ from: iso(range.from - 7 * DAY), to: iso(range.to), limit: '5' });
    for (const k of FILTERS) if (filter && filter[k]) aq.set(k, filter[k]);
    const items = (await api('/v1/anomalies?' + aq)).items;
    items.forEach((a) => receiveAnomaly(a, false));
    return items.length ? h('ul', { class: 'anomalies' }, items.map((a) => anomalyItem(a, false))) : h('p', { class: 'muted', text: 'No anomalies in the last week. The detector needs about an hour of traffic per series before it alerts.' });
  }, { testid: 'recent-anomalies' }));
}

/// What of the tenant's input was dead-lettered in the range (events produced to Kafka directly that failed
/// validation, or arrived later than the allowed lateness): totals by reason and the latest samples.
async function deadLetters(range) {
  const answer = await api('/v1/dead-letters?' + new URLSearchParams({ from: iso(range.from), to: iso(range.to) }));
  const reasons = Object.entries(answer.totals).sort((a, b) => b[1] - a[1]);
  if (!reasons.length) return h('p', { class: 'muted', text: 'Nothing was rejected in this range.' });
  return [
    h('ul', { class: 'inline-list', dataset: { testid: 'dead-letter-totals' } }, reasons.map(([reason, count]) =>
      h('li', { dataset: { reason } }, h('strong', { text: fmtCount(count) }), ' ' + reason.replaceAll('_', ' ')))),
    h('div', { class: 'scroll' }, h('table', {},
      h('caption', { class: 'muted', text: 'Latest samples' }),
      h('thead', {}, h('tr', {}, ['When', 'Reason', 'Field', 'Detail', 'Event id'].map((t) => h('th', { scope: 'col', text: t })))),
      h('tbody', {}, answer.samples.map((d) => h('tr', { dataset: { eventId: d.event_id || '' } },
        h('td', { text: new Date(d.at).toLocaleString() }), h('td', { text: d.reason }), h('td', {}, h('code', { text: d.field || '–' })),
        h('td', { text: d.detail }), h('td', {}, h('code', { text: d.event_id || '–' })))))))];
}

async function renderModels() {
  const range = currentRange();
  const view = document.getElementById('view');
  view.replaceChildren(h('h1', { text: 'Models and providers' }), rangeControls(renderModels));
  if (range.points > MAX_POINTS) return;
  const q = (extra) => new URLSearchParams({ from: iso(range.from), to: iso(range.to), ...extra });
  view.append(h('div', { class: 'grid wide' },
    panel('Models', async () => breakdownTable((await api('/v1/breakdown?' + q({ by: 'model', order: 'requests', limit: '1000' }))).items, 'model'), { testid: 'models' }),
    panel('Providers', async () => breakdownTable((await api('/v1/breakdown?' + q({ by: 'provider', order: 'requests', limit: '1000' }))).items, 'provider'), { testid: 'providers' })));
}

// MARK: - Anomalies

async function renderAnomalies() {
  const token = ++state.renderToken;
  const filters = JSON.parse(sessionStorage.getItem('tokenwatch.anomalyFilters') || '{"severity":"","metric":""}');
  const view = document.getElementById('view');
  const severity = h('select', { id: 'f-severity' }, h('option', { value: '', text: 'Any' }), SEVERITIES.map((v) => h('option', { value: v, selected: filters.severity === v, text: 'at least ' + v })));
  const metric = h('select', { id: 'f-metric' }, h('option', { value: '', text: 'Any' }), ANOMALY_METRICS.map((v) => h('option', { value: v, selected: filters.metric === v, text: METRIC_NAMES[v] || v })));
  const onFilter = () => {
    sessionStorage.setItem('tokenwatch.anomalyFilters', JSON.stringify({ severity: severity.value, metric: metric.value }));
    renderAnomalies();
  };
  severity.addEventListener('change', onFilter);
  metric.addEventListener('change', onFilter);
  const list = h('ul', { class: 'anomalies', id: 'anomaly-list', 'aria-live': 'polite', 'aria-relevant': 'additions' });
  const listSlot = h('div', { 'aria-busy': 'true' }, h('p', { class: 'loading', text: 'Loading…' }));
  view.replaceChildren(h('h1', { text: 'Anomalies' }),
    h('div', { class: 'controls' }, h('label', { for: 'f-severity' }, 'Severity', severity), h('label', { for: 'f-metric' }, 'Metric', metric),
      h('p', { class: 'muted', text: 'Last 7 days; new and updated anomalies appear here as the detector publishes them.' })),
    h('section', { class: 'card' }, listSlot));
  const matches = (a) => (!filters.metric || a.metric === filters.metric) && (!filters.severity || SEVERITIES.indexOf(a.severity) >= SEVERITIES.indexOf(filters.severity));
  const draw = () => {
    const items = [...state.anomalies.values()].filter(matches).sort((a, b) => Date.parse(b.window_start) - Date.parse(a.window_start));
    list.replaceChildren(...items.map((a) => anomalyItem(a, state.freshIDs.has(a.anomaly_id))));
    if (!items.length) listSlot.replaceChildren(h('p', { class: 'muted', dataset: { testid: 'no-anomalies' }, text: 'No anomalies match. The detector needs about an hour of traffic per series before it alerts; this list updates live.' }), list);
    else listSlot.replaceChildren(list);
  };
  try {
    const q = new URLSearchParams({ from: iso(Date.now() - 7 * DAY), limit: '1000' });
    if (filters.severity) q.set('severity', filters.severity);
    if (filters.metric) q.set('metric', filters.metric);
    const items = (await api('/v1/anomalies?' + q)).items;
    if (token !== state.renderToken) return;
    items.forEach((a) => receiveAnomaly(a, false));
  } catch (e) {
    if (token !== state.renderToken) return;
    listSlot.replaceChildren(errorNotice(e, renderAnomalies));
    listSlot.removeAttribute('aria-busy');
    return;
  }
  listSlot.removeAttribute('aria-busy');
  draw();
  state.onAnomaly = (a) => { if (matches(a)) draw(); };
  // Seen now: the badge counts what arrives while this view is not open.
  state.freshIDs.clear();
  document.getElementById('live-count').hidden = true;
}

/// The anomaly's series around its window, the expected range as a band, the anomalous window marked.
async function renderAnomaly(id) {
  const token = ++state.renderToken;
  const view = document.getElementById('view');
  view.replaceChildren(h('p', {}, h('a', { href: '#anomalies', text: '← All anomalies' })), h('p', { class: 'loading', text: 'Loading…' }));
  let a = state.anomalies.get(id);
  try {
    if (!a) {
      const items = (await api('/v1/anomalies?' + new URLSearchParams({ from: iso(Date.now() - 30 * DAY), limit: '1000' }))).items;
      items.forEach((x) => receiveAnomaly(x, false));
      a = state.anomalies.get(id);
    }
    if (token !== state.renderToken) return;
    if (!a) { view.replaceChildren(h('p', {}, h('a', { href: '#anomalies', text: '← All anomalies' })), h('p', { class: 'notice', text: 'This anomaly is not among the last 30 days of this tenant.' })); return; }
    const start = Date.parse(a.window_start), end = Date.parse(a.window_end);
    const from = Math.floor((start - 2 * HOUR) / MINUTE) * MINUTE, to = Math.min(Math.ceil(Date.now() / MINUTE) * MINUTE, Math.max(end + HOUR, start + 3 * HOUR));
    const range = { from, to, step: '1m' };
    const filter = a.provider ? { provider: a.provider, model: a.model } : a.app ? { app: a.app } : a.environment ? { environment: a.environment } : null;
    const direct = { request_rate: 'requests', error_rate: 'error_rate', latency_p95: 'latency_p95', ttft_p95: 'ttft_p95' }[a.metric];
    let points;
    if (direct) points = await loadSeries(direct, range, filter);
    else {
      // Per-request metrics are ratios of two series.
      const [num, den] = await Promise.all([loadSeries(a.metric === 'cost_per_request' ? 'cost_usd' : 'output_tokens', range, filter), loadSeries('requests', range, filter)]);
      points = num.map((p, i) => ({ t: p.t, value: den[i] && den[i].value ? p.value / den[i].value : null }));
    }
    if (token !== state.renderToken) return;
    const format = { error_rate: fmtPct, latency_p95: fmtMs, ttft_p95: fmtMs, cost_per_request: fmtUSD, request_rate: fmtCount, output_tokens_per_request: fmtCount }[a.metric] || fmtCount;
    view.replaceChildren(
      h('p', {}, h('a', { href: '#anomalies', text: '← All anomalies' })),
      h('h1', {}, h('span', { class: 'sev ' + a.severity, text: a.severity }), ' ', `${METRIC_NAMES[a.metric] || a.metric} · ${seriesName(a)}`),
      h('p', { dataset: { testid: 'explanation' }, text: a.explanation }),
      lineChart({ title: `${METRIC_NAMES[a.metric] || a.metric}, per minute`, format, from, to, testid: 'anomaly-chart', width: 1100, height: 300,
        series: [{ name: a.metric, points }], band: { low: a.expected_low, high: a.expected_high, from, to }, mark: { from: start, to: end } }),
      h('p', { class: 'muted', text: 'Green band: the range the detector expected. Red: the anomalous window.' }),
      h('dl', { class: 'facts' },
        h('dt', { text: 'Status' }), h('dd', { text: a.status }),
        h('dt', { text: 'Window' }), h('dd', { text: `${fmtDateTime(start)} – ${fmtDateTime(end)}` }),
        h('dt', { text: 'Observed' }), h('dd', { text: format(a.observed) }),
        h('dt', { text: 'Expected' }), h('dd', { text: `${format(a.expected)} (normal ${format(a.expected_low)} – ${format(a.expected_high)})` }),
        h('dt', { text: 'Score' }), h('dd', { text: `${Number(a.score).toFixed(2)} × threshold (${a.detector})` }),
        h('dt', { text: 'Id' }), h('dd', { text: a.anomaly_id })),
      panel('Evidence: calls of these minutes', () => evidence(a.anomaly_id), { testid: 'evidence' }));
  } catch (e) {
    if (token === state.renderToken) view.replaceChildren(h('p', {}, h('a', { href: '#anomalies', text: '← All anomalies' })), errorNotice(e, () => renderAnomaly(id)));
  }
}

/// The sampled calls behind an anomaly, with links into the tenant's tracing tool.
async function evidence(id) {
  const answer = await api(`/v1/anomalies/${encodeURIComponent(id)}/evidence`);
  if (!answer.items.length) return h('p', { class: 'muted', text: 'No calls were sampled for these minutes.' });
  const kinds = { slowest: 'Slowest', failed: 'Failed', costliest: 'Most expensive' };
  return h('div', { class: 'scroll' }, h('table', {},
    h('thead', {}, h('tr', {}, ['Kind', 'When', 'Model', 'App', 'User', 'Latency', 'Cost', 'Error', 'Trace'].map((t) => h('th', { scope: 'col', text: t })))),
    h('tbody', {}, answer.items.map((e) => h('tr', { dataset: { eventId: e.event_id, kind: e.kind } },
      h('td', { text: kinds[e.kind] || e.kind }), h('td', { text: new Date(e.at).toLocaleTimeString() }), h('td', { text: `${e.model} (${e.provider})` }),
      h('td', { text: e.app || '–' }), h('td', { text: e.user_id || '–' }), h('td', { class: 'num', text: fmtMs(e.latency_ms) }),
      h('td', { class: 'num', text: e.cost_usd === undefined || e.cost_usd === null ? '–' : fmtUSD(Number(e.cost_usd)) }), h('td', { text: e.error_type || '–' }),
      h('td', {}, e.trace_url ? h('a', { href: e.trace_url, rel: 'noopener noreferrer', target: '_blank', text: 'Open trace' }) : h('code', { text: e.trace_id || e.event_id })))))));
}

// MARK: - Attribution

/// Who and what spent: breakdowns by app, environment, error type and each promoted tag, and the top users.
async function renderAttribution(by) {
  const token = ++state.renderToken;
  const range = currentRange();
  const view = document.getElementById('view');
  const tags = (state.tenant && state.tenant.promoted_tags) || [];
  const choices = [['app', 'App'], ['environment', 'Environment'], ['error_type', 'Error type'], ...tags.map((t) => ['tag:' + t, 'Tag ' + t])];
  by = choices.some(([v]) => v === by) ? by : 'app';
  const select = h('select', { id: 'attribution-by', onchange: () => { location.hash = '#attribution/' + encodeURIComponent(select.value); } },
    choices.map(([v, label]) => h('option', { value: v, text: label, selected: v === by })));
  view.replaceChildren(h('h1', { text: 'Attribution' }), rangeControls(() => renderAttribution(by)),
    h('p', {}, h('label', { for: 'attribution-by', text: 'Break down by ' }), select,
      tags.length ? null : h('span', { class: 'muted', text: ' Promote tag keys (feature, customer, …) with PATCH /v1/tenant to break down by them.' })));
  if (range.points > MAX_POINTS) return;
  const q = new URLSearchParams({ from: iso(range.from), to: iso(range.to), by, order: by === 'error_type' ? 'errors' : 'cost', limit: '100' });
  view.append(h('div', { class: 'grid wide' },
    panel(choices.find(([v]) => v === by)[1], async () => attributionTable((await api('/v1/breakdown?' + q)).items, by), { testid: 'attribution' }),
    panel('Top users (whole days of the range)', () => topUsers(range, token), { testid: 'users' })));
}

function attributionTable(items, by) {
  if (!items.length) return h('p', { class: 'muted', text: 'No calls in this range.' });
  if (by === 'error_type') {
    return h('div', { class: 'scroll' }, h('table', {},
      h('thead', {}, h('tr', {}, ['Error type', 'Errors', 'Share of errors', 'Of requests'].map((t, i) => h('th', { scope: 'col', class: i ? 'num' : '', text: t })))),
      h('tbody', {}, items.map((it) => h('tr', { dataset: { key: it.error_type } }, h('td', { text: it.error_type }), h('td', { class: 'num', text: fmtCount(it.values.errors) }),
        h('td', { class: 'num', text: fmtPct(it.values.share_of_errors) }), h('td', { class: 'num', text: fmtPct(it.values.error_rate) }))))));
  }
  const name = (it) => by === 'app' ? it.app : by === 'environment' ? it.environment : it.tag_value;
  return h('div', { class: 'scroll' }, h('table', {},
    h('thead', {}, h('tr', {}, [by.startsWith('tag:') ? by.slice(4) : by === 'app' ? 'App' : 'Environment', 'Requests', 'Cost', 'Tokens', 'Errors', 'p95'].map((t, i) => h('th', { scope: 'col', class: i ? 'num' : '', text: t })))),
    h('tbody', {}, items.map((it) => h('tr', { dataset: { key: name(it) } },
      h('td', {}, by === 'app' || by === 'environment' ? h('a', { href: `#${by}/${encodeURIComponent(name(it))}`, text: name(it) }) : name(it)),
      h('td', { class: 'num', text: fmtCount(it.values.requests) }), h('td', { class: 'num', text: fmtUSD(Number(it.values.cost_usd)) }),
      h('td', { class: 'num', text: fmtCount(it.values.input_tokens + it.values.output_tokens) }), h('td', { class: 'num', text: fmtPct(it.values.error_rate) }),
      h('td', { class: 'num', text: fmtMs(it.values.latency_ms && it.values.latency_ms.p95) }))))));
}

/// The top users by cost over the whole UTC days the range touches, paged with the API's cursor.
async function topUsers(range) {
  const day = (ms) => new Date(Math.floor(ms / DAY) * DAY).toISOString().slice(0, 10);
  const params = { from: day(range.from), to: day(range.to + DAY - 1), order: 'cost', limit: '50' };
  const first = await api('/v1/users?' + new URLSearchParams(params));
  const tbody = h('tbody');
  const more = h('button', { type: 'button', class: 'secondary', text: 'More users' });
  let cursor = null;
  const add = (page) => {
    page.items.forEach((u) => tbody.append(h('tr', { dataset: { user: u.user_id } }, h('td', {}, h('code', { text: u.user_id })),
      h('td', { class: 'num', text: fmtCount(u.values.requests) }), h('td', { class: 'num', text: fmtUSD(Number(u.values.cost_usd)) }),
      h('td', { class: 'num', text: fmtCount(u.values.input_tokens + u.values.output_tokens) }), h('td', { class: 'num', text: fmtPct(u.values.error_rate) }))));
    cursor = page.next_cursor;
    more.hidden = !cursor;
  };
  more.onclick = async () => { more.disabled = true; try { add(await api('/v1/users?' + new URLSearchParams({ ...params, cursor }))); } finally { more.disabled = false; } };
  add(first);
  if (!first.items.length) return h('p', { class: 'muted', text: 'No calls with a user_id in these days. Send user_id with each event to see who spends.' });
  return [h('p', { class: 'muted', dataset: { testid: 'users-count' }, text: `${fmtCount(first.users)} users; ${fmtCount(first.unattributed.requests)} calls without a user_id.` }),
    h('div', { class: 'scroll' }, h('table', {},
      h('thead', {}, h('tr', {}, ['User', 'Requests', 'Cost', 'Tokens', 'Errors'].map((t, i) => h('th', { scope: 'col', class: i ? 'num' : '', text: t })))), tbody)), more];
}

// MARK: - Settings

async function renderSettings() {
  state.renderToken++;
  const view = document.getElementById('view');
  view.replaceChildren(h('h1', { text: 'Settings' }), h('div', { class: 'grid wide' },
    panel('Detector', detectorSettings, { testid: 'detector-settings' }),
    panel('API keys', apiKeys, { testid: 'api-keys' }),
    panel('Notifications', channels, { testid: 'channels' })));
}

async function detectorSettings() {
  const current = await api('/v1/detector/settings');
  const muted = (current.muted || []).map((r) => ({ ...r }));
  const sensitivity = h('input', { id: 'sensitivity', type: 'number', min: '0.25', max: '4', step: '0.25', value: String(current.sensitivity) });
  const feedback = h('div', { role: 'status', 'aria-live': 'polite' });
  const rules = h('ul', { class: 'rules' });
  const drawRules = () => rules.replaceChildren(...(muted.length ? muted.map((r, i) => h('li', {},
    `${r.provider || 'any provider'} / ${r.model || 'any model'} / ${r.metric ? METRIC_NAMES[r.metric] || r.metric : 'every metric'} `,
    h('button', { type: 'button', class: 'danger', text: 'Unmute', 'aria-label': 'Unmute rule ' + (i + 1), onclick: () => { muted.splice(i, 1); drawRules(); } })))
    : [h('li', { class: 'muted', text: 'Nothing muted.' })]));
  drawRules();
  const provider = h('input', { id: 'mute-provider', placeholder: 'any' }), model = h('input', { id: 'mute-model', placeholder: 'any' });
  const metric = h('select', { id: 'mute-metric' }, h('option', { value: '', text: 'every metric' }), Object.entries(METRIC_NAMES).map(([v, n]) => h('option', { value: v, text: n })));
  const add = h('button', { type: 'button', class: 'secondary', text: 'Add rule', onclick: () => {
    const rule = {};
    if (provider.value.trim()) rule.provider = provider.value.trim();
    if (model.value.trim()) rule.model = model.value.trim();
    if (metric.value) rule.metric = metric.value;
    if (!Object.keys(rule).length) { feedback.replaceChildren(h('p', { class: 'notice error', text: 'A rule needs a provider, a model or a metric.' })); return; }
    muted.push(rule); drawRules(); provider.value = ''; model.value = ''; metric.value = '';
  } });
  const save = h('button', { type: 'submit', class: 'primary', text: 'Save' });
  return h('form', { onsubmit: async (e) => {
    e.preventDefault();
    const value = Number(sensitivity.value);
    if (!(value >= 0.25 && value <= 4)) { feedback.replaceChildren(h('p', { class: 'notice error', text: 'Sensitivity must be between 0.25 and 4.' })); return; }
    save.disabled = true;
    try {
      await api('/v1/detector/settings', { method: 'PUT', body: { sensitivity: value, muted } });
      feedback.replaceChildren(h('p', { class: 'notice success', text: 'Saved. The detector applies it within a minute.' }));
    } catch (err) {
      feedback.replaceChildren(h('p', { class: 'notice error', text: err.status === 403 ? 'Only a key with the admin scope can change detector settings.' : 'Not saved: ' + err.message }));
    }
    save.disabled = false;
  } },
  h('p', { class: 'muted', text: 'Higher sensitivity alerts on smaller deviations (0.25–4; 1 is the default). Muted series are still learned, never reported.' }),
  h('label', { for: 'sensitivity' }, 'Sensitivity', sensitivity),
  h('h3', { text: 'Muted' }), rules,
  h('div', { class: 'inline' }, h('label', { for: 'mute-provider' }, 'Provider', provider), h('label', { for: 'mute-model' }, 'Model', model), h('label', { for: 'mute-metric' }, 'Metric', metric), add),
  h('p', {}, save), feedback);
}

async function apiKeys() {
  let keys;
  try {
    keys = (await api('/v1/keys')).items;
  } catch (e) {
    if (e.status === 403) return h('p', { class: 'muted', dataset: { testid: 'keys-need-admin' }, text: 'Managing keys needs a key with the admin scope. This key can read data only.' });
    throw e;
  }
  const feedback = h('div', { role: 'status', 'aria-live': 'polite' });
  const table = h('div', { class: 'scroll' }, h('table', {},
    h('thead', {}, h('tr', {}, ['Name', 'Key', 'Scopes', 'Created', 'State', ''].map((t) => h('th', { scope: 'col', text: t })))),
    h('tbody', {}, keys.map((k) => h('tr', { dataset: { keyId: k.key_id } },
      h('td', { text: k.name || '–' }), h('td', {}, h('code', { text: k.prefix + '…' })), h('td', { text: k.scopes.join(', ') }),
      h('td', { text: new Date(Date.parse(k.created_at)).toLocaleDateString(undefined, { dateStyle: 'medium' }) }),
      h('td', { text: k.revoked_at ? 'revoked' : k.expires_at ? 'expires ' + fmtDateTime(Date.parse(k.expires_at)) : 'active' }),
      h('td', {}, k.revoked_at ? null : h('button', { type: 'button', class: 'danger', text: 'Revoke', 'aria-label': 'Revoke key ' + (k.name || k.prefix), onclick: async () => {
        if (!confirm(`Revoke ${k.name || k.prefix}? Applications using it stop at once.`)) return;
        try { await api('/v1/keys/' + encodeURIComponent(k.key_id), { method: 'DELETE' }); renderSettings(); } catch (err) { feedback.replaceChildren(h('p', { class: 'notice error', text: 'Not revoked: ' + err.message })); }
      } })))))));
  const name = h('input', { id: 'key-name', placeholder: 'e.g. checkout-service', maxlength: '128' });
  const scopes = ['ingest', 'query', 'admin'].map((sc) => h('label', {}, h('input', { type: 'checkbox', value: sc, checked: sc === 'ingest' }), ' ' + sc));
  const create = h('form', { class: 'inline', onsubmit: async (e) => {
    e.preventDefault();
    const chosen = scopes.map((l) => l.querySelector('input')).filter((i) => i.checked).map((i) => i.value);
    if (!chosen.length) { feedback.replaceChildren(h('p', { class: 'notice error', text: 'Choose at least one scope.' })); return; }
    try {
      const issued = await api('/v1/keys', { method: 'POST', body: { name: name.value.trim() || undefined, scopes: chosen } });
      feedback.replaceChildren(h('div', { class: 'notice success' }, h('p', { text: 'New key (shown once; store it now):' }), h('pre', { dataset: { testid: 'new-key' }, text: issued.api_key })));
    } catch (err) {
      feedback.replaceChildren(h('p', { class: 'notice error', text: 'Not created: ' + err.message }));
    }
  } }, h('label', { for: 'key-name' }, 'Name', name), h('fieldset', { class: 'checks' }, h('legend', { text: 'Scopes' }), scopes), h('button', { type: 'submit', class: 'secondary', text: 'Create key' }));
  return [table, h('h3', { text: 'New key' }), create, feedback];
}

/// Notification channels (webhook, Slack, Alertmanager): anomalies are delivered to each, signed (Standard
/// Webhooks); routing filters and a cap; a test message, the delivery log, secret rotation.
async function channels() {
  let items;
  try {
    items = (await api('/v1/channels')).items;
  } catch (e) {
    if (e.status === 403) return h('p', { class: 'muted', text: 'Notification channels need a key with the admin scope.' });
    throw e;
  }
  const feedback = h('div', { role: 'status', 'aria-live': 'polite' });
  const log = h('div', { dataset: { testid: 'delivery-log' } });
  const showLog = async (c) => {
    const deliveries = (await api('/v1/channels/' + encodeURIComponent(c.channel_id) + '/deliveries?limit=20')).items;
    log.replaceChildren(h('h3', { text: 'Deliveries to ' + c.name }), deliveries.length ? h('div', { class: 'scroll' }, h('table', {},
      h('thead', {}, h('tr', {}, ['Message', 'Type', 'Event', 'State', 'Attempts', 'Status', 'Latency', 'Last error'].map((t) => h('th', { scope: 'col', text: t })))),
      h('tbody', {}, deliveries.map((d) => h('tr', { dataset: { messageId: d.message_id, state: d.state } },
        h('td', {}, h('code', { text: d.message_id })), h('td', { text: d.type || '–' }), h('td', { text: d.event || '–' }), h('td', { text: d.state }),
        h('td', { class: 'num', text: String(d.attempts) }), h('td', { class: 'num', text: d.last_status == null ? '–' : String(d.last_status) }),
        h('td', { class: 'num', text: d.last_latency_ms == null ? '–' : fmtMs(d.last_latency_ms) }), h('td', { text: d.last_error || '' }))))))
      : h('p', { class: 'muted', text: 'Nothing sent yet.' }));
  };
  const tableSlot = h('div');
  const drawTable = (items) => tableSlot.replaceChildren(items.length ? h('div', { class: 'scroll' }, h('table', {},
    h('thead', {}, h('tr', {}, ['Name', 'Kind', 'URL', 'Severity', 'Routes', 'Cap', ''].map((t) => h('th', { scope: 'col', text: t })))),
    h('tbody', {}, items.map((c) => h('tr', { dataset: { channelId: c.channel_id, kind: c.kind } },
      h('td', { text: c.name }), h('td', { text: CHANNEL_KINDS[c.kind] || c.kind }), h('td', {}, h('code', { text: c.url })), h('td', { text: 'at least ' + c.min_severity }),
      h('td', { text: [c.metrics.length ? c.metrics.map((m) => METRIC_NAMES[m] || m).join(', ') : 'all metrics',
        c.providers.length ? c.providers.join(', ') : 'all providers', c.models.length ? c.models.join(', ') : 'all models'].join(' · ') }),
      h('td', { class: 'num', text: c.max_per_hour ? c.max_per_hour + ' / h' : 'none' }),
      h('td', { class: 'actions' },
        h('button', { type: 'button', class: 'secondary', text: 'Send test', onclick: async () => {
          try { await api('/v1/channels/' + encodeURIComponent(c.channel_id) + '/test', { method: 'POST' }); await showLog(c); } catch (err) { feedback.replaceChildren(h('p', { class: 'notice error', text: 'Not sent: ' + err.message })); }
        } }),
        h('button', { type: 'button', class: 'secondary', text: 'Deliveries', onclick: () => showLog(c).catch((err) => feedback.replaceChildren(errorNotice(err))) }),
        h('button', { type: 'button', class: 'secondary', text: 'Rotate secret', 'aria-label': 'Rotate the secret of ' + c.name, onclick: async () => {
          if (!confirm(`New secret for ${c.name}? The old one keeps signing for a day, beside the new one.`)) return;
          try {
            const rotated = await api('/v1/channels/' + encodeURIComponent(c.channel_id) + '/rotate-secret', { method: 'POST', body: { overlap_seconds: 86400 } });
            feedback.replaceChildren(h('div', { class: 'notice success' }, h('p', { text: `New signing secret (shown once; the old one also signs until ${rotated.previous_secret_until}):` }),
              h('pre', { dataset: { testid: 'channel-secret' }, text: rotated.secret })));
          } catch (err) { feedback.replaceChildren(h('p', { class: 'notice error', text: 'Not rotated: ' + err.message })); }
        } }),
        h('button', { type: 'button', class: 'danger', text: 'Delete', 'aria-label': 'Delete channel ' + c.name, onclick: async () => {
          if (!confirm(`Delete ${c.name}? Pending notifications to it are dropped.`)) return;
          try { await api('/v1/channels/' + encodeURIComponent(c.channel_id), { method: 'DELETE' }); renderSettings(); } catch (err) { feedback.replaceChildren(h('p', { class: 'notice error', text: 'Not deleted: ' + err.message })); }
        } }))))))) : h('p', { class: 'muted', text: 'No channels: anomalies reach only this page and the API.' }));
  drawTable(items);
  const name = h('input', { id: 'channel-name', placeholder: 'e.g. on-call', maxlength: '100', required: true });
  const url = h('input', { id: 'channel-url', type: 'url', placeholder: 'https://hooks.example.com/tokenwatch', required: true });
  const severity = h('select', { id: 'channel-severity' }, SEVERITIES.map((v) => h('option', { value: v, selected: v === 'warning', text: 'at least ' + v })));
  const kind = h('select', { id: 'channel-kind' }, Object.entries(CHANNEL_KINDS).map(([v, label]) => h('option', { value: v, text: label })));
  const providers = h('input', { id: 'channel-providers', placeholder: 'all (or: openai, anthropic)', maxlength: '2000' });
  const models = h('input', { id: 'channel-models', placeholder: 'all (or: gpt-4o, …)', maxlength: '8000' });
  const cap = h('input', { id: 'channel-cap', type: 'number', min: '0', max: '10000', placeholder: '20 (Alertmanager: none)' });
  const list = (input) => input.value.split(',').map((v) => v.trim()).filter(Boolean);
  const create = h('form', { class: 'inline', onsubmit: async (e) => {
    e.preventDefault();
    const body = { name: name.value.trim(), url: url.value.trim(), kind: kind.value, min_severity: severity.value, providers: list(providers), models: list(models) };
    if (cap.value !== '') body.max_per_hour = Number(cap.value);
    try {
      const created = await api('/v1/channels', { method: 'POST', body });
      drawTable((await api('/v1/channels')).items);
      feedback.replaceChildren(h('div', { class: 'notice success' }, h('p', { text: 'Channel created. Its signing secret (shown once; verify webhook-signature with it):' }),
        h('pre', { dataset: { testid: 'channel-secret' }, text: created.secret })));
    } catch (err) {
      feedback.replaceChildren(h('p', { class: 'notice error', text: 'Not created: ' + err.message }));
    }
  } }, h('label', { for: 'channel-name' }, 'Name', name), h('label', { for: 'channel-kind' }, 'Kind', kind), h('label', { for: 'channel-url' }, 'URL', url),
    h('label', { for: 'channel-severity' }, 'Severity', severity), h('label', { for: 'channel-providers' }, 'Providers', providers),
    h('label', { for: 'channel-models' }, 'Models', models), h('label', { for: 'channel-cap' }, 'Per hour at most', cap),
    h('button', { type: 'submit', class: 'secondary', text: 'Add channel' }));
  return [tableSlot, h('h3', { text: 'New channel' }), create, feedback, log];
}

const CHANNEL_KINDS = { webhook: 'Webhook', slack: 'Slack', alertmanager: 'Alertmanager' };

// MARK: - Router

function route() {
  if (!state.key) return renderSignIn();
  state.onAnomaly = null;
  const [view, ...rest] = (location.hash.slice(1) || 'overview').split('/').map(decodeURIComponent);
  const nav = view === 'model' || view === 'provider' ? 'models' : view === 'anomaly' ? 'anomalies' : view === 'app' || view === 'environment' ? 'attribution' : view;
  document.querySelectorAll('.top nav a').forEach((a) => a.toggleAttribute('aria-current', false));
  const current = document.querySelector(`.top nav a[data-view="${nav}"]`);
  if (current) current.setAttribute('aria-current', 'page');
  document.title = 'Tokenwatch · ' + (current ? current.textContent.replace(/\d+$/, '').trim() : 'Overview');
  switch (view) {
    case 'anomalies': renderAnomalies(); break;
    case 'anomaly': renderAnomaly(rest.join('/')); break;
    case 'models': renderModels(); break;
    case 'attribution': renderAttribution(rest[0]); break;
    case 'app': renderOverview({ app: rest.join('/') }); break;
    case 'environment': renderOverview({ environment: rest.join('/') }); break;
    case 'model': renderOverview({ provider: rest[0], model: rest.slice(1).join('/') }); break;
    case 'provider': renderOverview({ provider: rest[0] }); break;
    case 'settings': renderSettings(); break;
    default: renderOverview(null);
  }
  document.getElementById('view').focus({ preventScroll: true });
}

async function start() {
  if (!SEVERITIES.length) {
    try { await loadVocabulary(); } catch (e) { document.getElementById('view').replaceChildren(errorNotice(e, start)); return; }
  }
  if (!state.tenant) {
    try { state.tenant = (await api('/v1/tenant')).tenant; } catch (e) { if (!state.key) return; }
  }
  const top = document.getElementById('top');
  top.hidden = false;
  document.getElementById('tenant-name').textContent = state.tenant ? state.tenant.name || state.tenant.tenant_id : '';
  stopStream();
  runStream();
  route();
}

document.addEventListener('DOMContentLoaded', () => {
  document.getElementById('sign-out').addEventListener('click', () => signOut());
  window.addEventListener('hashchange', route);
  if (state.key) start(); else renderSignIn();
});
