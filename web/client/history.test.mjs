// Unit tests of what the browser app keeps (web/static/assets/app/history.js) and how it
// saves it (app/storage.js), run by Node's built-in test runner: no browser, a fake clock, an
// in-memory Storage, and for the resume position the real client library on a fake socket.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';

import { Switchboard, compareIds } from '../static/assets/switchboard.js';
import { History, HISTORY_PREFIX, MAX_DEPTH, MAX_KEPT, depthWithin, entryOf, sentEntry } from '../static/assets/app/history.js';
import { SavedState, localStore } from '../static/assets/app/storage.js';

// FakeClock is a manual setTimeout: tick(ms) runs what falls due.
class FakeClock {
  now = 0;
  #timers = new Map();
  #next = 1;
  setTimeout = (fn, ms = 0) => {
    this.#timers.set(this.#next, { at: this.now + ms, fn });
    return this.#next++;
  };
  clearTimeout = (id) => this.#timers.delete(id);
  tick(ms = 0) {
    this.now += ms;
    for (const [id, t] of [...this.#timers].sort(([, a], [, b]) => a.at - b.at)) {
      if (t.at > this.now) break;
      this.#timers.delete(id);
      t.fn();
    }
  }
}

// memoryStorage is a Storage; full(key, value) says when a write must fail as a full one would.
function memoryStorage({ full = () => false } = {}) {
  const m = new Map();
  const writes = [];
  return {
    map: m,
    writes,
    getItem: (k) => (m.has(k) ? m.get(k) : null),
    setItem(k, v) {
      if (full(k, String(v))) throw new Error('QuotaExceededError');
      writes.push(k);
      m.set(k, String(v));
    },
  };
}

const msg = (id, extra = {}) => ({ type: 'message', id, from: 'alice', data: { text: `m ${id}` }, ...extra });
const ids = (history, key) => history.conv(key).messages.map((e) => e.id);
const nested = (depth, leaf = 1) => {
  let v = leaf;
  for (let i = 0; i < depth; i++) v = [v];
  return v;
};

function setup({ backing = memoryStorage(), user = 'bob' } = {}) {
  const clock = new FakeClock();
  const store = new SavedState(backing, { delay: 250, timers: clock });
  return { backing, clock, store, history: new History(store, user) };
}

describe('the history keeps each message once, in time order', () => {
  test('a message delivered twice is kept once', () => {
    const { history } = setup();
    assert.ok(history.receive(msg('100-0'), 'bob'));
    assert.equal(history.receive(msg('100-0'), 'bob'), null);
    assert.deepEqual(ids(history, 'user:alice'), ['100-0']);
  });

  test('messages arriving out of order are kept in time order', () => {
    const { history } = setup();
    for (const id of ['300-0', '100-0', '200-0', '100-0', '300-0']) history.receive(msg(id), 'bob');
    assert.deepEqual(ids(history, 'user:alice'), ['100-0', '200-0', '300-0']);
  });

  test('a direct message we sent goes between the replies around it', () => {
    const { history } = setup();
    history.receive(msg('100-0'), 'bob');
    history.receive(msg('300-0'), 'bob');
    // An ack without a copy (its write failed): only this browser knows the message.
    const sent = sentEntry('alice', 'bob', { id: '200-0', copy: false }, { text: 'mine' });
    assert.equal(history.add('user:alice', sent), true);
    assert.equal(history.add('user:alice', sent), false, 'the same ack twice');
    assert.deepEqual(ids(history, 'user:alice'), ['100-0', '200-0', '300-0']);
    assert.equal(history.conv('user:alice').messages[1].key, 'sent:alice:200-0');
  });

  test("the sender's copy goes to the recipient's conversation, once with its ack", () => {
    const { history } = setup();
    history.receive(msg('100-0'), 'bob');
    // Our ack says copy_id 200-0; the copy arrives as a message from us to alice.
    const sent = sentEntry('alice', 'bob', { id: '900-0', copy_id: '200-0' }, { text: 'mine' });
    assert.equal(history.add('user:alice', sent), true);
    assert.equal(history.receive(msg('200-0', { from: 'bob', to: 'alice', data: { text: 'mine' } }), 'bob'), null);
    // Sent from another device: only the copy tells us.
    const got = history.receive(msg('250-0', { from: 'bob', to: 'carol', data: { text: 'hi carol' } }), 'bob');
    assert.equal(got.key, 'user:carol');
    assert.equal(got.entry.mine, true);
    assert.deepEqual(history.dms, ['user:alice', 'user:carol']);
    assert.deepEqual(ids(history, 'user:alice'), ['100-0', '200-0']);
    // A message to alice from someone else that names a "to" is not ours to file under alice.
    assert.equal(history.receive(msg('260-0', { from: 'dave', to: 'alice' }), 'bob').key, 'user:dave');
  });

  test("a room's history and its live messages are kept once, by the room's id", () => {
    const { history } = setup();
    // Live: our copy has our stream's id and the room's as history_id.
    history.receive(msg('500-0', { room: 'lobby', history_id: '20-0' }), 'bob');
    // A history page: ids are the room's.
    const page = [msg('10-0', { room: 'lobby' }), msg('20-0', { room: 'lobby' })];
    const got = page.map((m) => history.receive(m, 'bob', { page: true }));
    assert.notEqual(got[0], null);
    assert.equal(got[1], null, 'delivered live already');
    assert.deepEqual(
      history.conv('room:lobby').messages.map((e) => e.key),
      ['h:10-0', 'h:20-0'],
    );
    // Read again: nothing new.
    assert.equal(history.receive(page[0], 'bob', { page: true }), null);
  });

  test('a message with no id (ephemeral) is never kept', () => {
    const { history } = setup();
    assert.equal(history.receive({ type: 'message', ephemeral: true, from: 'alice', data: { typing: true } }, 'bob'), null);
    assert.equal(history.isEmpty, true);
  });

  test(`a conversation keeps only its newest ${MAX_KEPT} messages`, () => {
    const { history } = setup();
    for (let i = 1; i <= MAX_KEPT + 5; i++) history.receive(msg(`${i}-0`), 'bob');
    const kept = ids(history, 'user:alice');
    assert.equal(kept.length, MAX_KEPT);
    assert.equal(kept[0], '6-0');
    assert.equal(kept.at(-1), `${MAX_KEPT + 5}-0`);
  });

  test('each message goes to its conversation, and makes us a member or a partner', () => {
    const { history } = setup();
    const got = [
      history.receive(msg('1-0', { room: 'lobby' }), 'bob'),
      history.receive(msg('2-0'), 'bob'),
      history.receive(msg('3-0', { from: undefined }), 'bob'),
      history.receive(msg('4-0', { from: 'bob', room: 'lobby' }), 'bob'),
    ];
    assert.deepEqual(got.map((g) => g.key), ['room:lobby', 'user:alice', 'backend', 'room:lobby']);
    assert.deepEqual(got.map((g) => g.entry.mine), [false, false, false, true]);
    assert.deepEqual(history.rooms, ['lobby']);
    assert.deepEqual(history.dms, ['user:alice', 'backend']);
  });

  test('only a known conversation opens, and opening it marks it read', () => {
    const { history } = setup();
    history.receive(msg('1-0'), 'bob');
    history.markUnread('user:alice');
    assert.equal(history.open('user:nobody'), null);
    assert.equal(history.open('user:alice'), 'user:alice');
    assert.equal(history.conv('user:alice').unread, 0);
  });

  test("the server's room list keeps the known order, and says when the open room is gone", () => {
    const { history } = setup();
    history.rooms = ['b', 'a', 'c'];
    history.current = 'room:b';
    assert.equal(history.setRooms(['c', 'a', 'b', 'e', 'd']), false);
    assert.deepEqual(history.rooms, ['b', 'a', 'c', 'd', 'e']);
    assert.equal(history.setRooms(['a']), true);
    assert.deepEqual(history.rooms, ['a']);
  });

  test('what was kept comes back after a reload', () => {
    const { backing, clock, history } = setup();
    history.receive(msg('1-0', { room: 'lobby' }), 'bob');
    history.receive(msg('2-0'), 'bob');
    history.open('room:lobby');
    clock.tick(250);
    const again = new History(new SavedState(backing), 'bob');
    assert.deepEqual(again.rooms, ['lobby']);
    assert.deepEqual(again.dms, ['user:alice']);
    assert.equal(again.current, 'room:lobby');
    assert.deepEqual(again.convs, JSON.parse(JSON.stringify(history.convs)));
  });
});

describe('hostile messages and a tampered history', () => {
  const cases = [
    { name: 'a text payload is shown', m: msg('1-0'), want: { data: { text: 'm 1-0' } } },
    { name: `a payload ${MAX_DEPTH} levels deep is shown`, m: msg('1-0', { data: nested(MAX_DEPTH) }), want: { data: nested(MAX_DEPTH) } },
    { name: 'a payload one level deeper is a placeholder', m: msg('1-0', { data: nested(MAX_DEPTH + 1) }), want: { unshowable: true } },
    { name: 'a payload 6,000 levels deep is a placeholder', m: msg('1-0', { data: nested(6000) }), want: { unshowable: true } },
    { name: 'a deep text field is a placeholder', m: msg('1-0', { data: { text: nested(6000) } }), want: { unshowable: true } },
    { name: 'a binary payload is kept as base64', m: msg('1-0', { data: undefined, data_b64: 'AAE=' }), want: { b64: 'AAE=' } },
    { name: 'a data_b64 that is not a string is a placeholder', m: msg('1-0', { data: undefined, data_b64: { not: 'a string' } }), want: { unshowable: true } },
  ];
  for (const { name, m, want } of cases) {
    test(name, () => {
      const entry = entryOf(m, 'bob');
      for (const field of ['data', 'b64', 'unshowable']) assert.deepEqual(entry[field], want[field], field);
      assert.equal(entry.id, '1-0');
      assert.doesNotThrow(() => JSON.stringify(entry), 'every entry kept can be saved');
    });
  }

  test('a sender that is not a string is no sender', () => {
    assert.equal(entryOf(msg('1-0', { from: { name: 'x' } }), 'bob').from, undefined);
  });

  test('depth is measured without recursion, however deep', () => {
    assert.equal(depthWithin(nested(200_000), MAX_DEPTH), false);
    assert.equal(depthWithin('flat', 0), true);
  });

  test('after hostile messages the history still saves and the conversation goes on', () => {
    const { backing, clock, history } = setup();
    history.receive(msg('1-0'), 'bob');
    history.receive(msg('2-0', { data: nested(6000) }), 'bob');
    history.receive(msg('3-0'), 'bob');
    clock.tick(250);
    const again = new History(new SavedState(backing), 'bob');
    assert.deepEqual(ids(again, 'user:alice'), ['1-0', '2-0', '3-0']);
    assert.equal(again.conv('user:alice').messages[1].unshowable, true);
  });

  const stored = {
    'not JSON': '{"rooms": [',
    'JSON null': 'null',
    'a number': '42',
    'fields of the wrong type': JSON.stringify({ rooms: 'lobby', dms: { a: 1 }, current: 7, convs: 'x' }),
    'entries of the wrong shape': JSON.stringify({
      rooms: ['lobby', 3, null],
      dms: ['user:alice', {}],
      current: 'room:lobby',
      convs: {
        'room:lobby': { messages: [{ key: '1-0', id: '1-0', ms: 1 }, { key: 2, id: '2-0', ms: 2 }, { key: '3-0', id: '3-0', ms: 'soon' }, null, 'x'], unread: 1.5 },
        'user:alice': { messages: 'none' },
        'user:eve': null,
      },
    }),
  };
  for (const [name, text] of Object.entries(stored)) {
    test(`a stored history that is ${name} is read with suspicion`, () => {
      const backing = memoryStorage();
      backing.map.set(`${HISTORY_PREFIX}bob`, text);
      const h = new History(new SavedState(backing), 'bob');
      assert.ok(Array.isArray(h.rooms) && h.rooms.every((r) => typeof r === 'string'));
      assert.ok(Array.isArray(h.dms) && h.dms.every((k) => typeof k === 'string'));
      assert.ok(h.current === null || typeof h.current === 'string');
      for (const conv of Object.values(h.convs)) {
        assert.ok(Number.isInteger(conv.unread));
        for (const e of conv.messages) assert.ok(typeof e.key === 'string' && typeof e.id === 'string' && Number.isFinite(e.ms));
      }
      if (name === 'entries of the wrong shape') {
        assert.deepEqual(h.rooms, ['lobby']);
        assert.deepEqual(h.dms, ['user:alice']);
        assert.deepEqual(Object.keys(h.convs), ['room:lobby']);
        assert.deepEqual(ids(h, 'room:lobby'), ['1-0']);
        assert.equal(h.conv('room:lobby').unread, 0);
      }
    });
  }
});

describe('saving: the position never runs ahead of what is stored', () => {
  // fakeSocket is a WebSocket the test drives from the server's side.
  function fakeSocket() {
    const sockets = [];
    class FakeWebSocket {
      constructor(url) {
        this.url = new URL(url);
        sockets.push(this);
      }
      send() {}
      close() {}
      frame(f) {
        this.onmessage?.({ data: JSON.stringify(f) });
      }
    }
    return { FakeWebSocket, last: () => sockets.at(-1) };
  }

  // connect runs the client library as the app does: its position in store, each message
  // handed to the history. It returns the socket, with the welcome done.
  function connect({ store, history, clock }) {
    const net = fakeSocket();
    const sb = new Switchboard({ url: 'ws://switchboard.test/ws', user: 'bob', WebSocket: net.FakeWebSocket, timers: clock, storage: store, fetch: null, since: history.isEmpty ? '0-0' : undefined });
    sb.on('message', (m) => history.receive(m, 'bob'));
    sb.connect();
    const ws = net.last();
    ws.onopen?.({});
    ws.frame({ type: 'welcome', user: 'bob', node: 'n1', last_id: '0-0' });
    return { sb, ws };
  }

  // check asserts that every message at or before the stored position is in the stored
  // history: a reload resuming there would lose none of them.
  function check(backing, delivered) {
    const position = backing.getItem('switchboard:last-id:bob');
    if (position === null) return;
    const kept = new History(new SavedState(backing), 'bob');
    const keptIds = new Set(Object.values(kept.convs).flatMap((c) => c.messages.map((e) => e.id)));
    for (const id of delivered) {
      if (compareIds(id, position) <= 0) assert.ok(keptIds.has(id), `position ${position} is past ${id}, which is not stored`);
    }
  }

  test('a burst of messages is one write of each key, position and history together', () => {
    const { backing, clock, store, history } = setup();
    const { ws } = connect({ store, history, clock });
    for (let i = 1; i <= 50; i++) ws.frame(msg(`${i}-0`));
    assert.deepEqual(backing.writes, [], 'nothing written before the delay');
    clock.tick(250);
    assert.deepEqual([...backing.writes].sort(), [`${HISTORY_PREFIX}bob`, 'switchboard:last-id:bob']);
    assert.equal(backing.getItem('switchboard:last-id:bob'), '50-0');
    check(backing, Array.from({ length: 50 }, (_, i) => `${i + 1}-0`));
  });

  test('flushed at any moment (the page hidden or closed), the stored position is covered', () => {
    const { backing, clock, store, history } = setup();
    const { ws } = connect({ store, history, clock });
    const delivered = [];
    for (let i = 1; i <= 40; i++) {
      const m = msg(`${i}-0`, i % 3 ? {} : { room: 'lobby' });
      ws.frame(m);
      delivered.push(m.id);
      if (i % 7 === 0) store.flush(); // pagehide
      if (i % 5 === 0) clock.tick(250);
      check(backing, delivered);
    }
  });

  test('when the history cannot be saved, the position is not saved either', () => {
    let fullFrom = Infinity; // history snapshots longer than this fail, as a full storage would
    const backing = memoryStorage({ full: (k, v) => k.startsWith(HISTORY_PREFIX) && v.length > fullFrom });
    const { clock, store, history } = setup({ backing });
    const { ws } = connect({ store, history, clock });
    const delivered = [];
    const deliver = (id) => {
      ws.frame(msg(id));
      delivered.push(id);
    };
    deliver('1-0');
    deliver('2-0');
    clock.tick(250);
    assert.equal(backing.getItem('switchboard:last-id:bob'), '2-0');

    fullFrom = backing.getItem(`${HISTORY_PREFIX}bob`).length; // the storage is full now
    deliver('3-0');
    store.flush();
    deliver('4-0');
    clock.tick(250);
    assert.equal(backing.getItem('switchboard:last-id:bob'), '2-0', 'the position stays where the history is');
    check(backing, delivered);

    // A reload resumes from 2-0: the server replays 3-0 and 4-0, and nothing shows twice.
    const reloaded = setup({ backing });
    const again = connect({ store: reloaded.store, history: reloaded.history, clock: reloaded.clock });
    assert.equal(again.ws.url.searchParams.get('since'), '2-0');
    fullFrom = Infinity; // space again
    for (const id of ['3-0', '4-0', '2-0']) again.ws.frame(msg(id));
    reloaded.clock.tick(250);
    assert.deepEqual(ids(reloaded.history, 'user:alice'), ['1-0', '2-0', '3-0', '4-0']);
    assert.equal(backing.getItem('switchboard:last-id:bob'), '4-0');
    check(backing, delivered);
  });

  test('a snapshot that fails to serialise stops the flush before the position', () => {
    const { backing, store } = setup();
    store.setItem('switchboard:last-id:bob', '9-0');
    store.setLazy(`${HISTORY_PREFIX}bob`, () => {
      throw new RangeError('Maximum call stack size exceeded');
    });
    store.flush();
    assert.equal(backing.getItem('switchboard:last-id:bob'), null);
  });

  test('reads see what is pending, and a blocked localStorage falls back to memory', () => {
    const { store } = setup();
    store.setItem('k', 1);
    store.setLazy('lazy', () => 'built');
    assert.equal(store.getItem('k'), '1');
    assert.equal(store.getItem('lazy'), 'built');
    const blocked = localStore(() => {
      throw new DOMException('blocked', 'SecurityError');
    });
    blocked.setItem('a', 'b');
    assert.equal(blocked.getItem('a'), 'b');
    assert.equal(blocked.getItem('missing'), null);
  });
});
