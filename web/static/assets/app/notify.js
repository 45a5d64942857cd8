// notify.js: optional desktop notifications of new messages. The browser's permission is
// asked only when the user clicks the button (browsers ignore, or hold against a site, a
// request made on load), and the user can turn them off again here without going into the
// browser's settings.

const PREF_KEY = 'switchboard.app:notifications';

// Notifier shows notifications through win.Notification; prefs (a Storage) keeps whether
// the user turned them on.
export class Notifier {
  #win;
  #prefs;

  constructor(win, prefs) {
    this.#win = win;
    this.#prefs = prefs;
  }

  get supported() {
    return typeof this.#win.Notification === 'function';
  }

  get permission() {
    return this.supported ? this.#win.Notification.permission : 'denied';
  }

  // enabled: the user turned them on and the browser allows them.
  get enabled() {
    return this.permission === 'granted' && this.#prefs.getItem(PREF_KEY) === 'on';
  }

  // toggle turns notifications on (asking the browser's permission, on this click) or off.
  // It resolves with whether they are on.
  async toggle() {
    if (this.enabled) {
      this.#prefs.setItem(PREF_KEY, 'off');
      return false;
    }
    if (!this.supported) return false;
    let permission = this.permission;
    if (permission === 'default') permission = await this.#win.Notification.requestPermission();
    this.#prefs.setItem(PREF_KEY, permission === 'granted' ? 'on' : 'off');
    return this.enabled;
  }

  // show notifies of a message: title, body text, and tag (the conversation: a newer
  // notification of one conversation replaces the older). onClick opens it.
  show(title, body, tag, onClick) {
    if (!this.enabled) return;
    try {
      const n = new this.#win.Notification(title, { body, tag });
      n.onclick = () => {
        this.#win.focus();
        onClick?.();
        n.close();
      };
    } catch {
      // Some browsers allow notifications only from a service worker: then none.
    }
  }
}
