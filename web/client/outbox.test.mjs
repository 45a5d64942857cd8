// Unit tests of the app's outbox (web/static/assets/app/outbox.js): messages typed while
// offline wait and go out in order once live; refusals and lost answers are kept, marked
// failed, never dropped silently; it all survives a reload.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';

import { SwitchboardError } from '../static/assets/switchboard.js';
import { Outbox, OUTBOX_PREFIX, Pending } from '../static/assets/app/outbox.js';

// store is a SavedState stand-in that writes at once.
function store() {
  const m = new Map();
  return { map: m, getItem: (k) => m.get(k) ?? null, setLazy: (k, fn) => m.set(k, fn()) };
}

// sender answers each send with what the test queues in answers (an ack, or an error to
// throw), and records what was sent.
function sender() {
  const sent = [];
  const answers = [];
  return { sent, answers, send: async (item) => {
    sent.push(item.data.text);
    const a = answers.shift() ?? { type: 'ack' };
    if (a instanceof Error) throw a;
    return a;
  } };
}

describe('outbox', () => {
  test('waits while offline, then sends in the order typed', async () => {
    const s = sender();
    const box = new Outbox(store(), 'alice', { send: s.send });
    box.add('user:bob', { text: 'one' });
    box.add('room:lobby', { text: 'two' });
    let live = false;
    await box.pump(() => live);
    assert.deepEqual(s.sent, []);
    assert.deepEqual(box.items.map((i) => i.state), [Pending.QUEUED, Pending.QUEUED]);
    live = true;
    const done = [];
    await box.pump(() => live, { done: (item) => done.push(item.key) });
    assert.deepEqual(s.sent, ['one', 'two']);
    assert.deepEqual(done, ['user:bob', 'room:lobby']);
    assert.equal(box.items.length, 0);
  });

  test('a refusal or a lost answer is kept as failed, with why; retry sends it again', async () => {
    const s = sender();
    const box = new Outbox(store(), 'alice', { send: s.send });
    s.answers.push(new SwitchboardError('disconnected', 'dropped'), new SwitchboardError('not_member', 'no'));
    box.add('user:bob', { text: 'lost' });
    box.add('room:x', { text: 'refused' });
    box.add('user:bob', { text: 'fine' });
    const failed = [];
    await box.pump(() => true, { failed: (item, err) => failed.push(err.code) });
    assert.deepEqual(failed, ['disconnected', 'not_member']);
    assert.deepEqual(s.sent, ['lost', 'refused', 'fine']);
    assert.deepEqual(box.items.map((i) => [i.data.text, i.state]), [['lost', Pending.FAILED], ['refused', Pending.FAILED]]);
    assert.match(box.items[0].reason, /may not have arrived/);
    assert.match(box.items[1].reason, /join the room/);
    assert.equal(box.retry(box.items[0].lid), true);
    await box.pump(() => true);
    assert.deepEqual(box.items.map((i) => i.data.text), ['refused']);
    assert.equal(box.discard(box.items[0].lid).data.text, 'refused');
    assert.equal(box.items.length, 0);
  });

  test('a stopped client leaves the message queued for the next connection', async () => {
    const s = sender();
    const box = new Outbox(store(), 'alice', { send: s.send });
    s.answers.push(new SwitchboardError('stopped', 'closed'));
    box.add('user:bob', { text: 'later' });
    await box.pump(() => true);
    assert.equal(box.items[0].state, Pending.QUEUED);
  });

  test('survives a reload; what was being sent is then failed, not sent twice', async () => {
    const st = store();
    const s = sender();
    const box = new Outbox(st, 'alice', { send: s.send });
    box.add('user:bob', { text: 'queued' });
    box.add('user:bob', { text: 'in flight' });
    box.items[1].state = Pending.SENDING;
    box.add('user:bob', { text: 'x' }); // saves
    st.map.set(OUTBOX_PREFIX + 'bob', 'not json');
    const again = new Outbox(st, 'alice', { send: s.send });
    assert.deepEqual(again.items.map((i) => [i.data.text, i.state]), [['queued', Pending.QUEUED], ['in flight', Pending.FAILED], ['x', Pending.QUEUED]]);
    assert.equal(new Outbox(st, 'bob', { send: s.send }).items.length, 0, 'unreadable: nothing');
  });
});
