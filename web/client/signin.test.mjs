// Unit tests of the app's sign-in parts that need no page (web/static/assets/app/): which
// sessions are resumed, how a token URL is read, and how refusals are worded.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';

import { SwitchboardError } from '../static/assets/switchboard.js';
import { isSession, isTokenURL } from '../static/assets/app/signin.js';
import { fetchToken } from '../static/assets/app/session.js';
import { Sessions, refusal } from '../static/assets/app/main.js';
import { token } from './fakes.mjs';

describe('sessions', () => {
  test('each way to sign in is resumed, and nothing else', () => {
    for (const s of [{ user: 'alice' }, { token: token('carol') }, { tokenUrl: 'https://app.example.com/t' }, { tokenUrl: 'http://127.0.0.1:9/t', user: 'carol' }, { site: true }, { site: true, user: 'erin' }]) {
      assert.equal(isSession(s), true, JSON.stringify(s));
    }
    for (const s of [null, {}, 'alice', { user: 'bad name' }, { token: 'nope' }, { tokenUrl: 'javascript:alert(1)' }, { tokenUrl: 'ftp://x/t' }, { site: 'yes' }, { site: true, user: 'no way' }]) {
      assert.equal(isSession(s), false, JSON.stringify(s));
    }
    assert.equal(isTokenURL('/relative'), false);
  });
});

describe('fetchToken', () => {
  const answer = (status, body) => async (url, init) => {
    assert.equal(init.credentials, 'include', 'the site cookie goes along');
    return { ok: status >= 200 && status < 300, status, text: async () => body };
  };

  test('takes the token as text or as JSON {token}', async () => {
    assert.equal(await fetchToken(answer(200, ' abc.def.ghi\n'), 'https://x/t'), 'abc.def.ghi');
    assert.equal(await fetchToken(answer(200, '{"token":"a.b.c","expires_in":60}'), 'https://x/t'), 'a.b.c');
  });

  test('says what went wrong', async () => {
    await assert.rejects(fetchToken(answer(401, ''), 'https://x/t'), /https:\/\/x\/t answered 401/);
    await assert.rejects(fetchToken(answer(200, '{"jwt":"a.b.c"}'), 'https://x/t'), /without a "token"/);
    const down = async () => {
      throw new TypeError('Failed to fetch');
    };
    await assert.rejects(fetchToken(down, 'https://x/t'), /could not reach https:\/\/x\/t \(Failed to fetch\)/);
  });
});

describe('refusals in words', () => {
  test('forbidden, unavailable and not_member say what to do', () => {
    const err = (code, message) => new SwitchboardError(code, message);
    assert.equal(refusal('join #ops', err('forbidden', 'your token does not grant this room')), 'You are not allowed to join #ops: your token does not grant this room.');
    assert.match(refusal('join #ops', err('unavailable', 'hook timed out')), /could not check whether you may \(hook timed out\)\. Try again\./);
    assert.equal(refusal('send to #ops', err('not_member', 'join first')), 'Join the room first to send to #ops.');
    assert.equal(refusal('join #ops', err('rate_limited', 'slow down')), 'Could not join #ops: slow down');
  });
});

describe('the kept session', () => {
  const storage = () => {
    const m = new Map();
    return { map: m, getItem: (k) => m.get(k) ?? null, setItem: (k, v) => m.set(k, String(v)), removeItem: (k) => m.delete(k) };
  };
  const payload = Buffer.from(JSON.stringify({ sub: 'carol', exp: 1 })).toString('base64url');

  test('a name or a token URL outlives the tab (localStorage); a pasted token stays with its tab', () => {
    const local = storage();
    const tab = storage();
    const sessions = new Sessions(local, tab);
    sessions.set({ user: 'alice' });
    assert.equal(local.map.size, 1);
    assert.deepEqual(new Sessions(local, storage()).get(), { user: 'alice' }, 'a new tab is signed in');
    sessions.set({ token: `h.${payload}.s` });
    assert.equal(local.map.size, 0, 'the name is replaced');
    assert.equal(tab.map.size, 1);
    assert.equal(new Sessions(local, storage()).get(), null, 'the pasted token is not in a new tab');
    sessions.set({ tokenUrl: 'https://app.example.com/token' });
    assert.deepEqual(new Sessions(local, storage()).get(), { tokenUrl: 'https://app.example.com/token' });
  });

  test('sign-out clears it everywhere; something unreadable is no session', () => {
    const local = storage();
    const tab = storage();
    const sessions = new Sessions(local, tab);
    sessions.set({ user: 'alice' });
    sessions.clear();
    assert.equal(sessions.get(), null);
    local.setItem('switchboard.app:session', '{not json');
    tab.setItem('switchboard.app:session', JSON.stringify({ user: 'bad name' }));
    assert.equal(sessions.get(), null);
  });
});
