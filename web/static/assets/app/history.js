// history.js: what this browser keeps for one user (conversations, room list, direct
// partners, the open conversation) and how a message frame becomes a kept entry. No page
// and no network here: it runs and is tested in Node.

import { isMessageId } from '../switchboard.js';

// HISTORY_PREFIX prefixes the storage key of a user's history.
export const HISTORY_PREFIX = 'switchboard.app:v1:';

// MAX_KEPT is how many messages are kept per conversation; older ones are dropped.
export const MAX_KEPT = 200;

// MAX_DEPTH is how deeply a payload may nest to be shown: the server refuses deeper ones,
// but a message can reach the stream by other ways (a script writing to Redis), and
// JSON.stringify throws from about 5,000 levels, which would break the conversation and the
// saving of everything after it. Kept this low, the history itself stays serialisable.
export const MAX_DEPTH = 64;

// idTime returns the milliseconds of a message id: its time on the Redis server.
export const idTime = (id) => Number(id.split('-')[0]);

// Conversation keys: "room:<name>", "user:<partner>", and "backend" for messages a backend
// sent without naming a sender. The sender's copy of a direct message we sent (from us,
// with "to") belongs with its recipient.
export function convOf(m, me) {
  if (typeof m.room === 'string' && m.room) return `room:${m.room}`;
  if (typeof m.to === 'string' && m.to && m.from === me) return `user:${m.to}`;
  if (typeof m.from === 'string' && m.from) return `user:${m.from}`;
  return 'backend';
}

// entryKey is what identifies a message across the ways it reaches us: a room message by
// its id in the room's history (history_id live, id in a history page), so that reading a
// room's history drops what was delivered already; anything else by its id in our stream.
export function entryKey(m, { page = false } = {}) {
  if (page) return `h:${m.id}`;
  if (typeof m.history_id === 'string' && isMessageId(m.history_id)) return `h:${m.history_id}`;
  return m.id;
}

export function splitKey(key) {
  const i = key.indexOf(':');
  return i < 0 ? [key, ''] : [key.slice(0, i), key.slice(i + 1)];
}

export function convTitle(key) {
  if (key === 'backend') return 'Backend';
  const [kind, name] = splitKey(key);
  return kind === 'room' ? `#${name}` : name;
}

// depthWithin reports whether value nests no deeper than max levels. It walks with a stack
// of its own, not by recursion, so a hostile value cannot exhaust the call stack here.
export function depthWithin(value, max) {
  const stack = [[value, 0]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop();
    if (v === null || typeof v !== 'object') continue;
    if (depth + 1 > max) return false;
    for (const child of Object.values(v)) stack.push([child, depth + 1]);
  }
  return true;
}

// entryOf turns a message frame into the entry kept and shown for it. A payload that cannot
// be shown safely (too deep, or a data_b64 that is not a string) is kept as a placeholder,
// so that the position in the log holds.
export function entryOf(m, me, { page = false } = {}) {
  const entry = { key: entryKey(m, { page }), id: m.id, from: typeof m.from === 'string' ? m.from : undefined, room: m.room, ms: idTime(m.id), mine: m.from === me };
  if ('data_b64' in m) {
    if (typeof m.data_b64 === 'string') entry.b64 = m.data_b64;
    else entry.unshowable = true;
  } else if (depthWithin(m.data, MAX_DEPTH)) {
    entry.data = m.data;
  } else {
    entry.unshowable = true;
  }
  return entry;
}

// sentEntry is the entry for a direct message we sent, from its ack: keyed by the id of
// the sender's copy in our stream (copy_id), which arrives as a message too and is then
// dropped as a duplicate; with no copy (its write failed: "copy":false, or an older
// server) the message is only in the recipient's stream, and only this browser remembers it.
export function sentEntry(to, me, ack, data, now = Date.now) {
  const copy = isMessageId(ack?.copy_id) ? ack.copy_id : null;
  const id = copy ?? (isMessageId(ack?.id) ? ack.id : '');
  return { key: copy ?? `sent:${to}:${id}`, id, from: me, ms: id ? idTime(id) : now(), mine: true, data };
}

// isEntry reports whether a kept entry has the shape the app writes.
const isEntry = (e) => e && typeof e === 'object' && typeof e.key === 'string' && typeof e.id === 'string' && Number.isFinite(e.ms);

// History is one user's kept conversations, saved through store (a SavedState).
export class History {
  #key;
  #store;

  constructor(store, user) {
    this.#store = store;
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
        const messages = conv.messages.filter(isEntry);
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

  // receive keeps a message frame for user me and returns its conversation and entry, or
  // null when it was already kept. page says m comes from a page of a room's history.
  receive(m, me, { page = false } = {}) {
    if (!isMessageId(m?.id)) return null;
    const key = convOf(m, me);
    const entry = entryOf(m, me, { page });
    if (!this.add(key, entry)) return null;
    const [kind, name] = splitKey(key);
    // A room message means we are a member, even if someone else added us (PUT /v1/rooms).
    if (kind === 'room' && !this.rooms.includes(name)) this.rooms.push(name);
    if (kind !== 'room' && !this.dms.includes(key)) this.dms.push(key);
    this.save();
    return { key, entry };
  }

  isKnown(key) {
    const [kind, name] = splitKey(key);
    return kind === 'room' ? this.rooms.includes(name) : this.dms.includes(key);
  }

  // open makes key the open conversation (none when it is not one we know) and marks it
  // read; it returns the key opened.
  open(key) {
    if (key && !this.isKnown(key)) key = null;
    this.current = key;
    if (key) this.conv(key).unread = 0;
    this.save();
    return key;
  }

  markUnread(key) {
    this.conv(key).unread++;
    this.save();
  }

  markCurrentRead() {
    if (!this.current) return;
    this.conv(this.current).unread = 0;
    this.save();
  }

  addDirect(key) {
    if (!this.dms.includes(key)) this.dms.push(key);
  }

  joined(room) {
    if (!this.rooms.includes(room)) this.rooms.push(room);
    this.save();
  }

  left(room) {
    this.rooms = this.rooms.filter((r) => r !== room);
    this.save();
  }

  // setRooms takes the server's room list, keeping the order the user knows: new rooms go
  // last. It reports whether the open conversation is a room we are no longer in.
  setRooms(rooms) {
    const next = new Set(rooms);
    this.rooms = [...this.rooms.filter((r) => next.has(r)), ...[...next].filter((r) => !this.rooms.includes(r)).sort()];
    this.save();
    return Boolean(this.current?.startsWith('room:') && !next.has(splitKey(this.current)[1]));
  }

  save() {
    this.#store.setLazy(this.#key, () =>
      JSON.stringify({ rooms: this.rooms, dms: this.dms, current: this.current, convs: this.convs }),
    );
  }
}
