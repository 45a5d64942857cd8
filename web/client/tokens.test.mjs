// Unit tests of how the client says who it is (web/static/assets/switchboard.js): getToken
// on connect, refreshing on the same socket when the server says the token is expiring,
// close 4003, connect-hook mode, the rooms of the welcome, and refusals by permission. Run
// by Node's test runner against the fakes of fakes.mjs.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';

import { SwitchboardError, State } from '../static/assets/switchboard.js';
import { flush, memoryStorage, setup, token } from './fakes.mjs';

// tokens returns a getToken that hands out token(sub) one after another and counts calls;
// fail(n) makes the next n calls throw.
function tokens(sub = 'carol') {
  const given = [];
  let failures = 0;
  const getToken = async () => {
    if (failures > 0) {
      failures--;
      throw new Error('token endpoint answered 502');
    }
    const t = token(sub, 3600, { n: given.length + 1 });
    given.push(t);
    return t;
  };
  return { getToken, given, fail: (n) => (failures = n) };
}

describe('getToken', () => {
  test('is asked before connecting; the token goes in the URL and its sub names the storage', async () => {
    const t = tokens('carol');
    const storage = memoryStorage({ 'switchboard:last-id:carol': '7-7' });
    const { sb, net } = setup({ getToken: t.getToken, user: undefined, storage });
    sb.connect();
    assert.equal(net.sockets.length, 0, 'no socket before the token');
    await flush();
    const url = net.last().url;
    assert.equal(url.searchParams.get('token'), t.given[0]);
    assert.equal(url.searchParams.has('user'), false);
    assert.equal(url.searchParams.get('since'), '7-7');
    assert.equal(sb.user, 'carol');
  });

  test('a failing getToken is retried with the backoff and reported, never a silent stall', async () => {
    const t = tokens();
    t.fail(3);
    const { sb, net, clock, states, tokenErrors } = setup({ getToken: t.getToken, user: undefined, random: () => 1 });
    sb.connect();
    for (let i = 0; i < 3; i++) {
      await flush();
      assert.equal(tokenErrors.length, i + 1);
      assert.equal(tokenErrors[i].code, 'token_failed');
      assert.equal(tokenErrors[i].phase, 'connect');
      assert.match(tokenErrors[i].message, /502/);
      const s = states.at(-1);
      assert.equal(s.state, State.RECONNECTING);
      assert.equal(s.delay, 500 * 2 ** i);
      assert.match(s.reason, /getting a token failed/);
      assert.equal(net.sockets.length, 0);
      clock.tick(s.delay);
    }
    await flush();
    assert.equal(net.sockets.length, 1);
    net.last().welcome({ user: 'carol' });
    assert.equal(sb.state, State.LIVE);
  });

  test('a getToken that gives no string is a failure, not a connection with "undefined"', async () => {
    const { sb, net, tokenErrors } = setup({ getToken: async () => undefined, user: undefined });
    sb.connect();
    await flush();
    assert.equal(net.sockets.length, 0);
    assert.equal(tokenErrors[0].code, 'token_failed');
    assert.match(tokenErrors[0].message, /undefined, not a token/);
  });

  test('the token option, as a string, still connects as it did', () => {
    const t = token('dora');
    const { sb, net } = setup({ token: t, user: undefined });
    sb.connect();
    assert.equal(net.last().url.searchParams.get('token'), t);
    assert.equal(sb.user, 'dora');
  });
});

describe('expiring and refresh', () => {
  // live returns a client connected with getToken and welcomed.
  async function live(options = {}) {
    const t = tokens('carol');
    const s = setup({ getToken: t.getToken, user: undefined, ...options });
    const refreshed = [];
    const expiring = [];
    s.sb.on('refreshed', (a) => refreshed.push(a));
    s.sb.on('expiring', (e) => expiring.push(e));
    s.sb.connect();
    await flush();
    s.net.last().welcome({ user: 'carol' });
    return { ...s, t, refreshed, expiring };
  }

  test('expiring is answered with a fresh token on the same socket; the ack keeps it live', async () => {
    const { sb, net, t, refreshed, expiring, states } = await live();
    const ws = net.last();
    ws.frame({ type: 'expiring', in: 30 });
    assert.deepEqual(expiring, [{ in: 30, refreshing: true }]);
    await flush();
    assert.equal(t.given.length, 2);
    const frame = ws.sent.at(-1);
    assert.equal(frame.type, 'refresh');
    assert.equal(frame.token, t.given[1]);
    assert.ok(frame.ref);
    ws.frame({ type: 'ack', ref: frame.ref });
    await flush();
    assert.equal(refreshed.length, 1);
    assert.equal(net.sockets.length, 1, 'no reconnect');
    assert.equal(ws.closed, null);
    assert.equal(sb.state, State.LIVE);
    assert.deepEqual(states.map((s) => s.state), [State.CONNECTING, State.LIVE]);
  });

  test('a refused refresh is reported and tried again, with a new token, on the same socket', async () => {
    const { net, clock, t, refreshed, tokenErrors } = await live({ random: () => 1 });
    const ws = net.last();
    ws.frame({ type: 'expiring', in: 30 });
    await flush();
    ws.frame({ type: 'error', ref: ws.sent.at(-1).ref, code: 'forbidden', message: 'refresh refused: token expired' });
    await flush();
    assert.equal(tokenErrors.length, 1);
    assert.equal(tokenErrors[0].code, 'forbidden');
    assert.equal(tokenErrors[0].phase, 'refresh');
    assert.match(tokenErrors[0].message, /refresh refused/);
    clock.tick(499);
    await flush();
    assert.equal(t.given.length, 2, 'not before the backoff');
    clock.tick(1);
    await flush();
    assert.equal(t.given.length, 3);
    const again = ws.sent.at(-1);
    assert.equal(again.token, t.given[2]);
    ws.frame({ type: 'ack', ref: again.ref });
    await flush();
    assert.equal(refreshed.length, 1);
    assert.equal(net.sockets.length, 1);
  });

  test('a getToken failing at refresh time is reported and retried', async () => {
    const { net, clock, t, tokenErrors } = await live({ random: () => 1 });
    t.fail(1);
    net.last().frame({ type: 'expiring', in: 30 });
    await flush();
    assert.equal(tokenErrors[0].code, 'token_failed');
    assert.equal(tokenErrors[0].phase, 'refresh');
    clock.tick(500);
    await flush();
    assert.equal(net.last().sent.at(-1).type, 'refresh');
  });

  test('the retries stop with the socket: the reconnect gets a token of its own', async () => {
    const { net, clock, t } = await live({ random: () => 1 });
    const ws = net.last();
    ws.frame({ type: 'expiring', in: 30 });
    await flush();
    ws.frame({ type: 'error', ref: ws.sent.at(-1).ref, code: 'forbidden', message: 'no' });
    await flush();
    ws.serverClose(1006);
    clock.tick(500); // both the refresh retry and the reconnect were due by now
    await flush();
    assert.equal(net.sockets.length, 2);
    assert.equal(ws.sent.filter((f) => f.type === 'refresh').length, 1, 'nothing more on the old socket');
    assert.equal(net.last().url.searchParams.get('token'), t.given.at(-1));
  });

  test('with a token string, expiring is announced and refresh(newToken) sends it on the same socket', async () => {
    const old = token('dora', 20);
    const { sb, net } = setup({ token: old, user: undefined });
    const expiring = [];
    sb.on('expiring', (e) => expiring.push(e));
    sb.connect();
    const ws = net.last();
    ws.welcome({ user: 'dora' });
    ws.frame({ type: 'expiring', in: 10 });
    assert.deepEqual(expiring, [{ in: 10, refreshing: false }]);
    assert.equal(ws.sent.length, 0, 'nothing to refresh with');
    const fresh = token('dora', 3600);
    const done = sb.refresh(fresh);
    const frame = ws.sent.at(-1);
    assert.deepEqual({ type: frame.type, token: frame.token }, { type: 'refresh', token: fresh });
    ws.frame({ type: 'ack', ref: frame.ref });
    assert.equal((await done).type, 'ack');
    assert.equal(net.sockets.length, 1);
  });

  test('refresh(token) rejects with forbidden when the server refuses it', async () => {
    const { sb, net } = setup({ token: token('dora'), user: undefined });
    sb.connect();
    net.last().welcome({ user: 'dora' });
    const done = sb.refresh(token('mallory'));
    net.last().frame({ type: 'error', ref: net.last().sent.at(-1).ref, code: 'forbidden', message: 'the token is for another user' });
    await assert.rejects(done, (err) => err instanceof SwitchboardError && err.code === 'forbidden' && /another user/.test(err.message));
  });
});

describe('close 4003', () => {
  test('reconnects at once with a fresh token and since: nothing is lost', async () => {
    const t = tokens('carol');
    const { sb, net, clock, states } = setup({ getToken: t.getToken, user: undefined });
    sb.connect();
    await flush();
    net.last().welcome({ user: 'carol' });
    net.last().frame({ type: 'message', id: '900-3', data: 'x' });
    net.last().serverClose(4003, 'token expired; reconnect with a fresh token');
    assert.equal(states.at(-1).state, State.RECONNECTING);
    assert.equal(states.at(-1).delay, 0);
    assert.equal(states.at(-1).closeCode, 4003);
    clock.tick(0);
    await flush();
    assert.equal(net.sockets.length, 2);
    const url = net.last().url;
    assert.equal(t.given.length, 2);
    assert.equal(url.searchParams.get('token'), t.given[1]);
    assert.equal(url.searchParams.get('since'), '900-3');
    net.last().welcome({ user: 'carol', recovered: true });
    assert.equal(sb.state, State.LIVE);
  });

  test('holding only the expired token string, the client stops with token_expired', () => {
    const { sb, net, clock, states } = setup({ token: token('dora', -5), user: undefined });
    sb.connect();
    net.last().welcome({ user: 'dora' });
    net.last().serverClose(4003);
    assert.equal(states.at(-1).state, State.STOPPED);
    assert.equal(states.at(-1).reason.code, 'token_expired');
    assert.equal(states.at(-1).reason.closeCode, 4003);
    clock.tick(60_000);
    assert.equal(net.sockets.length, 1);
  });

  test('after token_expired, refresh(newToken) and connect() go on from where it stopped', async () => {
    const { sb, net } = setup({ token: token('dora', -5), user: undefined });
    sb.connect();
    net.last().welcome({ user: 'dora' });
    net.last().frame({ type: 'message', id: '150-0', data: 1 });
    net.last().serverClose(4003);
    const fresh = token('dora');
    assert.equal(await sb.refresh(fresh), null, 'not live: kept for the next connection');
    sb.connect();
    assert.equal(net.last().url.searchParams.get('token'), fresh);
    assert.equal(net.last().url.searchParams.get('since'), '150-0');
  });
});

describe('connect-hook mode', () => {
  test('with neither token nor user, connects with neither; the welcome says who we are', () => {
    const storage = memoryStorage();
    const { sb, net } = setup({ user: undefined, storage });
    sb.connect();
    const url = net.last().url;
    assert.equal(url.searchParams.has('token'), false);
    assert.equal(url.searchParams.has('user'), false);
    assert.equal(url.searchParams.has('since'), false);
    assert.equal(sb.user, null);
    net.last().welcome({ user: 'erin', last_id: '70-0' });
    assert.equal(sb.user, 'erin');
    assert.equal(sb.state, State.LIVE);
    net.last().frame({ type: 'message', id: '70-1', data: 1 });
    assert.equal(storage.getItem('switchboard:last-id:erin'), '70-1');

    // The next page load knows whose position to resume from before the welcome.
    const again = setup({ user: undefined, storage });
    again.sb.connect();
    assert.equal(again.net.last().url.searchParams.get('since'), '70-1');
    assert.equal(again.sb.user, 'erin');
  });

  test('when the welcome names someone else than expected, it resumes at once from their position', () => {
    const storage = memoryStorage({ 'switchboard:last-id:alice': '10-0', 'switchboard:last-id:bob': '20-0' });
    const { sb, net, states } = setup({ connectHook: true, user: 'alice', storage });
    sb.connect();
    assert.equal(net.last().url.searchParams.has('user'), false, 'user only names the storage key');
    assert.equal(net.last().url.searchParams.get('since'), '10-0');
    net.last().welcome({ user: 'bob' });
    assert.equal(net.sockets.length, 2);
    assert.equal(net.sockets[0].closed.code, 1000);
    assert.equal(net.last().url.searchParams.get('since'), '20-0');
    assert.ok(!states.some((s) => s.state === State.LIVE), 'not live on the wrong position');
    net.last().welcome({ user: 'bob' });
    assert.equal(sb.state, State.LIVE);
    assert.equal(sb.user, 'bob');
    assert.equal(net.sockets.length, 2);
  });

  test('close 4003 (the hook answer expired) reconnects at once: the cookie is asked again', () => {
    const { sb, net, clock, states } = setup({ user: undefined });
    sb.connect();
    net.last().welcome({ user: 'erin' });
    net.last().serverClose(4003);
    assert.equal(states.at(-1).delay, 0);
    clock.tick(0);
    assert.equal(net.sockets.length, 2);
    assert.equal(net.last().url.searchParams.has('token'), false);
  });
});

describe('rooms of the welcome', () => {
  test('are exposed, kept up to date, and replaced by the next welcome', async () => {
    const { sb, net, clock } = setup();
    const seen = [];
    sb.on('rooms', (r) => seen.push(r));
    assert.equal(sb.rooms, null);
    sb.connect();
    net.last().welcome({ rooms: ['ops', 'lobby'] });
    assert.deepEqual(sb.rooms, ['lobby', 'ops']);
    const join = sb.join('news');
    net.last().frame({ type: 'ack', ref: net.last().sent.at(-1).ref });
    await join;
    const leave = sb.leave('ops');
    net.last().frame({ type: 'ack', ref: net.last().sent.at(-1).ref });
    await leave;
    // A backend added the user to a room: its first message says so.
    net.last().frame({ type: 'message', id: '200-0', room: 'added', data: 1 });
    net.last().frame({ type: 'message', id: '200-1', room: 'added', data: 2 });
    assert.deepEqual(sb.rooms, ['added', 'lobby', 'news']);
    net.last().serverClose(1012);
    clock.tick(0);
    net.last().welcome({ rooms: ['lobby', 'backend-made'] });
    assert.deepEqual(seen, [['lobby', 'ops'], ['lobby', 'news', 'ops'], ['lobby', 'news'], ['added', 'lobby', 'news'], ['backend-made', 'lobby']]);
  });

  test('a welcome without rooms (an older server) leaves them unknown', () => {
    const { sb, net } = setup();
    sb.connect();
    net.last().welcome();
    assert.equal(sb.rooms, null);
  });
});

describe('refusals by permission', () => {
  for (const [request, code, message] of [
    [(sb) => sb.join('board-secret'), 'forbidden', 'your token does not grant this room (its rooms claim), and you are not a member'],
    [(sb) => sb.send({ to: 'ceo', data: 1 }), 'forbidden', 'your token does not grant direct messages to this user (its dm claim)'],
    [(sb) => sb.send({ room: 'ops', data: 1 }), 'not_member', 'join the room first'],
    [(sb) => sb.join('team.red'), 'unavailable', 'the authorize hook did not answer'],
  ]) {
    test(`${code} rejects the request with an Error carrying the code`, async () => {
      const { sb, net, errors } = setup();
      sb.connect();
      net.last().welcome({ rooms: [] });
      const p = request(sb);
      const sent = net.last().sent.at(-1);
      net.last().frame({ type: 'error', ref: sent.ref, code, message });
      await assert.rejects(p, (err) => err instanceof Error && err.code === code && err.message === message && err.request === sent.type);
      assert.deepEqual(sb.rooms, [], 'a refused join is no membership');
      assert.equal(errors.length, 0);
      assert.equal(sb.state, State.LIVE);
    });
  }
});
