// basics.js: what the Switchboard client (../switchboard.js) is built from and exports as it
// is: the server's close codes, the client's states, its error type, message ids, reading a
// token's claims, and the platform defaults (storage, the page's /ws URL).

/** Close codes the server uses. */
export const CloseCode = Object.freeze({
  POLICY: 1008, // the connection broke the rules (rate limit): do not reconnect by yourself
  TOO_LARGE: 1009, // a message was over the server's size limit: it was not accepted
  RESTARTING: 1012, // the node is draining: reconnect at once, elsewhere, and resume
  TRY_AGAIN: 1013, // too slow, or Redis unavailable: reconnect at once and resume
  KICKED: 4001, // DELETE /v1/users/{u}/connections: do not reconnect by yourself
  TOKEN_EXPIRED: 4003, // the token (or the connect hook's expires_at) ran out: a fresh one, then resume
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
 * error code (`not_member`, `forbidden`, `unavailable`, `rpc_failed`, ...) or one of the
 * client's own: `timeout`, `disconnected` (the outcome of a send or rpc is unknown),
 * `too_large` (over maxMessageBytes, or the server closed with 1009: not accepted),
 * `stopped`, `closed` (close() was called), `kicked` (4001), `policy` (1008),
 * `token_expired` (4003 with no way to get a new token), `token_failed` (getToken threw),
 * `unauthorized` (401), `forbidden` (403), `bad_request` (400). `closeCode`, `status` (an
 * HTTP status: the refusal's, or the rpc backend's) and `retryAfterMs` tell what the server
 * said, when it said it.
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
 * tokenClaims returns the claims of a JWT without verifying them (the server does), or
 * null. The client reads only `sub` (to name the storage key before the server's welcome)
 * and `exp` (whether a token it holds may still connect).
 */
export function tokenClaims(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const claims = JSON.parse(atob(part + '='.repeat((4 - (part.length % 4)) % 4)));
    return claims && typeof claims === 'object' ? claims : null;
  } catch {
    return null;
  }
}

/** tokenSubject returns the `sub` claim of a JWT without verifying it, or null. */
export function tokenSubject(token) {
  const sub = tokenClaims(token)?.sub;
  return typeof sub === 'string' && sub ? sub : null;
}

// memoryStorage stands in for localStorage where there is none (Node, some private modes).
export function memoryStorage() {
  const m = new Map();
  return {
    getItem: (k) => (m.has(k) ? m.get(k) : null),
    setItem: (k, v) => void m.set(k, String(v)),
    removeItem: (k) => void m.delete(k),
  };
}

export function defaultStorage() {
  try {
    if (globalThis.localStorage) return globalThis.localStorage;
  } catch {
    // Reading localStorage throws where cookies are blocked.
  }
  return memoryStorage();
}

export function defaultURL() {
  const loc = globalThis.location;
  if (!loc || !/^https?:$/.test(loc.protocol)) return null;
  return `${loc.protocol === 'https:' ? 'wss:' : 'ws:'}//${loc.host}/ws`;
}
