// obol's usage and billing page. It reads the gateway's own APIs with
// the credential its user typed (kept in sessionStorage, sent as
// Authorization, never in a URL) and renders what they answer: money is
// shown as the API writes it, never recomputed. Every text from the API
// goes into the page as text (textContent), never as HTML.
'use strict';

(() => {
  const STORE = 'obol.dashboard.credential';
  const state = { cred: null, kind: null, keyId: null, loading: 0, tab: 'overview', reqFilter: {}, reqCursor: '' };
  const $ = (id) => document.getElementById(id);

  // h makes an element; attributes are set as attributes, children as
  // nodes or text.
  function h(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') e.className = v;
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    append(e, kids);
    return e;
  }
  const SVG = 'http://www.w3.org/2000/svg';
  function s(tag, attrs, ...kids) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    append(e, kids);
    return e;
  }
  function append(e, kids) {
    for (const k of kids.flat(Infinity)) {
      if (k === null || k === undefined || k === false) continue;
      e.append(k instanceof Node ? k : document.createTextNode(String(k)));
    }
  }

  // Money fields keep the API's exact decimal text: they are turned into
  // strings before JSON.parse, so no float ever rounds them. A key name
  // cannot fake one: inside a JSON string every quote is escaped, so
  // `{"` or `,"` only ever starts a real key.
  const MONEY = /([{,])"(total_cost|cost|spent|held|remaining|monthly|value)":(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)/g;
  const parse = (text) => JSON.parse(text.replace(MONEY, '$1"$2":"$3"'));

  class APIError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  async function api(path) {
    const r = await fetch(path, { headers: { Authorization: 'Bearer ' + state.cred }, cache: 'no-store' });
    const text = await r.text();
    if (!r.ok) {
      let msg = r.status + ' ' + r.statusText;
      try {
        const e = JSON.parse(text).error;
        if (e && e.message) msg = e.message;
      } catch (_) { /* not JSON: the status says it */ }
      throw new APIError(r.status, msg);
    }
    return parse(text);
  }

  // usd formats an amount the API wrote ("1234.5", "0.0000125") with its
  // currency and thousands separators, digits untouched.
  function usd(v) {
    if (v === null || v === undefined) return '—';
    let t = String(v);
    const neg = t.startsWith('-');
    if (neg) t = t.slice(1);
    if (/e/i.test(t)) t = Number(t).toFixed(12).replace(/0+$/, '').replace(/\.$/, '');
    const [i, f] = t.split('.');
    const int = i.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
    return (neg ? '-' : '') + '$' + int + (f ? '.' + f : '');
  }
  function money(v) { return h('span', { class: 'usd', 'data-usd': v === undefined || v === null ? null : String(v) }, usd(v)); }
  // cents shows a total to the cent, the exact amount on hover (and in
  // data-usd, as money's).
  function cents(v) {
    if (v === null || v === undefined) return money(v);
    const n = Number(v);
    const shown = (n < 0 ? '-$' : '$') + Math.abs(n).toLocaleString('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 });
    return h('span', { class: 'usd', 'data-usd': String(v), title: usd(v) + ' exactly' }, n !== 0 && Math.abs(n) < 0.005 ? 'under $0.01' : shown);
  }
  const num = (n) => (n === null || n === undefined ? 'unlimited' : Number(n).toLocaleString('en-US'));

  // utc shows a time in UTC, the user's local time on hover.
  function utc(iso, dateOnly) {
    const d = new Date(iso);
    const text = dateOnly ? d.toISOString().slice(0, 10) : d.toISOString().slice(0, 16).replace('T', ' ') + ' UTC';
    return h('time', { datetime: d.toISOString(), title: 'Your local time: ' + d.toLocaleString() }, text);
  }

  function thisMonth() { return new Date().toISOString().slice(0, 7); }

  function months() {
    const out = [];
    const d = new Date();
    let y = d.getUTCFullYear(), m = d.getUTCMonth();
    for (let i = 0; i < 13; i++) {
      out.push(y + '-' + String(m + 1).padStart(2, '0'));
      if (--m < 0) { m = 11; y--; }
    }
    return out;
  }

  function showError(id, msg) {
    const e = $(id);
    e.textContent = msg || '';
    e.hidden = !msg;
  }

  // ---- signing in and out ------------------------------------------

  async function signIn(cred, quiet) {
    state.cred = cred;
    try {
      const who = await api('/dashboard/session');
      state.kind = who.kind;
      state.keyId = who.id || null;
      state.alerts = !!who.alerts;
      sessionStorage.setItem(STORE, cred);
      showError('signin-error', '');
      $('signin').hidden = true;
      $('view').hidden = false;
      $('who').hidden = false;
      $('who-label').textContent = state.kind === 'admin' ? 'Signed in with the admin token' : 'Signed in as ' + state.keyId;
      $('project-filter').hidden = $('key-filter').hidden = $('csv').hidden = state.kind !== 'admin';
      const options = months().map((m) => h('option', { value: m }, m));
      if (state.kind === 'admin') options.push(...RANGES.map(([v, l]) => h('option', { value: v }, l)));
      $('month').replaceChildren(...options);
      await render();
    } catch (e) {
      forget();
      if (!quiet || e.status !== 401) showError('signin-error', e.message);
    }
  }

  function forget() {
    state.cred = state.kind = state.keyId = null;
    state.tab = 'overview';
    state.reqFilter = {};
    state.reqCursor = '';
    $('tab-overview').setAttribute('aria-selected', 'true');
    $('tab-requests').setAttribute('aria-selected', 'false');
    sessionStorage.removeItem(STORE);
    $('content').replaceChildren();
    $('project').replaceChildren();
    $('key').replaceChildren();
    showError('error', '');
    $('view').hidden = true;
    $('who').hidden = true;
    $('signin').hidden = false;
    $('credential').value = '';
  }

  // ---- pieces ------------------------------------------------------

  function stat(label, value, note) {
    return h('div', { class: 'stat' }, h('div', { class: 'label' }, label), h('div', { class: 'value' }, value),
      note ? h('div', { class: 'note' }, note) : null);
  }

  // budgetBar shows spent against a budget: amber from the first alert
  // threshold, red once spent.
  function budgetBar(label, b, compact) {
    if (!b) return compact ? h('span', { class: 'muted' }, 'none') : h('div', { class: 'budget' }, h('div', { class: 'head' }, h('strong', {}, label), h('span', { class: 'muted' }, 'No budget')));
    const spent = Number(b.spent), monthly = Number(b.monthly);
    const ratio = monthly > 0 ? spent / monthly : 0;
    const first = (b.alert_at && b.alert_at.length) ? b.alert_at[0] : 1;
    const level = ratio >= 1 ? 'red' : ratio >= first ? 'amber' : 'ok';
    const fill = h('div', { class: 'fill' });
    fill.style.width = Math.min(ratio, 1) * 100 + '%';
    const bar = h('div', { class: 'bar ' + level, role: 'meter', 'aria-valuemin': 0, 'aria-valuemax': b.monthly, 'aria-valuenow': b.spent, 'aria-label': label }, fill);
    for (const a of b.alert_at || []) {
      if (a >= 1) continue;
      const m = h('div', { class: 'mark', title: Math.round(a * 100) + '% alert' });
      m.style.left = a * 100 + '%';
      bar.append(m);
    }
    const pct = Math.floor(ratio * 1000) / 10;
    const words = level === 'red' ? 'Spent: requests are refused until it renews or is raised' : level === 'amber' ? 'Past the first alert threshold' : 'Within budget';
    if (compact) return h('div', { class: 'mini' }, h('span', {}, money(b.spent), ' of ', money(b.monthly)), bar);
    return h('div', { class: 'budget' },
      h('div', { class: 'head' }, h('strong', {}, label), h('span', { class: 'fig' }, money(b.spent), ' of ', money(b.monthly), ' (' + pct + '%)')),
      bar,
      h('div', { class: 'state ' + level }, words,
        b.held && Number(b.held) > 0 ? [' · ', money(b.held), ' held by requests in flight'] : null,
        b.resets_at ? [' · renews ', utc(b.resets_at)] : null));
  }

  function modelTable(byModel) {
    const names = Object.keys(byModel || {}).sort();
    if (!names.length) return h('p', { class: 'muted' }, 'No usage in this month.');
    const rows = names.map((m) => {
      const r = byModel[m];
      return h('tr', {}, h('td', { class: 'name' }, m), h('td', {}, num(r.prompt)), h('td', {}, num(r.cached_prompt)),
        h('td', {}, num((r.cache_write_5m || 0) + (r.cache_write_1h || 0))), h('td', {}, num(r.completion)), h('td', {}, num(r.requests)), h('td', {}, money(r.cost)));
    });
    return h('div', { class: 'scroll' }, h('table', {},
      h('thead', {}, h('tr', {}, ['Model', 'Prompt', 'Cache reads', 'Cache writes', 'Completion', 'Requests', 'Cost'].map((t) => h('th', {}, t)))),
      h('tbody', {}, rows)));
  }

  // chart draws a month's days as stacked bars by model: value(row) is
  // the height, label(row) the exact figure its tooltip shows.
  // monthBuckets are a month's days as chart buckets, labelled 1…31.
  function monthBuckets(period) {
    const [y, m] = period.split('-').map(Number);
    const n = new Date(Date.UTC(y, m, 0)).getUTCDate();
    return Array.from({ length: n }, (_, i) => ({ key: period + '-' + String(i + 1).padStart(2, '0'), tick: String(i + 1) }));
  }

  // rangeBuckets are [start, end)'s UTC days or hours as chart buckets.
  function rangeBuckets(start, end, hourly) {
    const out = [];
    const step = hourly ? 3600e3 : 86400e3;
    for (let t = Date.parse(start); t < Date.parse(end); t += step) {
      const iso = new Date(t).toISOString();
      out.push({ key: hourly ? iso.slice(0, 13) : iso.slice(0, 10), tick: hourly ? iso.slice(11, 13) + 'h' : iso.slice(8, 10) });
    }
    return out;
  }

  function chart(title, buckets, days, models, value, label, axis) {
    const n = buckets.length;
    const byDate = {};
    for (const d of days || []) byDate[d.date] = d;
    let max = 0;
    const cols = [];
    for (let i = 0; i < n; i++) {
      const date = buckets[i].key;
      const d = byDate[date];
      let total = 0;
      for (const md of models) total += d && d.by_model[md] ? value(d.by_model[md]) : 0;
      max = Math.max(max, total);
      cols.push({ date, d });
    }
    // Drawn at about the size it is shown, so that its text stays legible.
    const W = window.innerWidth < 600 ? 380 : 720, H = W < 720 ? 180 : 200, L = 64, R = 8, T = 10, B = 24;
    const bw = (W - L - R) / n;
    const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': title });
    svg.append(s('line', { class: 'axis', x1: L, y1: H - B, x2: W - R, y2: H - B }));
    const scale = max > 0 ? (H - T - B) / max : 0;
    for (const f of [0, 0.5, 1]) {
      const yy = H - B - f * (H - T - B);
      svg.append(s('line', { class: 'axis', x1: L, y1: yy, x2: W - R, y2: yy }));
      svg.append(s('text', { x: L - 6, y: yy + 4, 'text-anchor': 'end' }, axis(max * f)));
    }
    cols.forEach((c, i) => {
      let top = H - B;
      models.forEach((md, j) => {
        const r = c.d && c.d.by_model[md];
        if (!r) return;
        const hgt = value(r) * scale;
        if (hgt <= 0) return;
        top -= hgt;
        const bar = s('rect', { class: 'm' + (j % 8), x: L + i * bw + 1, y: top, width: Math.max(bw - 2, 1), height: hgt },
          s('title', {}, `${c.date} · ${md}: ${label(r)} (click: its requests)`));
        if (state.kind === 'admin' && c.date.length === 10) {
          bar.addEventListener('click', () => toRequests(() => {
            $('month').value = 'range:custom';
            $('from').value = $('to').value = c.date;
            $('from-field').hidden = $('to-field').hidden = false;
          }));
        }
        svg.append(bar);
      });
      const every = Math.max(1, Math.round(n / (W < 720 ? 3 : 6)));
      if (i === 0 || (i + 1) % every === 0) {
        svg.append(s('text', { x: L + i * bw + bw / 2, y: H - 7, 'text-anchor': 'middle' }, buckets[i].tick));
      }
    });
    const legend = h('div', { class: 'legend' }, models.map((md, j) => h('span', {}, h('span', { class: 'sw m' + (j % 8) }), md)));
    return h('div', { class: 'card chart' }, h('h2', {}, title), svg, legend);
  }

  function charts(buckets, days, byModel, per) {
    if (typeof buckets === 'string') buckets = monthBuckets(buckets);
    per = per || 'day';
    const models = Object.keys(byModel || {}).sort();
    const tokens = (r) => r.prompt + r.completion;
    return h('div', { class: 'grid2' },
      chart('Cost per ' + per + ' (UTC)', buckets, days, models, (r) => Number(r.cost), (r) => usd(r.cost), (v) => '$' + (v < 0.01 && v > 0 ? v.toPrecision(2) : v.toFixed(2))),
      chart('Tokens per ' + per + ' (UTC)', buckets, days, models, tokens, (r) => num(tokens(r)) + ' tokens', (v) => Math.round(v).toLocaleString('en-US')));
  }

  function requestsOf(byModel) {
    return Object.values(byModel || {}).reduce((n, r) => n + r.requests, 0);
  }

  // ---- a key's view ------------------------------------------------

  async function renderKey(period) {
    const [me, use] = await Promise.allSettled([api('/v1/key'), api('/v1/usage?by=day&period=' + encodeURIComponent(period))]);
    if (me.status === 'rejected') throw me.reason;
    const k = me.value;
    const parts = [];
    const meta = ['tier ' + k.tier];
    if (k.project) meta.push('project ' + (k.project.name ? k.project.name + ' (' + k.project.id + ')' : k.project.id));
    parts.push(h('div', { class: 'title' }, h('h1', {}, k.name || k.id), h('span', { class: 'meta' }, k.id + ' · ' + meta.join(' · '))));
    if (use.status === 'rejected') {
      showError('error', use.reason.message);
    } else {
      const u = use.value;
      parts.push(h('div', { class: 'stats' },
        stat('Spend, ' + period, money(u.total_cost), 'USD'),
        stat('Tokens, ' + period, num(u.total_tokens)),
        stat('Requests, ' + period, num(requestsOf(u.by_model)))));
    }
    if (period === thisMonth()) {
      parts.push(h('div', { class: 'card' }, h('h2', {}, 'Budgets this month'),
        budgetBar('This key', k.budget),
        k.project ? budgetBar('Project ' + (k.project.name || k.project.id), k.project.budget) : null));
    }
    parts.push(remaining(k));
    if (use.status === 'fulfilled') {
      parts.push(charts(period, use.value.days, use.value.by_model));
      parts.push(h('div', { class: 'card' }, h('h2', {}, 'By model, ' + period), modelTable(use.value.by_model)));
    }
    return parts;
  }

  function remaining(k) {
    const cell = (label, v, note) => h('div', {}, h('div', { class: 'label' }, label), h('div', { class: 'value' }, v), note ? h('div', { class: 'label' }, note) : null);
    const r = k.remaining || {};
    const rows = [
      cell('Requests this minute', num(r.requests), k.limits.rpm ? 'of ' + num(k.limits.rpm) + ' a minute' : null),
      cell('Tokens this minute', num(r.tokens), k.limits.tpm ? 'of ' + num(k.limits.tpm) + ' a minute' : null),
      cell('Tokens today', num(r.tokens_today), r.tokens_today_reset ? ['resets ', utc(r.tokens_today_reset)] : null),
      cell('In flight', num(r.in_flight), k.limits.concurrency ? 'of ' + num(k.limits.concurrency) + ' at once' : null),
    ];
    const p = k.project;
    const proj = p ? [h('h2', {}, 'Project ' + (p.name || p.id) + ', across its keys'), h('div', { class: 'remain' },
      cell('Requests this minute', num(p.remaining.requests)), cell('Tokens this minute', num(p.remaining.tokens)),
      cell('Tokens today', num(p.remaining.tokens_today)), cell('In flight', num(p.remaining.in_flight)))] : null;
    return h('div', { class: 'card' }, h('h2', {}, 'Remaining now'), h('div', { class: 'remain' }, rows), proj);
  }

  // ---- the admin view ----------------------------------------------

  function fillSelect(sel, options, label) {
    const cur = sel.value;
    sel.replaceChildren(h('option', { value: '' }, label), ...options.map(([v, t]) => h('option', { value: v }, t)));
    sel.value = options.some(([v]) => v === cur) ? cur : '';
  }

  function usageQuery(period, format) {
    const r = period.startsWith('range:') ? rangeOf(period) : null;
    const q = new URLSearchParams(r ? { start: r.start, end: r.end } : { period });
    if ($('project').value) q.set('project', $('project').value);
    if ($('key').value) q.set('key', $('key').value);
    if (format) q.set('format', format); else q.set('by', 'day');
    return '/v1/admin/usage?' + q.toString();
  }

  async function renderAdmin(period) {
    const [keys, projects] = await Promise.all([api('/v1/admin/keys'), api('/v1/admin/projects')]);
    fillSelect($('project'), projects.data.map((p) => [p.id, p.name ? p.name + ' (' + p.id + ')' : p.id]), 'All projects');
    fillSelect($('key'), keys.data.map((k) => [k.id, k.name ? k.name + ' (' + k.id + ')' : k.id]), 'All keys');
    if (period.startsWith('range:')) return renderRange(period, keys.data, projects.data);
    const u = await api(usageQuery(period));
    const scope = [$('project').value && 'project ' + $('project').value, $('key').value && 'key ' + $('key').value].filter(Boolean).join(', ');
    const parts = [h('div', { class: 'title' }, h('h1', {}, 'Every key and project'), h('span', { class: 'meta' }, scope ? 'showing ' + scope : 'the whole gateway'))];
    if (period === thisMonth()) parts.push(atRisk(u, keys.data, projects.data));
    parts.push(h('div', { class: 'stats' },
      stat('Spend, ' + period, cents(u.total_cost), period === thisMonth() ? ['month-end forecast at this rate: ', cents(String(forecast(u.total_cost)))] : 'USD, to the cent (hover: exact)'),
      stat('Tokens, ' + period, num(u.total_tokens)),
      stat('Requests, ' + period, num(requestsOf(u.by_model))),
      topSpender(u, keys.data)));
    parts.push(charts(period, u.days, u.by_model));
    parts.push(h('div', { class: 'card' }, h('h2', {}, 'By model, ' + period), modelTable(u.by_model)));
    parts.push(keysTable(period, u, keys.data));
    parts.push(projectsTable(period, u, projects.data));
    parts.push(await alertsPanel(period));
    return parts;
  }

  // alertsPanel lists the month's budget alert deliveries, newest first:
  // who crossed what, their state, attempts and last error.
  async function alertsPanel(period) {
    const card = h('div', { class: 'card', id: 'alerts' }, h('h2', {}, 'Budget alerts, ' + period));
    if (!state.alerts) {
      append(card, [h('p', { class: 'muted' }, 'No webhooks are configured: budget alerts are not sent.')]);
      return card;
    }
    const list = await api('/v1/admin/alerts?period=' + period + '&limit=20');
    if (!list.data.length) {
      append(card, [h('p', { class: 'muted' }, 'No threshold was crossed this month.')]);
      return card;
    }
    const rows = list.data.map((d) => h('tr', {},
      h('td', { class: 'name' }, Object.entries(d.subject).map(([k, v]) => k + ' ' + v).join(', '), h('span', { class: 'id' }, d.id)),
      h('td', {}, Math.round(d.threshold * 100) + '%'),
      h('td', { class: 'l state' }, d.state),
      h('td', { class: 'opt' }, String(d.attempts)),
      h('td', { class: 'l opt' }, d.last_error || '—')));
    append(card, [h('table', { id: 'alerts-table' },
      h('thead', {}, h('tr', {}, ['Who', 'Threshold', 'State', 'Attempts', 'Last error'].map((t, i) => h('th', { class: i === 2 ? 'l' : i === 3 ? 'opt' : i === 4 ? 'l opt' : null }, t)))),
      h('tbody', {}, rows))]);
    return card;
  }

  // forecast is the month's spend at month end at the rate so far
  // (spend ÷ the part of the month gone), for the current month only.
  function forecast(spent) {
    const now = new Date();
    const start = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1);
    const end = Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1);
    const gone = (now.getTime() - start) / (end - start);
    return gone > 0 ? Number(spent) / gone : 0;
  }

  // requestsOf* open the Requests tab on a key's, a project's or a day's
  // requests.
  function toRequests(set) {
    set();
    state.reqCursor = '';
    showTab('requests');
  }
  function linkTo(text, title, set) {
    const a = h('a', { href: '#requests', class: 'to-requests', title }, text);
    a.addEventListener('click', (ev) => { ev.preventDefault(); toRequests(set); });
    return a;
  }

  // topSpender is the stat of the key that spent most, with how many keys
  // had usage.
  function topSpender(u, keys) {
    const ids = Object.keys(u.keys).sort((a, b) => Number(u.keys[b].total_cost) - Number(u.keys[a].total_cost) || a.localeCompare(b));
    const note = Object.keys(u.keys).length + ' of ' + keys.length + ' keys had usage';
    if (!ids.length) return stat('Top spender', '—', note);
    const k = keys.find((x) => x.id === ids[0]);
    return h('div', { class: 'stat', id: 'top-spender' }, h('div', { class: 'label' }, 'Top spender'),
      h('div', { class: 'value small' }, (k && k.name) || ids[0], ' · ', cents(u.keys[ids[0]].total_cost)), h('div', { class: 'note' }, note));
  }

  const bySpend = (a, b) => Number(b.cost) - Number(a.cost) || a.id.localeCompare(b.id);

  // risk is a budget's standing: its ratio, the highest alert threshold
  // it passed, and whether it is spent.
  function risk(monthly, spent, alertAt) {
    const m = Number(monthly), sp = Number(spent);
    const ratio = m > 0 ? sp / m : 0;
    const first = alertAt && alertAt.length ? alertAt[0] : 1;
    const passed = (alertAt || []).filter((a) => ratio >= a).pop();
    return { ratio, first, passed, spent: ratio >= 1, left: Math.max(m - sp, 0) };
  }

  // atRisk lists, first on the page, every key and project past its first
  // alert threshold, or blocked by its project's spent budget: percent,
  // status words, what is left, when it renews.
  function atRisk(u, keys, projects) {
    const now = new Date();
    const renews = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1)).toISOString();
    const items = [];
    const blocked = new Set();
    for (const p of projects) {
      if (!p.budget || !p.spend) continue;
      const r = risk(p.budget.monthly, p.spend.cost, p.budget.alert_at);
      if (r.spent) blocked.add(p.id);
      if (r.ratio >= r.first) {
        items.push({ kind: 'Project', name: p.name || p.id, id: p.id, r, known: true,
          words: r.spent ? 'blocked: project ' + p.id + '’s budget is spent' : 'past ' + Math.round(r.passed * 100) + '%' });
      }
    }
    for (const k of keys) {
      const t = u.keys[k.id];
      const proj = k.project || (t && t.project);
      const r = k.budget ? risk(k.budget.monthly, t ? t.total_cost : '0', k.budget.alert_at) : null;
      let words = null;
      if (r && r.spent) words = 'blocked: its budget is spent';
      else if (blocked.has(proj)) words = 'blocked by project ' + proj + '’s budget';
      else if (r && r.ratio >= r.first) words = 'past ' + Math.round(r.passed * 100) + '%';
      if (words) items.push({ kind: 'Key', name: k.name || k.id, id: k.id, r: r || { ratio: 1, left: 0, spent: true }, known: !!r, words });
    }
    items.sort((a, b) => b.r.ratio - a.r.ratio);
    const card = h('div', { class: 'card risk', id: 'at-risk' }, h('h2', {}, items.length ? 'Budgets at risk' : 'Budgets: none at risk'));
    if (!items.length) {
      append(card, [h('p', { class: 'muted' }, 'No key or project is past its first alert threshold.')]);
      return card;
    }
    const rows = items.map((it) => h('tr', { class: it.r.spent ? 'red' : 'amber' },
      h('td', { class: 'name' }, it.kind + ' ' + it.name, h('span', { class: 'id' }, it.id)),
      h('td', { class: 'l state' }, it.words),
      h('td', {}, it.known ? Math.floor(it.r.ratio * 1000) / 10 + '%' : '—'),
      h('td', {}, it.known ? cents(String(it.r.left)) : '—'),
      h('td', { class: 'opt' }, it.known ? Math.round(forecast(it.r.ratio) * 100) + '%' : '—'),
      h('td', { class: 'l opt' }, utc(renews, true))));
    append(card, [h('table', { id: 'risk-table' },
      h('thead', {}, h('tr', {}, ['Who', 'Status', 'Used', 'Left', 'By month end', 'Renews'].map((t, i) => h('th', { class: i === 1 ? 'l' : i === 5 ? 'l opt' : i === 4 ? 'opt' : null }, t)))),
      h('tbody', {}, rows))]);
    return card;
  }

  function keysTable(period, u, keys) {
    const known = new Map(keys.map((k) => [k.id, k]));
    const ids = new Set([...Object.keys(u.keys), ...(($('project').value || $('key').value) ? [] : keys.map((k) => k.id))]);
    const rows = [...ids].map((id) => {
      const t = u.keys[id];
      return { id, k: known.get(id), t, cost: t ? t.total_cost : '0' };
    }).sort(bySpend);
    const current = period === thisMonth();
    const body = rows.map(({ id, k, t }) => {
      const b = current && k && k.budget ? { monthly: k.budget.monthly, alert_at: k.budget.alert_at, spent: t ? t.total_cost : '0' } : null;
      return h('tr', {},
        h('td', { class: 'name' }, linkTo((k && k.name) || id, 'this key\'s requests', () => { $('key').value = id; }), h('span', { class: 'id' }, id + (k ? ' · ' + k.tier + (k.source === 'config' ? ' · config' : '') + (k.status !== 'active' ? ' · ' + k.status : '') : ''))),
        h('td', { class: 'l opt' }, (t && t.project) || (k && k.project) || '—'),
        h('td', { class: 'opt' }, num(t ? t.total_tokens : 0)),
        h('td', { class: 'opt' }, num(t ? requestsOf(t.by_model) : 0)),
        h('td', {}, cents(t ? t.total_cost : '0')),
        h('td', { class: 'l' }, current ? budgetBar('budget', b, true) : h('span', { class: 'muted' }, '—')));
    });
    return h('div', { class: 'card' }, h('h2', {}, 'Keys by spend, ' + period),
      h('div', { class: 'scroll' }, h('table', { id: 'keys-table' },
        h('thead', {}, h('tr', {}, ['Key', 'Project', 'Tokens', 'Requests', 'Cost', 'Budget this month'].map((t, i) => h('th', { class: i === 1 ? 'l opt' : i === 5 ? 'l' : i === 2 || i === 3 ? 'opt' : null }, t)))),
        h('tbody', {}, body))));
  }

  function projectsTable(period, u, projects) {
    const known = new Map(projects.map((p) => [p.id, p]));
    const ids = new Set([...Object.keys(u.projects), ...(($('project').value || $('key').value) ? [] : projects.map((p) => p.id))]);
    if (!ids.size) return null;
    const current = period === thisMonth();
    const rows = [...ids].map((id) => ({ id, p: known.get(id), t: u.projects[id], cost: u.projects[id] ? u.projects[id].total_cost : '0' })).sort(bySpend);
    const body = rows.map(({ id, p, t }) => {
      const b = current && p && p.budget && p.spend ? { monthly: p.budget.monthly, alert_at: p.budget.alert_at, spent: p.spend.cost } : null;
      return h('tr', {},
        h('td', { class: 'name' }, linkTo((p && p.name) || id, 'this project\'s requests', () => { $('project').value = id; }), h('span', { class: 'id' }, id + (p && p.source === 'config' ? ' · config' : ''))),
        h('td', { class: 'opt' }, num(t ? t.total_tokens : 0)),
        h('td', { class: 'opt' }, num(t ? requestsOf(t.by_model) : 0)),
        h('td', {}, cents(t ? t.total_cost : '0')),
        h('td', { class: 'opt' }, current ? cents(String(forecast(t ? t.total_cost : '0'))) : '—'),
        h('td', { class: 'l' }, current ? budgetBar('budget', b, true) : h('span', { class: 'muted' }, '—')));
    });
    return h('div', { class: 'card' }, h('h2', {}, 'Projects by spend, ' + period),
      h('div', { class: 'scroll' }, h('table', { id: 'projects-table' },
        h('thead', {}, h('tr', {}, ['Project', 'Tokens', 'Requests', 'Cost', 'By month end', 'Budget this month'].map((t, i) => h('th', { class: i === 5 ? 'l' : i === 1 || i === 2 || i === 4 ? 'opt' : null }, t)))),
        h('tbody', {}, body))));
  }

  async function downloadCSV() {
    const period = $('month').value;
    try {
      const r = await fetch(usageQuery(period, 'csv'), { headers: { Authorization: 'Bearer ' + state.cred }, cache: 'no-store' });
      if (!r.ok) throw new APIError(r.status, (await r.text()) || r.statusText);
      const blob = await r.blob();
      const a = h('a', { href: URL.createObjectURL(blob), download: 'obol-usage-' + (period.startsWith('range:') ? 'range' : period) + '.csv' });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 10000);
    } catch (e) {
      showError('error', e.message);
    }
  }

  // ---- ranges (admin) ----------------------------------------------

  const RANGES = [['range:24h', 'Last 24 hours'], ['range:7d', 'Last 7 days'], ['range:30d', 'Last 30 days'], ['range:custom', 'Custom range…']];

  // rangeOf is a range's [start, end) in UTC, whether it is drawn by
  // hour, its label, and the period of the same length before it.
  function rangeOf(value) {
    const now = Date.now();
    let start, end, hourly = false, label;
    if (value === 'range:custom') {
      const from = $('from').value, to = $('to').value;
      if (!from || !to || to < from) return null;
      start = Date.parse(from + 'T00:00:00Z');
      end = Date.parse(to + 'T00:00:00Z') + 86400e3;
      label = from + ' to ' + to;
    } else {
      const days = { 'range:24h': 1, 'range:7d': 7, 'range:30d': 30 }[value];
      hourly = days === 1;
      const grain = hourly ? 3600e3 : 86400e3;
      end = Math.ceil(now / grain) * grain;
      start = end - days * 86400e3;
      label = RANGES.find(([v]) => v === value)[1];
    }
    const iso = (t) => new Date(t).toISOString().replace('.000Z', 'Z');
    return { start: iso(start), end: iso(end), prevStart: iso(2 * start - end), hourly, label };
  }

  // rangeUsage reads the admin usage of [start, end), by hour where the
  // ledger keeps hours (else by day).
  async function rangeUsage(start, end, hourly) {
    const q = (by) => '/v1/admin/usage?' + new URLSearchParams({ start, end, by }) +
      ($('project').value ? '&project=' + encodeURIComponent($('project').value) : '') +
      ($('key').value ? '&key=' + encodeURIComponent($('key').value) : '');
    if (hourly) {
      try { return { u: await api(q('hour')), hourly: true }; } catch (e) { if (e.status !== 400) throw e; }
    }
    return { u: await api(q('day')), hourly: false };
  }

  // change is the difference from the previous period, in words.
  function change(now, before) {
    const a = Number(now), b = Number(before);
    if (b === 0) return a === 0 ? 'the same as the period before' : 'none the period before';
    const pct = Math.round(((a - b) / b) * 100);
    return (pct >= 0 ? '+' : '') + pct + '% on the period before (' + usd(before) + ')';
  }

  async function renderRange(value, keys, projects) {
    const r = rangeOf(value);
    if (!r) return [h('div', { class: 'title' }, h('h1', {}, 'Custom range')), h('p', { class: 'muted' }, 'Choose a first and a last day (UTC).')];
    const [{ u, hourly }, prev] = await Promise.all([rangeUsage(r.start, r.end, r.hourly), api('/v1/admin/usage?' + new URLSearchParams({ start: r.prevStart, end: r.start, by: 'day' }))]);
    const buckets = rangeBuckets(r.start, r.end, hourly);
    return [h('div', { class: 'title', id: 'range-title' }, h('h1', {}, r.label), h('span', { class: 'meta' }, utc(r.start), ' – ', utc(r.end))),
      h('div', { class: 'stats' },
        stat('Spend', cents(u.total_cost), change(u.total_cost, prev.total_cost)),
        stat('Tokens', num(u.total_tokens), change(u.total_tokens, prev.total_tokens).replace(/\(\$/, '(')),
        stat('Requests', num(requestsOf(u.by_model))),
        stat('Keys with usage', num(Object.keys(u.keys).length), 'of ' + keys.length + ' keys')),
      charts(buckets, u.days, u.by_model, hourly ? 'hour' : 'day'),
      h('div', { class: 'card' }, h('h2', {}, 'By model'), modelTable(u.by_model)),
      keysTable(r.label, u, keys), projectsTable(r.label, u, projects)];
  }

  // ---- requests ----------------------------------------------------

  // renderRequests is the Requests tab: the request log of the month (the
  // key's own, or with the admin token every key's, filtered by the
  // project and key above), newest first, filtered, paged by the API's
  // cursor; a row opens its detail.
  async function renderRequests(period) {
    const f = state.reqFilter;
    let start, end, title = period;
    if (period.startsWith('range:')) {
      const r = rangeOf(period);
      if (!r) return [h('p', { class: 'muted' }, 'Choose a first and a last day (UTC).')];
      [start, end, title] = [r.start, r.end, r.label];
    } else {
      const [y, m] = period.split('-').map(Number);
      start = period + '-01T00:00:00Z';
      end = new Date(Date.UTC(y, m, 1)).toISOString().replace('.000Z', 'Z');
    }
    const q = new URLSearchParams({ start, end, limit: '50' });
    for (const [name, v] of Object.entries(f)) if (v) q.set(name, v);
    if (state.kind === 'admin') {
      if ($('project').value) q.set('project', $('project').value);
      if ($('key').value) q.set('key', $('key').value);
    }
    if (state.reqCursor) q.set('cursor', state.reqCursor);
    const page = await api((state.kind === 'admin' ? '/v1/admin/requests?' : '/v1/requests?') + q);
    const input = (id, label, value, placeholder) => h('label', {}, label, h('input', { id, value: value || '', placeholder: placeholder || '' }));
    const status = h('select', { id: 'req-status' }, ['', '2xx', '4xx', '5xx'].map((v) => h('option', { value: v, selected: f.status === v ? '' : null }, v || 'Any')));
    const form = h('form', { class: 'controls', id: 'req-form' },
      input('req-id', 'Request id', f.request_id, 'chat_…'), input('req-model', 'Model', f.model),
      h('label', {}, 'Status', status), input('req-code', 'Error code', f.error_code),
      h('button', { type: 'submit' }, 'Apply'));
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      state.reqFilter = { request_id: $('req-id').value.trim(), model: $('req-model').value.trim(), status: $('req-status').value, error_code: $('req-code').value.trim() };
      state.reqCursor = '';
      render();
    });
    const rows = [];
    for (const e of page.data) {
      const tr = h('tr', { class: 'req', tabindex: '0' },
        h('td', { class: 'l opt' }, utc(e.time)),
        h('td', { class: 'name' }, e.request_id, h('span', { class: 'id' }, (e.key_name || e.key_id) + ' · ' + e.api + (e.stream ? ' · stream' : ''))),
        h('td', { class: 'l opt' }, e.model),
        h('td', {}, String(e.status), e.error_code ? h('span', { class: 'id' }, e.error_code) : null),
        h('td', {}, money(e.cost)),
        h('td', { class: 'opt' }, e.ttft_ms ? e.ttft_ms + ' ms' : '—'),
        h('td', { class: 'opt' }, e.duration_ms + ' ms'));
      const detail = h('tr', { class: 'detail', hidden: '' }, h('td', { colspan: '7', class: 'l' }, h('dl', {},
        ['key_id', 'project', 'backend', 'outcome', 'prompt_tokens', 'cached_tokens', 'cache_write_5m_tokens', 'cache_write_1h_tokens', 'completion_tokens', 'reasoning_tokens']
          .map((k) => [h('dt', {}, k), h('dd', {}, String(e[k] === '' || e[k] === undefined ? '—' : e[k]))]))));
      tr.addEventListener('click', () => { detail.hidden = !detail.hidden; });
      rows.push(tr, detail);
    }
    const more = page.has_more ? h('button', { type: 'button', id: 'req-older' }, 'Older') : null;
    if (more) more.addEventListener('click', () => { state.reqCursor = page.next_cursor; render(); });
    const newest = state.reqCursor ? h('button', { type: 'button', id: 'req-newest' }, 'Newest') : null;
    if (newest) newest.addEventListener('click', () => { state.reqCursor = ''; render(); });
    const latency = state.kind === 'admin' ? await latencyCard(start, end) : null;
    return [h('div', { class: 'title' }, h('h1', {}, 'Requests, ' + title), h('span', { class: 'meta' }, 'newest first')), latency, form,
      h('div', { class: 'card' }, page.data.length ? h('table', { id: 'requests-table' },
        h('thead', {}, h('tr', {}, ['Time', 'Request', 'Model', 'Status', 'Cost', 'First token', 'Duration'].map((t, i) => h('th', { class: i === 0 || i === 2 ? 'l opt' : i === 1 ? 'l' : i >= 5 ? 'opt' : null }, t)))),
        h('tbody', {}, rows)) : h('p', { class: 'muted' }, 'No request matches.'),
      h('div', { class: 'pager' }, newest, more))];
  }

  // latencyCard is the month's latency and errors per model and backend,
  // from the request log.
  async function latencyCard(start, end) {
    const st = await api('/v1/admin/requests/stats?by=backend&start=' + encodeURIComponent(start) + '&end=' + encodeURIComponent(end));
    const ms = (v) => (v ? Math.round(v * 10) / 10 + ' ms' : '—');
    const rows = st.data.map((s) => h('tr', {},
      h('td', { class: 'name' }, s.model, h('span', { class: 'id' }, s.backend || '—')),
      h('td', {}, num(s.requests)),
      h('td', {}, Math.round(s.error_rate * 1000) / 10 + '%'),
      h('td', { class: 'opt' }, ms(s.ttft_p50_ms) + ' · ' + ms(s.ttft_p95_ms)),
      h('td', {}, ms(s.duration_p50_ms) + ' · ' + ms(s.duration_p95_ms))));
    return h('div', { class: 'card', id: 'latency' }, h('h2', {}, 'Latency and errors'),
      rows.length ? h('table', { id: 'latency-table' },
        h('thead', {}, h('tr', {}, ['Model · backend', 'Requests', 'Errors (5xx)', 'First token p50 · p95', 'Duration p50 · p95'].map((t, i) => h('th', { class: i === 3 ? 'opt' : null }, t)))),
        h('tbody', {}, rows)) : h('p', { class: 'muted' }, 'No requests this month.'));
  }

  function showTab(tab) {
    state.tab = tab;
    $('tab-overview').setAttribute('aria-selected', String(tab !== 'requests'));
    $('tab-requests').setAttribute('aria-selected', String(tab === 'requests'));
    render();
  }

  // ---- rendering ---------------------------------------------------

  async function render() {
    const ticket = ++state.loading;
    showError('error', '');
    const period = $('month').value || thisMonth();
    try {
      const parts = state.tab === 'requests' ? await renderRequests(period) : state.kind === 'admin' ? await renderAdmin(period) : await renderKey(period);
      if (ticket !== state.loading) return; // a newer render won
      $('content').replaceChildren(...parts.filter(Boolean));
      $('updated').replaceChildren('Read ', utc(new Date().toISOString()), '.');
    } catch (e) {
      if (ticket !== state.loading) return;
      if (e.status === 401) {
        forget();
        showError('signin-error', e.message);
        return;
      }
      showError('error', e.message);
    }
  }

  function start() {
    $('month').replaceChildren(...months().map((m) => h('option', { value: m }, m)));
    $('signin-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const c = $('credential').value.trim();
      if (c) signIn(c, false);
    });
    $('signout').addEventListener('click', forget);
    $('month').addEventListener('change', () => {
      $('from-field').hidden = $('to-field').hidden = $('month').value !== 'range:custom';
      render();
    });
    $('from').addEventListener('change', render);
    $('to').addEventListener('change', render);
    $('project').addEventListener('change', render);
    $('key').addEventListener('change', render);
    $('csv').addEventListener('click', downloadCSV);
    $('tab-overview').addEventListener('click', () => showTab('overview'));
    $('tab-requests').addEventListener('click', () => showTab('requests'));
    let narrow = window.innerWidth < 600;
    window.addEventListener('resize', () => {
      const n = window.innerWidth < 600;
      if (n !== narrow && state.kind) render(); // the charts are drawn for the width
      narrow = n;
    });
    const saved = sessionStorage.getItem(STORE);
    if (saved) signIn(saved, true);
    else forget();
  }

  start();
})();
