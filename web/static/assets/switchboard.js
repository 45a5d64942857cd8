// switchboard.js: the Switchboard client, a dependency-free ES module (with its helpers in
// switchboard/). It holds one WebSocket to a Switchboard server and keeps it up: it
// reconnects with capped exponential backoff and jitter, resumes with `since` so that no
// message is lost or shown twice, follows the server's close codes, refreshes its token on
// the same socket when the server says it is expiring, and settles join/leave/send/event/
// rpc/history/presence promises by the server's answer. It runs unchanged in browsers and
// in Node (pass `WebSocket`). docs/js-client.md documents it; in short:
//
//   import { Switchboard } from '/assets/switchboard.js';
//   const sb = new Switchboard({ getToken: () => fetch('/token').then((r) => r.text()) });
//   // or { user: 'alice' } on a dev server, or {} when the server's connect hook knows you
//   sb.on('message', (m) => console.log(m.from, m.data));
//   sb.on('state', ({ state }) => console.log(state));     // connecting, live, ...
//   sb.connect();
//   await sb.join('lobby');
//   await sb.send({ room: 'lobby', data: { text: 'hi all' } });
//   const order = await sb.rpc('orders.get', { id: 42 });

import {
  CloseCode,
  State,
  SwitchboardError,
  compareIds,
  defaultStorage,
  defaultURL,
  isMessageId,
  memoryStorage,
  tokenClaims,
  tokenSubject,
} from './switchboard/basics.js';
import { Requests } from './switchboard/requests.js';

export { CloseCode, State, SwitchboardError, compareIds, isMessageId, tokenClaims, tokenSubject };

// DEFAULT_MAX_MESSAGE_BYTES is the server's default --max-message-bytes.
const DEFAULT_MAX_MESSAGE_BYTES = 65536;

// utf8Length is the number of bytes of text in UTF-8 (what the server counts).
const encoder = new TextEncoder();
const utf8Length = (text) => encoder.encode(text).length;

// Refusals that no retry will cure: the server answered the upgrade request with one of
// these statuses before any WebSocket existed.
const FATAL_STATUS = { 400: 'bad_request', 401: 'unauthorized', 403: 'forbidden' };

// Mode is how a client says who it is: a token, a dev name, or nothing (the server's
// connect hook knows the user from the request, a session cookie say).
const Mode = Object.freeze({ TOKEN: 'token', DEV: 'dev', HOOK: 'hook' });

/**
 * Switchboard is one user's connection to a Switchboard server. Options:
 *
 * - `url`: the WebSocket endpoint, absolute or relative to the page; default `/ws` on the
 *   page's own host. `http(s):` becomes `ws(s):`.
 * - `getToken`: an async function returning a fresh JWT. It is called before every
 *   connection attempt, when the server says the token is expiring (the new one goes to
 *   the server on the same socket), and after a close 4003. A failure is retried with the
 *   backoff and reported as a `token_error` event.
 * - `token`: a JWT string, used as it is until refresh(newToken) replaces it; or a
 *   function, which is the same as `getToken`. With `getToken` too, a string token is
 *   used for the first connection only.
 * - `user`: in dev mode (no token), the user to connect as. With a token or `connectHook`
 *   it only names the storage key until the welcome says whose the connection is.
 * - `connectHook`: connect with neither token nor user: the server's connect hook names the
 *   user (from the page's cookies). Also the mode when neither token nor user is given.
 * - `since`: resume after this message id instead of the stored one (`'0-0'`: everything
 *   the server still holds).
 * - `storage`: where the last seen id is kept per user (`getItem`/`setItem`); default
 *   localStorage. `storageKey`: key prefix, default `'switchboard:last-id:'`.
 * - `backoff`: `{ initial: 500, max: 30000, factor: 2 }` in ms: the nth retry waits a random
 *   time between half and all of min(max, initial × factor^n).
 * - `requestTimeout`: ms before a request rejects with `timeout`; default 10000.
 * - `connectTimeout`: ms a connection attempt may take to be welcomed; default 15000.
 * - `maxMessageBytes`: the server's --max-message-bytes (default 65536): a send or event
 *   whose data is larger, as JSON in UTF-8, is refused with `too_large` before anything is
 *   sent. A welcome carrying `max_message_bytes` replaces it.
 * - `WebSocket`, `fetch`, `random`, `timers` ({setTimeout, clearTimeout}), `now`: the
 *   platform, to inject in tests or in Node. `fetch: null` turns off asking why a
 *   connection was refused.
 */
export class Switchboard {
  #url;
  #mode;
  #token; // the token string held: the option's, or the last one given to refresh()
  #getToken; // a function giving fresh tokens, or null
  #devUser;
  #since; // the since option: it wins over what storage says, for any user
  #WebSocket;
  #fetch;
  #random;
  #timers;
  #now;
  #storage;
  #storageKey;
  #backoff;
  #requestTimeout;
  #connectTimeout;
  #maxMessageBytes;

  #state = State.IDLE;
  #listeners = new Map();
  #ws = null; // the current socket; frames and closes of any other are ignored
  #sentSince = null; // the since the current socket was opened with
  #attempt = 0; // connection attempts since the last welcome
  #retryTimer = null;
  #connectTimer = null;
  #refreshTimer = null;
  #refreshAttempt = 0;
  #resumedAs = null; // the user a welcome made us reconnect as, once per run
  #requests; // the requests waiting for an answer or to be sent
  #user = null; // whose storage key we use; the welcome confirms it
  #node = null;
  #rooms = null; // the user's rooms: the welcome's, then what this client saw change
  #lastId = null;
  #roomPos = new Map(); // a position per big room (docs/protocol.md, "Big rooms")
  #dedupe = []; // the dedupe tokens of the last messages delivered, oldest first
  #stopReason = null;
  #welcome = null;
  #epoch = 0; // bumped by connect() and stop(): async work of an older epoch is dropped
  #onOnline = () => this.#retryNow();

  constructor(options = {}) {
    const {
      url = defaultURL(),
      token,
      getToken,
      user,
      connectHook = false,
      since,
      storage = defaultStorage(),
      storageKey = 'switchboard:last-id:',
      backoff = {},
      requestTimeout = 10_000,
      connectTimeout = 15_000,
      maxMessageBytes = DEFAULT_MAX_MESSAGE_BYTES,
      WebSocket = globalThis.WebSocket,
      fetch = globalThis.fetch ? globalThis.fetch.bind(globalThis) : null,
      random = Math.random,
      timers = globalThis,
      now = Date.now,
    } = options;
    if (!url) throw new TypeError('Switchboard: a url is required outside a web page');
    if (!WebSocket) throw new TypeError('Switchboard: no WebSocket; pass options.WebSocket');
    if (getToken != null && typeof getToken !== 'function') throw new TypeError('Switchboard: getToken must be a function');
    if (token != null && typeof token !== 'string' && typeof token !== 'function') throw new TypeError('Switchboard: token must be a string or a function');
    if (since != null && !isMessageId(since)) throw new TypeError(`Switchboard: since is not a message id: ${since}`);
    let endpoint;
    try {
      endpoint = new URL(url, globalThis.location?.href); // relative to the page, in a browser
    } catch {
      throw new TypeError(`Switchboard: not a URL: ${url}`);
    }
    endpoint.protocol = endpoint.protocol.replace(/^http/, 'ws');
    this.#url = endpoint.toString();
    this.#getToken = getToken ?? (typeof token === 'function' ? token : null);
    this.#token = typeof token === 'string' ? token : null;
    this.#mode = this.#getToken || this.#token != null ? Mode.TOKEN : user && !connectHook ? Mode.DEV : Mode.HOOK;
    this.#devUser = this.#mode === Mode.DEV ? user : null;
    this.#since = since ?? null;
    this.#WebSocket = WebSocket;
    this.#fetch = fetch;
    this.#random = random;
    this.#timers = timers;
    this.#now = now;
    this.#storage = storage ?? memoryStorage();
    this.#storageKey = storageKey;
    this.#backoff = { initial: 500, max: 30_000, factor: 2, ...backoff };
    this.#requestTimeout = requestTimeout;
    this.#requests = new Requests(timers, requestTimeout);
    this.#connectTimeout = connectTimeout;
    this.#maxMessageBytes = maxMessageBytes;
    this.#user = user || (this.#token ? tokenSubject(this.#token) : null) || (this.#mode === Mode.HOOK ? this.#read(this.#hookUserKey) : null);
    this.#lastId = this.#since ?? this.#loadLastId();
    this.#roomPos = this.#loadRoomPos();
  }

  /** state is the client's current State. */
  get state() {
    return this.#state;
  }

  /** user is the connected user: the welcome's, or until then the one we expect. */
  get user() {
    return this.#user;
  }

  /** node is the server node of the current or last connection. */
  get node() {
    return this.#node;
  }

  /**
   * rooms is the user's rooms, sorted: the last welcome's list, kept up to date with this
   * client's joins and leaves and the room messages it receives; null before a welcome.
   */
  get rooms() {
    return this.#rooms ? [...this.#rooms].sort() : null;
  }

  /** maxMessageBytes is the largest data a send or event may carry (JSON, UTF-8 bytes). */
  get maxMessageBytes() {
    return this.#maxMessageBytes;
  }

  /** lastId is the id the client resumes after: the newest message it has delivered. */
  get lastId() {
    return this.#lastId;
  }

  /**
   * roomPositions is where the client resumes each big room after, as {room: id}: a big
   * room's messages (`big: true`) carry ids of the room, not of the user, and are resumed
   * with room_since.
   */
  get roomPositions() {
    return Object.fromEntries(this.#roomPos);
  }

  /**
   * on calls fn for each event of a type and returns a function that stops it. Types:
   * `message` (the message frame), `state` ({state, previous, ...details}), `welcome` (the
   * welcome frame), `ephemeral` (an ephemeral message frame: no id, not stored, never
   * replayed: typing, cursors), `room_mode` (a room turned big or small: see roomPositions), `rooms` (the user's rooms, when they change), `expiring` ({in,
   * refreshing}), `refreshed` (the refresh's ack), `token_error` (a SwitchboardError: getting
   * or sending a fresh token failed; it is retried), `error` (a SwitchboardError the server
   * sent with no request to blame).
   */
  on(type, fn) {
    if (!this.#listeners.has(type)) this.#listeners.set(type, new Set());
    this.#listeners.get(type).add(fn);
    return () => this.off(type, fn);
  }

  /** off removes a listener added with on. */
  off(type, fn) {
    this.#listeners.get(type)?.delete(fn);
  }

  /** connect starts connecting; it does nothing unless the client is idle or stopped. */
  connect() {
    if (this.#state !== State.IDLE && this.#state !== State.STOPPED) return this;
    this.#stopReason = null;
    this.#attempt = 0;
    this.#resumedAs = null;
    this.#epoch++;
    globalThis.addEventListener?.('online', this.#onOnline);
    this.#setState(State.CONNECTING);
    this.#open();
    return this;
  }

  /**
   * ready resolves with the welcome frame once the client is live (at once if it is), and
   * rejects with the reason if the client stops first.
   */
  ready() {
    if (this.#state === State.LIVE) return Promise.resolve(this.#welcome);
    if (this.#state === State.STOPPED) return Promise.reject(this.#stopReason);
    return new Promise((resolve, reject) => {
      const off = this.on('state', ({ state, reason }) => {
        if (state === State.LIVE) resolve(this.#welcome);
        else if (state === State.STOPPED) reject(reason);
        else return;
        off();
      });
    });
  }

  /** close stops the client: no reconnect; waiting requests reject with `stopped`. */
  close() {
    this.#stop(new SwitchboardError('closed', 'the client was closed'));
  }

  /** join makes the user a member of room; it resolves with the ack. */
  join(room) {
    return this.#request({ type: 'join', room });
  }

  /** leave ends the user's membership of room; it resolves with the ack. */
  leave(room) {
    return this.#request({ type: 'leave', room });
  }

  /**
   * send posts data to a user ({to, data}) or a room ({room, data}). It resolves with the
   * ack: `id` (the message's id in the recipient's stream) and `copy_id` (the sender's
   * copy's, in ours) for a user, `recipients` and `history_id` for a room. With
   * `ephemeral: true` the message is only published (typing indicators): the ack has no id,
   * and while the client is not live it rejects at once with `disconnected` rather than wait,
   * since it would be stale by then. Data larger than maxMessageBytes is refused with
   * `too_large` before anything is sent.
   */
  send({ to, room, data, ephemeral = false }) {
    const frame = to != null ? { type: 'send', to, data } : { type: 'send', room, data };
    if (ephemeral) {
      frame.ephemeral = true;
      if (this.#state !== State.LIVE && this.#state !== State.STOPPED) {
        return Promise.reject(new SwitchboardError('disconnected', 'not connected: an ephemeral message is not kept for later', { request: 'send' }));
      }
    }
    return this.#checkSize(data, 'send') ?? this.#request(frame);
  }

  /** event sends a client event for the backend's webhook; it resolves once queued. */
  event(name, data) {
    return this.#checkSize(data, 'event') ?? this.#request({ type: 'event', name, data });
  }

  /**
   * history reads a room's history (members only): the newest `limit` messages (server
   * default 50, at most 100) before the id `before` (or the newest of all). It resolves
   * with the messages, oldest first, each a message frame whose `id` is the room history's
   * (the `history_id` of a live room message); the array's `more` says older ones remain:
   * page back with `before` set to the first id.
   */
  async history(room, { limit, before } = {}) {
    const frame = { type: 'history', room };
    if (limit != null) frame.limit = limit;
    if (before != null) frame.before = before;
    const f = await this.#request(frame);
    const messages = Array.isArray(f.messages) ? f.messages.filter((m) => m && typeof m === 'object') : [];
    messages.more = f.more === true;
    return messages;
  }

  /** presence resolves with the room's members that are connected now, sorted. */
  async presence(room) {
    const f = await this.#request({ type: 'presence', room });
    return Array.isArray(f.online) ? f.online.filter((u) => typeof u === 'string') : [];
  }

  /**
   * rpc calls method on the backend's rpc hook with data, and resolves with the backend's
   * answer. It rejects with the server's code (`rpc_failed` with the backend's `status`,
   * `unavailable`, `not_enabled`, `rate_limited`), with `timeout` after options.timeout ms
   * (default requestTimeout), or with `disconnected` when the connection drops first: the
   * backend may or may not have run the call.
   */
  async rpc(method, data = null, { timeout = this.#requestTimeout } = {}) {
    const result = await this.#request({ type: 'rpc', method, data }, timeout);
    return result.data;
  }

  /**
   * refresh hands the client a fresh token (or, without one, asks getToken for it). It is
   * used for every later connection, and sent to the server at once when the client is
   * live, so that the open connection outlives the old token. It resolves with the
   * server's ack, or null when the client is not live (the token waits for the next
   * connection); it rejects with the server's code (`forbidden`) when the token is refused.
   */
  async refresh(token) {
    if (this.#mode !== Mode.TOKEN) throw new SwitchboardError('bad_request', 'only a client that connects with a token can refresh it');
    if (token == null) token = await this.#fetchToken();
    else if (typeof token !== 'string' || !token) throw new TypeError('Switchboard: refresh takes a token string');
    this.#token = token;
    if (this.#state !== State.LIVE) return null;
    const ack = await this.#request({ type: 'refresh', token });
    this.#timers.clearTimeout(this.#refreshTimer);
    this.#emit('refreshed', ack);
    return ack;
  }

  // --- connection ---------------------------------------------------------------------

  async #open() {
    const epoch = this.#epoch;
    let token = null;
    if (this.#mode === Mode.TOKEN) {
      try {
        token = this.#heldToken() ?? (await this.#fetchToken());
      } catch (err) {
        if (epoch !== this.#epoch) return;
        const failure = this.#tokenError(err, 'connect');
        this.#retry(null, failure.message);
        return;
      }
      if (epoch !== this.#epoch) return; // stopped, maybe started again, meanwhile
      if (!this.#user) {
        // Now we know whose stream this is, and where to resume it.
        this.#user = tokenSubject(token);
        this.#lastId = this.#since ?? this.#loadLastId();
      }
    }
    const url = this.#connectURL(token);
    let ws;
    try {
      ws = new this.#WebSocket(url);
    } catch (err) {
      this.#stop(new SwitchboardError('bad_request', `cannot open ${this.#url}: ${err.message}`));
      return;
    }
    this.#ws = ws;
    this.#sentSince = this.#lastId;
    let opened = false;
    ws.onopen = () => {
      opened = true;
    };
    ws.onmessage = (ev) => {
      if (ws === this.#ws) this.#onFrame(ev.data);
    };
    ws.onerror = () => {}; // a close event always follows, with more to go on
    ws.onclose = (ev) => {
      if (ws === this.#ws) this.#onClose(ev.code, ev.reason, opened, url);
    };
    // A socket can hang half-open, or open and never be welcomed; give up on it in time.
    this.#connectTimer = this.#timers.setTimeout(() => {
      if (ws !== this.#ws) return;
      this.#detach(ws, 4000, 'connect timeout');
      this.#onClose(1006, 'connect timeout', opened, null);
    }, this.#connectTimeout);
  }

  // heldToken is the token string to connect with, when there is one: without getToken,
  // the one held; with it, the option's string, once and while still valid (later attempts
  // ask getToken for fresh ones). Null means: ask getToken.
  #heldToken() {
    if (this.#token == null || (this.#getToken && !this.#tokenLive(this.#token))) return null;
    const token = this.#token;
    if (this.#getToken) this.#token = null;
    return token;
  }

  async #fetchToken() {
    if (!this.#getToken) throw new SwitchboardError('token_failed', 'there is no getToken to ask for a fresh token');
    const token = await this.#getToken();
    if (typeof token !== 'string' || !token) {
      throw new TypeError(`getToken gave ${token === '' ? 'an empty string' : typeof token}, not a token`);
    }
    return token;
  }

  // tokenLive reports whether token may still connect: its exp, if it says, is ahead.
  #tokenLive(token) {
    const exp = tokenClaims(token)?.exp;
    return typeof exp !== 'number' || exp * 1000 > this.#now();
  }

  // tokenError reports a failure to get or hand over a fresh token as a token_error event;
  // the caller retries. It returns the error reported.
  #tokenError(err, phase) {
    const failure =
      err instanceof SwitchboardError && err.code !== 'token_failed'
        ? err
        : new SwitchboardError('token_failed', `getting a token failed: ${err?.message ?? err}`, { cause: err });
    failure.phase = phase;
    this.#emit('token_error', failure);
    return failure;
  }

  #connectURL(token) {
    const u = new URL(this.#url);
    if (token != null) u.searchParams.set('token', token);
    else if (this.#mode === Mode.DEV) u.searchParams.set('user', this.#devUser);
    if (this.#lastId) u.searchParams.set('since', this.#lastId);
    if (this.#roomPos.size > 0) {
      u.searchParams.set('room_since', [...this.#roomPos].map(([room, id]) => `${room}:${id}`).join(','));
    }
    return u.toString();
  }

  #onFrame(text) {
    let f;
    try {
      f = JSON.parse(text);
    } catch {
      this.#emit('error', new SwitchboardError('bad_frame', 'the server sent a frame that is not JSON'));
      return;
    }
    switch (f?.type) {
      case 'welcome':
        return this.#onWelcome(f);
      case 'message':
        return this.#onMessage(f);
      case 'expiring':
        return this.#onExpiring(f);
      case 'room_mode':
        return this.#onRoomMode(f);
      case 'ack':
      case 'error':
      case 'result':
      case 'history':
      case 'presence':
        return this.#settle(f);
      default:
        // Unknown frame types are newer servers talking; ignoring them is forward compatible.
        return undefined;
    }
  }

  #onWelcome(f) {
    this.#timers.clearTimeout(this.#connectTimer);
    if (typeof f.user === 'string' && f.user && f.user !== this.#user && this.#adoptUser(f.user)) return;
    this.#node = f.node ?? null;
    // With no message seen yet, resume later from where this connection starts, so that
    // what arrives while we are away is not lost.
    if (!this.#lastId && isMessageId(f.last_id)) this.#saveLastId(f.last_id);
    // The big rooms start where the welcome says; a room it does not list is not big now
    // (it turned small, or the user left it): its position is of no use any more.
    const big = new Map();
    for (const r of Array.isArray(f.big_rooms) ? f.big_rooms : []) {
      if (typeof r?.room === 'string' && isMessageId(r.last_id)) big.set(r.room, r.last_id);
    }
    const changed = big.size !== this.#roomPos.size || [...big].some(([room, id]) => this.#roomPos.get(room) !== id);
    this.#roomPos = big;
    if (changed) this.#saveRoomPos(); // a user in no big room never writes the key
    this.#attempt = 0;
    this.#welcome = f;
    if (Array.isArray(f.rooms)) this.#rooms = new Set(f.rooms.filter((r) => typeof r === 'string'));
    if (Number.isInteger(f.max_message_bytes) && f.max_message_bytes > 0) this.#maxMessageBytes = f.max_message_bytes;
    this.#emit('welcome', f);
    if (this.#rooms) this.#emit('rooms', this.rooms);
    this.#setState(State.LIVE, { recovered: f.recovered, node: this.#node });
    const ws = this.#ws;
    this.#requests.flush((text) => ws.send(text));
  }

  // adoptUser makes user, whom a welcome named, the one whose position we keep: in dev mode
  // it was ours to choose, otherwise the token or the connect hook decide. When the socket
  // was opened at another position than user's own (we guessed someone else), it reconnects
  // at once from user's, and reports true: this connection is dropped.
  #adoptUser(user) {
    if (this.#mode === Mode.DEV) return false;
    this.#user = user;
    if (this.#mode === Mode.HOOK) this.#write(this.#hookUserKey, user);
    this.#lastId = this.#since ?? this.#loadLastId();
    this.#roomPos = this.#loadRoomPos();
    if (this.#lastId === this.#sentSince || this.#resumedAs === user) return false;
    this.#resumedAs = user;
    this.#detach(this.#ws, 1000, 'reconnecting from the position of the welcomed user');
    this.#ws = null;
    this.#open();
    return true;
  }

  #onMessage(f) {
    // An ephemeral message has no id: nothing to resume from, nothing to order it by.
    if (f.ephemeral === true) {
      this.#emit('ephemeral', f);
      return;
    }
    // The server promises each message once per connection; across reconnects a replay can
    // overlap what was already delivered, and this drops the overlap.
    if (!isMessageId(f.id)) return;
    if (f.big === true && typeof f.room === 'string') {
      // A big room's message: its id is a position in the room, resumed with room_since.
      const pos = this.#roomPos.get(f.room);
      if (pos && compareIds(f.id, pos) <= 0) return;
      this.#roomPos.set(f.room, f.id);
      this.#saveRoomPos();
      this.#roomChanged(f.room, true);
      if (this.#repeats(f)) return;
      this.#emit('message', f);
      return;
    }
    if (this.#lastId && compareIds(f.id, this.#lastId) <= 0) return;
    this.#saveLastId(f.id);
    if (this.#repeats(f)) return;
    // A message from a room we did not know: a backend added the user to it.
    if (typeof f.room === 'string') this.#roomChanged(f.room, true);
    this.#emit('message', f);
  }

  // repeats says f repeats a message delivered before under another id: a backend's retry
  // that Redis stored again after a failover lost the first (docs/protocol.md, "dedupe").
  // The server drops such a repeat on a connection; this catches one across a reconnect.
  #repeats(f) {
    if (typeof f.dedupe !== 'string') return false;
    if (this.#dedupe.includes(f.dedupe)) return true;
    this.#dedupe.push(f.dedupe);
    if (this.#dedupe.length > 64) this.#dedupe.shift();
    return false;
  }

  // onRoomMode follows a room turning big (or the user joining a big room: its position
  // from now on) or small again (its next messages come with the user's ids).
  #onRoomMode(f) {
    if (typeof f.room !== 'string') return;
    if (f.big === true && isMessageId(f.last_id)) this.#roomPos.set(f.room, f.last_id);
    else if (f.big === false) this.#roomPos.delete(f.room);
    else return;
    this.#saveRoomPos();
    this.#emit('room_mode', f);
  }

  #roomChanged(room, member) {
    if (!this.#rooms || this.#rooms.has(room) === member) return;
    if (member) this.#rooms.add(room);
    else this.#rooms.delete(room);
    this.#emit('rooms', this.rooms);
  }

  // onExpiring answers the server's warning that the token runs out: with getToken, a fresh
  // token on this same socket; without, the application is told (event `expiring`) and may
  // call refresh(token) itself before the server closes the connection with 4003.
  #onExpiring(f) {
    this.#emit('expiring', { in: f.in, refreshing: Boolean(this.#getToken) });
    if (!this.#getToken) return;
    this.#timers.clearTimeout(this.#refreshTimer);
    this.#refreshAttempt = 0;
    this.#refreshOn(this.#ws);
  }

  // refreshOn gets a fresh token and sends it on ws; a failure is reported and tried again
  // with the backoff for as long as ws is the connection (its close ends the retries: the
  // reconnect asks for a token anyway).
  async #refreshOn(ws) {
    if (ws !== this.#ws || !ws) return;
    try {
      const token = await this.#fetchToken();
      if (ws !== this.#ws) return;
      const ack = await this.#request({ type: 'refresh', token });
      if (ws !== this.#ws) return;
      this.#emit('refreshed', ack);
    } catch (err) {
      if (ws !== this.#ws) return;
      this.#tokenError(err, 'refresh');
      const delay = this.#backoffDelay(this.#refreshAttempt++);
      this.#refreshTimer = this.#timers.setTimeout(() => this.#refreshOn(ws), delay);
    }
  }

  #onClose(code, reason, opened, url) {
    this.#timers.clearTimeout(this.#connectTimer);
    this.#timers.clearTimeout(this.#refreshTimer);
    this.#ws = null;
    this.#requests.dropInflight(code);
    if (this.#state === State.STOPPED) return;
    if (code === CloseCode.KICKED) {
      this.#stop(new SwitchboardError('kicked', reason || 'disconnected by the server', { closeCode: code }));
    } else if (code === CloseCode.POLICY) {
      this.#stop(new SwitchboardError('policy', reason || 'closed for breaking the server policy', { closeCode: code }));
    } else if (code === CloseCode.TOKEN_EXPIRED) {
      this.#onExpired(code, reason);
    } else if (!opened && url) {
      this.#diagnose(url, code);
    } else if ((code === CloseCode.RESTARTING || code === CloseCode.TRY_AGAIN) && this.#attempt === 0) {
      // The server asks us to come straight back. Only the first time: a node that keeps
      // closing us before any welcome (say, Redis is down) gets the usual backoff.
      this.#retry(0, reason, code);
    } else {
      this.#retry(null, reason, code);
    }
  }

  // onExpired follows a close 4003: the token ran out. With getToken (or a token given to
  // refresh() that is still valid, or the connect hook, which asks the cookie again) the
  // client reconnects at once and resumes; holding only the expired token it stops.
  #onExpired(code, reason) {
    const renewable = this.#mode !== Mode.TOKEN || this.#getToken || (this.#token && this.#tokenLive(this.#token));
    if (!renewable) {
      this.#stop(new SwitchboardError('token_expired', 'the token expired; pass a new one to refresh() and connect() again', { closeCode: code }));
    } else {
      this.#retry(this.#attempt === 0 ? 0 : null, reason || 'token expired', code);
    }
  }

  // diagnose learns why a socket failed before it opened. Browsers hide the HTTP answer to
  // an upgrade, so ask again with a plain GET: the server runs the same checks and refuses
  // it with the same status, or answers 426 when the upgrade itself would be accepted.
  async #diagnose(url, code) {
    const epoch = this.#epoch;
    let status = 0;
    let body = null;
    if (this.#fetch) {
      try {
        const res = await this.#fetch(url.replace(/^ws/, 'http'), { cache: 'no-store', credentials: 'same-origin' });
        status = res.status;
        if (FATAL_STATUS[status]) body = await res.json().catch(() => null);
      } catch {
        // Unreachable: a network problem, so retry.
      }
    }
    if (epoch !== this.#epoch) return;
    if (FATAL_STATUS[status]) {
      const message = body?.error?.message ?? `the server refused the connection (${status})`;
      this.#stop(new SwitchboardError(FATAL_STATUS[status], message, { status, serverCode: body?.error?.code }));
      return;
    }
    this.#retry(null, status ? `refused with ${status}` : 'could not connect', code);
  }

  #backoffDelay(attempt) {
    const { initial, max, factor } = this.#backoff;
    const cap = Math.min(max, initial * factor ** attempt);
    return Math.round(cap / 2 + (this.#random() * cap) / 2);
  }

  #retry(delay, reason, closeCode) {
    delay ??= this.#backoffDelay(this.#attempt);
    this.#attempt++;
    this.#setState(State.RECONNECTING, { delay, attempt: this.#attempt, closeCode, reason });
    this.#retryTimer = this.#timers.setTimeout(() => {
      this.#retryTimer = null;
      this.#open();
    }, delay);
  }

  // retryNow skips the rest of a backoff wait, when the browser says the network is back.
  #retryNow() {
    if (this.#retryTimer == null) return;
    this.#timers.clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    this.#open();
  }

  #stop(reason) {
    if (this.#state === State.STOPPED) return;
    this.#epoch++;
    this.#timers.clearTimeout(this.#retryTimer);
    this.#timers.clearTimeout(this.#connectTimer);
    this.#timers.clearTimeout(this.#refreshTimer);
    this.#retryTimer = null;
    globalThis.removeEventListener?.('online', this.#onOnline);
    if (this.#ws) this.#detach(this.#ws, 1000, 'client closed');
    this.#ws = null;
    this.#stopReason = reason;
    const err = new SwitchboardError('stopped', `the client stopped: ${reason.message}`, { reason });
    this.#requests.rejectAll(err);
    this.#setState(State.STOPPED, { reason });
  }

  #detach(ws, code, reason) {
    ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
    try {
      ws.close(code, reason);
    } catch {
      // Already closed.
    }
  }

  // --- requests -----------------------------------------------------------------------

  // request sends frame now when live; requests made while (re)connecting wait for the
  // welcome rather than failing.
  #request(frame, timeout) {
    if (this.#state === State.STOPPED) {
      return Promise.reject(new SwitchboardError('stopped', 'the client is stopped', { reason: this.#stopReason }));
    }
    const ws = this.#ws;
    return this.#requests.create(frame, { timeout, send: this.#state === State.LIVE ? (text) => ws.send(text) : null });
  }

  #settle(f) {
    const settled = this.#requests.settle(f);
    if (settled?.unclaimed) this.#emit('error', settled.unclaimed);
    const { type, room } = settled?.frame ?? {};
    if (type === 'join' || type === 'leave') this.#roomChanged(room, type === 'join');
  }

  // checkSize refuses data larger than the server takes, before anything is sent: a
  // rejected promise, or undefined when it fits. (The server refuses a larger payload with
  // too_large, or, past its frame limit, closes the whole connection with 1009.)
  #checkSize(data, request) {
    if (data === undefined) return undefined;
    let bytes;
    try {
      bytes = utf8Length(JSON.stringify(data));
    } catch (err) {
      return Promise.reject(new SwitchboardError('bad_request', `the data cannot be sent as JSON: ${err.message}`, { request }));
    }
    if (bytes <= this.#maxMessageBytes) return undefined;
    const message = `the message is ${bytes} bytes; the server takes at most ${this.#maxMessageBytes}`;
    return Promise.reject(new SwitchboardError('too_large', message, { request, bytes, limit: this.#maxMessageBytes }));
  }

  // --- state, events and storage ------------------------------------------------------

  #setState(state, details = {}) {
    const previous = this.#state;
    this.#state = state;
    this.#emit('state', { state, previous, ...details });
  }

  #emit(type, value) {
    for (const fn of [...(this.#listeners.get(type) ?? [])]) {
      try {
        fn(value);
      } catch (err) {
        // One failing listener must not break the connection or the other listeners.
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }

  // hookUserKey is where the user a connect hook named is kept, so that the next page load
  // resumes from that user's position at once. '#' cannot be in a user id.
  get #hookUserKey() {
    return `${this.#storageKey}#connect-hook-user`;
  }

  #read(key) {
    try {
      return this.#storage.getItem(key);
    } catch {
      return null;
    }
  }

  #write(key, value) {
    try {
      this.#storage.setItem(key, value);
    } catch {
      // A full or blocked storage costs only resume-after-reload, not the live connection.
    }
  }

  #loadLastId() {
    if (!this.#user) return null;
    const id = this.#read(this.#storageKey + this.#user);
    return isMessageId(id) ? id : null;
  }

  // The big rooms' positions are kept per user beside its last id, as {room: id} (a user id
  // holds no ':', so the key is no other user's).
  #loadRoomPos() {
    const out = new Map();
    if (!this.#user) return out;
    try {
      const stored = JSON.parse(this.#read(this.#storageKey + this.#user + ':rooms') ?? '{}');
      for (const [room, id] of Object.entries(stored ?? {})) if (isMessageId(id)) out.set(room, id);
    } catch {
      // A damaged entry costs the big rooms' resume only.
    }
    return out;
  }

  #saveRoomPos() {
    if (this.#user) this.#write(this.#storageKey + this.#user + ':rooms', JSON.stringify(Object.fromEntries(this.#roomPos)));
  }

  #saveLastId(id) {
    this.#lastId = id;
    if (this.#user) this.#write(this.#storageKey + this.#user, id);
  }
}
