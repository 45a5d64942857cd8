// Unit tests of the browser client library (web/static/assets/switchboard.js), run by Node's
// built-in test runner against a fake WebSocket, a fake clock and an in-memory storage.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';

import { Switchboard, SwitchboardError, State, compareIds, isMessageId, tokenSubject } from '../static/assets/switchboard.js';
import { memoryStorage, flush, setup } from './fakes.mjs';

describe('message ids', () => {
  test('compare numerically, not as strings', () => {
    const cases = [
      ['1000-0', '999-0', 1],
      ['5-10', '5-9', 1],
      ['5-9', '5-10', -1],
      ['1732483200000-3', '1732483200000-3', 0],
      ['7', '7-0', 0],
      ['007-1', '7-1', 0],
      ['18446744073709551615-0', '18446744073709551614-9', 1], // past Number precision
    ];
    for (const [a, b, want] of cases) assert.equal(Math.sign(compareIds(a, b)), want, `${a} vs ${b}`);
  });

  test('reject what is not an id', () => {
    assert.throws(() => compareIds('abc', '1-0'), TypeError);
    for (const bad of ['', '1-', '-1', '1-2-3', ' 1-0', null, 12]) assert.equal(isMessageId(bad), false, String(bad));
  });

  test('tokenSubject reads the sub claim', () => {
    const payload = Buffer.from(JSON.stringify({ sub: 'carol', exp: 1 })).toString('base64url');
    assert.equal(tokenSubject(`h.${payload}.sig`), 'carol');
    assert.equal(tokenSubject('not a token'), null);
  });
});

describe('connecting', () => {
  test('goes connecting then live, as the dev user, and announces the welcome', async () => {
    const { sb, net, states } = setup();
    let welcome;
    sb.on('welcome', (w) => (welcome = w));
    const ready = sb.ready();
    sb.connect();
    assert.equal(net.last().url.searchParams.get('user'), 'bob');
    assert.equal(net.last().url.searchParams.has('since'), false);
    net.last().welcome();
    assert.deepEqual(states.map((s) => s.state), [State.CONNECTING, State.LIVE]);
    assert.equal((await ready).node, 'n1');
    assert.equal(welcome.user, 'bob');
    assert.equal(sb.node, 'n1');
  });

  test('sends a token instead of a user when given one', () => {
    const s = setup({ token: 'abc.def.ghi', user: undefined });
    s.sb.connect();
    assert.equal(s.net.last().url.searchParams.get('token'), 'abc.def.ghi');
    assert.equal(s.net.last().url.searchParams.has('user'), false);
  });

  test('asks a token function again before every attempt', async () => {
    let calls = 0;
    const s = setup({ token: async () => `t${++calls}`, user: undefined });
    s.sb.connect();
    await flush();
    assert.equal(s.net.last().url.searchParams.get('token'), 't1');
    s.net.last().welcome();
    s.net.last().serverClose(1006);
    s.clock.tick(60_000);
    await flush();
    assert.equal(s.net.last().url.searchParams.get('token'), 't2');
  });

  test('refuses a getToken or a token of the wrong kind', () => {
    assert.throws(() => new Switchboard({ url: 'ws://x/ws', WebSocket: class {}, getToken: 'abc' }), TypeError);
    assert.throws(() => new Switchboard({ url: 'ws://x/ws', WebSocket: class {}, token: 42 }), TypeError);
  });

  test('takes an http URL for the ws one, and refuses what is not a URL', () => {
    const s = setup({ url: 'https://switchboard.test/ws' });
    s.sb.connect();
    assert.equal(s.net.last().url.protocol, 'wss:');
    assert.throws(() => setup({ url: '/ws' }), TypeError); // relative, with no page to resolve it
  });
});

describe('resume', () => {
  test('starts after the stored last id, kept per user', () => {
    const storage = memoryStorage({ 'switchboard:last-id:bob': '1700000000000-4', 'switchboard:last-id:alice': '9-9' });
    const { sb, net } = setup({ storage });
    sb.connect();
    assert.equal(net.last().url.searchParams.get('since'), '1700000000000-4');
  });

  test('ignores a stored value that is not an id', () => {
    const { sb, net } = setup({ storage: memoryStorage({ 'switchboard:last-id:bob': 'garbage' }) });
    sb.connect();
    assert.equal(net.last().url.searchParams.has('since'), false);
  });

  test('keys storage by the token subject in token mode', () => {
    const payload = Buffer.from(JSON.stringify({ sub: 'carol' })).toString('base64url');
    const storage = memoryStorage({ 'switchboard:last-id:carol': '5-5' });
    const { sb, net } = setup({ storage, token: `h.${payload}.s`, user: undefined });
    sb.connect();
    assert.equal(net.last().url.searchParams.get('since'), '5-5');
  });

  test('an explicit since wins over storage', () => {
    const { sb, net } = setup({ since: '0-0', storage: memoryStorage({ 'switchboard:last-id:bob': '5-5' }) });
    sb.connect();
    assert.equal(net.last().url.searchParams.get('since'), '0-0');
  });

  test('with nothing seen, resumes from the position the welcome gave', () => {
    const { sb, net, clock, storage } = setup();
    sb.connect();
    net.last().welcome({ last_id: '1700000000000-7' });
    assert.equal(storage.getItem('switchboard:last-id:bob'), '1700000000000-7');
    net.last().serverClose(1006);
    clock.tick(60_000);
    assert.equal(net.last().url.searchParams.get('since'), '1700000000000-7');
  });

  test('resumes after the last message delivered, and stores it', () => {
    const { sb, net, clock, storage, messages } = setup();
    sb.connect();
    net.last().welcome();
    net.last().frame({ type: 'message', id: '200-0', from: 'alice', data: { text: 'one' } });
    net.last().frame({ type: 'message', id: '200-1', from: 'alice', room: 'lobby', data: { text: 'two' } });
    assert.equal(messages.length, 2);
    assert.equal(sb.lastId, '200-1');
    assert.equal(storage.getItem('switchboard:last-id:bob'), '200-1');
    net.last().serverClose(1006);
    clock.tick(60_000);
    assert.equal(net.last().url.searchParams.get('since'), '200-1');
  });

  test('drops messages not newer than the last seen, comparing ids as numbers', () => {
    const { sb, net, messages } = setup();
    sb.connect();
    net.last().welcome({ last_id: '0-0' });
    for (const id of ['999-0', '999-0', '1000-0', '999-5', '1000-0', '1000-10', '1000-9', '1000-11']) {
      net.last().frame({ type: 'message', id, data: id });
    }
    assert.deepEqual(messages.map((m) => m.id), ['999-0', '1000-0', '1000-10', '1000-11']);
  });

  test('drops the overlap of a replay after a reconnect', () => {
    const { sb, net, clock, messages } = setup();
    sb.connect();
    net.last().welcome();
    net.last().frame({ type: 'message', id: '300-0', data: 1 });
    net.last().frame({ type: 'message', id: '300-1', data: 2 });
    net.last().serverClose(1013);
    clock.tick(0);
    net.last().welcome({ recovered: true, last_id: '300-1' });
    net.last().frame({ type: 'message', id: '300-1', data: 2 });
    net.last().frame({ type: 'message', id: '300-2', data: 3 });
    assert.deepEqual(messages.map((m) => m.data), [1, 2, 3]);
  });

  test('drops a repeat by its dedupe token, across a reconnect, but keeps its id as the position', () => {
    const { sb, net, clock, messages } = setup();
    sb.connect();
    net.last().welcome();
    net.last().frame({ type: 'message', id: '400-0', dedupe: 'AAAAAAAAAAAAAAAA', data: 1 });
    net.last().frame({ type: 'message', id: '400-1', data: 2 });
    net.last().serverClose(1013);
    clock.tick(0);
    net.last().welcome({ recovered: true, last_id: '400-1' });
    // A backend's retry that Redis stored again after a failover: another id, the same token.
    net.last().frame({ type: 'message', id: '401-0', dedupe: 'AAAAAAAAAAAAAAAA', data: 1 });
    net.last().frame({ type: 'message', id: '401-1', dedupe: 'BBBBBBBBBBBBBBBB', data: 3 });
    net.last().frame({ type: 'message', id: '402-0', big: true, room: 'town', dedupe: 'BBBBBBBBBBBBBBBB', data: 3 });
    assert.deepEqual(messages.map((m) => m.data), [1, 2, 3]);
    assert.equal(sb.lastId, '401-1');
  });

  test('reports whether the history was recovered', () => {
    const { sb, net, states } = setup({ storage: memoryStorage({ 'switchboard:last-id:bob': '1-0' }) });
    sb.connect();
    net.last().welcome({ recovered: false, last_id: '1-0' });
    assert.equal(states.at(-1).recovered, false);
  });
});

describe('reconnecting', () => {
  test('backs off exponentially with jitter, capped', () => {
    const randoms = [0, 1, 0.5, 1, 1, 1, 1, 1, 1, 0];
    const { sb, net, clock, states } = setup({ random: () => randoms.shift() });
    sb.connect();
    net.last().welcome();
    net.last().serverClose(1006, 'network');
    const delays = [];
    for (let i = 0; i < 10; i++) {
      const s = states.at(-1);
      assert.equal(s.state, State.RECONNECTING);
      delays.push(s.delay);
      clock.tick(s.delay - 1);
      assert.equal(net.sockets.length, i + 1, 'no attempt before the delay is over');
      clock.tick(1);
      assert.equal(net.sockets.length, i + 2);
      net.last().open();
      net.last().serverClose(1006);
    }
    // Half of the cap plus a random part of the other half: 500·2^n, capped at 30 s.
    assert.deepEqual(delays, [250, 1000, 1500, 4000, 8000, 16000, 30000, 30000, 30000, 15000]);
  });

  test('a welcome resets the backoff', () => {
    const { sb, net, clock, states } = setup({ random: () => 1 });
    sb.connect();
    net.last().open();
    net.last().serverClose(1006);
    clock.tick(500);
    net.last().open();
    net.last().serverClose(1006);
    assert.equal(states.at(-1).delay, 1000);
    clock.tick(1000);
    net.last().welcome();
    net.last().serverClose(1006);
    assert.equal(states.at(-1).delay, 500);
  });

  for (const code of [1012, 1013]) {
    test(`close ${code} reconnects at once, and resumes`, () => {
      const { sb, net, clock, states } = setup();
      sb.connect();
      net.last().welcome();
      net.last().frame({ type: 'message', id: '400-0', data: 'x' });
      net.last().serverClose(code, 'server restarting');
      assert.equal(states.at(-1).state, State.RECONNECTING);
      assert.equal(states.at(-1).delay, 0);
      assert.equal(states.at(-1).closeCode, code);
      clock.tick(0);
      assert.equal(net.sockets.length, 2);
      assert.equal(net.last().url.searchParams.get('since'), '400-0');
    });
  }

  test('a 1013 before any welcome gets the backoff: the node cannot serve us yet', () => {
    const { sb, net, clock, states } = setup({ random: () => 1 });
    sb.connect();
    net.last().welcome();
    net.last().serverClose(1013);
    clock.tick(0);
    net.last().open();
    net.last().serverClose(1013, 'redis unavailable');
    assert.equal(states.at(-1).delay, 1000);
  });

  test('a connection that is never welcomed is given up after connectTimeout', () => {
    const { sb, net, clock, states } = setup({ connectTimeout: 5000 });
    sb.connect();
    net.last().open();
    clock.tick(5000);
    assert.deepEqual(net.sockets[0].closed, { code: 4000, reason: 'connect timeout' });
    assert.equal(states.at(-1).state, State.RECONNECTING);
  });

  test('a refusal the server explains as retryable is retried', async () => {
    const { sb, net, clock, states } = setup({ fetch: async () => ({ status: 503, json: async () => ({}) }) });
    sb.connect();
    net.last().refuse();
    await flush();
    assert.equal(states.at(-1).state, State.RECONNECTING);
    clock.tick(states.at(-1).delay);
    assert.equal(net.sockets.length, 2);
  });

  test('an unreachable server is retried', async () => {
    const { sb, net, states } = setup({
      fetch: async () => {
        throw new TypeError('fetch failed');
      },
    });
    sb.connect();
    net.last().refuse();
    await flush();
    assert.equal(states.at(-1).state, State.RECONNECTING);
  });
});

describe('stopping', () => {
  for (const [code, want] of [
    [4001, 'kicked'],
    [1008, 'policy'],
  ]) {
    test(`close ${code} stops with ${want} and never reconnects`, () => {
      const { sb, net, clock, states } = setup();
      sb.connect();
      net.last().welcome();
      net.last().serverClose(code, 'bye');
      const last = states.at(-1);
      assert.equal(last.state, State.STOPPED);
      assert.ok(last.reason instanceof SwitchboardError);
      assert.equal(last.reason.code, want);
      assert.equal(last.reason.closeCode, code);
      clock.tick(10 * 60_000);
      assert.equal(net.sockets.length, 1);
    });
  }

  for (const [status, want] of [
    [401, 'unauthorized'],
    [403, 'forbidden'],
  ]) {
    test(`an HTTP ${status} refusal before open stops with ${want}`, async () => {
      const asked = [];
      const { sb, net, clock, states } = setup({
        fetch: async (url) => {
          asked.push(url);
          return { status, json: async () => ({ error: { code: want, message: 'invalid token' } }) };
        },
      });
      const ready = assert.rejects(sb.ready(), (err) => err.code === want);
      sb.connect();
      net.last().refuse();
      await flush();
      assert.match(asked[0], /^http:\/\/switchboard\.test\/ws\?user=bob/);
      const last = states.at(-1);
      assert.equal(last.state, State.STOPPED);
      assert.equal(last.reason.code, want);
      assert.equal(last.reason.status, status);
      assert.equal(last.reason.message, 'invalid token');
      await ready;
      clock.tick(10 * 60_000);
      assert.equal(net.sockets.length, 1);
    });
  }

  test('close() stops: socket closed normally, pending requests rejected, no reconnect', async () => {
    const { sb, net, clock, states } = setup();
    sb.connect();
    net.last().welcome();
    const join = assert.rejects(sb.join('lobby'), (err) => err.code === 'stopped');
    sb.close();
    assert.deepEqual(net.sockets[0].closed, { code: 1000, reason: 'client closed' });
    assert.equal(states.at(-1).state, State.STOPPED);
    assert.equal(states.at(-1).reason.code, 'closed');
    await join;
    await assert.rejects(sb.send({ to: 'alice', data: 1 }), (err) => err.code === 'stopped');
    clock.tick(10 * 60_000);
    assert.equal(net.sockets.length, 1);
  });

  test('close() while a token is being fetched opens no socket', async () => {
    let give;
    const { sb, net } = setup({ token: () => new Promise((resolve) => (give = resolve)), user: undefined });
    sb.connect();
    sb.close();
    give('late.token.value');
    await flush();
    assert.equal(net.sockets.length, 0);
    assert.equal(sb.state, State.STOPPED);
  });

  test('connect() after a stop starts again', () => {
    const { sb, net } = setup();
    sb.connect();
    net.last().welcome();
    net.last().serverClose(4001);
    sb.connect();
    assert.equal(net.sockets.length, 2);
    assert.equal(sb.state, State.CONNECTING);
  });
});

describe('requests', () => {
  test('join, leave, send and event resolve with their own ack, by ref', async () => {
    const { sb, net } = setup();
    sb.connect();
    const ws = net.last();
    ws.welcome();
    const join = sb.join('lobby');
    const leave = sb.leave('old');
    const dm = sb.send({ to: 'alice', data: { text: 'hi' } });
    const room = sb.send({ room: 'lobby', data: { text: 'hi all' } });
    const ev = sb.event('order.paid', { order: 42 });
    assert.deepEqual(
      ws.sent.map(({ ref, ...f }) => f),
      [
        { type: 'join', room: 'lobby' },
        { type: 'leave', room: 'old' },
        { type: 'send', to: 'alice', data: { text: 'hi' } },
        { type: 'send', room: 'lobby', data: { text: 'hi all' } },
        { type: 'event', name: 'order.paid', data: { order: 42 } },
      ],
    );
    const refs = ws.sent.map((f) => f.ref);
    assert.equal(new Set(refs).size, 5, 'refs are unique');
    // Answers in another order than the requests.
    ws.frame({ type: 'ack', ref: refs[3], recipients: 2 });
    ws.frame({ type: 'ack', ref: refs[2], id: '500-0' });
    ws.frame({ type: 'ack', ref: refs[4] });
    ws.frame({ type: 'ack', ref: refs[1] });
    ws.frame({ type: 'ack', ref: refs[0] });
    assert.equal((await room).recipients, 2);
    assert.equal((await dm).id, '500-0');
    await Promise.all([join, leave, ev]);
  });

  test('an error frame rejects its request with the server code', async () => {
    const { sb, net } = setup();
    sb.connect();
    net.last().welcome();
    const p = sb.send({ room: 'secret', data: 1 });
    net.last().frame({ type: 'error', ref: net.last().sent[0].ref, code: 'not_member', message: 'join first' });
    await assert.rejects(p, (err) => err instanceof SwitchboardError && err.code === 'not_member' && err.message === 'join first');
  });

  test('an error frame for no request is an error event', () => {
    const { sb, net, errors } = setup();
    sb.connect();
    net.last().welcome();
    net.last().frame({ type: 'error', code: 'rate_limited', message: 'slow down' });
    net.last().frame({ type: 'ack', ref: '999' }); // unknown ref: ignored
    assert.equal(errors.length, 1);
    assert.equal(errors[0].code, 'rate_limited');
  });

  test('requests made before the welcome wait for it', async () => {
    const { sb, net } = setup();
    const join = sb.join('lobby');
    sb.connect();
    net.last().open();
    assert.equal(net.last().sent.length, 0);
    net.last().welcome();
    assert.equal(net.last().sent[0].type, 'join');
    net.last().frame({ type: 'ack', ref: net.last().sent[0].ref });
    await join;
  });

  test('a request with no answer times out', async () => {
    const { sb, net, clock } = setup({ requestTimeout: 1000 });
    sb.connect();
    net.last().welcome();
    const p = assert.rejects(sb.join('lobby'), (err) => err.code === 'timeout');
    clock.tick(1000);
    await p;
  });

  test('a lost connection rejects sends in flight but sends joins again', async () => {
    const { sb, net, clock } = setup();
    sb.connect();
    net.last().welcome();
    const send = assert.rejects(sb.send({ to: 'alice', data: 1 }), (err) => err.code === 'disconnected');
    const join = sb.join('lobby');
    net.last().serverClose(1012);
    await send;
    clock.tick(0);
    net.last().welcome();
    const again = net.last().sent;
    assert.deepEqual(again.map((f) => f.type), ['join']);
    net.last().frame({ type: 'ack', ref: again[0].ref });
    await join;
  });
});

describe('events', () => {
  test('the function on returns removes the listener', async () => {
    const { sb, net } = setup();
    const seen = [];
    const off = sb.on('message', (m) => seen.push(m.id));
    sb.connect();
    net.last().welcome();
    net.last().frame({ type: 'message', id: '600-0', data: 1 });
    off();
    net.last().frame({ type: 'message', id: '600-1', data: 2 });
    assert.deepEqual(seen, ['600-0']);
  });

  test('ignores frames of unknown types and frames that are not JSON', () => {
    const { sb, net, errors, messages } = setup();
    sb.connect();
    net.last().welcome();
    net.last().frame({ type: 'presence', user: 'x' });
    net.last().onmessage({ data: 'not json' });
    assert.equal(messages.length, 0);
    assert.equal(errors[0].code, 'bad_frame');
    assert.equal(sb.state, State.LIVE);
  });
});

describe('big rooms', () => {
  test('a big message moves its room position, not since, and both resume', () => {
    const { sb, net, clock, storage, messages } = setup();
    sb.connect();
    net.last().welcome({ last_id: '100-0', big_rooms: [{ room: 'town', last_id: '50-0' }] });
    net.last().frame({ type: 'message', id: '60-0', big: true, history_id: '60-0', room: 'town', data: 1 });
    net.last().frame({ type: 'message', id: '101-0', from: 'alice', data: 2 });
    net.last().frame({ type: 'message', id: '60-0', big: true, room: 'town', data: 1 }); // twice: dropped
    net.last().frame({ type: 'message', id: '55-0', big: true, room: 'town', data: 0 }); // older: dropped
    assert.deepEqual(messages.map((m) => m.data), [1, 2]);
    assert.equal(sb.lastId, '101-0');
    assert.deepEqual(sb.roomPositions, { town: '60-0' });
    assert.equal(storage.getItem('switchboard:last-id:bob:rooms'), '{"town":"60-0"}');
    net.last().serverClose(1013);
    clock.tick(60_000);
    assert.equal(net.last().url.searchParams.get('since'), '101-0');
    assert.equal(net.last().url.searchParams.get('room_since'), 'town:60-0');
  });

  test('room_mode frames start and end a position; the welcome drops rooms no longer big', () => {
    const { sb, net, clock } = setup({ storage: memoryStorage({ 'switchboard:last-id:bob:rooms': '{"a":"1-0","gone":"2-0","bad":"x"}' }) });
    const modes = [];
    sb.on('room_mode', (f) => modes.push(f));
    sb.connect();
    assert.equal(net.last().url.searchParams.get('room_since'), 'a:1-0,gone:2-0');
    net.last().welcome({ big_rooms: [{ room: 'a', last_id: '1-0', recovered: true }] });
    assert.deepEqual(sb.roomPositions, { a: '1-0' });
    net.last().frame({ type: 'room_mode', room: 'b', big: true, last_id: '7-0' });
    net.last().frame({ type: 'room_mode', room: 'a', big: false });
    assert.deepEqual(sb.roomPositions, { b: '7-0' });
    assert.equal(modes.length, 2);
    net.last().serverClose(1006);
    clock.tick(60_000);
    assert.equal(net.last().url.searchParams.get('room_since'), 'b:7-0');
  });
});
