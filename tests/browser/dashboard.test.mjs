// The admin dashboard in headless Chromium (Debian's /usr/bin/chromium driven by
// playwright-core): sign in with the token, generate activity, watch the blocked-flows chart,
// the restricted-accounts table and the events feed update, check every tile against the
// API, and save a screenshot to test-artifacts/dashboard.png.
//
// The server under test is the `admin_demo` example (real `admin::serve` and `Metrics`, plus
// a separate debug listener that bumps counters); ADMIN_DEMO_BIN overrides its path.
// Run: cd tests/browser && npm install && npm test

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const DEMO = process.env.ADMIN_DEMO_BIN || path.join(ROOT, 'target', 'debug', 'examples', 'admin_demo');
const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const TOKEN = 'browser-test-token-' + Math.random().toString(36).slice(2, 14);
const ARTIFACTS = path.join(ROOT, 'test-artifacts');

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

/** Start the demo server; resolves with its admin and debug addresses. */
async function startDemo(tokenFile) {
  const child = spawn(DEMO, ['--token-file', tokenFile], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk) => { stderr += chunk; });
  const addresses = await waitFor(() => {
    if (child.exitCode !== null) assert.fail('admin_demo exited: ' + stderr);
    const admin = /admin interface on (\S+)/.exec(stderr);
    const debug = /debug listening on (\S+)/.exec(stderr);
    return admin && debug ? { admin: admin[1], debug: debug[1] } : null;
  }, 20000, 'admin_demo to listen');
  return { child, ...addresses, stderr: () => stderr };
}

/** Headless Chromium with a fresh profile directory under `work`. */
function launch(work) {
  return chromium.launchPersistentContext(path.join(work, 'profile'), {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1366, height: 768 },
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

async function activity(debug, body) {
  const response = await fetch(`http://${debug}/activity`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body),
  });
  assert.equal(response.status, 200);
}

test('dashboard shows live activity that matches the API', { timeout: 120000 }, async () => {
  const work = mkdtempSync(path.join(tmpdir(), 'swarmwall-browser-'));
  const tokenFile = path.join(work, 'token');
  writeFileSync(tokenFile, TOKEN + '\n', { mode: 0o600 });
  const demo = await startDemo(tokenFile);
  const context = await launch(work);
  const problems = [];
  try {
    const page = await context.newPage();
    page.on('pageerror', (error) => problems.push('page error: ' + error.message));
    page.on('console', (message) => {
      if (message.type() === 'error' && !/401 \(Unauthorized\)/.test(message.text())) {
        problems.push('console error: ' + message.text());
      }
    });
    // Anything not on the admin listener is a bug (the page must work offline).
    await page.route('**/*', (route) => {
      const url = new URL(route.request().url());
      if (url.host !== demo.admin) {
        problems.push('external request: ' + url.href);
        return route.abort();
      }
      return route.continue();
    });

    await page.goto(`http://${demo.admin}/`);
    await page.waitForSelector('#login-form', { state: 'visible' });

    // A wrong token is refused with a message and leaves nothing stored.
    await page.fill('#token', 'not-the-right-token-at-all');
    await page.click('#login-button');
    await page.waitForSelector('#login-error', { state: 'visible' });
    assert.equal(await page.textContent('#login-error'), 'Wrong token.');
    assert.equal(await page.evaluate(() => sessionStorage.length), 0);

    await page.fill('#token', TOKEN);
    await page.click('#login-button');
    await page.waitForSelector('#dashboard', { state: 'visible' });
    assert.equal(await page.isVisible('#login'), false, 'login form hidden once signed in');
    await waitFor(() => page.evaluate(() => Number(document.body.dataset.polls || 0) >= 1), 10000, 'first poll');

    // Generate activity over several polling intervals so the charts get a time series.
    const polls = async () => page.evaluate(() => Number(document.body.dataset.polls || 0));
    const rounds = [
      { sessions: 4, active: 3, bytes: 400000, blocks: { dht: 3, mse: 1 }, auth_failures: 2 },
      { sessions: 2, active: 5, bytes: 900000, blocks: { peer_wire: 2, utp: 4 }, alerts: 1, suspend: 'alice' },
      { sessions: 1, active: 2, bytes: 150000, blocks: { http_tracker: 1 }, auth_failures: 3, lockout: 'bob' },
    ];
    for (const round of rounds) {
      const before = await polls();
      await activity(demo.debug, round);
      await waitFor(async () => (await polls()) >= before + 2, 10000, 'two polls after activity');
    }

    // The blocked-flows chart plotted every block, per form.
    const blocksPlotted = await waitFor(async () => {
      const total = Number(await page.getAttribute('#chart-blocks', 'data-total'));
      return total === 11 ? total : null;
    }, 10000, 'blocks chart total 11');
    assert.equal(blocksPlotted, 11);
    const legend = await page.textContent('#legend-blocks');
    for (const form of ['dht 3', 'mse 1', 'peer_wire 2', 'utp 4', 'http_tracker 1']) {
      assert.ok(legend.includes(form), `legend shows ${form}: ${legend}`);
    }
    assert.equal(Number(await page.getAttribute('#chart-auth', 'data-total')), 6); // 5 failures + 1 alert

    // Restricted accounts and the events feed.
    const restricted = await page.$$eval('#restricted tbody tr', (rows) => rows.map((r) => r.dataset.account));
    assert.deepEqual(restricted.sort(), ['alice', 'bob']);
    const events = await api(demo.admin, '/api/v1/events?limit=50');
    const feed = await page.$$eval('#events li .kind', (items) => items.map((i) => i.textContent));
    assert.equal(feed.length, events.events.length);
    assert.equal(feed[0], events.events[events.events.length - 1].kind, 'newest event first');
    for (const kind of ['bittorrent_blocked', 'auth_failure', 'impossible_travel', 'suspension', 'lockout']) {
      assert.ok(feed.includes(kind), `feed shows ${kind}`);
    }

    // An admin action through the API shows up in the feed at the next poll.
    const response = await fetch(`http://${demo.admin}/api/v1/accounts/alice/strikes/clear`, {
      method: 'POST', headers: { Authorization: 'Bearer ' + TOKEN },
    });
    assert.equal(response.status, 200);
    await waitFor(async () => (await page.textContent('#events li:first-child .kind')) === 'admin_action',
      10000, 'admin action in the feed');

    // Every tile equals the API (activity has stopped, so a later poll must agree).
    const status = await api(demo.admin, '/api/v1/status');
    const expected = {
      'tile-sessions-active': status.sessions.active,
      'tile-sessions-total': status.sessions.total,
      'tile-bytes': status.bytes.total,
      'tile-blocks': status.blocks.total,
      'tile-auth-failures': status.auth_failures,
      'tile-alerts': status.alerts.total,
      'tile-suspensions': status.suspensions,
      'tile-lockouts': status.lockouts,
    };
    assert.deepEqual(
      [status.sessions.total, status.blocks.total, status.auth_failures, status.alerts.total],
      [7, 11, 5, 1],
    );
    await waitFor(async () => {
      for (const [id, value] of Object.entries(expected)) {
        if (Number(await page.getAttribute('#' + id, 'data-value')) !== value) return false;
      }
      return true;
    }, 10000, 'tiles to match the API');
    assert.equal(await page.textContent('#tile-blocks'), String(status.blocks.total));
    assert.equal(await page.textContent('#tile-sessions-total'), String(status.sessions.total));
    assert.equal(await page.textContent('#tile-store'), 'up');

    // No error on the page, no cookies, the token only in sessionStorage.
    assert.equal(await page.isVisible('#error'), false, 'error banner: ' + (await page.textContent('#error')));
    assert.deepEqual(await context.cookies(), []);
    assert.equal(await page.evaluate(() => localStorage.length), 0);

    // The Unlock button lifts bob's lockout: his row leaves the table and the action is audited.
    await page.click('#restricted tr[data-account="bob"] button[data-action="unlock"]');
    await waitFor(async () => (await page.$$eval('#restricted tbody tr', (rows) => rows.map((r) => r.dataset.account)))
      .join(',') === 'alice', 10000, 'bob to leave the restricted table');
    const bob = (await api(demo.admin, '/api/v1/accounts')).accounts.find((a) => a.name === 'bob');
    assert.equal(bob.locked_out, false);
    await waitFor(async () => (await page.textContent('#events li:first-child .details')).includes('action=unlock'),
      10000, 'unlock in the feed');

    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard.png'), fullPage: true });

    // Signing out forgets the token.
    await page.click('#logout');
    await page.waitForSelector('#login-form', { state: 'visible' });
    assert.equal(await page.evaluate(() => sessionStorage.length), 0);
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
    demo.child.kill('SIGTERM');
    rmSync(work, { recursive: true, force: true });
  }
});

test('dashboard reports a server that went away', { timeout: 60000 }, async () => {
  const work = mkdtempSync(path.join(tmpdir(), 'swarmwall-browser-'));
  const tokenFile = path.join(work, 'token');
  writeFileSync(tokenFile, TOKEN + '\n', { mode: 0o600 });
  const demo = await startDemo(tokenFile);
  const context = await launch(work);
  try {
    const page = await context.newPage();
    await page.goto(`http://${demo.admin}/`);
    await page.fill('#token', TOKEN);
    await page.click('#login-button');
    await page.waitForSelector('#dashboard', { state: 'visible' });
    demo.child.kill('SIGTERM');
    await page.waitForSelector('#error', { state: 'visible', timeout: 15000 });
    assert.match(await page.textContent('#error'), /Cannot update/);
    assert.equal(await page.textContent('#live'), 'stale');
  } finally {
    await context.close();
    demo.child.kill('SIGTERM');
    rmSync(work, { recursive: true, force: true });
  }
});
