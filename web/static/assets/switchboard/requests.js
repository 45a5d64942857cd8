// requests.js: the client's requests (join, leave, send, event, rpc, refresh, history,
// presence) from the call to the server's answer: each gets a ref, waits for the client to
// be live, times out, and is settled by the ack, result, history, presence or error frame
// carrying its ref.

import { CloseCode, SwitchboardError } from './basics.js';

const encoder = new TextEncoder();

// Requests holds the requests of one client. timers is {setTimeout, clearTimeout}; timeout
// the default ms a request may wait for its answer.
export class Requests {
  #timers;
  #timeout;
  #nextRef = 1;
  #inflight = new Map(); // ref -> request sent on the current socket
  #queue = []; // requests waiting for the client to be live

  constructor(timers, timeout) {
    this.#timers = timers;
    this.#timeout = timeout;
  }

  // create returns the promise of the answer to frame. send(request) transmits it now when
  // given (the client is live); otherwise it waits for the next flush.
  create(frame, { timeout = this.#timeout, send = null } = {}) {
    return new Promise((resolve, reject) => {
      const ref = String(this.#nextRef++);
      const req = { frame: { ...frame, ref }, resolve, reject, timer: null };
      req.timer = this.#timers.setTimeout(() => {
        this.#inflight.delete(ref);
        this.#queue = this.#queue.filter((r) => r !== req);
        const more = frame.type === 'rpc' ? '; the backend may or may not have run it' : '';
        reject(new SwitchboardError('timeout', `no answer to ${frame.type} within ${timeout} ms${more}`));
      }, timeout);
      if (send) this.#transmit(req, send);
      else this.#queue.push(req);
    });
  }

  // flush transmits the waiting requests with send(text), once the client is live.
  flush(send) {
    const queued = this.#queue;
    this.#queue = [];
    for (const req of queued) this.#transmit(req, send);
  }

  #transmit(req, send) {
    this.#inflight.set(req.frame.ref, req);
    try {
      const text = JSON.stringify(req.frame);
      req.size = encoder.encode(text).length; // bytes, as the server counts: see dropInflight
      send(text);
    } catch (err) {
      this.#inflight.delete(req.frame.ref);
      this.#reject(req, new SwitchboardError('disconnected', `could not send: ${err.message}`));
    }
  }

  // settle settles the request an ack, result or error frame answers, and returns the frame
  // it had sent (null when no request waits for this ref). An error frame for no request
  // is returned to the caller as {unclaimed: SwitchboardError}.
  settle(f) {
    const req = f.ref != null ? this.#inflight.get(f.ref) : undefined;
    if (!req) return f.type === 'error' ? { unclaimed: serverError(f) } : null;
    this.#inflight.delete(f.ref);
    this.#timers.clearTimeout(req.timer);
    if (f.type === 'error') {
      req.reject(serverError(f, req.frame));
      return null;
    }
    req.resolve(f);
    return { frame: req.frame };
  }

  // dropInflight handles requests whose socket closed (with code) before their answer came.
  // Joins and leaves are idempotent, so they wait to be sent again once live; a send, event
  // or rpc may or may not have been carried out, and doing it again could do it twice, so
  // the caller decides. A refresh belongs to its socket: the next connection gets a token of
  // its own. A close 1009 says one message was too large and refused: the largest frame
  // waiting is that one (any other sent on this socket was within the limit, or the server
  // would have closed on it first), and it is known not to have been accepted.
  dropInflight(code) {
    const retry = [];
    const tooLarge = code === CloseCode.TOO_LARGE ? this.#largest() : null;
    if (tooLarge) {
      this.#inflight.delete(tooLarge.frame.ref);
      const err = new SwitchboardError('too_large', `the ${tooLarge.frame.type} is too large for the server: it closed the connection (1009) and did not accept it`, {
        request: tooLarge.frame.type,
        closeCode: code,
      });
      this.#reject(tooLarge, err);
    }
    for (const req of this.#inflight.values()) {
      const { type } = req.frame;
      if (type === 'join' || type === 'leave') retry.push(req);
      else if (type === 'refresh') this.#reject(req, new SwitchboardError('disconnected', 'the connection closed before the server answered the refresh'));
      else this.#reject(req, new SwitchboardError('disconnected', `the connection closed before the server answered the ${type}; it may or may not have been ${type === 'rpc' ? 'run' : 'accepted'}`));
    }
    this.#inflight.clear();
    this.#queue = [...retry, ...this.#queue];
  }

  // largest is the in-flight send, event or rpc with the longest frame, or null.
  #largest() {
    let best = null;
    for (const req of this.#inflight.values()) {
      if (!['send', 'event', 'rpc'].includes(req.frame.type)) continue;
      if (!best || req.size > best.size) best = req;
    }
    return best;
  }

  // rejectAll rejects every request, sent or waiting, with err: the client stopped.
  rejectAll(err) {
    for (const req of [...this.#inflight.values(), ...this.#queue]) this.#reject(req, err);
    this.#inflight.clear();
    this.#queue = [];
  }

  #reject(req, err) {
    this.#timers.clearTimeout(req.timer);
    req.reject(err);
  }
}

// serverError is the SwitchboardError for an error frame: the server's code and message,
// and when the frame has them the rpc backend's status and the rate limit's retry delay.
// `request` names the type of the refused request.
export function serverError(f, frame) {
  const details = {};
  if (typeof f.status === 'number') details.status = f.status;
  if (typeof f.retry_after_ms === 'number') details.retryAfterMs = f.retry_after_ms;
  if (frame) details.request = frame.type;
  const code = typeof f.code === 'string' && f.code ? f.code : 'error';
  return new SwitchboardError(code, typeof f.message === 'string' && f.message ? f.message : code, details);
}
