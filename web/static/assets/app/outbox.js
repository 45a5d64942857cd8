// outbox.js: the messages the user sent that the server has not acknowledged yet. A
// message typed while the connection is down waits here (and survives a reload) until the
// client is live again, and is then sent, in the order typed; one the server refused, or
// whose fate a dropped connection left unknown, stays here marked failed, with the reason,
// until the user retries or discards it. Nothing is dropped silently. No page here: it
// runs and is tested in Node.

export const OUTBOX_PREFIX = 'switchboard.app:v1:outbox:';

// Item states.
export const Pending = Object.freeze({ QUEUED: 'queued', SENDING: 'sending', FAILED: 'failed' });

const isItem = (i) => i && typeof i === 'object' && typeof i.lid === 'string' && typeof i.key === 'string' && Number.isFinite(i.ms);

// Outbox is one user's unsent messages, saved through store (a SavedState). send(item)
// sends one (a promise of the ack); onChange() is called after every change; now is the
// clock.
export class Outbox {
  #store;
  #key;
  #send;
  #onChange;
  #now;
  #pumping = false;
  #next = 0;
  items = [];

  constructor(store, user, { send, onChange = () => {}, now = Date.now }) {
    this.#store = store;
    this.#key = OUTBOX_PREFIX + user;
    this.#send = send;
    this.#onChange = onChange;
    this.#now = now;
    let saved = null;
    try {
      saved = JSON.parse(store.getItem(this.#key));
    } catch {
      // Unreadable: nothing waiting.
    }
    // What was being sent when the page went away may or may not have arrived.
    this.items = (Array.isArray(saved) ? saved.filter(isItem) : []).map((i) =>
      i.state === Pending.SENDING ? { ...i, state: Pending.FAILED, reason: 'The page closed while this was being sent; it may not have arrived.' } : i,
    );
  }

  // of returns the items of conversation key, in the order typed.
  of(key) {
    return this.items.filter((i) => i.key === key);
  }

  // add queues data for conversation key and returns the item.
  add(key, data) {
    const item = { lid: `${this.#now()}-${this.#next++}`, key, data, ms: this.#now(), state: Pending.QUEUED };
    this.items.push(item);
    this.#changed();
    return item;
  }

  // pump sends the queued items one at a time, in order, while live() says the client is
  // live. done(item, ack) is told of each acknowledged one; failed(item, err) of each refusal.
  async pump(live, { done = () => {}, failed = () => {} } = {}) {
    if (this.#pumping) return;
    this.#pumping = true;
    try {
      for (;;) {
        const item = live() ? this.items.find((i) => i.state === Pending.QUEUED) : null;
        if (!item) return;
        item.state = Pending.SENDING;
        this.#changed();
        try {
          const ack = await this.#send(item);
          this.#remove(item.lid);
          done(item, ack);
        } catch (err) {
          if (err?.code === 'stopped') {
            // Signed out or stopped: it goes out with the next connection.
            item.state = Pending.QUEUED;
            this.#changed();
            return;
          }
          item.state = Pending.FAILED;
          item.reason = reasonOf(err);
          item.code = err?.code ?? 'error';
          this.#changed();
          failed(item, err);
        }
      }
    } finally {
      this.#pumping = false;
    }
  }

  // retry queues a failed item again.
  retry(lid) {
    const item = this.items.find((i) => i.lid === lid && i.state === Pending.FAILED);
    if (!item) return false;
    item.state = Pending.QUEUED;
    delete item.reason;
    delete item.code;
    this.#changed();
    return true;
  }

  // discard drops an item that is not being sent; it returns the item.
  discard(lid) {
    const item = this.items.find((i) => i.lid === lid && i.state !== Pending.SENDING);
    if (item) this.#remove(lid);
    return item ?? null;
  }

  #remove(lid) {
    this.items = this.items.filter((i) => i.lid !== lid);
    this.#changed();
  }

  #changed() {
    this.#store.setLazy(this.#key, () => JSON.stringify(this.items));
    this.#onChange();
  }
}

// reasonOf says in words why a send failed.
export function reasonOf(err) {
  switch (err?.code) {
    case 'too_large':
      return `Too large to send: ${err.message}.`;
    case 'disconnected':
      return 'The connection dropped while sending; it may not have arrived.';
    case 'timeout':
      return 'The server did not answer in time; it may not have arrived.';
    case 'not_member':
      return 'Not sent: join the room first.';
    case 'forbidden':
      return `Not sent: you are not allowed to (${err.message}).`;
    case 'rate_limited':
      return 'Not sent: you are sending too fast. Retry in a moment.';
    default:
      return `Not sent: ${err?.message ?? err}.`;
  }
}
