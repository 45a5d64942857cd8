// activity.js: who is around in the open conversation. Typing indicators travel as
// ephemeral messages ({"typing":true}: published, never stored); who is online in a room
// comes from the presence request, asked when the room opens and every PRESENCE_POLL_MS
// while it stays open and the page is visible (the server pushes no presence changes, so
// the app polls). No page here: the view draws what this says.

import { State } from '../switchboard.js';
import { convOf, splitKey } from './history.js';

// TYPING_EVERY_MS: at most one typing message per conversation this often, however fast
// the user types. TYPING_SHOWN_MS: how long "is typing" stays without a new one.
export const TYPING_EVERY_MS = 2000;
export const TYPING_SHOWN_MS = 5000;
export const PRESENCE_POLL_MS = 5000;

// Activity follows typing and presence for one signed-in user. Its parts: client (a
// Switchboard), me, view ({showTyping(users), showMembers(members|null), setOnline(set)}),
// members(key) (the users known to have written in conversation key), isHidden, timers and
// now (the clock).
export class Activity {
  #client;
  #view;
  #members;
  #isHidden;
  #timers;
  #now;
  #lastTyping = new Map(); // conversation key -> when we last said we type
  #typers = new Map(); // conversation key -> Map(user -> timer clearing it)
  #online = new Map(); // room -> Set of online users, as last asked
  #seen = new Map(); // room -> Set of every user seen online there: members gone offline
  #current = null;
  #poll = null;
  me;

  constructor({ client, me, view, members = () => [], isHidden = () => false, timers = globalThis, now = Date.now }) {
    this.#client = client;
    this.me = me;
    this.#view = view;
    this.#members = members;
    this.#isHidden = isHidden;
    this.#timers = timers;
    this.#now = now;
  }

  // typing tells the others in conversation key that we type, throttled.
  typing(key) {
    if (!key || key === 'backend' || this.#client.state !== State.LIVE) return;
    const now = this.#now();
    if (now - (this.#lastTyping.get(key) ?? -Infinity) < TYPING_EVERY_MS) return;
    this.#lastTyping.set(key, now);
    const [kind, name] = splitKey(key);
    if (kind === 'user' && name === this.me) return;
    const target = kind === 'room' ? { room: name } : { to: name };
    // Lost or refused (rate limited, offline): it was stale a second later anyway.
    this.#client.send({ ...target, data: { typing: true }, ephemeral: true }).catch(() => {});
  }

  // sent says we sent a message to key: the next keystroke announces typing again.
  sent(key) {
    this.#lastTyping.delete(key);
  }

  // onEphemeral takes an ephemeral message: someone types, or stopped.
  onEphemeral(m) {
    if (typeof m.from !== 'string' || m.from === this.me || typeof m.data?.typing !== 'boolean') return;
    const key = convOf(m, this.me);
    if (m.data.typing) this.#startTyping(key, m.from);
    else this.stopTyping(key, m.from);
  }

  // stopTyping: user stopped typing in key (a message from them arrived, say).
  stopTyping(key, user) {
    const typers = this.#typers.get(key);
    if (!typers?.has(user)) return;
    this.#timers.clearTimeout(typers.get(user));
    typers.delete(user);
    if (key === this.#current) this.#view.showTyping([...typers.keys()]);
  }

  #startTyping(key, user) {
    if (!this.#typers.has(key)) this.#typers.set(key, new Map());
    const typers = this.#typers.get(key);
    this.#timers.clearTimeout(typers.get(user));
    typers.set(user, this.#timers.setTimeout(() => this.stopTyping(key, user), TYPING_SHOWN_MS));
    if (key === this.#current) this.#view.showTyping([...typers.keys()]);
  }

  // open follows conversation key (or none): its typers, and for a room its members.
  open(key) {
    this.#current = key;
    this.#view.showTyping([...(this.#typers.get(key)?.keys() ?? [])]);
    this.#timers.clearTimeout(this.#poll);
    this.#poll = null;
    if (key?.startsWith('room:')) {
      this.#drawMembers();
      this.refresh();
    } else {
      this.#view.showMembers(null);
    }
  }

  // refresh asks who is online in the open room now, and again later.
  async refresh() {
    const key = this.#current;
    this.#timers.clearTimeout(this.#poll);
    this.#poll = null;
    if (!key?.startsWith('room:')) return;
    this.#poll = this.#timers.setTimeout(() => this.refresh(), PRESENCE_POLL_MS);
    if (this.#client.state !== State.LIVE || this.#isHidden()) return;
    const room = splitKey(key)[1];
    let online;
    try {
      online = await this.#client.presence(room);
    } catch {
      return; // not a member (any more), rate limited, offline: the next poll tries again
    }
    this.#online.set(room, new Set(online));
    if (!this.#seen.has(room)) this.#seen.set(room, new Set());
    for (const u of online) this.#seen.get(room).add(u);
    if (key === this.#current) this.#drawMembers();
  }

  // online is everyone seen online in any room, as last asked.
  get online() {
    const all = new Set();
    for (const users of this.#online.values()) for (const u of users) all.add(u);
    return all;
  }

  stop() {
    this.#timers.clearTimeout(this.#poll);
    this.#poll = null;
    for (const typers of this.#typers.values()) for (const t of typers.values()) this.#timers.clearTimeout(t);
    this.#typers.clear();
  }

  // drawMembers shows the open room's members we know of (online now or before, or seen
  // writing there, and us), online first. (The full member list needs the API key.)
  #drawMembers() {
    const room = splitKey(this.#current)[1];
    const online = this.#online.get(room) ?? new Set();
    const known = new Set([...(this.#seen.get(room) ?? []), ...this.#members(this.#current), this.me].filter(Boolean));
    const members = [...known].map((user) => ({ user, online: online.has(user) || (user === this.me && this.#client.state === State.LIVE) }));
    members.sort((a, b) => b.online - a.online || a.user.localeCompare(b.user));
    this.#view.showMembers(members);
    this.#view.setOnline(this.online);
  }
}

// typingText says who types, in words.
export function typingText(users) {
  if (users.length === 0) return '';
  if (users.length === 1) return `${users[0]} is typing…`;
  if (users.length === 2) return `${users[0]} and ${users[1]} are typing…`;
  return `${users.length} people are typing…`;
}
