// A Switchboard backend in Node.js without frameworks (node:http, node:crypto): the connect,
// authorize and rpc hooks and the events webhook, each request's signature checked first.
// Copy it and replace the rules and the data. See docs/hooks.md.
//
//   SWITCHBOARD_WEBHOOK_SECRET=S node examples/node/receiver.mjs      # listens on 127.0.0.1:9090
//   ADDR=0.0.0.0 PORT=9000 SWITCHBOARD_WEBHOOK_SECRET=S node examples/node/receiver.mjs
//
// The session cookie is the Go example's (examples/backend): "<user>.<expiry>.<hex HMAC>",
// with the same key derived from the secret, so a login at the Go example is valid here too.
// A real app has its own sessions; only what the connect hook answers matters.

import http from 'node:http';
import crypto from 'node:crypto';
import { pathToFileURL } from 'node:url';

const MAX_HOOK_BODY = 1 << 20; // one client payload at most (Switchboard's default is 64 KiB)
const MAX_EVENT_BODY = 8 << 20; // up to 100 events
const CACHE_S = 60; // how long nodes may reuse an authorize answer
const ID = /^[A-Za-z0-9._@+-]{1,128}$/; // Switchboard's user id and room name pattern

// The example's data. A real app reads it from its database.
const TEAMS = { red: ['alice', 'bob'], blue: ['bob', 'carol'] };
const ORDERS = {
  'A-1001': { id: 'A-1001', owner: 'alice', item: 'keyboard', status: 'shipped' },
  'A-1002': { id: 'A-1002', owner: 'alice', item: 'monitor', status: 'paid' },
  'B-2001': { id: 'B-2001', owner: 'bob', item: 'chair', status: 'delivered' },
};

/**
 * verifySignature checks a Switchboard request as Switchboard signs it: X-Switchboard-Signature
 * is "sha256=" + hex HMAC-SHA256(secret, timestamp + "." + raw body), and the timestamp
 * (unix seconds, X-Switchboard-Timestamp) is within `tolerance` seconds of now. `rawBody` must
 * be the exact bytes received (a Buffer), never re-encoded JSON.
 */
export function verifySignature(secret, headers, rawBody, nowSeconds, tolerance = 300) {
  const ts = headers['x-switchboard-timestamp'];
  const sig = headers['x-switchboard-signature'];
  if (typeof ts !== 'string' || !/^\d{1,12}$/.test(ts) || typeof sig !== 'string') return false;
  if (Math.abs(nowSeconds - Number(ts)) > tolerance) return false; // a replay of an old request
  const want = 'sha256=' + crypto.createHmac('sha256', secret).update(ts + '.').update(rawBody).digest('hex');
  const a = Buffer.from(sig);
  const b = Buffer.from(want);
  return a.length === b.length && crypto.timingSafeEqual(a, b); // constant time
}

/** deriveSessionKey is the Go example's default session key: HMAC(secret, a fixed label). */
export function deriveSessionKey(secret) {
  return crypto.createHmac('sha256', secret).update('example session cookies').digest();
}

/** signSession returns a session cookie value for user until expSeconds (unix). */
export function signSession(key, user, expSeconds) {
  const payload = `${user}.${expSeconds}`;
  return `${payload}.${crypto.createHmac('sha256', key).update(payload).digest('hex')}`;
}

/** parseSession returns {user, exp} of a valid, unexpired cookie value, else null. */
export function parseSession(key, value, nowSeconds) {
  const i = value.lastIndexOf('.');
  if (i < 0) return null;
  const payload = value.slice(0, i);
  const mac = Buffer.from(value.slice(i + 1));
  const want = Buffer.from(crypto.createHmac('sha256', key).update(payload).digest('hex'));
  if (mac.length !== want.length || !crypto.timingSafeEqual(mac, want)) return null;
  const j = payload.lastIndexOf('.');
  const user = payload.slice(0, j);
  const exp = payload.slice(j + 1);
  if (j < 0 || !ID.test(user) || !/^\d{1,12}$/.test(exp) || Number(exp) <= nowSeconds) return null;
  return { user, exp: Number(exp) };
}

/** cookieValue finds one cookie in a Cookie header line. */
function cookieValue(line, name) {
  for (const part of String(line ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return null;
}

function header(headers, name) {
  for (const [k, v] of Object.entries(headers ?? {})) {
    if (k.toLowerCase() === name.toLowerCase()) return v;
  }
  return undefined;
}

/** Dedupe remembers the last `size` event ids: delivery is at least once. */
class Dedupe {
  #ids = new Set();
  #ring;
  #next = 0;
  constructor(size) {
    this.#ring = new Array(size);
  }
  /** add records id and says whether it was new. */
  add(id) {
    if (this.#ids.has(id)) return false;
    const old = this.#ring[this.#next];
    if (old !== undefined) this.#ids.delete(old);
    this.#ring[this.#next] = id;
    this.#next = (this.#next + 1) % this.#ring.length;
    this.#ids.add(id);
    return true;
  }
}

const teamsOf = (user) => Object.keys(TEAMS).filter((t) => TEAMS[t].includes(user)).sort();
const shareTeam = (a, b) => Object.values(TEAMS).some((m) => m.includes(a) && m.includes(b));

/** mayJoin: "team.<team>.<topic>" is open to the members of <team>. */
function mayJoin(user, room) {
  const m = /^team\.([^.]+)\.(.+)$/.exec(room);
  return m !== null && Object.hasOwn(TEAMS, m[1]) && TEAMS[m[1]].includes(user);
}

const error = (status, code, message) => ({ status, body: { error: { code, message } } });

/**
 * createHandler returns a node:http request handler. Options: `secret` (Switchboard's
 * --webhook-secret, required), `sessionKey` (default derived from it), `now` (ms clock),
 * `log` (called with one object per thing worth logging), `tolerance` (seconds, default 300).
 */
export function createHandler({ secret, sessionKey, now = Date.now, log = (o) => console.log(JSON.stringify(o)), tolerance = 300 }) {
  if (!secret) throw new Error('a secret is required (Switchboard\'s --webhook-secret)');
  const key = sessionKey ?? deriveSessionKey(secret);
  const seen = new Dedupe(10000);
  const nowSeconds = () => Math.floor(now() / 1000);

  // Each route gets the parsed body of a verified request and returns {status, body}.
  const routes = {
    // Who is a /ws request without a token? 401/403 refuse the upgrade; a 5xx or no answer
    // in time refuses it with 503.
    '/hooks/connect': (req) => {
      const s = parseSession(key, cookieValue(header(req.headers, 'Cookie'), 'session') ?? '', nowSeconds());
      if (!s) {
        log({ msg: 'connect refused', remote_addr: req.remote_addr });
        return error(401, 'no_session', 'sign in first');
      }
      log({ msg: 'connect', user: s.user, remote_addr: req.remote_addr });
      return { status: 200, body: { user: s.user, rooms: ['public.*'], dm: ['support'], expires_at: s.exp } };
    },
    // May user join room / write to `to`? Asked only for what the connect grants do not allow.
    '/hooks/authorize': (req) => {
      let allow;
      if (!ID.test(req.user ?? '')) return error(400, 'bad_request', 'no user');
      if (req.action === 'join' && ID.test(req.room ?? '')) allow = mayJoin(req.user, req.room);
      else if (req.action === 'send' && ID.test(req.to ?? '')) allow = shareTeam(req.user, req.to);
      else return error(400, 'bad_request', 'unknown action or target');
      log({ msg: 'authorize', action: req.action, user: req.user, room: req.room, to: req.to, allow });
      return { status: 200, body: { allow, cache_s: CACHE_S } };
    },
    // A client's rpc frame. A 2xx body becomes the client's result; another status reaches
    // the client as rpc_failed with that status.
    '/hooks/rpc': (req) => {
      if (!ID.test(req.user ?? '')) return error(400, 'bad_request', 'no user');
      log({ msg: 'rpc', user: req.user, method: req.method, node: req.node });
      switch (req.method) {
        case 'echo':
          return { status: 200, body: req.data ?? null };
        case 'whoami':
          return { status: 200, body: { user: req.user, node: req.node, teams: teamsOf(req.user) } };
        case 'orders.get': {
          const id = req.data?.id;
          if (typeof id !== 'string' || id === '') return error(400, 'bad_request', 'pass {"id":"<order id>"}');
          const o = Object.hasOwn(ORDERS, id) ? ORDERS[id] : undefined;
          // Someone else's order is "not found" too, so that ids cannot be probed.
          if (!o || o.owner !== req.user) return error(404, 'not_found', `no order ${id}`);
          return { status: 200, body: o };
        }
        default:
          return error(404, 'unknown_method', `no method ${req.method}`);
      }
    },
    // Event batches. Any 2xx acknowledges the whole batch; answer it once all are handled.
    '/events': (req) => {
      if (!Array.isArray(req.events)) return error(400, 'bad_request', 'not an event batch');
      for (const e of req.events) {
        if (!seen.add(e.id)) continue; // a repeat: delivery is at least once
        // Log what happened, never the user's data.
        log({ msg: 'event', id: e.id, type: e.type, user: e.user, node: e.node, room: e.room, name: e.name });
      }
      return { status: 204 };
    },
  };

  return (req, res) => {
    const send = ({ status, body }, extra = {}) => {
      if (body === undefined) {
        res.writeHead(status, extra).end();
        return;
      }
      res.writeHead(status, { 'Content-Type': 'application/json', ...extra }).end(JSON.stringify(body));
    };
    const path = new URL(req.url, 'http://x').pathname;
    const route = routes[path];
    if (!route) return send(error(404, 'not_found', 'no such path'));
    if (req.method !== 'POST') return send(error(405, 'method_not_allowed', 'POST only'), { Allow: 'POST' });

    const limit = path === '/events' ? MAX_EVENT_BODY : MAX_HOOK_BODY;
    const chunks = [];
    let size = 0;
    let refused = false;
    req.on('data', (c) => {
      if (refused) return;
      size += c.length;
      if (size > limit) {
        refused = true;
        send(error(413, 'too_large', 'the body is over the limit'), { Connection: 'close' });
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (refused) return;
      const raw = Buffer.concat(chunks);
      // The signature first, over the raw bytes: nothing of an unsigned body is looked at.
      if (!verifySignature(secret, req.headers, raw, nowSeconds(), tolerance)) {
        log({ msg: 'refused an unsigned or badly signed request', path });
        return send(error(401, 'bad_signature', 'the request is not signed by Switchboard'));
      }
      let parsed;
      try {
        parsed = JSON.parse(raw.toString('utf8'));
      } catch {
        return send(error(400, 'bad_request', 'the body is not JSON'));
      }
      if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
        return send(error(400, 'bad_request', 'the body is not a JSON object'));
      }
      send(route(parsed));
    });
    req.on('error', () => {}); // the peer went away: nothing left to answer
  };
}

// Run as a program: serve until SIGINT/SIGTERM, then finish the requests in progress.
if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const server = http.createServer(createHandler({ secret: process.env.SWITCHBOARD_WEBHOOK_SECRET }));
  const port = Number(process.env.PORT ?? 9090);
  const host = process.env.ADDR ?? '127.0.0.1';
  server.listen(port, host, () => console.log(JSON.stringify({ msg: 'listening', addr: `${host}:${port}` })));
  for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => server.close(() => process.exit(0)));
}
