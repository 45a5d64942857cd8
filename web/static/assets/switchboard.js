// switchboard.js: the Switchboard client, one dependency-free ES module.
//
// It holds one WebSocket to a Switchboard server and keeps it up: it reconnects with capped
// exponential backoff and jitter, resumes with `since` so that no message is lost or shown
// twice, follows the server's close codes, and settles join/leave/send/event promises by the
// server's ack or error. It runs unchanged in browsers and in Node (pass `WebSocket`).
// docs/js-client.md documents it; in short:
//
//   import { Switchboard } from '/assets/switchboard.js';
//   const sb = new Switchboard({ user: 'alice' });        // dev mode; or { token }
//   sb.on('message', (m) => console.log(m.from, m.data));
//   sb.on('state', ({ state }) => console.log(state));     // connecting, live, ...
//   sb.connect();
//   await sb.join('lobby');
//   await sb.send({ room: 'lobby', data: { text: 'hi all' } });

/** Close codes the server uses. */
export const CloseCode = Object.freeze({
  POLICY: 1008, // the connection broke the rules (rate limit): do not reconnect by yourself
  RESTARTING: 1012, // the node is draining: reconnect at once, elsewhere, and resume
  TRY_AGAIN: 1013, // too slow, or Redis unavailable: reconnect at once and resume
  KICKED: 4001, // DELETE /v1/users/{u}/connections: do not reconnect by yourself
});

/** The states a client goes through, in the order it usually does. */
export const State = Object.freeze({
  IDLE: 'idle', // constructed, connect() not called yet
  CONNECTING: 'connecting', // first connection, not welcomed yet
  LIVE: 'live', // welcomed: messages flow and requests are sent
  RECONNECTING: 'reconnecting', // lost the connection; waiting or connecting again
  STOPPED: 'stopped', // close() was called or the server refused us for good
});

/**
 * SwitchboardError is how requests reject and why a client stops. `code` is the server's
 * error code (`not_member`, `invalid_id`, ...) or one of the client's own: `timeout`,
 * `disconnected` (the outcome of a send is unknown), `stopped`, `closed` (close() was
 * called), `kicked` (4001), `policy` (1008), `unauthorized` (401), `forbidden` (403),
 * `bad_request` (400). `closeCode` or `status` tell what the server said, when it said it.
 */
export class SwitchboardError extends Error {
  constructor(code, message, details = {}) {
    super(message);
    this.name = 'SwitchboardError';
    this.code = code;
    Object.assign(this, details);
  }
}

const ID = /^(\d+)(?:-(\d+))?$/;

// compareDigits orders two decimal strings by value. Ids are Redis stream ids with parts up
// to 2^64, past what a Number holds exactly, and string order is wrong ("9" > "10").
function compareDigits(a, b) {
  a = a.replace(/^0+(?=\d)/, '');
  b = b.replace(/^0+(?=\d)/, '');
  if (a.length !== b.length) return a.length < b.length ? -1 : 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** isMessageId reports whether id has the form `<ms>-<seq>` (or a bare `<ms>`). */
export function isMessageId(id) {
  return typeof id === 'string' && id.length <= 41 && ID.test(id);
}

/**
 * compareIds orders two message ids (`<ms>-<seq>`) numerically: negative when a is older,
 * zero when equal, positive when a is newer.
 */
export function compareIds(a, b) {
  const x = ID.exec(a);
  const y = ID.exec(b);
  if (!x || !y) throw new TypeError(`not a message id: ${x ? b : a}`);
  return compareDigits(x[1], y[1]) || compareDigits(x[2] ?? '0', y[2] ?? '0');
}

/**
 * tokenSubject returns the `sub` claim of a JWT without verifying it (the server does), or
 * null. The client uses it only to name the storage key before the server's welcome.
 */
export function tokenSubject(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const claims = JSON.parse(atob(part + '='.repeat((4 - (part.length % 4)) % 4)));
    return typeof claims.sub === 'string' && claims.sub ? claims.sub : null;
  } catch {
    return null;
  }
}

// memoryStorage stands in for localStorage where there is none (Node, some private modes).
function memoryStorage() {
  const m = new Map();
  return {
    getItem: (k) => (m.has(k) ? m.get(k) : null),
    setItem: (k, v) => void m.set(k, String(v)),
    removeItem: (k) => void m.delete(k),
  };
}

function defaultStorage() {
  try {
    if (globalThis.localStorage) return globalThis.localStorage;
  } catch {
    // Reading localStorage throws where cookies are blocked.
  }
  return memoryStorage();
}

function defaultURL() {
  const loc = globalThis.location;
  if (!loc || !/^https?:$/.test(loc.protocol)) return null;
  return `${loc.protocol === 'https:' ? 'wss:' : 'ws:'}//${loc.host}/ws`;
}

// Refusals that no retry will cure: the server answered the upgrade request with one of
// these statuses before any WebSocket existed.
const FATAL_STATUS = { 400: 'bad_request', 401: 'unauthorized', 403: 'forbidden' };

/**
 * Switchboard is one user's connection to a Switchboard server. Options:
 *
 * - `url`: the WebSocket endpoint, absolute or relative to the page; default `/ws` on the
 *   page's own host. `http(s):` becomes `ws(s):`.
 * - `token`: a JWT, or a function returning one (or a promise of one), called before every
 *   connection attempt so that a reconnect uses a fresh token.
 * - `user`: in dev mode (no token), the user to connect as. With a token it only names the
 *   storage key; by default the token's `sub` does.
 * - `since`: resume after this message id instead of the stored one (`'0-0'`: everything
 *   the server still holds).
 * - `storage`: where the last seen id is kept per user (`getItem`/`setItem`); default
 *   localStorage. `storageKey`: key prefix, default `'switchboard:last-id:'`.
 * - `backoff`: `{ initial: 500, max: 30000, factor: 2 }` in ms: the nth retry waits a random
 *   time between half and all of min(max, initial × factor^n).
 * - `requestTimeout`: ms before a request rejects with `timeout`; default 10000.
 * - `connectTimeout`: ms a connection attempt may take to be welcomed; default 15000.
 * - `WebSocket`, `fetch`, `random`, `timers` ({setTimeout, clearTimeout}): the platform, to
 *   inject in tests or in Node. `fetch: null` turns off asking why a connection was refused.
 */
export class Switchboard {
  #url;
  #token;
  #devUser;
  #WebSocket;
  #fetch;
  #random;
  #timers;
  #storage;
  #storageKey;
  #backoff;
  #requestTimeout;
  #connectTimeout;

  #state = State.IDLE;
  #listeners = new Map();
  #ws = null; // the current socket; frames and closes of any other are ignored
  #attempt = 0; // connection attempts since the last welcome
  #retryTimer = null;
  #connectTimer = null;
  #nextRef = 1;
  #inflight = new Map(); // ref -> request sent on the current socket
  #queue = []; // requests waiting for the client to be live
  #user = null; // whose storage key we use; the welcome confirms it
  #node = null;
  #lastId = null;
  #stopReason = null;
  #welcome = null;
  #epoch = 0; // bumped by connect() and stop(): async work of an older epoch is dropped
  #onOnline = () => this.#retryNow();

  constructor(options = {}) {
    const {
      url = defaultURL(),
      token,
      user,
      since,
      storage = defaultStorage(),
      storageKey = 'switchboard:last-id:',
      backoff = {},
      requestTimeout = 10_000,
      connectTimeout = 15_000,
      WebSocket = globalThis.WebSocket,
      fetch = globalThis.fetch ? globalThis.fetch.bind(globalThis) : null,
      random = Math.random,
      timers = globalThis,
    } = options;
    if (!url) throw new TypeError('Switchboard: a url is required outside a web page');
    if (!WebSocket) throw new TypeError('Switchboard: no WebSocket; pass options.WebSocket');
    if (token == null && !user) throw new TypeError('Switchboard: pass a token, or a user in dev mode');
    if (since != null && !isMessageId(since)) throw new TypeError(`Switchboard: since is not a message id: ${since}`);
    let endpoint;
    try {
      endpoint = new URL(url, globalThis.location?.href); // relative to the page, in a browser
    } catch {
      throw new TypeError(`Switchboard: not a URL: ${url}`);
    }
    endpoint.protocol = endpoint.protocol.replace(/^http/, 'ws');
    this.#url = endpoint.toString();
    this.#token = token;
    this.#devUser = token == null ? user : null;
    this.#WebSocket = WebSocket;
    this.#fetch = fetch;
    this.#random = random;
    this.#timers = timers;
    this.#storage = storage ?? memoryStorage();
    this.#storageKey = storageKey;
    this.#backoff = { initial: 500, max: 30_000, factor: 2, ...backoff };
    this.#requestTimeout = requestTimeout;
    this.#connectTimeout = connectTimeout;
    this.#user = user || (typeof token === 'string' ? tokenSubject(token) : null);
    this.#lastId = since ?? this.#loadLastId();
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

  /** lastId is the id the client resumes after: the newest message it has delivered. */
  get lastId() {
    return this.#lastId;
  }

  /**
   * on calls fn for each event of a type and returns a function that stops it. Types:
   * `message` (the message frame), `state` ({state, previous, ...details}), `welcome` (the
   * welcome frame), `error` (a SwitchboardError the server sent with no request to blame).
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
   * ack: `id` (the message's id in the recipient's stream) or `recipients` for a room.
   */
  send({ to, room, data }) {
    return this.#request(to != null ? { type: 'send', to, data } : { type: 'send', room, data });
  }

  /** event sends a client event for the backend's webhook; it resolves once queued. */
  event(name, data) {
    return this.#request({ type: 'event', name, data });
  }

  // --- connection ---------------------------------------------------------------------

  async #open() {
    const epoch = this.#epoch;
    let token;
    if (typeof this.#token === 'function') {
      try {
        token = await this.#token();
      } catch (err) {
        if (epoch === this.#epoch) this.#retry(null, `getting a token failed: ${err}`);
        return;
      }
      if (epoch !== this.#epoch) return; // stopped, maybe started again, meanwhile
      if (!this.#user && typeof token === 'string') {
        // Now we know whose stream this is, and where to resume it.
        this.#user = tokenSubject(token);
        this.#lastId ??= this.#loadLastId();
      }
    } else {
      token = this.#token;
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

  #connectURL(token) {
    const u = new URL(this.#url);
    if (token != null) u.searchParams.set('token', token);
    else u.searchParams.set('user', this.#devUser);
    if (this.#lastId) u.searchParams.set('since', this.#lastId);
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
    switch (f.type) {
      case 'welcome':
        return this.#onWelcome(f);
      case 'message':
        return this.#onMessage(f);
      case 'ack':
      case 'error':
        return this.#settle(f);
      default:
        // Unknown frame types are newer servers talking; ignoring them is forward compatible.
        return undefined;
    }
  }

  #onWelcome(f) {
    this.#timers.clearTimeout(this.#connectTimer);
    if (f.user) this.#user = f.user; // the storage key from now on, if we could not guess it
    this.#node = f.node ?? null;
    // With no message seen yet, resume later from where this connection starts, so that
    // what arrives while we are away is not lost.
    if (!this.#lastId && isMessageId(f.last_id)) this.#saveLastId(f.last_id);
    this.#attempt = 0;
    this.#welcome = f;
    this.#emit('welcome', f);
    this.#setState(State.LIVE, { recovered: f.recovered, node: this.#node });
    const queued = this.#queue;
    this.#queue = [];
    for (const req of queued) this.#transmit(req);
  }

  #onMessage(f) {
    // The server promises each message once per connection; across reconnects a replay can
    // overlap what was already delivered, and this drops the overlap.
    if (!isMessageId(f.id)) return;
    if (this.#lastId && compareIds(f.id, this.#lastId) <= 0) return;
    this.#saveLastId(f.id);
    this.#emit('message', f);
  }

  #onClose(code, reason, opened, url) {
    this.#timers.clearTimeout(this.#connectTimer);
    this.#ws = null;
    this.#dropInflight();
    if (this.#state === State.STOPPED) return;
    if (code === CloseCode.KICKED) {
      this.#stop(new SwitchboardError('kicked', reason || 'disconnected by the server', { closeCode: code }));
    } else if (code === CloseCode.POLICY) {
      this.#stop(new SwitchboardError('policy', reason || 'closed for breaking the server policy', { closeCode: code }));
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

  #retry(delay, reason, closeCode) {
    if (delay == null) {
      const { initial, max, factor } = this.#backoff;
      const cap = Math.min(max, initial * factor ** this.#attempt);
      delay = Math.round(cap / 2 + (this.#random() * cap) / 2);
    }
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
    this.#retryTimer = null;
    globalThis.removeEventListener?.('online', this.#onOnline);
    if (this.#ws) this.#detach(this.#ws, 1000, 'client closed');
    this.#ws = null;
    this.#stopReason = reason;
    const err = new SwitchboardError('stopped', `the client stopped: ${reason.message}`, { reason });
    for (const req of [...this.#inflight.values(), ...this.#queue]) this.#reject(req, err);
    this.#inflight.clear();
    this.#queue = [];
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

  #request(frame) {
    return new Promise((resolve, reject) => {
      if (this.#state === State.STOPPED) {
        reject(new SwitchboardError('stopped', 'the client is stopped', { reason: this.#stopReason }));
        return;
      }
      const ref = String(this.#nextRef++);
      const req = { frame: { ...frame, ref }, resolve, reject, timer: null };
      req.timer = this.#timers.setTimeout(() => {
        this.#inflight.delete(ref);
        this.#queue = this.#queue.filter((r) => r !== req);
        reject(new SwitchboardError('timeout', `no answer to ${frame.type} within ${this.#requestTimeout} ms`));
      }, this.#requestTimeout);
      // Requests made while (re)connecting wait for the welcome rather than failing.
      if (this.#state === State.LIVE) this.#transmit(req);
      else this.#queue.push(req);
    });
  }

  #transmit(req) {
    this.#inflight.set(req.frame.ref, req);
    try {
      this.#ws.send(JSON.stringify(req.frame));
    } catch (err) {
      this.#inflight.delete(req.frame.ref);
      this.#reject(req, new SwitchboardError('disconnected', `could not send: ${err.message}`));
    }
  }

  #settle(f) {
    const req = f.ref != null ? this.#inflight.get(f.ref) : undefined;
    if (!req) {
      if (f.type === 'error') this.#emit('error', new SwitchboardError(f.code, f.message));
      return;
    }
    this.#inflight.delete(f.ref);
    this.#timers.clearTimeout(req.timer);
    if (f.type === 'ack') req.resolve(f);
    else req.reject(new SwitchboardError(f.code, f.message));
  }

  // dropInflight handles requests whose socket closed before their answer came. Joins and
  // leaves are idempotent, so they are sent again once live; a send or event may or may not
  // have been accepted, and sending it again could deliver it twice, so the caller decides.
  #dropInflight() {
    const retry = [];
    for (const req of this.#inflight.values()) {
      if (req.frame.type === 'join' || req.frame.type === 'leave') retry.push(req);
      else this.#reject(req, new SwitchboardError('disconnected', `the connection closed before the server answered the ${req.frame.type}; it may or may not have been accepted`));
    }
    this.#inflight.clear();
    this.#queue = [...retry, ...this.#queue];
  }

  #reject(req, err) {
    this.#timers.clearTimeout(req.timer);
    req.reject(err);
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

  #loadLastId() {
    if (!this.#user) return null;
    try {
      const id = this.#storage.getItem(this.#storageKey + this.#user);
      return isMessageId(id) ? id : null;
    } catch {
      return null;
    }
  }

  #saveLastId(id) {
    this.#lastId = id;
    if (!this.#user) return;
    try {
      this.#storage.setItem(this.#storageKey + this.#user, id);
    } catch {
      // A full or blocked storage costs only resume-after-reload, not the live connection.
    }
  }
}
