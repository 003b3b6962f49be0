// swarmwall admin dashboard: polls the JSON API every 2 s and draws hand-made canvas charts.
// No external assets, no cookies: the token lives in sessionStorage for this tab only.
// Every value from the API is written with textContent, never as HTML.
'use strict';

(() => {
  const TOKEN_KEY = 'swarmwall-admin-token';
  const POLL_MS = 2000;
  const MAX_POINTS = 150; // 5 minutes at 2 s
  const EVENTS_LIMIT = 50;
  const ACCOUNTS_PAGE = 50; // accounts per page of the Accounts panel
  const FILTER_DELAY_MS = 300;
  const FORM_COLORS = {
    peer_wire: '#2563eb', peer_wire_messages: '#60a5fa', mse: '#7c3aed', http_tracker: '#db2777',
    web_seed: '#f472b6', ssl_torrent: '#0d9488', webtorrent: '#14b8a6', torrent_file: '#a16207',
    utp: '#ea580c', dht: '#dc2626', udp_tracker: '#f59e0b', lsd: '#65a30d',
    known_destination: '#475569',
  };
  const FALLBACK_COLORS = ['#0891b2', '#9333ea', '#be123c', '#4d7c0f', '#b45309'];

  const $ = (id) => document.getElementById(id);
  let timer = null;
  let previous = null;
  let points = [];
  let polls = 0;
  let accountsOffset = 0;
  let accountsFilter = '';

  // ---- API ----------------------------------------------------------------------------------

  class Unauthorized extends Error {}

  async function api(path, method) {
    const response = await fetch(path, {
      method: method || 'GET',
      headers: { Authorization: 'Bearer ' + (sessionStorage.getItem(TOKEN_KEY) || '') },
      cache: 'no-store',
    });
    if (response.status === 401) throw new Unauthorized('the admin token was refused');
    let body;
    try {
      body = await response.json();
    } catch (_) {
      throw new Error(path + ': answer is not JSON (HTTP ' + response.status + ')');
    }
    if (!response.ok) throw new Error(path + ': ' + (body.error || 'HTTP ' + response.status));
    return body;
  }

  // ---- login --------------------------------------------------------------------------------

  function show(state) {
    document.body.dataset.state = state;
    $('login').hidden = state !== 'login';
    $('dashboard').hidden = state !== 'dashboard';
    $('logout').hidden = state !== 'dashboard';
    $('live').hidden = state !== 'dashboard';
  }

  function showLogin(message) {
    stop();
    sessionStorage.removeItem(TOKEN_KEY);
    hideError();
    show('login');
    const error = $('login-error');
    error.textContent = message || '';
    error.hidden = !message;
    $('token').value = '';
    $('token').focus();
  }

  async function login(event) {
    event.preventDefault();
    const value = $('token').value.trim();
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    try {
      await api('/api/v1/status');
    } catch (error) {
      if (error instanceof Unauthorized) {
        showLogin('Wrong token.');
      } else {
        showLogin('Cannot reach the admin API: ' + error.message);
      }
      return;
    }
    start();
  }

  function start() {
    $('login-error').hidden = true;
    show('dashboard');
    previous = null;
    points = [];
    poll();
  }

  function stop() {
    if (timer !== null) clearTimeout(timer);
    timer = null;
  }

  // ---- polling ------------------------------------------------------------------------------

  let polling = false;
  let pollAgain = false;

  // One poll at a time: a poll asked for while one runs (a button, the timer) follows it.
  async function poll() {
    if (polling) {
      pollAgain = true;
      return;
    }
    polling = true;
    stop();
    let signedOut = false;
    try {
      const listing = accountsQuery();
      const [status, accounts, events, page] = await Promise.all([
        api('/api/v1/status'),
        api('/api/v1/accounts?restricted=true'),
        api('/api/v1/events?limit=' + EVENTS_LIMIT),
        api(listing),
      ]);
      hideError();
      update(status, accounts, events);
      // A page asked for before the filter or page changed is dropped: the next poll follows.
      if (listing === accountsQuery()) renderAccounts(page);
      polls += 1;
      document.body.dataset.polls = String(polls);
      $('live').className = 'badge';
      $('live').textContent = 'live';
    } catch (error) {
      if (error instanceof Unauthorized) {
        signedOut = true;
      } else {
        showError('Cannot update: ' + error.message);
        $('live').className = 'badge stale';
        $('live').textContent = 'stale';
      }
    } finally {
      polling = false;
    }
    if (signedOut) {
      pollAgain = false;
      showLogin('The admin token is no longer accepted; sign in again.');
      return;
    }
    if (document.body.dataset.state !== 'dashboard') return;
    if (pollAgain) {
      pollAgain = false;
      poll();
    } else {
      timer = setTimeout(poll, POLL_MS);
    }
  }

  function showError(message) {
    $('error').textContent = message;
    $('error').hidden = false;
  }

  function hideError() {
    $('error').hidden = true;
    $('error').textContent = '';
  }

  // ---- model --------------------------------------------------------------------------------

  function sample(status) {
    return {
      t: status.now_ms / 1000,
      sessions: status.sessions.active,
      up: status.bytes.client_to_target,
      down: status.bytes.target_to_client,
      blocks: status.blocks.by_form,
      auth: status.auth_failures,
      alerts: status.alerts.total,
    };
  }

  function update(status, accounts, events) {
    const now = sample(status);
    const point = { t: now.t, sessions: now.sessions, up: 0, down: 0, blocks: {}, auth: 0, alerts: 0 };
    if (previous) {
      const dt = Math.max(0.001, now.t - previous.t);
      point.up = Math.max(0, now.up - previous.up) / dt;
      point.down = Math.max(0, now.down - previous.down) / dt;
      for (const [form, count] of Object.entries(now.blocks)) {
        const delta = count - (previous.blocks[form] || 0);
        if (delta > 0) point.blocks[form] = delta;
      }
      point.auth = Math.max(0, now.auth - previous.auth);
      point.alerts = Math.max(0, now.alerts - previous.alerts);
    }
    previous = now;
    points.push(point);
    if (points.length > MAX_POINTS) points.splice(0, points.length - MAX_POINTS);

    $('version').textContent = 'v' + status.version;
    $('uptime').textContent = 'up ' + duration(status.uptime_seconds);
    setTile('tile-sessions-active', status.sessions.active, integer);
    setTile('tile-sessions-total', status.sessions.total, integer);
    setTile('tile-throughput', Math.round(point.up + point.down), (v) => bytes(v) + '/s');
    setTile('tile-bytes', status.bytes.total, bytes);
    setTile('tile-blocks', status.blocks.total, integer);
    setTile('tile-auth-failures', status.auth_failures, integer);
    setTile('tile-alerts', status.alerts.total, integer);
    setTile('tile-suspensions', status.suspensions, integer);
    setTile('tile-lockouts', status.lockouts, integer);
    $('tile-store').textContent = status.store_up ? 'up' : 'DOWN';
    $('tile-store').dataset.value = status.store_up ? '1' : '0';

    drawAll(status);
    renderRestricted(accounts.accounts);
    renderEvents(events.events);
  }

  function setTile(id, value, format) {
    const element = $(id);
    element.dataset.value = String(value);
    element.textContent = format(value);
  }

  // ---- charts -------------------------------------------------------------------------------

  function drawAll(status) {
    drawChart($('chart-sessions'), [
      { label: 'active', color: '#2563eb', value: (p) => p.sessions },
    ], { format: integer });
    const throughput = [
      { label: 'client → target', color: '#2563eb', value: (p) => p.up },
      { label: 'target → client', color: '#0d9488', value: (p) => p.down },
    ];
    drawChart($('chart-throughput'), throughput, { format: bytes });
    legend($('legend-throughput'), throughput.map((s) => [s.label, s.color]));

    const forms = Object.keys(status.blocks.by_form).sort();
    const blockSeries = forms.map((form, index) => ({
      label: form,
      color: FORM_COLORS[form] || FALLBACK_COLORS[index % FALLBACK_COLORS.length],
      value: (p) => p.blocks[form] || 0,
    }));
    drawChart($('chart-blocks'), blockSeries, { format: integer, bars: true });
    legend($('legend-blocks'), blockSeries
      .filter((s) => status.blocks.by_form[s.label] > 0)
      .map((s) => [s.label + ' ' + integer(status.blocks.by_form[s.label]), s.color]));

    const auth = [
      { label: 'auth failures', color: '#c2410c', value: (p) => p.auth },
      { label: 'alerts', color: '#7c3aed', value: (p) => p.alerts },
    ];
    drawChart($('chart-auth'), auth, { format: integer, bars: true });
    legend($('legend-auth'), auth.map((s) => [s.label, s.color]));
  }

  function legend(element, entries) {
    element.replaceChildren(...entries.map(([label, color]) => {
      const item = document.createElement('span');
      const swatch = document.createElement('span');
      swatch.className = 'swatch';
      swatch.style.background = color;
      item.append(swatch, document.createTextNode(label));
      return item;
    }));
  }

  // Lines or stacked bars over a fixed 5-minute window ending now. The canvas records what it
  // plotted in data-points and data-total (tests read them).
  function drawChart(canvas, series, options) {
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth || 400;
    const height = canvas.clientHeight || 170;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    const g = canvas.getContext('2d');
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, width, height);
    const left = 56;
    const right = width - 8;
    const top = 8;
    const bottom = height - 20;
    const windowSeconds = (MAX_POINTS * POLL_MS) / 1000;
    const end = points.length ? points[points.length - 1].t : Date.now() / 1000;
    const x = (t) => right - ((end - t) / windowSeconds) * (right - left);

    let max = 0;
    let total = 0;
    for (const p of points) {
      const values = series.map((s) => s.value(p));
      total += values.reduce((a, b) => a + b, 0);
      max = Math.max(max, options.bars ? values.reduce((a, b) => a + b, 0) : Math.max(0, ...values));
    }
    const step = niceStep(max / 4, options.format === integer);
    max = step * 4;
    const y = (v) => bottom - (v / max) * (bottom - top);

    g.font = '11px system-ui, sans-serif';
    g.fillStyle = '#667085';
    g.strokeStyle = '#e3e6eb';
    g.lineWidth = 1;
    g.textAlign = 'right';
    g.textBaseline = 'middle';
    for (let i = 0; i <= 4; i += 1) {
      const value = (max * i) / 4;
      const yy = Math.round(y(value)) + 0.5;
      g.beginPath();
      g.moveTo(left, yy);
      g.lineTo(right, yy);
      g.stroke();
      g.fillText(options.format(value), left - 6, yy);
    }
    g.textAlign = 'center';
    g.textBaseline = 'alphabetic';
    for (let minute = 5; minute >= 1; minute -= 1) {
      g.fillText('−' + minute + 'm', x(end - minute * 60), height - 4);
    }
    g.textAlign = 'right';
    g.fillText('now', right, height - 4);

    if (options.bars) {
      const barWidth = Math.max(2, (right - left) / MAX_POINTS - 1);
      for (const p of points) {
        let base = 0;
        for (const s of series) {
          const value = s.value(p);
          if (value <= 0) continue;
          g.fillStyle = s.color;
          const y0 = y(base);
          const y1 = y(base + value);
          g.fillRect(x(p.t) - barWidth / 2, y1, barWidth, Math.max(1, y0 - y1));
          base += value;
        }
      }
    } else {
      g.lineWidth = 2;
      for (const s of series) {
        g.strokeStyle = s.color;
        g.beginPath();
        points.forEach((p, i) => {
          const px = x(p.t);
          const py = y(s.value(p));
          if (i === 0) g.moveTo(px, py);
          else g.lineTo(px, py);
        });
        g.stroke();
      }
    }
    canvas.dataset.points = String(points.length);
    canvas.dataset.total = String(Math.round(total));
  }

  // Grid step for four rows: 1, 2, 2.5 or 5 times a power of ten (whole numbers only for
  // integer charts, so every label is exact).
  function niceStep(raw, integerOnly) {
    if (!(raw > 0)) return 1;
    const power = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const factor of [1, 2, 2.5, 5, 10]) {
      const step = factor * power;
      if (integerOnly && (step < 1 || !Number.isInteger(step))) continue;
      if (step >= raw) return step;
    }
    return integerOnly ? Math.max(1, Math.ceil(raw)) : 10 * power;
  }

  // ---- lists --------------------------------------------------------------------------------

  function renderRestricted(accounts) {
    const restricted = accounts.filter((a) => a.suspended || a.locked_out);
    const rows = restricted.map((account) => {
      const row = document.createElement('tr');
      row.dataset.account = account.name;
      for (const text of [
        account.name,
        integer(account.strikes),
        account.suspended ? clock(account.suspended_until_ms, true) : '–',
        account.locked_out ? clock(account.locked_until_ms, true) : '–',
      ]) {
        const cell = document.createElement('td');
        cell.textContent = text;
        row.append(cell);
      }
      const actions = document.createElement('td');
      if (account.configured !== false) {
        if (account.suspended) actions.append(actionButton(account.name, 'unsuspend', 'Unsuspend'));
        if (account.locked_out) actions.append(actionButton(account.name, 'unlock', 'Unlock'));
      }
      row.append(actions);
      return row;
    });
    $('restricted').tBodies[0].replaceChildren(...rows);
    $('restricted-count').textContent = String(restricted.length);
    $('restricted-empty').hidden = restricted.length > 0;
  }

  // A button that runs one admin action on an account, then refreshes at once.
  function actionButton(name, action, label) {
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'action';
    button.dataset.action = action;
    button.textContent = label;
    button.addEventListener('click', async () => {
      button.disabled = true;
      try {
        await api('/api/v1/accounts/' + encodeURIComponent(name) + '/' + action, 'POST');
      } catch (error) {
        if (error instanceof Unauthorized) {
          showLogin('The admin token is no longer accepted; sign in again.');
          return;
        }
        showError(label + ' ' + name + ' failed: ' + error.message);
      }
      poll();
    });
    return button;
  }

  // ---- accounts panel -----------------------------------------------------------------------

  function accountsQuery() {
    let query = '/api/v1/accounts?offset=' + accountsOffset + '&limit=' + ACCOUNTS_PAGE;
    if (accountsFilter) query += '&name=' + encodeURIComponent(accountsFilter);
    return query;
  }

  // One page of the provisioned accounts (never a secret: the API returns none).
  function renderAccounts(page) {
    const total = Number(page.total) || 0;
    if (accountsOffset > 0 && accountsOffset >= total) {
      // The page emptied (accounts deleted, filter narrowed): show the last one instead.
      accountsOffset = Math.max(0, Math.floor((total - 1) / ACCOUNTS_PAGE) * ACCOUNTS_PAGE);
      poll();
      return;
    }
    const rows = page.accounts.map((account) => {
      const row = document.createElement('tr');
      row.dataset.account = account.name;
      row.dataset.disabled = String(Boolean(account.disabled));
      const totp = typeof account.totp_enrolled === 'boolean' ? (account.totp_enrolled ? 'yes' : 'no') : '–';
      row.dataset.totp = totp;
      const cells = [
        [account.name, ''],
        [account.disabled ? 'disabled' : 'active', account.disabled ? 'disabled' : ''],
        [totp, ''],
        [countries(account.allow_countries), ''],
        [countries(account.deny_countries), ''],
        [policyText(account.policy), ''],
      ];
      for (const [text, className] of cells) {
        const cell = document.createElement('td');
        cell.textContent = text;
        if (className) cell.className = className;
        row.append(cell);
      }
      return row;
    });
    $('accounts').tBodies[0].replaceChildren(...rows);
    $('accounts-count').textContent = integer(total);
    $('accounts-empty').hidden = rows.length > 0;
    $('accounts-empty').textContent = accountsFilter ? 'No account name contains this text.' : 'No accounts.';
    $('accounts-range').textContent = rows.length
      ? integer(accountsOffset + 1) + '–' + integer(accountsOffset + rows.length) + ' of ' + integer(total)
      : '';
    $('accounts-prev').disabled = accountsOffset === 0;
    $('accounts-next').disabled = accountsOffset + rows.length >= total;
  }

  // The BitTorrent policy override as `bittorrent=allow, mse=block` ('–': none).
  function policyText(policy) {
    if (!policy || typeof policy !== 'object') return '–';
    const parts = [];
    if (policy.bittorrent) parts.push('bittorrent=' + policy.bittorrent);
    for (const [form, action] of Object.entries(policy.forms || {})) {
      if (action) parts.push(form + '=' + action);
    }
    return parts.length ? parts.join(', ') : '–';
  }

  function countries(list) {
    return Array.isArray(list) && list.length ? list.join(', ') : '–';
  }

  function pageAccounts(delta) {
    accountsOffset = Math.max(0, accountsOffset + delta);
    poll();
  }

  let filterTimer = null;

  function filterAccounts() {
    if (filterTimer !== null) clearTimeout(filterTimer);
    filterTimer = setTimeout(() => {
      filterTimer = null;
      const value = $('accounts-filter').value.trim();
      if (value === accountsFilter) return;
      accountsFilter = value;
      accountsOffset = 0;
      if (document.body.dataset.state === 'dashboard') poll();
    }, FILTER_DELAY_MS);
  }

  function renderEvents(events) {
    const items = events.slice().reverse().map((event) => {
      const item = document.createElement('li');
      const time = document.createElement('span');
      time.className = 'time';
      time.textContent = clock(event.ts_ms ?? event.time_ms ?? event.ts ?? event.time, false);
      const kind = document.createElement('span');
      kind.className = 'kind';
      kind.textContent = String(event.kind ?? event.event ?? 'event');
      const details = document.createElement('span');
      details.className = 'details';
      details.textContent = summary(event);
      details.title = details.textContent;
      item.append(time, kind, details);
      return item;
    });
    $('events').replaceChildren(...items);
    $('events-count').textContent = String(events.length);
    $('events-empty').hidden = events.length > 0;
  }

  function summary(event) {
    const parts = [];
    if (event.account) parts.push('account=' + event.account);
    if (event.client) parts.push('client=' + event.client);
    const details = event.details && typeof event.details === 'object' ? event.details : {};
    for (const [key, value] of Object.entries(details)) {
      if (value === null || value === '') continue;
      parts.push(key + '=' + (typeof value === 'object' ? JSON.stringify(value) : String(value)));
    }
    return parts.join(' ');
  }

  // ---- formatting ---------------------------------------------------------------------------

  function integer(value) {
    return Math.round(Number(value) || 0).toLocaleString('en-US');
  }

  function bytes(value) {
    let v = Number(value) || 0;
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let unit = 0;
    while (v >= 1024 && unit < units.length - 1) {
      v /= 1024;
      unit += 1;
    }
    return (unit === 0 ? String(Math.round(v)) : v.toFixed(v >= 100 ? 0 : 1)) + ' ' + units[unit];
  }

  function duration(seconds) {
    let s = Math.floor(Number(seconds) || 0);
    const d = Math.floor(s / 86400); s -= d * 86400;
    const h = Math.floor(s / 3600); s -= h * 3600;
    const m = Math.floor(s / 60); s -= m * 60;
    if (d) return d + 'd ' + h + 'h';
    if (h) return h + 'h ' + m + 'm';
    if (m) return m + 'm ' + s + 's';
    return s + 's';
  }

  function clock(value, withDate) {
    let ms = value;
    if (typeof value === 'string') ms = Date.parse(value);
    if (typeof ms !== 'number' || !isFinite(ms)) return '';
    if (ms < 1e11) ms *= 1000; // seconds
    const date = new Date(ms);
    const pad = (n) => String(n).padStart(2, '0');
    const time = pad(date.getHours()) + ':' + pad(date.getMinutes()) + ':' + pad(date.getSeconds());
    if (!withDate) return time;
    return date.getFullYear() + '-' + pad(date.getMonth() + 1) + '-' + pad(date.getDate()) + ' ' + time;
  }

  // ---- start --------------------------------------------------------------------------------

  $('login-form').addEventListener('submit', login);
  $('logout').addEventListener('click', () => showLogin(''));
  $('accounts-filter').addEventListener('input', filterAccounts);
  $('accounts-prev').addEventListener('click', () => pageAccounts(-ACCOUNTS_PAGE));
  $('accounts-next').addEventListener('click', () => pageAccounts(ACCOUNTS_PAGE));
  window.addEventListener('resize', () => { if (previous) drawAll({ blocks: { by_form: previous.blocks } }); });
  if (sessionStorage.getItem(TOKEN_KEY)) start();
  else showLogin('');
})();
