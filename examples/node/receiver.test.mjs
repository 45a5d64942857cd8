// Tests of receiver.mjs: node --test examples/node/
// Each request is signed as Switchboard signs it, then broken in every way a forger could.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import crypto from 'node:crypto';
import { createHandler, verifySignature, signSession, parseSession, deriveSessionKey } from './receiver.mjs';

const SECRET = 'test-webhook-secret';
const NOW = 1_750_000_000; // the receiver's clock, in seconds
const key = deriveSessionKey(SECRET);
const logs = [];
let base;
let server;

before(async () => {
  server = http.createServer(createHandler({ secret: SECRET, now: () => NOW * 1000, log: (o) => logs.push(o) }));
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${server.address().port}`;
});

after(() => {
  server.closeAllConnections();
  server.close();
});

const sign = (secret, ts, body) =>
  'sha256=' + crypto.createHmac('sha256', secret).update(`${ts}.${body}`).digest('hex');

/** post sends body (a string or an object) to path, signed unless the options say otherwise. */
async function post(path, body, { secret = SECRET, ts = NOW, headers = {} } = {}) {
  const raw = typeof body === 'string' ? body : JSON.stringify(body);
  const res = await fetch(base + path, {
    method: 'POST',
    headers: {
      'Content-Type': 'application/json',
      'X-Switchboard-Timestamp': String(ts),
      'X-Switchboard-Signature': sign(secret, ts, raw),
      ...headers,
    },
    body: raw,
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

const countLogs = (msg) => logs.filter((l) => l.msg === msg).length;
const cookie = (user, exp = NOW + 3600) => `session=${signSession(key, user, exp)}`;
const connectBody = (cookieHeader) => ({ headers: { Cookie: cookieHeader, 'User-Agent': 't' }, query: {}, remote_addr: '192.0.2.1' });

const valid = {
  '/hooks/connect': () => connectBody(cookie('alice')),
  '/hooks/authorize': () => ({ action: 'join', user: 'alice', room: 'team.red.general' }),
  '/hooks/rpc': () => ({ user: 'alice', method: 'whoami', data: null, node: 'n1' }),
  '/events': () => ({ events: [{ id: `ev-${Math.random()}`, type: 'user.online', user: 'alice', node: 'n1', time: '2025-06-15T00:00:00.000Z' }] }),
};

test('verifySignature accepts what Go\'s events.Sign produces', () => {
  // Computed with events.Sign("S", "1700000000", []byte(`{"events":[]}`)).
  const headers = {
    'x-switchboard-timestamp': '1700000000',
    'x-switchboard-signature': 'sha256=d0a67611214cd7b50fb43a743790f49d703f5f6111ffbd05e4ee024fadd36015',
  };
  assert.equal(verifySignature('S', headers, Buffer.from('{"events":[]}'), 1700000000), true);
  assert.equal(verifySignature('S', headers, Buffer.from('{"events":[ ]}'), 1700000000), false);
  assert.equal(verifySignature('T', headers, Buffer.from('{"events":[]}'), 1700000000), false);
});

test('a session cookie of the Go example is valid here', () => {
  // Computed with the Go example's signSession(deriveSessionKey("S"), "alice", 1700003600).
  const v = 'alice.1700003600.f0512b0ffa33043ece0c80b91a02882de7948e10811a78267d2957f591bb4ee6';
  assert.deepEqual(parseSession(deriveSessionKey('S'), v, 1700000000), { user: 'alice', exp: 1700003600 });
  assert.equal(parseSession(deriveSessionKey('S'), v, 1700003600), null, 'expired at its expiry');
});

test('every endpoint answers a correctly signed request', async () => {
  const want = { '/hooks/connect': 200, '/hooks/authorize': 200, '/hooks/rpc': 200, '/events': 204 };
  for (const [path, body] of Object.entries(valid)) {
    assert.equal((await post(path, body())).status, want[path], path);
  }
});

test('badly signed requests are refused with 401 and not acted on', async () => {
  const breakers = {
    'no signature': { headers: { 'X-Switchboard-Signature': '' } },
    'another secret': { secret: 'another secret' },
    'a stale timestamp': { ts: NOW - 301 },
    'a timestamp from the future': { ts: NOW + 301 },
    'a timestamp that is not a number': { ts: 'soon' },
    'a signature for another timestamp': { headers: { 'X-Switchboard-Timestamp': String(NOW - 1) } },
    'a signature without sha256=': { headers: { 'X-Switchboard-Signature': sign(SECRET, NOW, '{}').slice(7) } },
  };
  const before = ['connect', 'authorize', 'rpc', 'event'].map(countLogs);
  for (const [name, opts] of Object.entries(breakers)) {
    for (const [path, body] of Object.entries(valid)) {
      const res = await post(path, body(), opts);
      assert.equal(res.status, 401, `${name}: ${path}`);
      assert.equal(res.body.error.code, 'bad_signature');
    }
  }
  assert.deepEqual(['connect', 'authorize', 'rpc', 'event'].map(countLogs), before, 'nothing was handled');
});

test('a body changed after signing is refused', async () => {
  const raw = JSON.stringify(valid['/hooks/authorize']());
  const res = await fetch(base + '/hooks/authorize', {
    method: 'POST',
    headers: { 'X-Switchboard-Timestamp': String(NOW), 'X-Switchboard-Signature': sign(SECRET, NOW, raw) },
    body: raw.replace('alice', 'carol'),
  });
  assert.equal(res.status, 401);
});

test('a timestamp within five minutes is accepted', async () => {
  for (const ts of [NOW - 299, NOW + 299]) {
    assert.equal((await post('/hooks/authorize', valid['/hooks/authorize'](), { ts })).status, 200);
  }
});

test('connect answers the session\'s user and grants', async () => {
  const res = await post('/hooks/connect', connectBody(`theme=dark; ${cookie('alice')}; lang=en`));
  assert.equal(res.status, 200);
  assert.deepEqual(res.body, { user: 'alice', rooms: ['public.*'], dm: ['support'], expires_at: NOW + 3600 });
});

test('connect refuses a missing, tampered or expired session with 401', async () => {
  const good = signSession(key, 'alice', NOW + 3600);
  const [user, exp, mac] = good.split('.');
  const cases = {
    'no cookie': '',
    'other cookies only': 'theme=dark',
    'the user changed': `session=bob.${exp}.${mac}`,
    'the expiry pushed later': `session=${user}.${Number(exp) + 3600}.${mac}`,
    'a digit of the signature changed': `session=${good.slice(0, -1)}${good.endsWith('0') ? '1' : '0'}`,
    'no signature': `session=${user}.${exp}`,
    'signed with another key': `session=${signSession(Buffer.from('k'), 'alice', NOW + 3600)}`,
    'expired': cookie('alice', NOW),
  };
  for (const [name, header] of Object.entries(cases)) {
    const res = await post('/hooks/connect', connectBody(header));
    assert.equal(res.status, 401, name);
    assert.equal(res.body.user, undefined, name);
  }
});

test('authorize applies the team rules with cache_s', async () => {
  const cases = [
    [{ action: 'join', user: 'alice', room: 'team.red.general' }, true],
    [{ action: 'join', user: 'carol', room: 'team.red.general' }, false],
    [{ action: 'join', user: 'alice', room: 'team.red' }, false],
    [{ action: 'join', user: 'alice', room: 'team.toString.x' }, false],
    [{ action: 'join', user: 'alice', room: 'admins' }, false],
    [{ action: 'send', user: 'alice', to: 'bob' }, true],
    [{ action: 'send', user: 'carol', to: 'bob' }, true],
    [{ action: 'send', user: 'alice', to: 'carol' }, false],
  ];
  for (const [req, allow] of cases) {
    const res = await post('/hooks/authorize', req);
    assert.equal(res.status, 200, JSON.stringify(req));
    assert.deepEqual(res.body, { allow, cache_s: 60 }, JSON.stringify(req));
  }
  for (const bad of [{ action: 'delete', user: 'alice', room: 'x' }, { action: 'join', room: 'x' }, { action: 'send', user: 'alice' }, '[]', '{"action":']) {
    assert.equal((await post('/hooks/authorize', bad)).status, 400, JSON.stringify(bad));
  }
});

test('rpc methods answer, and refuse with 4xx', async () => {
  const call = (method, data, user = 'alice') => post('/hooks/rpc', { user, method, data, node: 'n1' });
  assert.deepEqual(await call('echo', { a: [1, 'x'] }), { status: 200, body: { a: [1, 'x'] } });
  assert.deepEqual(await call('echo', null), { status: 200, body: null });
  assert.deepEqual(await call('whoami', null, 'bob'), { status: 200, body: { user: 'bob', node: 'n1', teams: ['blue', 'red'] } });
  assert.deepEqual(await call('orders.get', { id: 'A-1001' }), {
    status: 200, body: { id: 'A-1001', owner: 'alice', item: 'keyboard', status: 'shipped' },
  });
  for (const id of ['Z-9', 'B-2001', 'toString']) {
    const res = await call('orders.get', { id });
    assert.equal(res.status, 404, id);
    assert.equal(res.body.error.code, 'not_found', id);
  }
  assert.equal((await call('orders.get', {})).status, 400);
  const unknown = await call('orders.delete', { id: 'A-1001' });
  assert.equal(unknown.status, 404);
  assert.equal(unknown.body.error.code, 'unknown_method');
});

test('events are handled once by id', async () => {
  const ev = (id) => ({ id, type: 'room.joined', user: 'alice', node: 'n1', time: '2025-06-15T00:00:00.000Z', room: 'public.lobby', by: 'client' });
  const handled = () => logs.filter((l) => l.msg === 'event' && l.id.startsWith('dd-')).map((l) => l.id);
  assert.equal((await post('/events', { events: [ev('dd-1'), ev('dd-2')] })).status, 204);
  assert.equal((await post('/events', { events: [ev('dd-2'), ev('dd-3'), ev('dd-2')] })).status, 204);
  assert.deepEqual(handled(), ['dd-1', 'dd-2', 'dd-3']);
  assert.equal((await post('/events', { events: 'no' })).status, 400);
});

test('a body over the limit is refused with 413', async () => {
  const res = await post('/hooks/rpc', { user: 'alice', method: 'echo', data: 'x'.repeat(1 << 20), node: 'n1' });
  assert.equal(res.status, 413);
  assert.equal(res.body.error.code, 'too_large');
});

test('unknown paths and methods are refused', async () => {
  assert.equal((await fetch(base + '/hooks/connect')).status, 405);
  assert.equal((await post('/nowhere', {})).status, 404);
});

test('createHandler refuses to run without a secret', () => {
  assert.throws(() => createHandler({}), /secret/);
});
