// fakes.mjs: what the client's unit tests run against: a fake clock, a fake WebSocket the
// test drives from the server's side, an in-memory storage, and setup(), which builds a
// client on them and records its events.
import { Switchboard } from '../static/assets/switchboard.js';

// FakeClock is a manual setTimeout: tick(ms) runs what falls due, in time order.
export class FakeClock {
  now = 0;
  #timers = new Map();
  #next = 1;
  setTimeout = (fn, ms = 0) => {
    const id = this.#next++;
    this.#timers.set(id, { at: this.now + ms, fn });
    return id;
  };
  clearTimeout = (id) => {
    this.#timers.delete(id);
  };
  tick(ms = 0) {
    const end = this.now + ms;
    for (;;) {
      let due = null;
      for (const [id, t] of this.#timers) if (t.at <= end && (!due || t.at < due.t.at)) due = { id, t };
      if (!due) break;
      this.#timers.delete(due.id);
      this.now = due.t.at;
      due.t.fn();
    }
    this.now = end;
  }
}

// fakeNetwork returns a WebSocket class whose instances the test drives from the server side.
export function fakeNetwork() {
  const sockets = [];
  class FakeWebSocket {
    constructor(url) {
      this.url = new URL(url);
      this.sent = [];
      this.closed = null;
      sockets.push(this);
    }
    send(text) {
      if (this.closed) throw new Error('socket closed');
      this.sent.push(JSON.parse(text));
    }
    close(code, reason) {
      this.closed = { code, reason };
    }
    // The server side.
    open() {
      this.onopen?.({});
    }
    frame(f) {
      this.onmessage?.({ data: JSON.stringify(f) });
    }
    welcome(extra = {}) {
      this.open();
      this.frame({ type: 'welcome', user: 'bob', node: 'n1', last_id: '100-0', ...extra });
    }
    serverClose(code, reason = '') {
      this.closed = { code, reason };
      this.onclose?.({ code, reason });
    }
    // A refusal before the upgrade: what a browser shows of a 401, 403 or a dead server.
    refuse() {
      this.onerror?.({});
      this.onclose?.({ code: 1006, reason: '' });
    }
  }
  return { FakeWebSocket, sockets, last: () => sockets[sockets.length - 1] };
}

export function memoryStorage(entries = {}) {
  const m = new Map(Object.entries(entries));
  return { getItem: (k) => (m.has(k) ? m.get(k) : null), setItem: (k, v) => m.set(k, String(v)), removeItem: (k) => m.delete(k), map: m };
}

// flush lets pending promise callbacks (the refusal diagnosis, settled requests) run.
export const flush = () => new Promise((resolve) => setImmediate(resolve));

export function setup(options = {}) {
  const net = fakeNetwork();
  const clock = new FakeClock();
  const storage = options.storage ?? memoryStorage();
  const states = [];
  const messages = [];
  const errors = [];
  const sb = new Switchboard({
    url: 'ws://switchboard.test/ws',
    user: 'bob',
    WebSocket: net.FakeWebSocket,
    timers: clock,
    storage,
    random: () => 0.5,
    fetch: async () => ({ status: 426, json: async () => ({}) }),
    ...options,
  });
  sb.on('state', (s) => states.push(s));
  sb.on('message', (m) => messages.push(m));
  sb.on('error', (e) => errors.push(e));
  const tokenErrors = [];
  sb.on('token_error', (e) => tokenErrors.push(e));
  return { sb, net, clock, storage, states, messages, errors, tokenErrors };
}

// token returns an unsigned JWT for sub expiring in expIn seconds (the client never
// verifies a token: the server does).
export function token(sub, expIn = 3600, extra = {}) {
  const part = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${part({ alg: 'HS256' })}.${part({ sub, exp: Math.floor(Date.now() / 1000) + expIn, ...extra })}.sig`;
}
