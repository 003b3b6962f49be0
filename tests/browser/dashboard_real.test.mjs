// The admin dashboard of the REAL product in headless Chromium (Debian's /usr/bin/chromium
// driven by playwright-core). `swarmwall serve` runs with an accounts file and the admin
// interface; node generates real SOCKS5 traffic through it (RFC 1929 as alice): a clean echo
// session, failed logins, and CONNECTs to a local peer that opens with a BitTorrent peer-wire
// handshake, which the proxy blocks. Three such incidents more than one burst window (5 s)
// apart suspend alice, and her next CONNECT is refused with 0x02. The test then waits for the
// dashboard to show it all (blocked-flows legend and chart, auth-failure chart, restricted
// table, events feed), checks every tile against GET /api/v1/status, and saves a screenshot
// to test-artifacts/dashboard-real.png. A second test provisions accounts through the admin
// API and checks the Accounts panel (created, disabled by PATCH, filter, paging, no secrets;
// screenshot test-artifacts/dashboard-accounts.png).
//
// SWARMWALL_BIN overrides the binary (default: target/debug/swarmwall of this checkout).
// Run: cd tests/browser && npm ci && npm test

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { chromium } from 'playwright-core';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const BIN = process.env.SWARMWALL_BIN || path.join(ROOT, 'target', 'debug', 'swarmwall');
const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const ARTIFACTS = path.join(ROOT, 'test-artifacts');
const TOKEN = 'real-browser-' + randomBytes(16).toString('hex');
const PASSWORD = 'alice-' + randomBytes(8).toString('hex');
const BURST_WINDOW_MS = 5000; // README: blocked flows within 5 s of the first are one incident

/** Poll `predicate` (async) until truthy or `timeoutMs` passes; returns its last value. */
async function waitFor(predicate, timeoutMs = 15000, what = 'condition') {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await predicate();
    if (last) return last;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`timed out waiting for ${what} (last: ${JSON.stringify(last)})`);
}

/** Start `swarmwall serve`; resolves with its SOCKS and admin addresses. */
async function startServer(work) {
  const tokenFile = path.join(work, 'admin-token');
  writeFileSync(tokenFile, TOKEN + '\n', { mode: 0o600 });
  const accounts = path.join(work, 'accounts.toml');
  const add = spawnSync(BIN, ['user', 'add', 'alice', '--accounts', accounts, '--password-stdin'], {
    input: PASSWORD + '\n', encoding: 'utf8', timeout: 30000,
  });
  assert.equal(add.status, 0, 'user add: ' + add.stderr + add.stdout);
  const data = path.join(work, 'data');
  const child = spawn(BIN, [
    'serve', '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0',
    '--admin-token-file', tokenFile, '--allow-destination', '127.0.0.0/8',
    '--data-dir', data, '--audit-log', path.join(data, 'audit.jsonl'), '--accounts', accounts,
  ], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk) => { stderr += chunk; });
  const addresses = await waitFor(() => {
    if (child.exitCode !== null) assert.fail('swarmwall exited: ' + stderr);
    const admin = /swarmwall: admin interface on (\S+)/.exec(stderr);
    const socks = /swarmwall: listening on (\S+)/.exec(stderr);
    return admin && socks ? { admin: admin[1], socks: socks[1] } : null;
  }, 20000, 'swarmwall to listen');
  return { child, ...addresses, stderr: () => stderr };
}

/** Headless Chromium with a fresh profile directory under `work`. */
function launch(work) {
  return chromium.launchPersistentContext(path.join(work, 'profile'), {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1366, height: 900 },
    args: [
      '--no-sandbox', '--headless', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--no-first-run', '--disable-sync',
    ],
  });
}

async function api(admin, route) {
  const response = await fetch(`http://${admin}${route}`, { headers: { Authorization: 'Bearer ' + TOKEN } });
  assert.equal(response.status, 200, route);
  return response.json();
}

// ---- a small SOCKS5 client over node:net ---------------------------------------------------

/** A TCP connection with "read exactly n bytes" and "read until the peer closes". */
class Conn {
  constructor(socket) {
    this.socket = socket;
    this.buffer = Buffer.alloc(0);
    this.closed = false;
    this.waiters = [];
    socket.on('data', (chunk) => { this.buffer = Buffer.concat([this.buffer, chunk]); this.wake(); });
    socket.on('end', () => { this.closed = true; this.wake(); });
    socket.on('close', () => { this.closed = true; this.wake(); });
    socket.on('error', () => { this.closed = true; this.wake(); }); // a reset is a close here
  }

  static open(address) {
    const [host, port] = address.split(/:(?=\d+$)/);
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host, port: Number(port) });
      socket.once('connect', () => resolve(new Conn(socket)));
      socket.once('error', reject);
    });
  }

  wake() { for (const w of this.waiters.splice(0)) w(); }

  async until(ready, timeoutMs, what) {
    const deadline = Date.now() + timeoutMs;
    while (!ready()) {
      const left = deadline - Date.now();
      if (left <= 0) assert.fail(`timed out reading ${what}`);
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => { clearTimeout(timer); resolve(); });
      });
    }
  }

  async read(n, what, timeoutMs = 10000) {
    await this.until(() => this.buffer.length >= n || this.closed, timeoutMs, what);
    assert.ok(this.buffer.length >= n, `connection closed before ${what} (${this.buffer.length}/${n} bytes)`);
    const out = this.buffer.subarray(0, n);
    this.buffer = this.buffer.subarray(n);
    return out;
  }

  /** Everything until the peer closes. */
  async rest(what, timeoutMs = 10000) {
    await this.until(() => this.closed, timeoutMs, what);
    const out = this.buffer;
    this.buffer = Buffer.alloc(0);
    return out;
  }

  write(bytes) { this.socket.write(bytes); }
  destroy() { this.socket.destroy(); }
}

/** Greeting + RFC 1929 sub-negotiation; resolves with the auth status byte (0 = success). */
async function socksLogin(proxy, user, password) {
  const conn = await Conn.open(proxy);
  conn.write(Buffer.from([5, 1, 2])); // username/password only
  assert.deepEqual([...(await conn.read(2, 'method choice'))], [5, 2]);
  const u = Buffer.from(user);
  const p = Buffer.from(password);
  conn.write(Buffer.concat([Buffer.from([1, u.length]), u, Buffer.from([p.length]), p]));
  const reply = await conn.read(2, 'auth reply');
  assert.equal(reply[0], 1, 'RFC 1929 reply version');
  return { conn, status: reply[1] };
}

/** Log in as alice and CONNECT to 127.0.0.1:`port`; resolves with the reply code and conn. */
async function socksConnect(proxy, port) {
  const { conn, status } = await socksLogin(proxy, 'alice', PASSWORD);
  assert.equal(status, 0, 'alice logs in');
  conn.write(Buffer.from([5, 1, 0, 1, 127, 0, 0, 1, port >> 8, port & 0xff]));
  const head = await conn.read(4, 'CONNECT reply');
  assert.equal(head[0], 5);
  if (head[3] === 1) await conn.read(6, 'bound IPv4 address');
  else if (head[3] === 4) await conn.read(18, 'bound IPv6 address');
  else assert.fail('unexpected ATYP ' + head[3]);
  return { conn, rep: head[1] };
}

/** A local TCP server calling `onConnection(socket)` for each accepted connection. */
async function listen(onConnection) {
  const server = net.createServer(onConnection);
  server.on('error', () => {});
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

// BitTorrent peer-wire handshake: pstrlen 19, "BitTorrent protocol", 8 reserved, info_hash, peer_id.
const HANDSHAKE = Buffer.concat([
  Buffer.from([19]), Buffer.from('BitTorrent protocol'), Buffer.alloc(8),
  randomBytes(20), Buffer.from('-UT3550-' + randomBytes(6).toString('hex')),
]);
assert.equal(HANDSHAKE.length, 68);
const ECHO_PAYLOAD = Buffer.from('GET / HTTP/1.1\r\nHost: intranet.test\r\n\r\n'.repeat(100));

test('dashboard of the real server shows blocked BitTorrent, failed logins and a suspension',
  { timeout: 90000 }, async () => {
    const started = Date.now();
    const work = mkdtempSync(path.join(tmpdir(), 'swarmwall-browser-real-'));
    const server = await startServer(work);
    const echo = await listen((socket) => { socket.on('error', () => {}); socket.pipe(socket); });
    let peerSockets = 0;
    const peer = await listen((socket) => {
      peerSockets += 1;
      socket.on('error', () => {});
      socket.write(HANDSHAKE); // a seeder answering: the proxy must not forward this
    });
    const context = await launch(work);
    const problems = [];
    try {
      const page = await context.newPage();
      page.on('pageerror', (error) => problems.push('page error: ' + error.message));
      page.on('console', (message) => {
        if (message.type() === 'error') problems.push('console error: ' + message.text());
      });
      await page.route('**/*', (route) => {
        const url = new URL(route.request().url());
        if (url.host !== server.admin) {
          problems.push('external request: ' + url.href);
          return route.abort();
        }
        return route.continue();
      });

      // Sign in with the token read from --admin-token-file.
      await page.goto(`http://${server.admin}/`);
      await page.waitForSelector('#login-form', { state: 'visible' });
      await page.fill('#token', TOKEN);
      await page.click('#login-button');
      await page.waitForSelector('#dashboard', { state: 'visible' });
      await waitFor(() => page.evaluate(() => Number(document.body.dataset.polls || 0) >= 1), 10000, 'first poll');
      assert.equal(await page.textContent('#tile-blocks'), '0');

      // 1. A clean session: bytes go through both ways.
      {
        const payload = ECHO_PAYLOAD;
        const { conn, rep } = await socksConnect(server.socks, echo.address().port);
        assert.equal(rep, 0, 'CONNECT to the echo server succeeds');
        conn.write(payload);
        assert.deepEqual(await conn.read(payload.length, 'echo'), payload);
        conn.destroy();
      }

      // 2. Three failed logins (wrong password) as alice: each is refused by RFC 1929.
      for (let i = 0; i < 3; i += 1) {
        const { conn, status } = await socksLogin(server.socks, 'alice', PASSWORD + '-wrong');
        assert.notEqual(status, 0, 'a wrong password is refused');
        await conn.rest('close after a failed login');
      }

      // 3. Three incidents, each a CONNECT to a peer that sends the BitTorrent handshake, more
      //    than one burst window apart: the flow is closed without a byte of the handshake, and
      //    the third incident suspends alice.
      let lastIncident = 0;
      for (let incident = 1; incident <= 3; incident += 1) {
        const wait = lastIncident + BURST_WINDOW_MS + 400 - Date.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait)); // let the burst window pass
        const before = peerSockets;
        const { conn, rep } = await socksConnect(server.socks, peer.address().port);
        assert.equal(rep, 0, `CONNECT ${incident} to the BitTorrent peer is accepted`);
        const received = await conn.rest('the proxy to close the BitTorrent flow');
        assert.equal(received.length, 0, 'no byte of the handshake reaches the client');
        assert.equal(peerSockets, before + 1);
        const status = await waitFor(async () => {
          const s = await api(server.admin, '/api/v1/status');
          return s.strikes >= incident ? s : null;
        }, 10000, `incident ${incident} to be counted`);
        assert.equal(status.strikes, incident);
        assert.equal(status.blocks.by_form.peer_wire, incident);
        lastIncident = Date.now(); // the block happened before this moment
      }
      const afterIncidents = await waitFor(async () => {
        const s = await api(server.admin, '/api/v1/status');
        return s.suspensions >= 1 ? s : null;
      }, 10000, 'the suspension to be counted');
      assert.equal(afterIncidents.suspensions, 1);

      // 4. Suspended: alice's next CONNECT is refused with 0x02 before it reaches the peer.
      {
        const before = peerSockets;
        const { conn, rep } = await socksConnect(server.socks, echo.address().port);
        assert.equal(rep, 2, 'a suspended account gets 0x02 (not allowed by ruleset)');
        conn.destroy();
        assert.equal(peerSockets, before);
      }

      // The dashboard: blocked-flows legend and chart show the peer_wire blocks...
      await waitFor(async () => (await page.textContent('#legend-blocks')).includes('peer_wire 3'),
        10000, 'legend "peer_wire 3"');
      assert.equal(Number(await page.getAttribute('#chart-blocks', 'data-total')), 3);
      const legend = await page.textContent('#legend-blocks');
      assert.equal(legend, 'peer_wire 3', 'only peer_wire was blocked');
      // ...the auth chart the three failures, the restricted table alice...
      await waitFor(async () => Number(await page.getAttribute('#chart-auth', 'data-total')) === 3,
        10000, 'auth chart total 3');
      await waitFor(async () => (await page.$$eval('#restricted tbody tr', (rows) => rows.map((r) => r.dataset.account)))
        .join(',') === 'alice', 10000, 'alice in the restricted table');
      assert.ok(await page.isVisible('#restricted tr[data-account="alice"] button[data-action="unsuspend"]'));
      // ...and the events feed the failed logins and the suspension, newest first, as the API.
      const feedKinds = () => page.$$eval('#events li .kind', (items) => items.map((i) => i.textContent));
      await waitFor(async () => {
        const kinds = await feedKinds();
        return kinds.filter((k) => k === 'auth_failure').length === 3 && kinds.includes('suspension');
      }, 10000, 'auth failures and the suspension in the feed');
      const events = (await api(server.admin, '/api/v1/events?limit=50')).events;
      await waitFor(async () => (await feedKinds()).join() === events.map((e) => e.kind).reverse().join(),
        10000, 'feed equal to /api/v1/events');
      const feedDetails = await page.$$eval('#events li', (items) => items.map((i) => ({
        kind: i.querySelector('.kind').textContent, details: i.querySelector('.details').textContent,
      })));
      for (const item of feedDetails.filter((e) => e.kind === 'auth_failure')) {
        assert.match(item.details, /account=alice/);
        assert.match(item.details, /reason=bad_credentials/);
        assert.ok(!item.details.includes(PASSWORD), 'no password in the feed');
      }
      // The second incident warned, the third suspended (README: graduated response).
      const warning = feedDetails.find((e) => e.kind === 'strike_warning');
      assert.ok(warning, 'strike_warning in the feed');
      assert.match(warning.details, /account=alice form=peer_wire incidents=2/);
      const suspension = feedDetails.find((e) => e.kind === 'suspension');
      assert.match(suspension.details, /account=alice form=peer_wire incidents=3/);

      // Every tile equals /api/v1/status (traffic has stopped, so a later poll must agree).
      const status = await api(server.admin, '/api/v1/status');
      assert.equal(status.blocks.total, 3);
      assert.equal(status.blocks.by_form.peer_wire, 3);
      assert.equal(status.blocks.by_transport.tcp, 3);
      assert.equal(status.auth_failures, 3);
      assert.equal(status.strikes, 3);
      assert.equal(status.suspensions, 1);
      assert.equal(status.lockouts, 0);
      assert.equal(status.alerts.total, 0);
      assert.equal(status.sessions.active, 0);
      // Four CONNECT sessions ran (echo + three blocked); refused: the three failed logins and
      // the suspended CONNECT, by reason in /metrics.
      assert.deepEqual([status.sessions.total, status.sessions.by_command.connect, status.sessions.refused],
        [4, 4, 4], 'sessions: ' + JSON.stringify(status.sessions));
      const metrics = await (await fetch(`http://${server.admin}/metrics`,
        { headers: { Authorization: 'Bearer ' + TOKEN } })).text();
      const refusedBy = (reason) => Number((new RegExp(
        `^swarmwall_sessions_refused_total\\{reason="${reason}"\\} (\\d+)$`, 'm').exec(metrics) || [])[1]);
      assert.deepEqual([refusedBy('auth'), refusedBy('suspended')], [3, 1], 'sessions_refused by reason');
      // The echo session both ways, and not one byte of the blocked handshakes.
      assert.deepEqual([status.bytes.client_to_target, status.bytes.target_to_client],
        [ECHO_PAYLOAD.length, ECHO_PAYLOAD.length], 'bytes relayed: ' + JSON.stringify(status.bytes));
      const expected = {
        'tile-sessions-active': status.sessions.active,
        'tile-sessions-total': status.sessions.total,
        'tile-bytes': status.bytes.total,
        'tile-blocks': status.blocks.total,
        'tile-auth-failures': status.auth_failures,
        'tile-alerts': status.alerts.total,
        'tile-suspensions': status.suspensions,
        'tile-lockouts': status.lockouts,
        'tile-store': status.store_up ? 1 : 0,
      };
      await waitFor(async () => {
        for (const [id, value] of Object.entries(expected)) {
          if (Number(await page.getAttribute('#' + id, 'data-value')) !== value) return false;
        }
        return true;
      }, 10000, 'tiles to match /api/v1/status');
      for (const id of ['tile-sessions-active', 'tile-sessions-total', 'tile-blocks', 'tile-auth-failures',
        'tile-alerts', 'tile-suspensions', 'tile-lockouts']) {
        assert.equal(await page.textContent('#' + id), expected[id].toLocaleString('en-US'), id);
      }
      assert.equal(await page.textContent('#tile-store'), 'up');
      assert.equal(await page.textContent('#version'), 'v' + status.version);
      const restricted = (await api(server.admin, '/api/v1/accounts?restricted=true')).accounts;
      assert.deepEqual(restricted.map((a) => a.name), ['alice']);
      assert.equal(restricted[0].suspended, true);
      const row = await page.$$eval('#restricted tr[data-account="alice"] td', (cells) => cells.map((c) => c.textContent));
      assert.equal(row[1], String(restricted[0].strikes), 'strikes column equals the API');
      assert.notEqual(row[2], '–', 'suspended-until is shown');

      // No error banner, nothing went wrong in the page.
      assert.equal(await page.isVisible('#error'), false, 'error banner: ' + (await page.textContent('#error')));
      assert.equal(await page.textContent('#live'), 'live');

      mkdirSync(ARTIFACTS, { recursive: true });
      await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-real.png'), fullPage: true });
      assert.deepEqual(problems, []);
      console.log(`# dashboard_real: ${((Date.now() - started) / 1000).toFixed(1)} s`);
    } finally {
      await context.close();
      server.child.kill('SIGTERM');
      echo.close();
      peer.close();
      await waitFor(() => server.child.exitCode !== null || server.child.signalCode !== null, 10000, 'swarmwall to exit');
      rmSync(work, { recursive: true, force: true });
    }
  });

/** `method` `route` with a JSON (or text) body and the token; resolves with status and body. */
async function send(admin, method, route, body, contentType = 'application/json') {
  const response = await fetch(`http://${admin}${route}`, {
    method,
    headers: { Authorization: 'Bearer ' + TOKEN, 'Content-Type': contentType },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

// The Accounts panel against the real server: accounts provisioned through the admin API
// appear (name, status, TOTP, country lists), a PATCH that disables one shows on the next
// refresh (and the proxy refuses its login), the name filter and the paging follow the
// listing's `name`/`offset`/`limit`, and no secret ever reaches the page.
test('dashboard Accounts panel shows accounts provisioned through the admin API',
  { timeout: 90000 }, async () => {
    const work = mkdtempSync(path.join(tmpdir(), 'swarmwall-browser-accounts-'));
    const server = await startServer(work);
    const context = await launch(work);
    const problems = [];
    const davePassword = 'dave-' + randomBytes(12).toString('hex');
    try {
      const page = await context.newPage();
      page.on('pageerror', (error) => problems.push('page error: ' + error.message));
      page.on('console', (message) => {
        if (message.type() === 'error') problems.push('console error: ' + message.text());
      });
      await page.route('**/*', (route) => {
        const url = new URL(route.request().url());
        if (url.host !== server.admin) {
          problems.push('external request: ' + url.href);
          return route.abort();
        }
        return route.continue();
      });
      await page.goto(`http://${server.admin}/`);
      await page.waitForSelector('#login-form', { state: 'visible' });
      await page.fill('#token', TOKEN);
      await page.click('#login-button');
      await page.waitForSelector('#accounts-panel', { state: 'visible' });

      const rowNames = () => page.$$eval('#accounts tbody tr', (rows) => rows.map((r) => r.dataset.account));
      const rowCells = (name) => page.$$eval(`#accounts tr[data-account="${name}"] td`,
        (cells) => cells.map((c) => c.textContent));
      // The accounts file's only account, before any provisioning.
      await waitFor(async () => (await rowNames()).join() === 'alice', 10000, 'alice alone in the panel');
      assert.deepEqual(await rowCells('alice'), ['alice', 'active', 'no', '–', '–', '–']);
      assert.equal(await page.textContent('#accounts-count'), '1');

      // Provision dave (password given) and erin (country lists, then TOTP) through the API.
      let answer = await send(server.admin, 'POST', '/api/v1/accounts', { name: 'dave', password: davePassword });
      assert.equal(answer.status, 201, JSON.stringify(answer.body));
      answer = await send(server.admin, 'POST', '/api/v1/accounts',
        { name: 'erin', allow_countries: ['de', 'FR'], deny_countries: ['RU'] });
      assert.equal(answer.status, 201, JSON.stringify(answer.body));
      const erinPassword = answer.body.password;
      assert.ok(erinPassword, 'a generated password is returned once');
      answer = await send(server.admin, 'POST', '/api/v1/accounts/erin/totp', '');
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
      const totpSecret = new URL(answer.body.otpauth_uri).searchParams.get('secret');
      assert.ok(totpSecret, 'otpauth URI with a secret');

      await waitFor(async () => (await rowNames()).join() === 'alice,dave,erin', 10000,
        'dave and erin in the panel');
      assert.deepEqual(await rowCells('dave'), ['dave', 'active', 'no', '–', '–', '–']);
      assert.deepEqual(await rowCells('erin'), ['erin', 'active', 'yes', 'DE, FR', 'RU', '–']);
      assert.equal(await page.textContent('#accounts-count'), '3');
      assert.equal(await page.textContent('#accounts-range'), '1–3 of 3');

      // dave logs in through the proxy; disabled by PATCH, the panel shows it after its
      // refresh and the proxy refuses him.
      {
        const { conn, status } = await socksLogin(server.socks, 'dave', davePassword);
        assert.equal(status, 0, 'dave logs in while enabled');
        conn.destroy();
      }
      answer = await send(server.admin, 'PATCH', '/api/v1/accounts/dave', { disabled: true });
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
      assert.equal(answer.body.disabled, true);
      await waitFor(async () => (await page.getAttribute('#accounts tr[data-account="dave"]', 'data-disabled')) === 'true',
        10000, 'dave shown disabled');
      assert.deepEqual(await rowCells('dave'), ['dave', 'disabled', 'no', '–', '–', '–']);
      assert.equal(await page.getAttribute('#accounts tr[data-account="dave"] td:nth-child(2)', 'class'), 'disabled');
      assert.equal(await page.getAttribute('#accounts tr[data-account="erin"]', 'data-disabled'), 'false');
      {
        const { conn, status } = await socksLogin(server.socks, 'dave', davePassword);
        assert.notEqual(status, 0, 'a disabled account is refused');
        conn.destroy();
      }

      // A BitTorrent policy override set by PATCH shows in its column after the refresh.
      answer = await send(server.admin, 'PATCH', '/api/v1/accounts/erin',
        { policy: { bittorrent: 'allow', forms: { mse: 'block' } } });
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
      await waitFor(async () => (await rowCells('erin'))[5] === 'bittorrent=allow, mse=block', 10000,
        'erin\'s policy override shown');

      // The name filter: only names containing the text (the listing's `name`).
      await page.fill('#accounts-filter', 'ri');
      await waitFor(async () => (await rowNames()).join() === 'erin', 10000, 'filter "ri" → erin');
      assert.equal(await page.textContent('#accounts-count'), '1');
      await page.fill('#accounts-filter', 'nobody-has-this');
      await waitFor(() => page.isVisible('#accounts-empty'), 10000, 'empty filter result');
      assert.deepEqual(await rowNames(), []);
      await page.fill('#accounts-filter', '');
      await waitFor(async () => (await rowNames()).join() === 'alice,dave,erin', 10000, 'filter cleared');

      // Paging: 55 more accounts by bulk import (alice's hash as is, so no hashing cost) make
      // 58: 50 on the first page, 8 on the second.
      const accountsToml = readFileSync(path.join(work, 'accounts.toml'), 'utf8');
      const hash = /^password = "(\$argon2id\$[^"]+)"$/m.exec(accountsToml)[1];
      const lines = Array.from({ length: 55 }, (_, i) =>
        JSON.stringify({ name: 'bulk-' + String(i).padStart(3, '0'), password_hash: hash })).join('\n');
      answer = await send(server.admin, 'POST', '/api/v1/accounts/import', lines, 'application/x-ndjson');
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
      await waitFor(async () => (await page.textContent('#accounts-count')) === '58', 10000, '58 accounts');
      const firstPage = await rowNames();
      assert.equal(firstPage.length, 50);
      assert.deepEqual(firstPage.slice(0, 2), ['alice', 'bulk-000']);
      assert.equal(firstPage[49], 'bulk-048');
      assert.equal(await page.textContent('#accounts-range'), '1–50 of 58');
      assert.equal(await page.isDisabled('#accounts-prev'), true);
      await page.click('#accounts-next');
      await waitFor(async () => (await rowNames())[0] === 'bulk-049', 10000, 'second page');
      assert.deepEqual(await rowNames(), ['bulk-049', 'bulk-050', 'bulk-051', 'bulk-052', 'bulk-053',
        'bulk-054', 'dave', 'erin']);
      assert.equal(await page.textContent('#accounts-range'), '51–58 of 58');
      assert.equal(await page.isDisabled('#accounts-next'), true);
      assert.equal(await page.getAttribute('#accounts tr[data-account="dave"]', 'data-disabled'), 'true');
      // A deleted account leaves the panel on the next refresh.
      answer = await send(server.admin, 'DELETE', '/api/v1/accounts/erin');
      assert.equal(answer.status, 204);
      await waitFor(async () => !(await rowNames()).includes('erin'), 10000, 'erin gone');
      await page.click('#accounts-prev');
      await waitFor(async () => (await rowNames())[0] === 'alice', 10000, 'first page again');

      // No secret anywhere in the page: passwords, the hash, the TOTP secret.
      const html = await page.content();
      for (const secret of [PASSWORD, davePassword, erinPassword, hash, totpSecret]) {
        assert.ok(!html.includes(secret), 'a secret reached the page');
      }
      assert.equal(await page.isVisible('#error'), false, 'error banner: ' + (await page.textContent('#error')));
      mkdirSync(ARTIFACTS, { recursive: true });
      await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-accounts.png'), fullPage: true });
      assert.deepEqual(problems, []);
    } finally {
      await context.close();
      server.child.kill('SIGTERM');
      await waitFor(() => server.child.exitCode !== null || server.child.signalCode !== null, 10000, 'swarmwall to exit');
      rmSync(work, { recursive: true, force: true });
    }
  });
