// Unit tests of the app's typing indicators and presence (web/static/assets/app/activity.js)
// with the real client on a fake socket and a fake clock.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';

import { Activity, PRESENCE_POLL_MS, TYPING_EVERY_MS, TYPING_SHOWN_MS, typingText } from '../static/assets/app/activity.js';
import { flush, setup } from './fakes.mjs';

function live() {
  const s = setup({ user: 'bob' });
  s.sb.connect();
  s.net.last().welcome();
  const drawn = { typing: [], members: [], online: null };
  const view = {
    showTyping: (users) => drawn.typing.push(users),
    showMembers: (m) => drawn.members.push(m),
    setOnline: (set) => (drawn.online = set),
  };
  const activity = new Activity({ client: s.sb, me: 'bob', view, timers: s.clock, now: () => s.clock.now, members: () => ['carol'] });
  s.sb.on('ephemeral', (m) => activity.onEphemeral(m));
  return { ...s, ws: s.net.last(), activity, drawn };
}

describe('typing', () => {
  test('says it at most once per 2 s per conversation, as an ephemeral send', () => {
    const { activity, ws, clock } = live();
    activity.typing('room:lobby');
    activity.typing('room:lobby');
    clock.tick(TYPING_EVERY_MS - 1);
    activity.typing('room:lobby');
    activity.typing('user:alice');
    clock.tick(1);
    activity.typing('room:lobby');
    const sent = ws.sent.map((f) => [f.room ?? f.to, f.ephemeral, f.data.typing]);
    assert.deepEqual(sent, [
      ['lobby', true, true],
      ['alice', true, true],
      ['lobby', true, true],
    ]);
  });

  test('not to the backend, nor to oneself, nor while offline', () => {
    const { activity, ws, sb } = live();
    activity.typing('backend');
    activity.typing('user:bob');
    ws.serverClose(1006);
    assert.notEqual(sb.state, 'live');
    activity.typing('room:lobby');
    assert.equal(ws.sent.length, 0);
  });

  test('shows who types in the open conversation, and clears after 5 s or a message', () => {
    const { activity, ws, clock, drawn } = live();
    activity.open('room:lobby');
    ws.frame({ type: 'message', ephemeral: true, from: 'alice', room: 'lobby', data: { typing: true } });
    ws.frame({ type: 'message', ephemeral: true, from: 'bob', room: 'lobby', data: { typing: true } }); // our own
    ws.frame({ type: 'message', ephemeral: true, from: 'carol', data: { typing: true } }); // another conversation
    assert.deepEqual(drawn.typing.at(-1), ['alice']);
    assert.equal(drawn.typing.length, 2, 'our own and another conversation drew nothing');
    clock.tick(TYPING_SHOWN_MS - 1000);
    ws.frame({ type: 'message', ephemeral: true, from: 'alice', room: 'lobby', data: { typing: true } });
    clock.tick(TYPING_SHOWN_MS - 1);
    assert.deepEqual(drawn.typing.at(-1), ['alice'], 'a new one keeps it');
    clock.tick(1);
    assert.deepEqual(drawn.typing.at(-1), []);
    ws.frame({ type: 'message', ephemeral: true, from: 'alice', room: 'lobby', data: { typing: true } });
    activity.stopTyping('room:lobby', 'alice');
    assert.deepEqual(drawn.typing.at(-1), []);
    ws.frame({ type: 'message', ephemeral: true, from: 'carol', data: { typing: true } });
    activity.open('user:carol');
    assert.deepEqual(drawn.typing.at(-1), ['carol']);
    assert.equal(typingText(['a', 'b']), 'a and b are typing…');
  });
});

describe('presence', () => {
  test('asks when a room opens and every poll, and lists members online first', async () => {
    const { activity, ws, clock, drawn } = live();
    activity.open('room:lobby');
    let asked = ws.sent.filter((f) => f.type === 'presence');
    assert.equal(asked.length, 1);
    ws.frame({ type: 'presence', ref: asked[0].ref, room: 'lobby', online: ['alice', 'bob'] });
    await flush();
    assert.deepEqual(drawn.members.at(-1), [
      { user: 'alice', online: true },
      { user: 'bob', online: true },
      { user: 'carol', online: false },
    ]);
    assert.deepEqual([...drawn.online], ['alice', 'bob']);
    clock.tick(PRESENCE_POLL_MS);
    asked = ws.sent.filter((f) => f.type === 'presence');
    assert.equal(asked.length, 2);
    ws.frame({ type: 'presence', ref: asked[1].ref, room: 'lobby', online: ['bob'] });
    await flush();
    assert.deepEqual(drawn.members.at(-1)[0], { user: 'bob', online: true });
    assert.equal(drawn.members.at(-1).find((m) => m.user === 'alice').online, false);
    // A direct conversation has no member list, and the polling stops.
    activity.open('user:alice');
    assert.equal(drawn.members.at(-1), null);
    clock.tick(PRESENCE_POLL_MS * 3);
    assert.equal(ws.sent.filter((f) => f.type === 'presence').length, 2);
  });
});
