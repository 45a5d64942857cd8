// session.js: one signed-in user, from sign-in to sign-out: the client connection, the
// history this browser keeps for them, their room list, and sending. A new sign-in is a new
// Session, so nothing of the previous user's state carries over.
//
// How the user is known: a dev name or a pasted token say it at once; with a token URL or
// the site's cookie (the server's connect hook) the server's welcome says it, and the
// session remembers it for the next load. Until then the History keeps nothing.

import { State, SwitchboardError, tokenSubject } from '../switchboard.js';
import { History, convTitle, sentEntry, splitKey } from './history.js';
import { Outbox } from './outbox.js';
import { Activity } from './activity.js';

// HISTORY_PAGE is how many of a room's newest messages opening it loads.
const HISTORY_PAGE = 50;

const encoder = new TextEncoder();

// NOWHERE is the store of a History whose user the server has not named yet.
const NOWHERE = { getItem: () => null, setItem() {}, setLazy() {} };

// fetchToken asks a token URL of the site's backend for a fresh token, with the browser's
// cookies for that site: the answer is the token as text, or JSON {"token": "..."}.
export async function fetchToken(fetch, url) {
  let res;
  try {
    res = await fetch(url, { credentials: 'include', cache: 'no-store' });
  } catch (err) {
    throw new Error(`could not reach ${url} (${err.message})`);
  }
  if (!res.ok) throw new Error(`${url} answered ${res.status}`);
  const text = (await res.text()).trim();
  if (!text.startsWith('{')) return text;
  const token = JSON.parse(text)?.token;
  if (typeof token !== 'string') throw new Error(`${url} answered JSON without a "token"`);
  return token;
}

// Session runs the app for one user. Its parts are given: session ({user}, {token},
// {tokenUrl, user?} or {site: true, user?}), me (the user id, when known), store (a
// SavedState), view (a View), createClient (options → Switchboard), fetch, isHidden
// (whether the page is hidden), remember(session) (keeps the session for a reload),
// end(message, {wantsToken}), called when the server refuses the user for good, and
// notify(title, body, key), told of each new message from someone else while the user
// looks elsewhere.
export class Session {
  #store;
  #view;
  #isHidden;
  #end;
  #remember;
  #notify;
  #everLive = false; // this session has been live: a 401 now means the token expired
  #tokenTrouble = false; // the banner says a fresh token could not be had

  constructor({ session, me, store, view, createClient, fetch, isHidden, end, remember = () => {}, notify = () => {} }) {
    this.session = session;
    this.me = me ?? null;
    this.#store = store;
    this.history = new History(me ? store : NOWHERE, me ?? '');
    this.outbox = this.#newOutbox(me ? store : NOWHERE, me ?? '');
    this.#view = view;
    this.#isHidden = isHidden;
    this.#end = end;
    this.#remember = remember;
    this.#notify = notify;
    this.client = createClient({
      ...this.#identity(fetch),
      storage: store,
      // Nothing kept here for this user (or the user is not known yet: then what was kept
      // is merged, duplicates dropped): ask for all the history the server still holds.
      since: !me || this.history.isEmpty ? '0-0' : undefined,
    });
    this.client.on('state', (s) => this.#onState(s));
    this.client.on('welcome', (w) => this.#onWelcome(w));
    this.client.on('rooms', (rooms) => this.#onRooms(rooms));
    this.client.on('message', (m) => this.#onMessage(m));
    this.activity = new Activity({
      client: this.client,
      me: this.me,
      view,
      isHidden,
      // A room's members we know of: those who wrote in what we keep of it.
      members: (key) => [...new Set(this.history.conv(key).messages.map((e) => e.from).filter((f) => typeof f === 'string'))],
    });
    this.client.on('ephemeral', (m) => this.activity.onEphemeral(m));
    this.client.on('expiring', (e) => this.#onExpiring(e));
    this.client.on('token_error', (err) => this.#onTokenError(err));
    this.client.on('refreshed', () => this.#tokenFine());
    this.client.on('error', (err) => view.showNotice(`The server said: ${err.message}`));
  }

  // identity is how the client says who the user is, by the kind of session.
  #identity(fetch) {
    const s = this.session;
    if (s.site) return { connectHook: true, user: s.user };
    if (s.tokenUrl) return { getToken: () => fetchToken(fetch, s.tokenUrl), user: s.user };
    if (s.token) return { token: s.token };
    return { user: s.user };
  }

  #newOutbox(store, user) {
    return new Outbox(store, user, {
      send: (item) => {
        const [kind, name] = splitKey(item.key);
        return this.client.send(kind === 'room' ? { room: name, data: item.data } : { to: name, data: item.data });
      },
      onChange: () => this.#view.showPending(this.outbox.of(this.history.current)),
    });
  }

  // start shows what this browser kept and connects.
  start() {
    this.#view.showSignedIn(this.me ?? '…');
    this.#view.renderSidebar(this.history);
    this.open(this.history.current, { focus: false });
    this.client.connect();
  }

  close() {
    this.activity.stop();
    this.client.close();
  }

  // typing says the user types in the open conversation (throttled by Activity).
  typing() {
    this.activity.typing(this.history.current);
  }

  open(key, { focus = true } = {}) {
    key = this.history.open(key);
    this.#view.showConversation(this.history, { focus });
    this.#view.showPending(this.outbox.of(key));
    this.activity.open(key);
    if (key?.startsWith('room:')) this.#loadHistory(key);
  }

  // loadHistory reads the newest messages of the room conversation key from the server
  // (when live; else at the next welcome) and shows those this browser did not have: what
  // was said before we joined, or on another device.
  async #loadHistory(key) {
    if (this.client.state !== State.LIVE) return;
    const history = this.history;
    let messages;
    try {
      messages = await this.client.history(splitKey(key)[1], { limit: HISTORY_PAGE });
    } catch (err) {
      if (err.code !== 'not_member' && err.code !== 'stopped') this.#view.showNotice(`Could not load the history of ${convTitle(key)}: ${err.message}`);
      return;
    }
    if (history !== this.history) return; // another user since
    let added = 0;
    for (const m of messages) if (history.receive(m, this.me, { page: true })) added++;
    if (added > 0 && history.current === key) {
      this.#view.showConversation(history, { focus: false });
      this.#view.showPending(this.outbox.of(key));
    }
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
    this.history.joined(room);
    this.open(`room:${room}`);
  }

  async leaveRoom(room) {
    await this.client.leave(room);
    this.history.left(room);
    this.open(null);
  }

  // send sends text to the open conversation: at once when live, else once the connection
  // is back (the outbox keeps it, shown as waiting). Text over the server's size limit is
  // refused here, with too_large, before anything is queued or sent: never cut short.
  send(text) {
    const key = this.history.current;
    const data = { text };
    const bytes = encoder.encode(JSON.stringify(data)).length;
    const limit = this.client.maxMessageBytes;
    if (bytes > limit) {
      throw new SwitchboardError('too_large', `it is ${formatBytes(bytes)}, and the server takes at most ${formatBytes(limit)}`, { bytes, limit });
    }
    this.outbox.add(key, data);
    this.activity.sent(key);
    this.#pump();
  }

  // retry and discard act on a failed message of the outbox.
  retry(lid) {
    if (this.outbox.retry(lid)) this.#pump();
  }

  discard(lid) {
    return this.outbox.discard(lid);
  }

  #pump() {
    this.outbox.pump(() => this.client.state === State.LIVE, {
      done: (item, ack) => {
        // A room's message comes back to us like to every member, a direct one as the
        // sender's copy; the ack's copy_id lets us show it now and drop that copy later.
        const [kind, name] = splitKey(item.key);
        if (kind === 'room' || name === this.me) return;
        const entry = sentEntry(name, this.me, ack, item.data);
        if (this.history.add(item.key, entry) && this.history.current === item.key) this.#view.appendMessage(entry);
      },
      failed: (item, err) => {
        if (err.code !== 'too_large') return;
        // Too large for the server after all (its limit is lower than we knew): give the
        // words back to shorten, and say so.
        this.outbox.discard(item.lid);
        if (this.history.current === item.key) this.#view.giveBack(item.data.text);
        this.#view.showNotice(
          err.closeCode
            ? `Not sent: the message is too large for the server, which closed the connection (${err.closeCode}) without accepting it. Shorten it or split it.`
            : `Not sent: the message is too large for the server (${err.message}). Shorten it or split it.`,
        );
      },
    });
  }

  // renewToken takes a token pasted into the banner: the open connection goes on with it
  // (or, stopped with an expired token, connects again with it).
  async renewToken(token) {
    const sub = tokenSubject(token);
    if (!sub) throw new Error('That is not a token with a user id (its "sub" claim).');
    if (sub !== this.me) throw new Error(`That token is for ${sub}, not ${this.me}.`);
    const stopped = this.client.state === State.STOPPED;
    await this.client.refresh(token);
    this.session = { ...this.session, token };
    this.#remember(this.session);
    this.#view.hideBanner();
    if (stopped) this.client.connect();
  }

  #onState({ state, reason, recovered }) {
    this.#view.showConnection(state);
    if (state === State.LIVE) {
      this.#everLive = true;
      this.#view.hideBanner();
      this.#pump();
      if (this.history.current?.startsWith('room:')) {
        this.#loadHistory(this.history.current);
        this.activity.refresh();
      }
      if (recovered === false) {
        this.#view.showBanner('Some messages sent while you were away had expired on the server and could not be restored.');
      }
    } else if (state === State.STOPPED && reason) {
      this.#onStopped(reason);
    }
  }

  // onWelcome adopts the user the server names, when it is not the one this session had:
  // with a token URL or the site's cookie that is how the app learns who it is.
  #onWelcome(w) {
    if (typeof w.user !== 'string' || w.user === this.me) return;
    this.me = w.user;
    this.activity.me = w.user;
    this.history = new History(this.#store, w.user);
    this.outbox = this.#newOutbox(this.#store, w.user);
    if (this.session.site || this.session.tokenUrl) {
      this.session = { ...this.session, user: w.user };
      this.#remember(this.session);
    }
    this.#view.showSignedIn(w.user);
    this.open(this.history.current, { focus: false });
  }

  // onRooms takes the user's rooms from the server (each welcome, and rooms that appear):
  // membership belongs to the user and can change while away (a backend adds or removes).
  #onRooms(rooms) {
    if (this.history.setRooms(rooms)) this.open(null, { focus: false });
    this.#view.renderSidebar(this.history);
  }

  // onExpiring: with a pasted token there is nobody to ask for a new one but the user.
  #onExpiring({ in: seconds, refreshing }) {
    if (refreshing) return;
    this.#view.showBanner(`Your token expires in ${seconds} seconds. Paste a new one to stay connected.`, '', { renew: true });
  }

  #onTokenError(err) {
    this.#tokenTrouble = true;
    this.#view.showBanner(`Could not get a fresh token: ${err.message}. Trying again…`);
  }

  #tokenFine() {
    if (!this.#tokenTrouble) return;
    this.#tokenTrouble = false;
    this.#view.hideBanner();
  }

  #onStopped(reason) {
    switch (reason.code) {
      case 'closed':
        return;
      case 'token_expired':
        return this.#view.showBanner('Your token has expired. Paste a new one to connect again.', '', { renew: true });
      case 'unauthorized':
      case 'forbidden':
      case 'bad_request': {
        const s = this.session;
        // A name refused with 401 means the server wants tokens: it is not in dev mode.
        const wantsToken = !s.token && !s.tokenUrl && !s.site && reason.code === 'unauthorized';
        let message = `Could not sign in: ${reason.message}`;
        if (wantsToken) message = 'This server is not in development mode: sign in with a token, or by your site.';
        else if (s.site && reason.code === 'unauthorized') message = `Your site did not sign you in: ${reason.message}. Sign in on your site, then try again.`;
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
    if (entry.from) this.activity.stopTyping(key, entry.from);
    if (key === current) this.#view.appendMessage(entry); // the log announces it
    else if (!entry.mine) this.#view.announce(`New message from ${entry.from ?? 'the backend'} in ${convTitle(key)}`);
    if ((key !== current || this.#isHidden()) && !entry.mine) {
      this.history.markUnread(key);
      const text = typeof entry.data?.text === 'string' ? entry.data.text : typeof entry.data === 'string' ? entry.data : 'New message';
      // Not for what a resume replays from long ago.
      if (Date.now() - entry.ms < 60_000) this.#notify(key.startsWith('room:') ? `${entry.from ?? 'Backend'} in ${convTitle(key)}` : (entry.from ?? 'Backend'), text, key);
    }
    this.#view.renderSidebar(this.history);
  }
}

// formatBytes says a size in words: "900 bytes", "64 KB".
export function formatBytes(n) {
  if (n < 1024) return `${n} bytes`;
  const kb = n / 1024;
  return `${kb < 10 ? kb.toFixed(1) : Math.round(kb)} KB`;
}
