// End-to-end tests of the web app in a real headless Chromium (Debian's /usr/bin/chromium,
// driven by playwright-core; no browser is ever downloaded). The test builds the server once.
// Every test runs its own server on a free port with its embedded Redis and borrows pages
// with nothing of another test in them, so any test runs alone (--test-name-pattern) and in
// any order: a test that needs what an earlier step leaves behind (users in a room, a
// history) does those steps itself. They drive users through the app: in dev mode, sign in,
// a room conversation, a direct message sent over HTTP, a reload that must lose nothing, the
// admin page, a phone-sized screen and a server restart; with a JWT secret and an API key,
// signing in with a token, the rooms of the welcome, a token URL refreshed on the same
// socket, a pasted token about to expire, a refused join; with a connect hook (a small
// backend in the test), signing in by the site's cookie; hostile messages in the history
// and arriving live; conversations: a DM thread on two devices and on a second node, room
// history for a late joiner, typing, online dots, unread counts, notifications, a send
// typed while the server is down, and messages too large (refused by the app, and by a
// server with a lower limit: its error and its close 1009). After each
// test, no page may have logged an error it was not expected to. Screenshots go to
// web/e2e/test-results/.
import { describe, test, before, after, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer as createHTTPServer } from 'node:http';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
const results = path.join(here, 'test-results');
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const WAIT = 15_000; // ms for anything the UI must show

let bin; // the server binary, built once
let browser; // one browser; each page of the pool has a context of its own
let workdir;
// What the running test owns; set up afresh for each test by useFreshServer.
let server; // the test's server: { proc, port, base, exited, log() }
let pages = {}; // name -> the pool entry ({ page, errors, ... }) the test borrowed

// --- the server -------------------------------------------------------------------------

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function goBinary() {
  for (const candidate of ['go', '/usr/local/go/bin/go']) {
    try {
      execFileSync(candidate, ['version'], { stdio: 'ignore' });
      return candidate;
    } catch {
      // try the next
    }
  }
  throw new Error('go is not installed');
}

async function startServer({ port, args = [] } = {}) {
  port ??= await freePort();
  const env = { ...process.env };
  // The embedded Redis and only the flags given, whatever the caller's environment says.
  for (const name of Object.keys(env)) if (name.startsWith('SWITCHBOARD_')) delete env[name];
  const proc = spawn(bin, ['--addr', `127.0.0.1:${port}`, '--node-id', 'e2e-node', ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  proc.stdout.on('data', (d) => (output += d));
  proc.stderr.on('data', (d) => (output += d));
  const exited = new Promise((resolve) => proc.once('exit', resolve));
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`switchboard exited with ${proc.exitCode}:\n${output}`);
    try {
      if ((await fetch(`${base}/readyz`)).ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`switchboard was not ready within 20 s:\n${output}`);
    await new Promise((r) => setTimeout(r, 25));
  }
  return { proc, port, base, exited, log: () => output };
}

async function stopServer() {
  if (!server || server.proc.exitCode !== null) return;
  server.proc.kill('SIGTERM');
  const timer = setTimeout(() => server.proc.kill('SIGKILL'), 10_000);
  await server.exited;
  clearTimeout(timer);
}

// --- browser helpers -----------------------------------------------------------------------

// Opening a page starts a renderer, which takes seconds on a busy machine; so pages are
// kept in a pool across tests and each test borrows its own. A borrowed page is fresh for the
// test all the same: its storage is per origin, the test's server has a port (so an origin)
// of its own, and returnPages clears that origin's storage and blanks the page after the test.
const pool = []; // { page, context, kind, errors, busy }

async function openPage(name, options = {}) {
  const kind = JSON.stringify(options);
  let entry = pool.find((e) => !e.busy && e.kind === kind);
  if (!entry) {
    const context = await browser.newContext({ viewport: { width: 1100, height: 720 }, ...options });
    const page = await context.newPage();
    page.setDefaultTimeout(WAIT);
    entry = { page, context, kind, errors: [] };
    // Console errors include CSP violations: an inline style or script would show up here.
    page.on('console', (msg) => msg.type() === 'error' && entry.errors.push(msg.text()));
    page.on('pageerror', (err) => entry.errors.push(err.message));
    pool.push(entry);
  }
  entry.busy = true;
  entry.errors = [];
  pages[name] = entry;
  return entry.page;
}

// returnPages gives this test's pages back to the pool, each with nothing of the test left:
// the socket closed, the storage of the test's origin emptied.
async function returnPages() {
  for (const entry of Object.values(pages)) {
    if (entry.page.url().startsWith('http')) {
      await entry.page.evaluate(() => {
        localStorage.clear();
        sessionStorage.clear();
      });
    }
    await entry.page.goto('about:blank');
    await entry.context.clearCookies(); // a site's session cookie stays with its test
    entry.busy = false;
  }
  pages = {};
}

const shot = (page, name, options = {}) => page.screenshot({ path: path.join(results, `${name}.png`), ...options });

// jwt signs an HS256 token for user; claims adds to sub and exp (rooms, dm).
function jwt(secret, user, claims = {}) {
  const part = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const body = `${part({ alg: 'HS256', typ: 'JWT' })}.${part({ sub: user, exp: Math.floor(Date.now() / 1000) + 3600, ...claims })}`;
  return `${body}.${createHmac('sha256', secret).update(body).digest('base64url')}`;
}

async function signIn(page, user) {
  await page.goto(server.base);
  await page.locator('#signin-name').fill(user);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await waitLive(page);
}

// signedIn opens a page for user and signs in with the form, without the waits a person
// typing needs: the setup of a test that is not about signing in.
async function signedIn(name, user) {
  const page = await openPage(name);
  await page.goto(server.base);
  await page.evaluate((u) => {
    document.getElementById('signin-name').value = u;
    document.getElementById('signin-form').requestSubmit();
  }, user);
  await waitLive(page);
  return page;
}

const waitLive = (page) => page.locator('#conn[data-state="live"]').waitFor();

async function joinRoom(page, room) {
  await page.getByLabel('Room to join').fill(room);
  await page.getByRole('button', { name: 'Join' }).click();
  await page.locator('#conv-title', { hasText: `#${room}` }).waitFor();
}

async function say(page, text) {
  await page.getByLabel('Message', { exact: true }).fill(text);
  await page.keyboard.press('Enter');
}

const message = (page, text) => page.locator('#messages .msg', { hasText: text });

const openConv = (page, key) => page.locator(`nav button.conv[data-conv="${key}"]`).click();

// shown returns what the app shows in each conversation of the sidebar.
async function shown(page) {
  const keys = await page.locator('nav button.conv').evaluateAll((bs) => bs.map((b) => b.dataset.conv));
  const out = {};
  for (const key of keys) {
    await openConv(page, key);
    out[key] = await page
      .locator('#messages .msg')
      .evaluateAll((lis) => lis.map((li) => ({ id: li.dataset.id, key: li.dataset.key, text: li.querySelector('.text')?.textContent })));
  }
  return out;
}

async function postJSON(url, body) {
  const res = await fetch(`${server.base}${url}`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  const text = await res.text();
  assert.equal(res.status, 202, text);
  return JSON.parse(text);
}

const API_KEY = 'e2e-api-key';

// api calls the test server's /v1 with the API key, as a backend would, and checks status.
async function api(method, url, { body, status = method === 'POST' ? 202 : 204 } = {}) {
  const headers = { Authorization: `Bearer ${API_KEY}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(`${server.base}${url}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  assert.equal(res.status, status, `${method} ${url}: ${text}`);
  return text ? JSON.parse(text) : null;
}

// listen serves handler(req, body, res) on a free loopback port: the small backends of the
// tests (a token URL, a connect hook). It returns the base URL and close().
async function listen(handler) {
  const srv = createHTTPServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => handler(req, Buffer.concat(chunks), res));
  });
  await new Promise((resolve) => srv.listen(0, '127.0.0.1', resolve));
  return { base: `http://127.0.0.1:${srv.address().port}`, close: () => new Promise((resolve) => srv.close(resolve)) };
}

// tokenURL is a site backend's endpoint handing the signed-in user a fresh token, from
// another origin than Switchboard's (so the page's fetch is cross-origin, with cookies:
// CORS with credentials). Each token expires expIn seconds after it is served. served
// lists the tokens handed out.
async function tokenURL(secret, user, { expIn, claims = {} }) {
  const served = [];
  const srv = await listen((req, body, res) => {
    res.setHeader('Access-Control-Allow-Origin', req.headers.origin ?? '*');
    res.setHeader('Access-Control-Allow-Credentials', 'true');
    res.setHeader('Vary', 'Origin');
    const token = jwt(secret, user, { exp: Math.floor(Date.now() / 1000) + expIn, ...claims });
    served.push(token);
    res.writeHead(200, { 'Content-Type': 'text/plain', 'Cache-Control': 'no-store' });
    res.end(token);
  });
  return { url: `${srv.base}/switchboard-token`, served, close: srv.close };
}

// watchSockets records the WebSockets page opens and every state its connection indicator
// shows, so that a test can tell that a connection was never replaced nor interrupted.
async function watchSockets(page) {
  const sockets = [];
  page.on('websocket', (ws) => sockets.push(ws.url()));
  await page.evaluate(() => {
    const conn = document.getElementById('conn');
    window.connStates = [conn.dataset.state];
    new MutationObserver(() => window.connStates.push(conn.dataset.state)).observe(conn, { attributes: true, attributeFilter: ['data-state'] });
  });
  return {
    sockets,
    // sinceLive: the states shown since the connection first went live.
    sinceLive: () => page.evaluate(() => window.connStates.slice(window.connStates.indexOf('live'))),
  };
}

async function until(what, ok, ms = WAIT) {
  const deadline = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const roomShown = (page, room) => page.locator(`nav button.conv[data-conv="room:${room}"]`);

// --- Redis, behind the server's back --------------------------------------------------------

// redisCommand sends one command to the Redis at addr ("host:port") and returns its reply:
// a string, a number, null or an array of those. It is what "something else writing to
// Redis" looks like to the server: no validation of ours on the way.
function redisCommand(addr, ...args) {
  const [host, port] = addr.split(':');
  const request = `*${args.length}\r\n` + args.map((a) => `$${Buffer.byteLength(String(a))}\r\n${a}\r\n`).join('');
  return new Promise((resolve, reject) => {
    const socket = createConnection({ host, port: Number(port) });
    let buf = Buffer.alloc(0);
    socket.setTimeout(WAIT, () => socket.destroy(new Error('redis timed out')));
    socket.on('error', reject);
    socket.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      const parsed = parseReply(buf, 0);
      if (!parsed) return; // not all of it yet
      socket.end();
      if (parsed.value instanceof Error) reject(parsed.value);
      else resolve(parsed.value);
    });
    socket.write(request);
  });
}

// parseReply reads one RESP2 reply at offset, or returns null when more bytes are needed.
function parseReply(buf, offset) {
  const eol = buf.indexOf('\r\n', offset);
  if (eol < 0) return null;
  const kind = String.fromCharCode(buf[offset]);
  const line = buf.toString('utf8', offset + 1, eol);
  const after = eol + 2;
  switch (kind) {
    case '+':
      return { value: line, end: after };
    case '-':
      return { value: new Error(line), end: after };
    case ':':
      return { value: Number(line), end: after };
    case '$': {
      const n = Number(line);
      if (n < 0) return { value: null, end: after };
      if (buf.length < after + n + 2) return null;
      return { value: buf.toString('utf8', after, after + n), end: after + n + 2 };
    }
    case '*': {
      const n = Number(line);
      const items = [];
      let at = after;
      for (let i = 0; i < n; i++) {
        const item = parseReply(buf, at);
        if (!item) return null;
        items.push(item.value);
        at = item.end;
      }
      return { value: items, end: at };
    }
    default:
      throw new Error(`unexpected reply from redis: ${line}`);
  }
}

// --- the tests -----------------------------------------------------------------------------

before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install -y chromium`);
  mkdirSync(results, { recursive: true });
  workdir = mkdtempSync(path.join(tmpdir(), 'switchboard-e2e-'));
  bin = path.join(workdir, 'switchboard');
  execFileSync(goBinary(), ['build', '-o', bin, './cmd/switchboard'], { cwd: repo, stdio: 'inherit' });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  for (const { context } of pool) await context.close();
  await browser?.close();
  if (workdir) rmSync(workdir, { recursive: true, force: true });
});

// useFreshServer gives each test of the suite a server of its own (started with args) and
// no pages; after the test it returns the pages to the pool, stops the server, and fails the
// test if a page logged an error that expected(error) does not allow.
// args may be a function, called before each test (for the address of a backend started
// in the suite's before).
function useFreshServer({ args = [], expected = () => false } = {}) {
  beforeEach(async () => {
    pages = {};
    server = await startServer({ args: typeof args === 'function' ? args() : args });
  });
  afterEach(async () => {
    const logged = Object.entries(pages).map(([name, { errors }]) => [name, errors.filter((e) => !expected(e))]);
    await returnPages();
    await stopServer();
    for (const [name, errors] of logged) assert.deepEqual(errors, [], `${name} logged errors`);
  });
}

// The refused name, a refused /v1 call and a server away are logged by the browser as
// failed loads; that is expected where a test causes them, and nothing else is.
const failedLoad = (e) => /Failed to load resource|WebSocket connection to .* failed/.test(e);

describe('the web app in a browser, dev mode', { timeout: 180_000 }, () => {
  useFreshServer();

  // aliceAndBob opens a page each for alice and bob and signs them in; the sign-in test
  // does it through the form and takes its screenshots, the others skip the form.
  async function aliceAndBob({ viaForm = false } = {}) {
    if (!viaForm) return { alice: await signedIn('alice', 'alice'), bob: await signedIn('bob', 'bob') };
    const alice = await openPage('alice');
    await alice.goto(server.base);
    await alice.locator('#signin-name').fill('alice');
    await shot(alice, '01-sign-in');
    await alice.getByRole('button', { name: 'Sign in' }).click();
    await waitLive(alice);
    assert.equal(await alice.locator('#who-name').textContent(), 'alice');
    await shot(alice, '02-alice-signed-in');

    const bob = await openPage('bob');
    await signIn(bob, 'bob');
    return { alice, bob };
  }

  // talkInLobby: both join the lobby and say one thing each, and both see both.
  async function talkInLobby(alice, bob) {
    await joinRoom(alice, 'lobby');
    await joinRoom(bob, 'lobby');
    await say(alice, 'Hello from alice');
    await message(bob, 'Hello from alice').waitFor();
    await say(bob, 'Hi alice, bob here');
    await message(alice, 'Hi alice, bob here').waitFor();
    await message(bob, 'Hi alice, bob here').waitFor(); // the sender's copy comes back too
  }

  // directMessages: the backend writes to bob over HTTP while he reads the lobby, then
  // alice writes to him; bob sees both.
  async function directMessages(alice, bob, { shoot = false } = {}) {
    await postJSON('/v1/users/bob/messages', { text: 'Your order #42 has shipped' });
    // It lands in the Backend conversation, flagged unread while bob reads the lobby.
    await bob.locator('nav button.conv[data-conv="backend"] .badge', { hasText: '1' }).waitFor();
    if (shoot) await shot(bob, '05-bob-unread-backend-message');
    await openConv(bob, 'backend');
    await message(bob, 'Your order #42 has shipped').waitFor();

    await alice.getByLabel('User to message').fill('bob');
    await alice.getByRole('button', { name: 'Open' }).click();
    await say(alice, 'psst, bob');
    await alice.locator('#messages .msg.mine', { hasText: 'psst, bob' }).waitFor();
    await openConv(bob, 'user:alice');
    await message(bob, 'psst, bob').waitFor();
  }

  test('alice and bob sign in with a dev name', async () => {
    await aliceAndBob({ viaForm: true });
  });

  test('they join a room and talk', async () => {
    const { alice, bob } = await aliceAndBob();
    await talkInLobby(alice, bob);
    assert.equal(await alice.locator('#messages .msg.mine').count(), 1);
    await shot(alice, '03-alice-in-lobby');
    await shot(bob, '04-bob-in-lobby');
  });

  test('bob receives a direct message sent over HTTP, and one from alice', async () => {
    const { alice, bob } = await aliceAndBob();
    await joinRoom(bob, 'lobby');
    await directMessages(alice, bob, { shoot: true });
    await shot(bob, '06-bob-direct-message');
  });

  test('bob loses nothing while away and across a reload, and sees nothing twice', async () => {
    const { alice, bob } = await aliceAndBob();
    await talkInLobby(alice, bob);
    await directMessages(alice, bob);

    await openConv(bob, 'room:lobby');
    await bob.goto('about:blank'); // bob closes the app

    await openConv(alice, 'room:lobby');
    await say(alice, 'Said while bob was away');
    await message(alice, 'Said while bob was away').waitFor(); // accepted: it came back to alice
    await postJSON('/v1/users/bob/messages', { text: 'Missed delivery notice' });

    await bob.goto(server.base); // same tab: the session is kept; the app resumes
    await waitLive(bob);
    await message(bob, 'Said while bob was away').waitFor();
    await openConv(bob, 'backend');
    await message(bob, 'Missed delivery notice').waitFor();

    await bob.reload();
    await waitLive(bob);
    const seen = await shown(bob);
    await openConv(bob, 'room:lobby');
    await shot(bob, '07-bob-after-reload');

    // Everything in bob's stream is shown, each message exactly once.
    const res = await fetch(`${server.base}/v1/users/bob/messages?limit=1000`);
    const { messages } = await res.json();
    const fromStream = Object.values(seen)
      .flat()
      .filter((m) => !m.key.startsWith('sent:'))
      .map((m) => m.id);
    assert.equal(new Set(fromStream).size, fromStream.length, `duplicates in ${fromStream}`);
    assert.deepEqual([...fromStream].sort(), messages.map((m) => m.id).sort());
    assert.deepEqual(
      seen['room:lobby'].map((m) => m.text),
      ['Hello from alice', 'Hi alice, bob here', 'Said while bob was away'],
    );
    assert.deepEqual(
      seen.backend.map((m) => m.text),
      ['Your order #42 has shipped', 'Missed delivery notice'],
    );
    assert.deepEqual(seen['user:alice'].map((m) => m.text), ['psst, bob']);
  });

  test('the admin page lists both users', async () => {
    await aliceAndBob();
    const admin = await openPage('admin');
    await admin.goto(`${server.base}/admin`);
    const rows = admin.locator('#node-table tbody tr');
    await rows.filter({ hasText: 'alice' }).waitFor();
    await rows.filter({ hasText: 'bob' }).waitFor();
    await admin.locator('#conn[data-state="live"]').waitFor();
    assert.notEqual(await admin.locator('#updated').textContent(), 'never');
    // The cluster view shows when the server offers it, and a quiet note when it does not.
    await admin.locator('#cluster-note:not([hidden]), #cluster-body:not([hidden])').first().waitFor();
    assert.equal(await admin.locator('#error').textContent(), '');
    await shot(admin, '08-admin', { fullPage: true });
  });

  test('the app fits a phone (in dark mode), and a new device gets the history from the server', async () => {
    // What bob's stream holds when he picks up his phone: the lobby, and the backend's word.
    const { alice, bob } = await aliceAndBob();
    await joinRoom(bob, 'lobby');
    await joinRoom(alice, 'lobby');
    await say(alice, 'Said while bob was away');
    await message(bob, 'Said while bob was away').waitFor();
    await postJSON('/v1/users/bob/messages', { text: 'Your order #42 has shipped' });

    const phone = await openPage('phone', { viewport: { width: 375, height: 740 }, isMobile: true, hasTouch: true, colorScheme: 'dark' });
    await signIn(phone, 'bob');
    // Nothing kept on this device: the app resumed from 0-0 and the server replayed it all.
    await phone.locator('nav button.conv[data-conv="room:lobby"]').waitFor();
    await phone.locator('nav button.conv[data-conv="backend"]').waitFor();
    const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.equal(overflow, 0, 'no horizontal scrolling at 375 px');
    await shot(phone, '09-phone-conversations');
    await openConv(phone, 'room:lobby');
    await message(phone, 'Said while bob was away').waitFor();
    assert.equal(await phone.locator('nav').isVisible(), false, 'one pane at a time');
    await say(phone, 'Typed on my phone');
    await message(alice, 'Typed on my phone').waitFor();
    await shot(phone, '10-phone-conversation');
    await phone.getByRole('button', { name: 'Back to conversations' }).click();
    assert.equal(await phone.locator('nav').isVisible(), true);
  });

  test('alice leaves a room, and sees a structured payload as JSON', async () => {
    const alice = await signedIn('alice', 'alice');
    await joinRoom(alice, 'scratch');
    await alice.getByRole('button', { name: 'Leave room' }).click();
    await alice.locator('nav button.conv[data-conv="room:scratch"]').waitFor({ state: 'detached' });
    const { members } = await (await fetch(`${server.base}/v1/rooms/scratch/members`)).json();
    assert.deepEqual(members, []);

    await postJSON('/v1/users/alice/messages?from=billing', { invoice: 7, status: 'paid' });
    await openConv(alice, 'user:billing');
    await alice.locator('#messages .msg pre.json', { hasText: '"invoice": 7' }).waitFor();
  });

  test('no page logged an error (a CSP violation would)', async () => {
    // The app signed in and talking, and the admin page: a CSP violation on either would
    // show up here (and after every other test, whose pages are checked the same way).
    const { alice, bob } = await aliceAndBob();
    await talkInLobby(alice, bob);
    const admin = await openPage('admin');
    await admin.goto(`${server.base}/admin`);
    await admin.locator('#node-table tbody tr').filter({ hasText: 'bob' }).waitFor();
    for (const [name, { errors }] of Object.entries(pages)) {
      assert.deepEqual(errors, [], `${name} logged errors`);
    }
  });

  test('the indicator follows the server going away and coming back', async () => {
    const alice = await signedIn('alice', 'alice');
    const { port } = server;
    await stopServer(); // SIGTERM: the server closes its sockets with 1012 and exits
    await alice.locator('#conn[data-state="reconnecting"]').waitFor();
    assert.equal(await alice.locator('#conn-text').textContent(), 'Reconnecting…');
    await shot(alice, '11-reconnecting');
    server = await startServer({ port });
    await waitLive(alice);
    await shot(alice, '12-live-again');
    // Retrying while the server was away logs failed connections, and only those.
    pages.alice.errors = pages.alice.errors.filter((e) => !failedLoad(e));
  });
});

describe('the web app in a browser, conversations', { timeout: 180_000 }, () => {
  useFreshServer({ expected: failedLoad });

  const mine = (page, text) => page.locator('#messages .msg.mine', { hasText: text });
  const texts = (page) => page.locator('#messages .msg .text').evaluateAll((ps) => ps.map((p) => p.textContent));

  async function openDirect(page, user) {
    await page.getByLabel('User to message').fill(user);
    await page.getByRole('button', { name: 'Open' }).click();
    await page.locator('#conv-title', { hasText: user }).waitFor();
  }

  test("alice's two devices show the same direct conversation, both sides", async () => {
    const alice = await signedIn('alice', 'alice');
    const bob = await signedIn('bob', 'bob');
    await openDirect(alice, 'bob');
    await say(alice, 'From alice on her laptop');
    await mine(alice, 'From alice on her laptop').waitFor();
    await bob.locator('nav button.conv[data-conv="user:alice"]').waitFor();
    await openConv(bob, 'user:alice');
    await message(bob, 'From alice on her laptop').waitFor();
    await say(bob, 'Bob answers');
    await message(alice, 'Bob answers').waitFor();

    // A second device with nothing kept: the server's history has both sides.
    const phone = await openPage('alice-phone');
    await signIn(phone, 'alice');
    await phone.locator('nav button.conv[data-conv="user:bob"]').waitFor();
    await openConv(phone, 'user:bob');
    await mine(phone, 'From alice on her laptop').waitFor();
    await message(phone, 'Bob answers').waitFor();
    // And live: what the laptop sends shows on the phone, as hers.
    await say(alice, 'Sent from the laptop, live');
    await mine(phone, 'Sent from the laptop, live').waitFor();
    await shot(phone, '22-dm-thread-on-second-device');
    for (const page of [alice, phone]) {
      await until('the laptop message on both', async () => (await texts(page)).includes('Sent from the laptop, live'));
      assert.deepEqual(await texts(page), ['From alice on her laptop', 'Bob answers', 'Sent from the laptop, live'], 'each message once, in order');
    }
  });

  test('on another node too: her own DMs, the room history and who is online', async () => {
    // A second node on the first one's (embedded) Redis: another process, another origin.
    const m = /embedded in-process Redis.*addr=(\S+)/.exec(server.log());
    assert.ok(m, `no embedded Redis address in the log:\n${server.log()}`);
    const node2 = await startServer({ args: ['--redis', `redis://${m[1]}`, '--node-id', 'e2e-node-2'] });
    try {
      const alice = await signedIn('alice', 'alice');
      await joinRoom(alice, 'lobby');
      await say(alice, 'In the lobby, on node 1');
      await openDirect(alice, 'bob');
      await say(alice, 'To bob, from node 1');
      await mine(alice, 'To bob, from node 1').waitFor();

      const bob = await openPage('bob');
      await bob.goto(node2.base);
      await bob.locator('#signin-name').fill('bob');
      await bob.getByRole('button', { name: 'Sign in' }).click();
      await waitLive(bob);
      await openConv(bob, 'user:alice');
      await message(bob, 'To bob, from node 1').waitFor();
      await say(bob, 'Bob, on node 2');
      await message(alice, 'Bob, on node 2').waitFor();

      const other = await openPage('alice-node2');
      await other.goto(node2.base);
      await other.locator('#signin-name').fill('alice');
      await other.getByRole('button', { name: 'Sign in' }).click();
      await waitLive(other);
      await openConv(other, 'user:bob');
      await mine(other, 'To bob, from node 1').waitFor();
      await message(other, 'Bob, on node 2').waitFor();
      await openConv(other, 'room:lobby');
      await mine(other, 'In the lobby, on node 1').waitFor();
      await joinRoom(bob, 'lobby');
      await message(bob, 'In the lobby, on node 1').waitFor();
      await other.locator('#member-list li[data-user="bob"][data-online="true"]').waitFor();
    } finally {
      node2.proc.kill('SIGTERM');
      await node2.exited;
    }
  });

  test('a late joiner sees the room history on opening the room', async () => {
    const alice = await signedIn('alice', 'alice');
    const bob = await signedIn('bob', 'bob');
    await joinRoom(alice, 'lobby');
    await joinRoom(bob, 'lobby');
    await say(alice, 'Hello from alice');
    await message(bob, 'Hello from alice').waitFor();
    await say(bob, 'Hi alice, bob here');
    await message(alice, 'Hi alice, bob here').waitFor();

    const carol = await signedIn('carol', 'carol');
    await joinRoom(carol, 'lobby');
    await message(carol, 'Hi alice, bob here').waitFor();
    await say(carol, 'carol joins in');
    await message(alice, 'carol joins in').waitFor();
    await message(carol, 'carol joins in').waitFor();
    assert.deepEqual(await texts(carol), ['Hello from alice', 'Hi alice, bob here', 'carol joins in']);
    await shot(carol, '23-late-joiner-history');
    // Opening it again (the history is read again) shows nothing twice.
    await carol.reload();
    await waitLive(carol);
    await openConv(carol, 'room:lobby');
    await message(carol, 'carol joins in').waitFor();
    assert.deepEqual(await texts(carol), ['Hello from alice', 'Hi alice, bob here', 'carol joins in']);
  });

  test('bob sees alice typing, and then not', async () => {
    const alice = await signedIn('alice', 'alice');
    const bob = await signedIn('bob', 'bob');
    await joinRoom(alice, 'lobby');
    await joinRoom(bob, 'lobby');
    await alice.getByLabel('Message', { exact: true }).fill('I am typing somethi');
    await bob.locator('#typing', { hasText: 'alice is typing…' }).waitFor();
    await shot(bob, '24-alice-typing');
    assert.equal(await alice.locator('#typing').textContent(), '', 'alice does not see herself');
    // She stops: the indicator goes after about 5 s without a new one.
    await until('the typing indicator to clear', async () => (await bob.locator('#typing').textContent()) === '', 9_000);
    // She types again and sends: the message clears it at once.
    await alice.getByLabel('Message', { exact: true }).fill('Done typing');
    await bob.locator('#typing', { hasText: 'alice is typing…' }).waitFor();
    await alice.keyboard.press('Enter');
    await message(bob, 'Done typing').waitFor();
    assert.equal(await bob.locator('#typing').textContent(), '');
  });

  test('the online dot of a member goes out when the tab closes', async () => {
    const alice = await signedIn('alice', 'alice');
    const bob = await signedIn('bob', 'bob');
    await joinRoom(bob, 'lobby');
    await joinRoom(alice, 'lobby');
    await alice.locator('#member-list li[data-user="bob"][data-online="true"]').waitFor();
    await alice.locator('#member-list li[data-user="alice"][data-online="true"]').waitFor();
    await shot(alice, '25-members-online');
    await bob.goto('about:blank'); // bob closes the tab
    await alice.locator('#member-list li[data-user="bob"][data-online="false"]').waitFor();
    // The session outlives the tab: bob comes back signed in.
    await bob.goto(server.base);
    await waitLive(bob);
    assert.equal(await bob.locator('#who-name').textContent(), 'bob');
    await alice.locator('#member-list li[data-user="bob"][data-online="true"]').waitFor();
    // Sign out clears it.
    await bob.getByRole('button', { name: 'Sign out' }).click();
    await bob.locator('#signin-form').waitFor();
    await bob.reload();
    await bob.locator('#signin-form').waitFor();
    assert.equal(await bob.locator('#app-view').isHidden(), true);
  });

  test('unread counts show per conversation and in the tab title', async () => {
    const alice = await signedIn('alice', 'alice');
    const bob = await signedIn('bob', 'bob');
    await joinRoom(bob, 'lobby');
    await openDirect(alice, 'bob');
    await say(alice, 'one');
    await say(alice, 'two');
    await bob.locator('nav button.conv[data-conv="user:alice"] .badge', { hasText: '2' }).waitFor();
    await until('the title to count 2', async () => (await bob.title()) === '(2) Switchboard');
    await openConv(bob, 'user:alice');
    await until('the title to clear', async () => (await bob.title()) === 'Switchboard');
  });

  test('desktop notifications: asked only on a click, then shown for messages elsewhere', async () => {
    // A page of its own kind (so a pool entry of its own) whose Notification records.
    const alice = await openPage('alice', { locale: 'en-GB' });
    await alice.addInitScript(() => {
      window.asked = 0;
      window.notes = [];
      window.Notification = class {
        static permission = 'default';
        static async requestPermission() {
          window.asked++;
          this.permission = 'granted';
          return 'granted';
        }
        constructor(title, { body, tag }) {
          window.notes.push({ title, body, tag });
        }
        close() {}
      };
    });
    await signIn(alice, 'alice');
    const bob = await signedIn('bob', 'bob');
    await joinRoom(alice, 'lobby');
    assert.equal(await alice.evaluate(() => window.asked), 0, 'not asked before the click');
    await alice.getByRole('button', { name: 'Notify me' }).click();
    await alice.getByRole('button', { name: 'Notifications on' }).waitFor();
    assert.equal(await alice.evaluate(() => window.asked), 1);
    await openDirect(bob, 'alice');
    await say(bob, 'ping');
    await until('a notification', async () => (await alice.evaluate(() => window.notes.length)) === 1);
    assert.deepEqual(await alice.evaluate(() => window.notes), [{ title: 'bob', body: 'ping', tag: 'user:bob' }]);
    // Turned off: none.
    await alice.getByRole('button', { name: 'Notifications on' }).click();
    await alice.getByRole('button', { name: 'Notify me' }).waitFor();
    await say(bob, 'pong');
    await alice.locator('nav button.conv[data-conv="user:bob"] .badge', { hasText: '2' }).waitFor();
    assert.equal(await alice.evaluate(() => window.notes.length), 1);
  });

  test('a message typed while the server is down is sent when it is back', async () => {
    const alice = await signedIn('alice', 'alice');
    const bob = await signedIn('bob', 'bob');
    await openDirect(alice, 'bob');
    await say(alice, 'Before the outage');
    await bob.locator('nav button.conv[data-conv="user:alice"]').waitFor();
    await openConv(bob, 'user:alice');
    await message(bob, 'Before the outage').waitFor();

    const { port } = server;
    await stopServer();
    await alice.locator('#conn[data-state="reconnecting"]').waitFor();
    await say(alice, 'Typed while the server was down');
    const waiting = alice.locator('#pending li', { hasText: 'Typed while the server was down' });
    await waiting.locator('.status', { hasText: 'Waiting for the connection' }).waitFor();
    await shot(alice, '26-queued-offline');
    // Longer than a request may wait for an answer (10 s): still queued, not dropped.
    await new Promise((r) => setTimeout(r, 11_000));
    assert.equal(await waiting.count(), 1);
    server = await startServer({ port });
    // After 11 s of failed attempts the backoff may wait up to 16 s before the next one.
    await alice.locator('#conn[data-state="live"]').waitFor({ timeout: 40_000 });
    await message(bob, 'Typed while the server was down').waitFor({ timeout: 40_000 });
    await mine(alice, 'Typed while the server was down').waitFor();
    await alice.locator('#pending li').waitFor({ state: 'detached' });
    for (const entry of Object.values(pages)) entry.errors = entry.errors.filter((e) => !failedLoad(e));
  });

  test('a message over the size limit is refused before sending, not cut short', async () => {
    const alice = await signedIn('alice', 'alice');
    const bob = await signedIn('bob', 'bob');
    await openDirect(alice, 'bob');
    const big = 'x'.repeat(70_000); // over the default 65536 bytes
    await alice.getByLabel('Message', { exact: true }).fill(big);
    await alice.keyboard.press('Enter');
    await alice.locator('#notice', { hasText: 'Not sent: the message is too long' }).waitFor();
    await shot(alice, '27-too-long');
    assert.equal((await alice.getByLabel('Message', { exact: true }).inputValue()).length, big.length, 'the text is kept whole');
    assert.equal(await alice.locator('#pending li').count(), 0);
    // Just under the limit goes, whole.
    const fits = 'y'.repeat(65_000);
    await alice.getByLabel('Message', { exact: true }).fill(fits);
    await alice.keyboard.press('Enter');
    await bob.locator('nav button.conv[data-conv="user:alice"]').waitFor();
    await openConv(bob, 'user:alice');
    await until('the whole message at bob', async () => (await texts(bob)).some((t) => t.length === fits.length));
    assert.equal((await texts(bob)).length, 1);
  });
});

describe('the web app in a browser, with a server limit lower than the app knows', { timeout: 120_000 }, () => {
  useFreshServer({ args: ['--max-message-bytes', '1000'], expected: failedLoad });

  test("the server's refusals reach the page as too large: an error, and a close 1009", async () => {
    const alice = await signedIn('alice', 'alice');
    const bob = await signedIn('bob', 'bob');
    await alice.getByLabel('User to message').fill('bob');
    await alice.getByRole('button', { name: 'Open' }).click();
    // Over the payload limit, within the frame limit: an error frame.
    const over = 'a'.repeat(2_000);
    await say(alice, over);
    await alice.locator('#notice', { hasText: 'too large for the server' }).waitFor();
    assert.equal((await alice.getByLabel('Message', { exact: true }).inputValue()).length, over.length);
    // Past the frame limit (1000 + 4096): the server closes with 1009, cleanly; the page
    // says too large, not "may or may not have arrived", and connects again.
    await alice.getByLabel('Message', { exact: true }).fill('');
    const huge = 'b'.repeat(10_000);
    await say(alice, huge);
    await alice.locator('#notice', { hasText: /too large for the server.*1009/ }).waitFor();
    await shot(alice, '28-too-large-1009');
    assert.equal((await alice.getByLabel('Message', { exact: true }).inputValue()).length, huge.length);
    await waitLive(alice);
    await alice.getByLabel('Message', { exact: true }).fill('');
    await say(alice, 'small enough');
    await bob.locator('nav button.conv[data-conv="user:alice"]').waitFor();
    await openConv(bob, 'user:alice');
    await message(bob, 'small enough').waitFor();
    assert.equal(await bob.locator('#messages .msg').count(), 1, 'nothing too large arrived');
  });
});

describe('the web app in a browser, with tokens and an API key', { timeout: 120_000 }, () => {
  const secret = 'e2e-secret';
  useFreshServer({ args: ['--jwt-secret', secret, '--api-key', 'e2e-api-key'], expected: failedLoad });

  // nameRefused: carol tries a dev name, which this server refuses.
  async function nameRefused(page) {
    await page.goto(server.base);
    await page.locator('#signin-name').fill('carol');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.locator('#signin-error', { hasText: 'not in development mode' }).waitFor();
  }

  // withToken: carol signs in with a token (the form already asks for one) that lets her
  // join the ops room, joins it, says something and reloads; her room and message are
  // still there.
  async function withToken(page) {
    await page.locator('#signin-token').fill(jwt(secret, 'carol', { rooms: ['ops'] }));
    await page.getByRole('button', { name: 'Sign in' }).click();
    await waitLive(page);
    assert.equal(await page.locator('#who-name').textContent(), 'carol');
    await joinRoom(page, 'ops');
    await say(page, 'Deploy at noon');
    await message(page, 'Deploy at noon').waitFor();
    // The room list comes from the server's welcome (the browser has no API key for /v1),
    // and the messages from what this browser kept plus the resume.
    await page.reload();
    await waitLive(page);
    await page.locator('nav button.conv[data-conv="room:ops"]').waitFor();
    await message(page, 'Deploy at noon').waitFor();
    assert.equal(await message(page, 'Deploy at noon').count(), 1);
  }

  test('a name is refused, and the form asks for a token', async () => {
    const page = await openPage('carol');
    await nameRefused(page);
    assert.equal(await page.locator('#mode-token').isChecked(), true);
    assert.equal(await page.locator('#signin-token').isVisible(), true);
    await shot(page, '13-token-required');
  });

  test('carol signs in with a token; her rooms and messages survive a reload', async () => {
    const page = await openPage('carol');
    await page.goto(server.base);
    await page.getByText('A token', { exact: true }).click();
    await withToken(page);
    await shot(page, '14-token-mode');
  });

  test('only refused requests were logged, no script or CSP error', async () => {
    const page = await openPage('carol');
    await nameRefused(page);
    await withToken(page);
    const unexpected = pages.carol.errors.filter((e) => !failedLoad(e));
    assert.deepEqual(unexpected, []);
  });
});

describe('the web app in a browser, with tokens: rooms, refresh and permissions', { timeout: 180_000 }, () => {
  const secret = 'e2e-secret';
  useFreshServer({ args: ['--jwt-secret', secret, '--api-key', API_KEY] });

  // signInWithToken signs page in with a pasted token.
  async function signInWithToken(page, token) {
    await page.goto(server.base);
    await page.getByText('A token', { exact: true }).click();
    await page.locator('#signin-token').fill(token);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await waitLive(page);
  }

  test('the rooms come from the welcome, with no /v1 call; rooms a backend adds appear', async () => {
    await api('PUT', '/v1/rooms/board/members/carol'); // before carol ever connects
    const page = await openPage('carol');
    const v1 = [];
    page.on('request', (r) => new URL(r.url()).pathname.startsWith('/v1/') && v1.push(r.url()));
    await signInWithToken(page, jwt(secret, 'carol', { rooms: ['ops'] }));
    await roomShown(page, 'board').waitFor();

    // Added while connected: the room's first message makes it appear.
    await api('PUT', '/v1/rooms/late/members/carol');
    await api('POST', '/v1/rooms/late/messages?from=ops-bot', { body: { text: 'Welcome to late' } });
    await roomShown(page, 'late').waitFor();
    await openConv(page, 'room:late');
    await message(page, 'Welcome to late').waitFor();

    // Added without a word: the next connection's welcome says so. Here the backend
    // disconnects carol (4001) and she connects again from the banner, without a reload.
    await api('PUT', '/v1/rooms/quiet/members/carol');
    await api('DELETE', '/v1/users/carol/connections', { status: 200 });
    await page.getByRole('button', { name: 'Connect again' }).click();
    await waitLive(page);
    await roomShown(page, 'quiet').waitFor();

    // Removed by the backend: gone with the welcome after a reload.
    await api('DELETE', '/v1/rooms/board/members/carol');
    await page.reload();
    await waitLive(page);
    await roomShown(page, 'board').waitFor({ state: 'detached' });
    const rooms = await page.locator('nav #room-list button.conv').evaluateAll((bs) => bs.map((b) => b.dataset.conv));
    assert.deepEqual(rooms.sort(), ['room:late', 'room:quiet']);
    await shot(page, '17-rooms-from-welcome');
    assert.deepEqual(v1, [], 'the app called /v1, which needs the API key');
  });

  test('with a token URL, the token is refreshed on the same socket, again and again', async () => {
    // Tokens that live 6 s: the server says expiring halfway (3 s), the app fetches a new
    // one from the token URL and sends it on the socket; the new one's expiring comes only
    // if the server took the refresh.
    const tokens = await tokenURL(secret, 'carol', { expIn: 6, claims: { rooms: ['ops'] } });
    try {
      const page = await openPage('carol');
      await page.goto(server.base);
      const watch = await watchSockets(page);
      await page.getByText('A token', { exact: true }).click();
      await page.locator('#signin-token-url').fill(tokens.url);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await waitLive(page);
      assert.equal(await page.locator('#who-name').textContent(), 'carol');
      await until('two refreshes', () => tokens.served.length >= 3, 20_000);
      await joinRoom(page, 'ops');
      await say(page, 'Still here after two refreshes');
      await message(page, 'Still here after two refreshes').waitFor();
      assert.equal(watch.sockets.length, 1, `one WebSocket, never replaced: ${watch.sockets}`);
      assert.deepEqual([...new Set(await watch.sinceLive())], ['live'], 'the connection never left live');
      const presence = await api('GET', '/v1/users/carol/presence', { status: 200 });
      assert.equal(presence.connections, 1);
      assert.equal(await page.locator('#banner').isHidden(), true);
    } finally {
      await tokens.close();
    }
  });

  test('with a pasted token about to expire, a banner asks for a new one; the socket lives on', async () => {
    const page = await openPage('carol');
    await page.goto(server.base);
    const watch = await watchSockets(page);
    await page.getByText('A token', { exact: true }).click();
    await page.locator('#signin-token').fill(jwt(secret, 'carol', { exp: Math.floor(Date.now() / 1000) + 5, rooms: ['ops'] }));
    await page.getByRole('button', { name: 'Sign in' }).click();
    await waitLive(page);
    await page.locator('#banner-text', { hasText: /Your token expires in \d+ seconds\. Paste a new one/ }).waitFor();
    await shot(page, '18-token-expiring');
    // A token for someone else is refused by the app; a good one by nobody.
    await page.getByLabel('New token').fill(jwt(secret, 'mallory'));
    await page.getByRole('button', { name: 'Use this token' }).click();
    await page.locator('#renew-error', { hasText: 'That token is for mallory, not carol.' }).waitFor();
    await page.getByLabel('New token').fill(jwt(secret, 'carol', { rooms: ['ops'] }));
    await page.getByRole('button', { name: 'Use this token' }).click();
    await page.locator('#banner').waitFor({ state: 'hidden' });
    await joinRoom(page, 'ops');
    await say(page, 'Renewed in place');
    await message(page, 'Renewed in place').waitFor();
    assert.equal(watch.sockets.length, 1);
    assert.deepEqual([...new Set(await watch.sinceLive())], ['live']);
  });

  test('a join the token does not grant is refused with a clear message, and nothing changes', async () => {
    const page = await openPage('carol');
    await signInWithToken(page, jwt(secret, 'carol', { rooms: ['ops'] }));
    await page.getByLabel('Room to join').fill('board-secret');
    await page.getByRole('button', { name: 'Join' }).click();
    await page.locator('#join-error', { hasText: 'You are not allowed to join #board-secret: your token does not grant this room' }).waitFor();
    await shot(page, '19-join-forbidden');
    assert.equal(await roomShown(page, 'board-secret').count(), 0);
    const { members } = await api('GET', '/v1/rooms/board-secret/members', { status: 200 });
    assert.deepEqual(members, []);
    assert.equal(await page.locator('#conn').getAttribute('data-state'), 'live');
  });
});

// connectHook is a site's backend answering Switchboard's connect hook: the cookie
// session=<user> is that user, allowed to join public.* rooms and to message anyone; no
// cookie is 401. It checks each request's signature and keeps the requests (calls).
async function connectHook(secret) {
  const calls = [];
  const srv = await listen((req, body, res) => {
    const ts = req.headers['x-switchboard-timestamp'] ?? '';
    const want = 'sha256=' + createHmac('sha256', secret).update(`${ts}.`).update(body).digest('hex');
    if (req.headers['x-switchboard-signature'] !== want) {
      res.writeHead(400).end();
      return;
    }
    const call = JSON.parse(body);
    calls.push(call);
    const m = /(?:^|;\s*)session=([A-Za-z0-9._@+-]+)/.exec(call.headers?.Cookie ?? '');
    if (!m) {
      res.writeHead(401).end();
      return;
    }
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ user: m[1], rooms: ['public.*'], dm: ['*'] }));
  });
  return { url: `${srv.base}/hooks/connect`, calls, close: srv.close };
}

describe('the web app in a browser, signed in by the site (a connect hook and its cookie)', { timeout: 120_000 }, () => {
  const secret = 'e2e-hook-secret';
  let hook;
  before(async () => {
    hook = await connectHook(secret);
  });
  after(() => hook?.close());
  useFreshServer({
    args: () => ['--connect-url', hook.url, '--webhook-secret', secret, '--api-key', API_KEY],
    expected: failedLoad,
  });

  // bySite opens a page whose browser holds the site's session cookie for user (cookies
  // ignore ports: the one the site set reaches Switchboard's port too), and signs in by it.
  async function bySite(name, user) {
    const page = await openPage(name);
    await page.context().addCookies([{ name: 'session', value: user, url: server.base }]);
    await page.goto(server.base);
    await page.locator('label[for="mode-site"]').click();
    await page.getByRole('button', { name: 'Sign in' }).click();
    await waitLive(page);
    await page.locator('#who-name', { hasText: user }).waitFor();
    return page;
  }

  test('erin and frank are signed in by their cookie, get their rooms, and talk', async () => {
    await api('PUT', '/v1/rooms/public.news/members/erin');
    const erin = await bySite('erin', 'erin');
    await roomShown(erin, 'public.news').waitFor();
    await shot(erin, '20-signed-in-by-site');
    const frank = await bySite('frank', 'frank');
    assert.ok(hook.calls.some((c) => /(^|; )session=erin/.test(c.headers.Cookie)), 'the hook was asked with erin\'s cookie');

    await joinRoom(erin, 'public.lobby');
    await joinRoom(frank, 'public.lobby');
    await say(erin, 'Hello from erin');
    await message(frank, 'Hello from erin').waitFor();
    await say(frank, 'Hi erin');
    await message(erin, 'Hi erin').waitFor();
    await api('POST', '/v1/users/erin/messages?from=shop', { body: { text: 'Your order shipped' } });
    await openConv(erin, 'user:shop');
    await message(erin, 'Your order shipped').waitFor();

    // A reload signs in again by the cookie, and loses nothing.
    await erin.reload();
    await waitLive(erin);
    await openConv(erin, 'room:public.lobby');
    await message(erin, 'Hi erin').waitFor();
    assert.equal(await message(erin, 'Hello from erin').count(), 1);

    // The hook's grants hold: a room outside public.* is refused, clearly.
    await erin.getByLabel('Room to join').fill('staff');
    await erin.getByRole('button', { name: 'Join' }).click();
    await erin.locator('#join-error', { hasText: 'You are not allowed to join #staff' }).waitFor();
  });

  test('without the site cookie, the app says the site did not sign you in', async () => {
    const page = await openPage('nobody');
    await page.goto(server.base);
    await page.locator('label[for="mode-site"]').click();
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.locator('#signin-error', { hasText: 'Your site did not sign you in' }).waitFor();
    await shot(page, '21-site-did-not-sign-in');
  });
});

describe('the web app in a browser, with hostile messages in the history and arriving live', { timeout: 180_000 }, () => {
  useFreshServer();
  const DEEP = 6000; // JSON.stringify throws from about 5,000 levels
  const nestedArray = (depth) => '['.repeat(depth) + '1' + ']'.repeat(depth);
  const nestedObject = (depth) => '{"a":'.repeat(depth) + '1' + '}'.repeat(depth);
  const PLACEHOLDER = 'This message could not be shown.';

  // dave returns the test's page for dave, and plant(tail, {live}), which writes a message
  // tail into dave's stream as the delivery script would, and publishes it too when live:
  // the server passes it on as it is, unvalidated.
  async function dave() {
    const m = /embedded in-process Redis.*addr=(\S+)/.exec(server.log());
    assert.ok(m, `no embedded Redis address in the log:\n${server.log()}`);
    const redis = m[1];
    let stream;
    const plant = async (tail, { live = false } = {}) => {
      stream ??= (await redisCommand(redis, 'KEYS', '*:stream:dave'))[0];
      assert.ok(stream, "dave's stream exists");
      const id = await redisCommand(redis, 'XADD', stream, '*', 'e', tail);
      if (live) await redisCommand(redis, 'PUBLISH', stream.replace(':stream:', ':user:'), `{"type":"message","id":"${id}"${tail}`);
      return id;
    };
    const page = await openPage('dave');
    const texts = () => page.locator('#messages .msg').evaluateAll((lis) => lis.map((li) => li.querySelector('.text, pre')?.textContent));
    return { page, plant, texts };
  }

  // stormInHistory: a 6,000-level message between two others is in dave's history before
  // he signs in on a new browser, which replays it all.
  async function stormInHistory({ page, plant, texts }) {
    await postJSON('/v1/users/dave/messages?from=erin', { text: 'First words' });
    await plant(`,"from":"erin","data":${nestedArray(DEEP)}}`);
    await postJSON('/v1/users/dave/messages?from=erin', { text: 'After the storm' });

    await signIn(page, 'dave'); // a new browser: the server replays the whole history
    await openConv(page, 'user:erin');
    await message(page, 'After the storm').waitFor();
    assert.deepEqual(await texts(), ['First words', PLACEHOLDER, 'After the storm']);
  }

  // stormLive: two hostile messages arrive live, then good ones; dave answers, and joins a
  // room where all is quiet.
  async function stormLive({ page, plant, texts }) {
    await plant(`,"from":"erin","data":{"text":${nestedObject(DEEP)}}}`, { live: true });
    await plant(`,"from":"erin","data_b64":{"not":"a string"}}`, { live: true });
    await postJSON('/v1/users/dave/messages?from=erin', { text: 'Still here' });
    await message(page, 'Still here').waitFor();
    await say(page, 'Reply from dave');
    await page.locator('#messages .msg.mine', { hasText: 'Reply from dave' }).waitFor();
    assert.deepEqual(await texts(), ['First words', PLACEHOLDER, 'After the storm', PLACEHOLDER, PLACEHOLDER, 'Still here', 'Reply from dave']);
    // The other conversations still open and render.
    await joinRoom(page, 'calm');
    await say(page, 'All quiet here');
    await message(page, 'All quiet here').waitFor();
  }

  // afterReload: everything is still there after a reload, and messages keep arriving.
  async function afterReload({ page, texts }) {
    await page.reload();
    await waitLive(page);
    await openConv(page, 'user:erin');
    await message(page, 'Reply from dave').waitFor();
    assert.deepEqual(await texts(), ['First words', PLACEHOLDER, 'After the storm', PLACEHOLDER, PLACEHOLDER, 'Still here', 'Reply from dave']);
    await postJSON('/v1/users/dave/messages?from=erin', { text: 'After the reload' });
    await message(page, 'After the reload').waitFor();
    await openConv(page, 'room:calm');
    await message(page, 'All quiet here').waitFor();
  }

  test('a message nested 6,000 levels already in the history does not blank the conversation', async () => {
    const d = await dave();
    await stormInHistory(d);
    await shot(d.page, '15-hostile-history');
  });

  test('hostile messages arriving live show as placeholders and the conversation goes on', async () => {
    const d = await dave();
    await stormInHistory(d);
    await stormLive(d);
  });

  test('after a reload everything is still there, and messages keep arriving', async () => {
    const d = await dave();
    await stormInHistory(d);
    await stormLive(d);
    await afterReload(d);
    await shot(d.page, '16-hostile-after-reload');
  });

  test('no script error was thrown on the way', async () => {
    const d = await dave();
    await stormInHistory(d);
    await stormLive(d);
    await afterReload(d);
    assert.deepEqual(pages.dave.errors, []);
  });
});
