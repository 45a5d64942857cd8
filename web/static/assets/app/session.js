// session.js: one signed-in user, from sign-in to sign-out: the client connection, the
// history this browser keeps for them, their room list, and sending. A new sign-in is a new
// Session, so nothing of the previous user's state carries over.

import { State } from '../switchboard.js';
import { History, convTitle, sentEntry, splitKey } from './history.js';

// Session runs the app for one user. Its parts are given: session ({user} or {token}), me
// (the user id), store (a SavedState), view (a View), createClient (options → Switchboard),
// fetch, isHidden (whether the page is hidden), and end(message, {wantsToken}), called when
// the server refuses the user for good.
export class Session {
  #view;
  #fetch;
  #isHidden;
  #end;
  #roomsChanged = null; // rooms joined or left while the room list is being fetched
  #roomsRefused = false; // /v1 wants the API key: stop asking, keep the local list
  #everLive = false; // this session has been live: a 401 now means the token expired

  constructor({ session, me, store, view, createClient, fetch, isHidden, end }) {
    this.session = session;
    this.me = me;
    this.history = new History(store, me);
    this.#view = view;
    this.#fetch = fetch;
    this.#isHidden = isHidden;
    this.#end = end;
    this.client = createClient({
      ...(session.token ? { token: session.token } : { user: session.user }),
      storage: store,
      // Nothing kept here for this user: ask for all the history the server still holds.
      since: this.history.isEmpty ? '0-0' : undefined,
    });
    this.client.on('state', (s) => this.#onState(s));
    this.client.on('message', (m) => this.#onMessage(m));
    this.client.on('error', (err) => view.showNotice(`The server said: ${err.message}`));
  }

  // start shows what this browser kept and connects.
  start() {
    this.#view.showSignedIn(this.me);
    this.#view.renderSidebar(this.history);
    this.open(this.history.current, { focus: false });
    this.client.connect();
  }

  close() {
    this.client.close();
  }

  open(key, { focus = true } = {}) {
    this.history.open(key);
    this.#view.showConversation(this.history, { focus });
  }

  openDirect(user) {
    const key = `user:${user}`;
    this.history.addDirect(key);
    this.open(key);
  }

  markCurrentRead() {
    if (!this.history.current) return;
    this.history.markCurrentRead();
    this.#view.renderSidebar(this.history);
  }

  async joinRoom(room) {
    await this.client.join(room);
    this.#roomsChanged?.set(room, true);
    this.history.joined(room);
    this.open(`room:${room}`);
  }

  async leaveRoom(room) {
    await this.client.leave(room);
    this.#roomsChanged?.set(room, false);
    this.history.left(room);
    this.open(null);
  }

  // send sends text to the open conversation.
  async send(text) {
    const key = this.history.current;
    const [kind, name] = splitKey(key);
    const data = { text };
    if (kind === 'room') {
      // The room's copy comes back to us like to every member; that is what we show.
      await this.client.send({ room: name, data });
      return;
    }
    const ack = await this.client.send({ to: name, data });
    if (name === this.me) return; // a note to self comes back through our own stream
    const entry = sentEntry(name, this.me, ack.id, data);
    if (this.history.add(key, entry) && this.history.current === key) this.#view.appendMessage(entry);
  }

  #onState({ state, reason, recovered }) {
    this.#view.showConnection(state);
    if (state === State.LIVE) {
      this.#everLive = true;
      this.#view.hideBanner();
      this.refreshRooms();
      if (recovered === false) {
        this.#view.showBanner('Some messages sent while you were away had expired on the server and could not be restored.');
      }
    } else if (state === State.STOPPED && reason) {
      this.#onStopped(reason);
    }
  }

  #onStopped(reason) {
    switch (reason.code) {
      case 'closed':
        return;
      case 'unauthorized':
      case 'forbidden':
      case 'bad_request': {
        // A name refused with 401 means the server wants tokens: it is not in dev mode.
        const wantsToken = !this.session.token && reason.code === 'unauthorized';
        let message = `Could not sign in: ${reason.message}`;
        if (wantsToken) message = 'This server is not in development mode: sign in with a token.';
        else if (this.#everLive && reason.code === 'unauthorized') message = 'Your token has expired: sign in again.';
        return this.#end(message, { wantsToken });
      }
      case 'kicked':
        return this.#view.showBanner('The server disconnected you.', 'Connect again');
      default:
        return this.#view.showBanner(`Disconnected: ${reason.message}`, 'Connect again');
    }
  }

  #onMessage(m) {
    const got = this.history.receive(m, this.me);
    if (!got) return;
    const { key, entry } = got;
    const { current } = this.history;
    if (key === current) this.#view.appendMessage(entry); // the log announces it
    else if (!entry.mine) this.#view.announce(`New message from ${entry.from ?? 'the backend'} in ${convTitle(key)}`);
    if ((key !== current || this.#isHidden()) && !entry.mine) this.history.markUnread(key);
    this.#view.renderSidebar(this.history);
  }

  // refreshRooms asks the server for the user's rooms: membership belongs to the user and
  // can change while away (PUT/DELETE /v1/rooms/...). /v1 is open in dev mode; behind an API
  // key the answer is 401 and the list this browser kept stands.
  async refreshRooms() {
    if (this.#roomsRefused) return;
    const changed = (this.#roomsChanged = new Map());
    try {
      const res = await this.#fetch(`/v1/users/${encodeURIComponent(this.me)}/rooms`, { cache: 'no-store' });
      if (res.status === 401 || res.status === 403) this.#roomsRefused = true;
      if (!res.ok) return;
      const { rooms } = await res.json();
      if (changed !== this.#roomsChanged || !Array.isArray(rooms)) return;
      const next = new Set(rooms);
      for (const [room, joined] of changed) joined ? next.add(room) : next.delete(room);
      if (this.history.setRooms(next)) this.open(null, { focus: false });
      this.#view.renderSidebar(this.history);
    } catch {
      // Offline: the kept list stands.
    } finally {
      if (changed === this.#roomsChanged) this.#roomsChanged = null;
    }
  }
}
