// Unit tests of the client's conversation requests (web/static/assets/switchboard.js):
// room history, presence, ephemeral sends and their events, the sender's copy of a direct
// message, and messages too large for the server (refused before sending, or closed with
// 1009 by the server). Fake socket, fake clock, as in switchboard.test.mjs.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';

import { flush, setup } from './fakes.mjs';

// live returns a client that is connected and welcomed, with its socket.
function live(options = {}) {
  const s = setup(options);
  s.sb.connect();
  s.net.last().welcome();
  return { ...s, ws: s.net.last() };
}

describe('history', () => {
  test('sends a history frame and resolves with the messages, oldest first, and more', async () => {
    const { sb, ws } = live();
    const got = sb.history('lobby', { limit: 2, before: '50-0' });
    const sent = ws.sent.at(-1);
    assert.deepEqual({ ...sent, ref: undefined }, { type: 'history', room: 'lobby', limit: 2, before: '50-0', ref: undefined });
    const messages = [
      { type: 'message', id: '10-0', from: 'alice', room: 'lobby', data: 'a' },
      { type: 'message', id: '20-0', from: 'bob', room: 'lobby', data: 'b' },
    ];
    ws.frame({ type: 'history', ref: sent.ref, room: 'lobby', messages, more: true });
    const page = await got;
    assert.deepEqual([...page], messages);
    assert.equal(page.more, true);
  });

  test('leaves limit and before to the server when not given; more is false when absent', async () => {
    const { sb, ws } = live();
    const got = sb.history('lobby');
    const sent = ws.sent.at(-1);
    assert.equal('limit' in sent || 'before' in sent, false);
    ws.frame({ type: 'history', ref: sent.ref, room: 'lobby', messages: [] });
    const page = await got;
    assert.equal(page.length, 0);
    assert.equal(page.more, false);
  });

  test('a non-member is refused with not_member', async () => {
    const { sb, ws } = live();
    const got = sb.history('staff');
    ws.frame({ type: 'error', ref: ws.sent.at(-1).ref, code: 'not_member', message: 'not a member of staff' });
    await assert.rejects(got, (err) => err.code === 'not_member' && err.request === 'history');
  });

  test('messages arriving with history_id are still delivered as messages', () => {
    const { ws, messages } = live();
    ws.frame({ type: 'message', id: '101-0', from: 'alice', room: 'lobby', history_id: '7-0', data: 1 });
    assert.equal(messages.length, 1);
    assert.equal(messages[0].history_id, '7-0');
  });
});

describe('presence', () => {
  test('resolves with the online list', async () => {
    const { sb, ws } = live();
    const got = sb.presence('lobby');
    const sent = ws.sent.at(-1);
    assert.equal(sent.type, 'presence');
    assert.equal(sent.room, 'lobby');
    ws.frame({ type: 'presence', ref: sent.ref, room: 'lobby', online: ['alice', 'bob', 3] });
    assert.deepEqual(await got, ['alice', 'bob']);
  });

  test('a request made while connecting waits for the welcome', async () => {
    const s = setup();
    s.sb.connect();
    const got = s.sb.presence('lobby');
    assert.equal(s.net.last().sent.length, 0);
    s.net.last().welcome();
    const sent = s.net.last().sent.at(-1);
    s.net.last().frame({ type: 'presence', ref: sent.ref, room: 'lobby', online: [] });
    assert.deepEqual(await got, []);
  });
});

describe('ephemeral sends', () => {
  test('carry ephemeral:true and resolve with the ack, which has no id', async () => {
    const { sb, ws } = live();
    const got = sb.send({ room: 'lobby', data: { typing: true }, ephemeral: true });
    const sent = ws.sent.at(-1);
    assert.equal(sent.ephemeral, true);
    assert.deepEqual(sent.data, { typing: true });
    ws.frame({ type: 'ack', ref: sent.ref, recipients: 2 });
    assert.deepEqual(await got, { type: 'ack', ref: sent.ref, recipients: 2 });
  });

  test('a plain send carries no ephemeral field', () => {
    const { sb, ws } = live();
    sb.send({ to: 'alice', data: 1 });
    assert.equal('ephemeral' in ws.sent.at(-1), false);
  });

  test('while not live they are refused at once, not queued to go stale', async () => {
    const s = setup();
    s.sb.connect();
    await assert.rejects(s.sb.send({ to: 'alice', data: { typing: true }, ephemeral: true }), (err) => err.code === 'disconnected');
    s.net.last().welcome();
    assert.equal(s.net.last().sent.length, 0, 'nothing was sent after the welcome');
  });

  test('arrive as ephemeral events, not messages, and do not move the resume position', () => {
    const { sb, ws, messages } = live();
    const got = [];
    sb.on('ephemeral', (m) => got.push(m));
    ws.frame({ type: 'message', id: '150-0', from: 'alice', data: 'stored' });
    ws.frame({ type: 'message', ephemeral: true, from: 'alice', room: 'lobby', data: { typing: true } });
    ws.frame({ type: 'message', ephemeral: true, from: 'alice', data: { typing: false } });
    assert.equal(messages.length, 1);
    assert.deepEqual(
      got.map((m) => m.data),
      [{ typing: true }, { typing: false }],
    );
    assert.equal(sb.lastId, '150-0');
  });
});

describe("the sender's copy of a direct message", () => {
  test('arrives as a message with to, and moves the resume position', () => {
    const { sb, ws, messages } = live();
    ws.frame({ type: 'message', id: '200-0', from: 'bob', to: 'alice', data: 'hi' });
    assert.equal(messages.length, 1);
    assert.equal(messages[0].to, 'alice');
    assert.equal(sb.lastId, '200-0');
  });

  test('the ack carries copy_id', async () => {
    const { sb, ws } = live();
    const got = sb.send({ to: 'alice', data: 'hi' });
    ws.frame({ type: 'ack', ref: ws.sent.at(-1).ref, id: '300-0', copy_id: '200-0' });
    assert.equal((await got).copy_id, '200-0');
  });
});

describe('messages too large', () => {
  test('are refused with too_large before anything is sent', async () => {
    const { sb, ws } = live({ maxMessageBytes: 100 });
    const before = ws.sent.length;
    await assert.rejects(sb.send({ room: 'lobby', data: { text: 'x'.repeat(200) } }), (err) => {
      assert.equal(err.code, 'too_large');
      assert.equal(err.limit, 100);
      assert.ok(err.bytes > 200);
      assert.match(err.message, /at most 100/);
      return true;
    });
    await assert.rejects(sb.event('big', 'x'.repeat(200)), (err) => err.code === 'too_large');
    assert.equal(ws.sent.length, before);
  });

  test('count UTF-8 bytes, as the server does, not characters', async () => {
    const { sb, ws } = live({ maxMessageBytes: 100 });
    // 40 characters of 3 bytes each: 120 bytes, plus the quotes.
    await assert.rejects(sb.send({ to: 'alice', data: '€'.repeat(40) }), (err) => err.code === 'too_large');
    // Exactly at the limit is accepted: 98 bytes of text and 2 quotes.
    sb.send({ to: 'alice', data: 'x'.repeat(98) });
    assert.equal(ws.sent.at(-1).data.length, 98);
  });

  test('the default limit is the server default, 65536; a welcome may say another', async () => {
    const { sb, ws } = live();
    assert.equal(sb.maxMessageBytes, 65536);
    sb.send({ to: 'alice', data: 'x'.repeat(65534) }).catch(() => {});
    assert.equal(ws.sent.at(-1).data.length, 65534);
    await assert.rejects(sb.send({ to: 'alice', data: 'x'.repeat(65535) }), (err) => err.code === 'too_large');
    ws.serverClose(1012);
  });

  test('a welcome carrying max_message_bytes sets the limit', async () => {
    const s = setup();
    s.sb.connect();
    s.net.last().welcome({ max_message_bytes: 10 });
    assert.equal(s.sb.maxMessageBytes, 10);
    await assert.rejects(s.sb.send({ to: 'alice', data: 'x'.repeat(20) }), (err) => err.code === 'too_large');
  });

  test('a close 1009 rejects the largest waiting send with too_large; the others as usual; the client reconnects', async () => {
    const { sb, ws, net, clock } = live();
    const small = sb.send({ to: 'alice', data: 'small' });
    const big = sb.send({ to: 'alice', data: 'x'.repeat(5000) });
    const join = sb.join('lobby');
    const outcomes = { small: null, big: null };
    small.catch((err) => (outcomes.small = err));
    big.catch((err) => (outcomes.big = err));
    ws.serverClose(1009, 'message too large');
    await flush();
    assert.equal(outcomes.big.code, 'too_large');
    assert.equal(outcomes.big.closeCode, 1009);
    assert.match(outcomes.big.message, /too large/);
    assert.doesNotMatch(outcomes.big.message, /may or may not/);
    assert.equal(outcomes.small.code, 'disconnected');
    assert.equal(sb.state, 'reconnecting');
    clock.tick(1000);
    net.last().welcome();
    // The join is sent again on the new connection; the sends are not.
    assert.deepEqual(
      net.last().sent.map((f) => f.type),
      ['join'],
    );
    net.last().frame({ type: 'ack', ref: net.last().sent[0].ref });
    await join;
  });

  test('a close 1009 blames the largest send in bytes, not in characters', async () => {
    const { sb, ws } = live();
    const outcomes = {};
    sb.send({ to: 'alice', data: 'a'.repeat(3000) }).catch((err) => (outcomes.ascii = err.code));
    sb.send({ to: 'alice', data: '€'.repeat(2000) }).catch((err) => (outcomes.euro = err.code)); // 6000 bytes
    ws.serverClose(1009, 'message too large');
    await flush();
    assert.deepEqual(outcomes, { ascii: 'disconnected', euro: 'too_large' });
    sb.close();
  });

  test('a close 1009 with no data frame waiting rejects nothing with too_large', async () => {
    const { sb, ws } = live();
    const join = sb.join('lobby');
    ws.serverClose(1009, 'message too large');
    await flush();
    assert.equal(sb.state, 'reconnecting');
    sb.close();
    await assert.rejects(join, (err) => err.code === 'stopped');
  });
});
