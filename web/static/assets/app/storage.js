// storage.js: how the app writes what must survive a reload. Nothing here touches the page;
// the app decides when to flush (see main.js), so this runs and is tested in Node too.

// SavedState wraps a Storage (localStorage) so that writes are batched and land together:
// the client library stores its last seen id here on every message (setItem), the app a
// snapshot of its history (setLazy); a burst of replayed messages costs one write, and the
// position and the messages it covers are saved by the same flush.
//
// A flush writes the snapshots before the plain values, and gives up at the first write that
// fails (a full storage): the library's position is saved only once the history holding the
// messages up to it is, so the stored position never runs ahead of the stored messages and
// a reload replays, rather than loses, what could not be kept.
export class SavedState {
  #backing;
  #delay;
  #timers;
  #pending = new Map(); // key -> string, or a function producing the string
  #timer = null;

  // backing is the Storage written to; delay the ms a write may wait for others to join it;
  // timers ({setTimeout, clearTimeout}) the clock, to inject in tests.
  constructor(backing, { delay = 250, timers = globalThis } = {}) {
    this.#backing = backing;
    this.#delay = delay;
    this.#timers = timers;
  }

  getItem(key) {
    if (!this.#pending.has(key)) return this.#backing.getItem(key);
    const value = this.#pending.get(key);
    return typeof value === 'function' ? value() : value;
  }

  setItem(key, value) {
    this.#pending.set(key, String(value));
    this.#schedule();
  }

  // setLazy saves what fn returns at the next flush, so that serialising is done once.
  setLazy(key, fn) {
    this.#pending.set(key, fn);
    this.#schedule();
  }

  // flush writes what is pending now: snapshots first, then positions.
  flush() {
    this.#timers.clearTimeout(this.#timer);
    this.#timer = null;
    const pending = [...this.#pending];
    this.#pending.clear();
    const lazyFirst = [...pending.filter(([, v]) => typeof v === 'function'), ...pending.filter(([, v]) => typeof v !== 'function')];
    for (const [key, value] of lazyFirst) {
      try {
        this.#backing.setItem(key, typeof value === 'function' ? value() : value);
      } catch (err) {
        // Quota, or a value that would not serialise: keep running, and write nothing after
        // it, so that no position is saved past messages that were not.
        console.warn('switchboard: could not save', key, err);
        return;
      }
    }
  }

  #schedule() {
    this.#timer ??= this.#timers.setTimeout(() => this.flush(), this.#delay);
  }
}

// localStore returns the page's localStorage, or an in-memory stand-in when storage is
// blocked: the app works then, without surviving reloads. open is how to reach the storage
// (reading window.localStorage itself throws when it is blocked).
export function localStore(open = () => globalThis.localStorage) {
  try {
    const storage = open();
    storage.getItem('x');
    return storage;
  } catch {
    const m = new Map();
    return { getItem: (k) => m.get(k) ?? null, setItem: (k, v) => m.set(k, String(v)), removeItem: (k) => m.delete(k) };
  }
}
