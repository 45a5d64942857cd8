// app.js: the browser app served at /. It signs in (a dev name, or a token), keeps a room
// list, shows one conversation at a time (a room or a direct partner) and sends messages,
// all through the client library in switchboard.js.
//
// What is kept where, and why:
// - The session (name or token) is in sessionStorage: it survives a reload, not the tab.
// - Each user's conversations (the last MAX_KEPT messages of each), room list and direct
//   partners are in localStorage, with the library's last seen id. They are written together
//   (see writeBehind), so the stored position never runs ahead of the stored messages.
// - On load the app shows what it kept and the library resumes with `since`: the server
//   replays whatever arrived meanwhile, and ids already seen are dropped, so a reload loses
//   nothing and shows nothing twice. With nothing kept (a new browser), it resumes from
//   `0-0`: the server replays all the history it still holds. That goes through the user's
//   own WebSocket, so it works with a user token alone: GET /v1/users/{u}/messages needs
//   the API key, which a browser must never hold.
// - Your own direct messages live in the recipient's stream, not yours; only this browser
//   remembers them.

import { Switchboard, State, isMessageId, tokenSubject } from './switchboard.js';

const SESSION_KEY = 'switchboard.app:session';
const LAST_NAME_KEY = 'switchboard.app:last-name';
const HISTORY_PREFIX = 'switchboard.app:v1:';
const MAX_KEPT = 200; // messages kept per conversation
const VALID_ID = /^[A-Za-z0-9._@+-]{1,128}$/;

const $ = (id) => document.getElementById(id);

// --- storage ----------------------------------------------------------------------------

// writeBehind wraps localStorage so that writes are batched and land together: the library
// stores its last id here on every message, the app its history; a burst of replayed
// messages costs one write, and the position and the messages it covers are saved at the
// same moment. Pending writes are flushed when the page is hidden or unloaded.
function writeBehind(backing, delay) {
  const pending = new Map(); // key -> string, or a function producing the string
  let timer = null;
  const flush = () => {
    clearTimeout(timer);
    timer = null;
    for (const [key, value] of pending) {
      try {
        backing.setItem(key, typeof value === 'function' ? value() : value);
      } catch (err) {
        console.warn('switchboard: could not save', key, err); // quota: keep running
      }
    }
    pending.clear();
  };
  const schedule = () => {
    timer ??= setTimeout(flush, delay);
  };
  addEventListener('pagehide', flush);
  document.addEventListener('visibilitychange', () => document.hidden && flush());
  return {
    getItem(key) {
      if (!pending.has(key)) return backing.getItem(key);
      const value = pending.get(key);
      return typeof value === 'function' ? value() : value;
    },
    setItem(key, value) {
      pending.set(key, String(value));
      schedule();
    },
    // setLazy saves what fn returns at the next flush, so that serialising is done once.
    setLazy(key, fn) {
      pending.set(key, fn);
      schedule();
    },
    flush,
  };
}

function localStore() {
  try {
    localStorage.getItem('x');
    return localStorage;
  } catch {
    const m = new Map(); // storage blocked: the app works, without surviving reloads
    return { getItem: (k) => m.get(k) ?? null, setItem: (k, v) => m.set(k, v) };
  }
}

const store = writeBehind(localStore(), 250);

// --- history: what this browser keeps for one user --------------------------------------

// idTime returns the milliseconds of a message id: its time on the Redis server.
const idTime = (id) => Number(id.split('-')[0]);

class History {
  #key;

  constructor(user) {
    this.#key = HISTORY_PREFIX + user;
    let data = null;
    try {
      data = JSON.parse(store.getItem(this.#key));
    } catch {
      // Unreadable: start afresh; the server replays what it holds.
    }
    this.rooms = Array.isArray(data?.rooms) ? data.rooms.filter((r) => typeof r === 'string') : [];
    this.dms = Array.isArray(data?.dms) ? data.dms.filter((k) => typeof k === 'string') : [];
    this.current = typeof data?.current === 'string' ? data.current : null;
    // What another version of the app, or another script on this origin, left here is read
    // with suspicion: a conversation or an entry of the wrong shape is dropped, not shown.
    this.convs = {};
    if (data?.convs && typeof data.convs === 'object') {
      for (const [key, conv] of Object.entries(data.convs)) {
        if (!Array.isArray(conv?.messages)) continue;
        const messages = conv.messages.filter(
          (e) => e && typeof e === 'object' && typeof e.key === 'string' && typeof e.id === 'string' && Number.isFinite(e.ms),
        );
        this.convs[key] = { messages, unread: Number.isInteger(conv.unread) ? conv.unread : 0 };
      }
    }
  }

  get isEmpty() {
    return Object.values(this.convs).every((c) => c.messages.length === 0);
  }

  conv(key) {
    return (this.convs[key] ??= { messages: [], unread: 0 });
  }

  // add keeps entry in its conversation, in time order; false if it is already there.
  add(key, entry) {
    const list = this.conv(key).messages;
    let i = list.length;
    for (let j = list.length - 1; j >= 0 && j >= list.length - MAX_KEPT; j--) {
      if (list[j].key === entry.key) return false;
      if (list[j].ms > entry.ms) i = j;
    }
    list.splice(i, 0, entry);
    if (list.length > MAX_KEPT) list.splice(0, list.length - MAX_KEPT);
    this.save();
    return true;
  }

  save() {
    store.setLazy(this.#key, () =>
      JSON.stringify({ rooms: this.rooms, dms: this.dms, current: this.current, convs: this.convs }),
    );
  }
}

// --- conversations ------------------------------------------------------------------------

// Conversation keys: "room:<name>", "user:<partner>", and "backend" for messages a backend
// sent without naming a sender.
function convOf(m) {
  if (m.room) return `room:${m.room}`;
  if (m.from) return `user:${m.from}`;
  return 'backend';
}

function convTitle(key) {
  if (key === 'backend') return 'Backend';
  const [kind, name] = splitKey(key);
  return kind === 'room' ? `#${name}` : name;
}

function splitKey(key) {
  const i = key.indexOf(':');
  return i < 0 ? [key, ''] : [key.slice(0, i), key.slice(i + 1)];
}

// --- app state ----------------------------------------------------------------------------

let client = null;
let me = null;
let history = null;
let roomsChanged = null; // rooms joined or left while the room list is being fetched
let roomsRefused = false; // /v1 wants the API key: stop asking, keep the local list
let everLive = false; // this session has been live: a 401 now means the token expired

function start(session) {
  me = session.token ? tokenSubject(session.token) : session.user;
  history = new History(me);
  roomsRefused = false;
  everLive = false;
  client = new Switchboard({
    ...(session.token ? { token: session.token } : { user: session.user }),
    storage: store,
    // Nothing kept here for this user: ask for all the history the server still holds.
    since: history.isEmpty ? '0-0' : undefined,
  });
  client.on('state', onState);
  client.on('message', onMessage);
  client.on('error', (err) => showNotice(`The server said: ${err.message}`));
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));

  $('who-name').textContent = me;
  $('who').hidden = false;
  $('signin-view').hidden = true;
  $('app-view').hidden = false;
  renderSidebar();
  openConversation(history.current, { focus: false });
  client.connect();
}

function signOut(message = '') {
  client?.close();
  client = null;
  store.flush();
  sessionStorage.removeItem(SESSION_KEY);
  $('conn').dataset.state = State.IDLE;
  $('conn-text').textContent = STATE_TEXT[State.IDLE];
  $('who').hidden = true;
  $('app-view').hidden = true;
  showSignin(message);
}

// --- connection ---------------------------------------------------------------------------

const STATE_TEXT = {
  [State.IDLE]: 'Offline',
  [State.CONNECTING]: 'Connecting…',
  [State.LIVE]: 'Live',
  [State.RECONNECTING]: 'Reconnecting…',
  [State.STOPPED]: 'Stopped',
};

function onState({ state, reason, recovered }) {
  $('conn').dataset.state = state;
  $('conn-text').textContent = STATE_TEXT[state];
  if (state === State.LIVE) {
    everLive = true;
    hideBanner();
    refreshRooms();
    if (recovered === false) {
      showBanner('Some messages sent while you were away had expired on the server and could not be restored.');
    }
  } else if (state === State.STOPPED && reason) {
    onStopped(reason);
  }
}

function onStopped(reason) {
  switch (reason.code) {
    case 'closed':
      return;
    case 'unauthorized':
    case 'forbidden':
    case 'bad_request': {
      const session = JSON.parse(sessionStorage.getItem(SESSION_KEY) ?? '{}');
      // A name refused with 401 means the server wants tokens: it is not in dev mode.
      const wantsToken = !session.token && reason.code === 'unauthorized';
      let message = `Could not sign in: ${reason.message}`;
      if (wantsToken) message = 'This server is not in development mode: sign in with a token.';
      else if (everLive && reason.code === 'unauthorized') message = 'Your token has expired: sign in again.';
      signOut(message);
      if (wantsToken) setMode('token');
      return;
    }
    case 'kicked':
      return showBanner('The server disconnected you.', 'Connect again');
    default:
      return showBanner(`Disconnected: ${reason.message}`, 'Connect again');
  }
}

function showBanner(text, action = '') {
  $('banner-text').textContent = text;
  $('banner-action').hidden = !action;
  $('banner-action').textContent = action;
  $('banner').hidden = false;
}

function hideBanner() {
  $('banner').hidden = true;
}

let noticeTimer = null;
function showNotice(text) {
  $('notice').textContent = text;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => ($('notice').textContent = ''), 8000);
}

// --- messages -----------------------------------------------------------------------------

// MAX_DEPTH is how deeply a payload may nest to be shown: the server refuses deeper ones,
// but a message can reach the stream by other ways (a script writing to Redis), and
// JSON.stringify throws from about 5,000 levels, which would break the conversation and the
// saving of everything after it. Kept this low, the history itself stays serialisable.
const MAX_DEPTH = 64;

// depthWithin reports whether value nests no deeper than max levels. It walks with a stack
// of its own, not by recursion, so a hostile value cannot exhaust the call stack here.
function depthWithin(value, max) {
  const stack = [[value, 0]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop();
    if (v === null || typeof v !== 'object') continue;
    if (depth + 1 > max) return false;
    for (const child of Object.values(v)) stack.push([child, depth + 1]);
  }
  return true;
}

function onMessage(m) {
  const key = convOf(m);
  const entry = { key: m.id, id: m.id, from: typeof m.from === 'string' ? m.from : undefined, room: m.room, ms: idTime(m.id), mine: m.from === me };
  if ('data_b64' in m) {
    if (typeof m.data_b64 === 'string') entry.b64 = m.data_b64;
    else entry.unshowable = true;
  } else if (depthWithin(m.data, MAX_DEPTH)) {
    entry.data = m.data;
  } else {
    entry.unshowable = true; // kept as a placeholder, so that the position in the log holds
  }
  if (!history.add(key, entry)) return;
  const [kind, name] = splitKey(key);
  // A room message means we are a member, even if someone else added us (PUT /v1/rooms).
  if (kind === 'room' && !history.rooms.includes(name)) history.rooms.push(name);
  if (kind !== 'room' && !history.dms.includes(key)) history.dms.push(key);
  if (key === history.current) appendMessage(entry); // the log announces it
  else if (!entry.mine) $('announcer').textContent = `New message from ${entry.from ?? 'the backend'} in ${convTitle(key)}`;
  if ((key !== history.current || document.hidden) && !entry.mine) history.conv(key).unread++;
  history.save();
  renderSidebar();
}

// messageBody returns what to show of a payload: its text when it has one, else its JSON.
function messageBody(entry) {
  if (entry.unshowable) return unshowableBody();
  if (entry.b64 !== undefined) {
    const p = document.createElement('p');
    p.className = 'text muted';
    const padding = entry.b64.endsWith('==') ? 2 : entry.b64.endsWith('=') ? 1 : 0;
    p.textContent = `Binary payload, ${(entry.b64.length / 4) * 3 - padding} bytes`;
    return p;
  }
  const d = entry.data;
  const text = typeof d === 'string' ? d : typeof d?.text === 'string' ? d.text : null;
  if (text !== null) {
    const p = document.createElement('p');
    p.className = 'text';
    p.textContent = text;
    return p;
  }
  let json;
  try {
    json = JSON.stringify(d, null, 2);
  } catch {
    return unshowableBody();
  }
  const pre = document.createElement('pre');
  pre.className = 'json';
  pre.textContent = json;
  return pre;
}

function unshowableBody() {
  const p = document.createElement('p');
  p.className = 'text muted unshowable';
  p.textContent = 'This message could not be shown.';
  return p;
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const dateTimeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });

// messageItem renders one entry; whatever it holds, it returns an item, so that one message
// never breaks the conversation it is in.
function messageItem(entry) {
  try {
    return renderItem(entry);
  } catch (err) {
    console.warn('switchboard: a message could not be shown', entry?.id, err);
    const li = document.createElement('li');
    li.className = 'msg';
    if (typeof entry?.id === 'string') li.dataset.id = entry.id;
    if (typeof entry?.key === 'string') li.dataset.key = entry.key;
    li.append(unshowableBody());
    return li;
  }
}

function renderItem(entry) {
  const li = document.createElement('li');
  li.className = entry.mine ? 'msg mine' : 'msg';
  li.dataset.id = entry.id;
  li.dataset.key = entry.key;
  const meta = document.createElement('p');
  meta.className = 'meta';
  const from = document.createElement('span');
  from.className = 'from';
  from.textContent = entry.mine ? 'You' : (entry.from ?? 'Backend');
  const time = document.createElement('time');
  const when = new Date(entry.ms);
  time.dateTime = when.toISOString();
  time.title = dateTimeFormat.format(when);
  time.textContent = timeFormat.format(when);
  meta.append(from, ' ', time);
  li.append(meta, messageBody(entry));
  return li;
}

function appendMessage(entry) {
  const list = $('messages');
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  // Keep time order: a sent direct message can be acknowledged after a later reply arrived.
  let before = null;
  for (let el = list.lastElementChild; el && Number(el.dataset.ms) > entry.ms; el = el.previousElementSibling) before = el;
  const li = messageItem(entry);
  li.dataset.ms = entry.ms;
  list.insertBefore(li, before);
  $('empty').hidden = true;
  // Follow the conversation, unless the reader has scrolled up to read older messages.
  if (atBottom || entry.mine) list.scrollTop = list.scrollHeight;
}

// --- conversation view --------------------------------------------------------------------

function openConversation(key, { focus = true } = {}) {
  if (key && !isKnown(key)) key = null;
  history.current = key;
  if (key) history.conv(key).unread = 0;
  history.save();
  $('app-view').dataset.view = key ? 'chat' : 'list';

  const [kind, name] = key ? splitKey(key) : [null, null];
  $('conv-title').textContent = key ? convTitle(key) : 'No conversation open';
  $('leave-room').hidden = kind !== 'room';
  // A backend's messages cannot be answered: there is nobody to send to.
  $('composer').hidden = !key || key === 'backend';
  $('composer-input').placeholder = key ? `Message ${convTitle(key)}` : 'Message';
  $('notice').textContent = '';

  // A fresh list, not a cleared one: screen readers announce what is added to a live log,
  // and reading out a whole conversation on every switch would drown the new messages.
  const list = $('messages').cloneNode(false);
  const entries = key ? history.conv(key).messages : [];
  for (const entry of entries) {
    const li = messageItem(entry);
    li.dataset.ms = entry.ms;
    list.append(li);
  }
  $('messages').replaceWith(list);
  $('empty').hidden = entries.length > 0;
  $('empty').textContent = !key
    ? 'Join a room or open a direct message to start talking.'
    : kind === 'room'
      ? `No messages in ${convTitle(key)} yet. Say hello.`
      : key === 'backend'
        ? 'Messages your backend sends you without naming a sender appear here.'
        : `No messages with ${name} yet.`;
  list.scrollTop = list.scrollHeight;
  renderSidebar();
  if (focus && key && key !== 'backend') $('composer-input').focus();
}

function isKnown(key) {
  const [kind, name] = splitKey(key);
  return kind === 'room' ? history.rooms.includes(name) : history.dms.includes(key);
}

function renderSidebar() {
  renderList($('room-list'), history.rooms.map((r) => `room:${r}`), 'No rooms yet.');
  const dms = [...history.dms].sort((a, b) => (a === 'backend') - (b === 'backend') || a.localeCompare(b));
  renderList($('dm-list'), dms, 'No conversations yet.');
}

function renderList(ul, keys, emptyText) {
  ul.replaceChildren();
  if (keys.length === 0) {
    const li = document.createElement('li');
    li.className = 'muted small';
    li.textContent = emptyText;
    ul.append(li);
    return;
  }
  for (const key of keys) {
    const li = document.createElement('li');
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'conv';
    b.dataset.conv = key;
    if (key === history.current) b.setAttribute('aria-current', 'page');
    const name = document.createElement('span');
    name.className = 'conv-name';
    name.textContent = convTitle(key);
    b.append(name);
    const unread = history.convs[key]?.unread ?? 0;
    if (unread > 0) {
      const badge = document.createElement('span');
      badge.className = 'badge';
      badge.textContent = unread > 99 ? '99+' : String(unread);
      const hidden = document.createElement('span');
      hidden.className = 'visually-hidden';
      hidden.textContent = unread === 1 ? ' unread message' : ' unread messages';
      badge.append(hidden);
      b.append(badge);
    }
    li.append(b);
    ul.append(li);
  }
}

// --- rooms --------------------------------------------------------------------------------

// refreshRooms asks the server for the user's rooms: membership belongs to the user and can
// change while away (PUT/DELETE /v1/rooms/...). /v1 is open in dev mode; behind an API key
// the answer is 401 and the list this browser kept stands.
async function refreshRooms() {
  if (roomsRefused) return;
  const changed = (roomsChanged = new Map());
  try {
    const res = await fetch(`/v1/users/${encodeURIComponent(me)}/rooms`, { cache: 'no-store' });
    if (res.status === 401 || res.status === 403) roomsRefused = true;
    if (!res.ok) return;
    const { rooms } = await res.json();
    if (changed !== roomsChanged || !Array.isArray(rooms)) return;
    const next = new Set(rooms);
    for (const [room, joined] of changed) joined ? next.add(room) : next.delete(room);
    // Keep the order the user knows; new rooms go last.
    history.rooms = [...history.rooms.filter((r) => next.has(r)), ...[...next].filter((r) => !history.rooms.includes(r)).sort()];
    history.save();
    if (history.current?.startsWith('room:') && !next.has(splitKey(history.current)[1])) openConversation(null, { focus: false });
    renderSidebar();
  } catch {
    // Offline: the kept list stands.
  } finally {
    if (changed === roomsChanged) roomsChanged = null;
  }
}

async function joinRoom(room) {
  await client.join(room);
  roomsChanged?.set(room, true);
  if (!history.rooms.includes(room)) history.rooms.push(room);
  history.save();
  openConversation(`room:${room}`);
}

async function leaveRoom(room) {
  await client.leave(room);
  roomsChanged?.set(room, false);
  history.rooms = history.rooms.filter((r) => r !== room);
  history.save();
  openConversation(null);
  $('join-room').focus();
}

// --- sending ------------------------------------------------------------------------------

async function send(text) {
  const key = history.current;
  const [kind, name] = splitKey(key);
  const data = { text };
  if (kind === 'room') {
    // The room's copy comes back to us like to every member; that is what we show.
    await client.send({ room: name, data });
    return;
  }
  const ack = await client.send({ to: name, data });
  if (name === me) return; // a note to self comes back through our own stream
  const entry = { key: `sent:${name}:${ack.id}`, id: ack.id, from: me, ms: isMessageId(ack.id) ? idTime(ack.id) : Date.now(), mine: true, data };
  if (history.add(key, entry) && history.current === key) appendMessage(entry);
}

// --- sign-in form -------------------------------------------------------------------------

function setMode(mode) {
  $(mode === 'token' ? 'mode-token' : 'mode-dev').checked = true;
  $('dev-fields').hidden = mode !== 'dev';
  $('token-fields').hidden = mode !== 'token';
}

function showSignin(message = '') {
  $('signin-view').hidden = false;
  $('signin-error').textContent = message;
  $('signin-name').value ||= localStore().getItem(LAST_NAME_KEY) ?? '';
  (document.querySelector('input[name=mode]:checked').value === 'token' ? $('signin-token') : $('signin-name')).focus();
}

function onSignin(event) {
  event.preventDefault();
  const mode = document.querySelector('input[name=mode]:checked').value;
  if (mode === 'dev') {
    const user = $('signin-name').value.trim();
    if (!VALID_ID.test(user)) {
      $('signin-error').textContent = 'A name is 1 to 128 letters, digits or . _ @ + -';
      $('signin-name').focus();
      return;
    }
    localStore().setItem(LAST_NAME_KEY, user);
    start({ user });
  } else {
    const token = $('signin-token').value.trim();
    const sub = tokenSubject(token);
    if (!sub || !VALID_ID.test(sub)) {
      $('signin-error').textContent = 'That is not a token with a user id (its "sub" claim).';
      $('signin-token').focus();
      return;
    }
    start({ token });
  }
}

// --- wiring -------------------------------------------------------------------------------

function wire() {
  $('signin-form').addEventListener('submit', onSignin);
  for (const radio of document.querySelectorAll('input[name=mode]')) {
    radio.addEventListener('change', () => setMode(radio.value));
  }
  $('sign-out').addEventListener('click', () => signOut());
  $('banner-action').addEventListener('click', () => {
    hideBanner();
    client?.connect();
  });

  $('join-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const input = $('join-room');
    const room = input.value.trim().replace(/^#/, '');
    $('join-error').textContent = '';
    if (!VALID_ID.test(room)) {
      $('join-error').textContent = 'A room name is 1 to 128 letters, digits or . _ @ + -';
      return;
    }
    try {
      await joinRoom(room);
      input.value = '';
    } catch (err) {
      $('join-error').textContent = `Could not join: ${err.message}`;
    }
  });

  $('dm-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const user = $('dm-user').value.trim().replace(/^@/, '');
    $('dm-error').textContent = '';
    if (!VALID_ID.test(user)) {
      $('dm-error').textContent = 'A user name is 1 to 128 letters, digits or . _ @ + -';
      return;
    }
    const key = `user:${user}`;
    if (!history.dms.includes(key)) history.dms.push(key);
    $('dm-user').value = '';
    openConversation(key);
  });

  const lists = [$('room-list'), $('dm-list')];
  for (const ul of lists) {
    ul.addEventListener('click', (e) => {
      const b = e.target.closest('button[data-conv]');
      if (b) openConversation(b.dataset.conv);
    });
  }

  $('leave-room').addEventListener('click', async () => {
    const [, room] = splitKey(history.current);
    try {
      await leaveRoom(room);
    } catch (err) {
      showNotice(`Could not leave: ${err.message}`);
    }
  });

  $('back').addEventListener('click', () => {
    $('app-view').dataset.view = 'list';
    document.querySelector('.conv[aria-current]')?.focus();
  });

  const input = $('composer-input');
  input.addEventListener('keydown', (e) => {
    // Enter sends, Shift+Enter starts a new line; not while an input method composes.
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      $('composer').requestSubmit();
    }
  });
  $('composer').addEventListener('submit', async (e) => {
    e.preventDefault();
    const text = input.value.trim();
    if (!text || !history.current) return;
    input.value = '';
    try {
      await send(text);
    } catch (err) {
      if (!input.value) input.value = text; // give the words back to retry
      showNotice(
        err.code === 'disconnected'
          ? 'The connection dropped while sending; the message may not have arrived.'
          : `Not sent: ${err.message}`,
      );
    }
  });

  // Seen in another tab or while hidden: clear the unread count when the user comes back.
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden && history?.current) {
      history.conv(history.current).unread = 0;
      history.save();
      renderSidebar();
    }
  });
}

wire();
const saved = (() => {
  try {
    return JSON.parse(sessionStorage.getItem(SESSION_KEY));
  } catch {
    return null;
  }
})();
if (saved && (VALID_ID.test(saved.user ?? '') || tokenSubject(saved.token ?? ''))) {
  start(saved);
} else {
  // Both ways to sign in are offered; a name refused with 401 switches the form to tokens.
  showSignin();
}
