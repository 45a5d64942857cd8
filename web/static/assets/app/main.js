// main.js: the app's parts put together. main(window) builds them once at start and
// passes them down; App signs users in and out and routes what the page does to the
// Session of the signed-in user.
//
// What is kept where, and why:
// - The session (a name, a token URL, or "signed in by your site") is in localStorage: it
//   survives a reload and a closed tab, and other tabs share it, until Sign out clears it.
//   A pasted token is in sessionStorage only: it stays with its tab.
// - Each user's conversations (the last MAX_KEPT messages of each), room list and direct
//   partners are in localStorage, with the library's last seen id. They are written together
//   (see SavedState), so the stored position never runs ahead of the stored messages.
// - On load the app shows what it kept and the library resumes with `since`: the server
//   replays whatever arrived meanwhile, and ids already seen are dropped, so a reload loses
//   nothing and shows nothing twice. With nothing kept (a new browser), it resumes from
//   `0-0`: the server replays all the history it still holds. That goes through the user's
//   own WebSocket, so it works with a user token alone: GET /v1/users/{u}/messages needs
//   the API key, which a browser must never hold.
// - Your own direct messages come back to you as the sender's copy (a message with "to"),
//   kept in your own stream too: every device and the resume show both sides. A room's
//   past comes from its history when the room is opened.
// - Messages not yet acknowledged are in an Outbox (outbox.js), also in localStorage: typed
//   offline they wait for the connection; failed, they stay shown with why.

import { Switchboard, tokenSubject } from '../switchboard.js';
import { convTitle, splitKey } from './history.js';
import { Session } from './session.js';
import { SigninForm, VALID_ID, isSession } from './signin.js';
import { SavedState, localStore } from './storage.js';
import { Notifier } from './notify.js';
import { View } from './view.js';

const SESSION_KEY = 'switchboard.app:session';
const SAVE_DELAY_MS = 250;

// Sessions keeps the signed-in session: in local (localStorage), or for a pasted token in
// tab (sessionStorage).
export class Sessions {
  #local;
  #tab;

  constructor(local, tab) {
    this.#local = local;
    this.#tab = tab;
  }

  get() {
    for (const storage of [this.#tab, this.#local]) {
      try {
        const saved = JSON.parse(storage.getItem(SESSION_KEY));
        if (isSession(saved)) return saved;
      } catch {
        // unreadable: try the other, or sign in afresh
      }
    }
    return null;
  }

  set(session) {
    this.clear();
    (session.token ? this.#tab : this.#local).setItem(SESSION_KEY, JSON.stringify(session));
  }

  clear() {
    for (const storage of [this.#tab, this.#local]) {
      try {
        storage.removeItem(SESSION_KEY);
      } catch {
        // blocked storage: nothing kept there anyway
      }
    }
  }
}

// App is the page's controller. Its parts: doc, sessions (a Sessions), store (a
// SavedState), view, signin (a SigninForm), notifier (a Notifier), and what a Session needs
// from the platform (createClient, fetch).
export class App {
  #doc;
  #sessions;
  #notifier;
  #store;
  #view;
  #signin;
  #createClient;
  #fetch;
  session = null; // the signed-in user's Session, or null

  constructor({ doc, sessions, store, view, signin, notifier, createClient, fetch }) {
    this.#doc = doc;
    this.#sessions = sessions;
    this.#notifier = notifier;
    this.#store = store;
    this.#view = view;
    this.#signin = signin;
    this.#createClient = createClient;
    this.#fetch = fetch;
  }

  // resume signs the tab's user back in, or shows the sign-in form.
  resume() {
    const saved = this.#sessions.get();
    // Every way to sign in is offered; a name refused with 401 switches the form to tokens.
    if (saved) this.start(saved);
    else this.#signin.show();
  }

  start(session) {
    this.session = new Session({
      session,
      me: session.token ? tokenSubject(session.token) : (session.user ?? null),
      store: this.#store,
      view: this.#view,
      createClient: this.#createClient,
      fetch: this.#fetch,
      isHidden: () => this.#doc.hidden,
      remember: (s) => this.#sessions.set(s),
      notify: (title, body, key) => this.#notifier.show(title, body, key, () => this.session?.open(key)),
      end: (message, { wantsToken }) => {
        this.signOut(message);
        if (wantsToken) this.#signin.setMode('token');
      },
    });
    this.#sessions.set(session);
    this.#view.showNotifications(this.#notifierState());
    this.session.start();
  }

  signOut(message = '') {
    this.session?.close();
    this.session = null;
    this.#store.flush();
    this.#sessions.clear();
    this.#view.showSignedOut();
    this.#signin.show(message);
  }

  // wire routes the page's events; it is called once, at start.
  wire() {
    const $ = (id) => this.#view.$(id);
    this.#signin.wire((session) => this.start(session));
    $('sign-out').addEventListener('click', () => this.signOut());
    // The browser's permission is asked on this click, never before.
    $('notify').addEventListener('click', async () => {
      await this.#notifier.toggle();
      this.#view.showNotifications(this.#notifierState());
    });
    $('banner-action').addEventListener('click', () => {
      this.#view.hideBanner();
      this.session?.client.connect();
    });
    $('renew-form').addEventListener('submit', async (e) => {
      e.preventDefault();
      $('renew-error').textContent = '';
      try {
        await this.session?.renewToken($('renew-token').value.trim());
        $('renew-token').value = '';
      } catch (err) {
        $('renew-error').textContent = err.code === 'forbidden' ? `The server refused that token: ${err.message}` : err.message;
      }
    });
    this.#wireSidebar($);
    this.#wireConversation($);
    // Seen in another tab or while hidden: clear the unread count when the user comes back.
    this.#doc.addEventListener('visibilitychange', () => {
      if (!this.#doc.hidden) this.session?.markCurrentRead();
    });
  }

  #notifierState() {
    const n = this.#notifier;
    return { supported: n.supported, enabled: n.enabled, permission: n.permission };
  }

  #wireSidebar($) {
    $('join-form').addEventListener('submit', async (e) => {
      e.preventDefault();
      const input = $('join-room');
      const room = input.value.trim().replace(/^#/, '');
      $('join-error').textContent = '';
      if (!VALID_ID.test(room)) {
        $('join-error').textContent = 'A room name is 1 to 128 letters, digits or . _ @ + -';
        return;
      }
      try {
        await this.session.joinRoom(room);
        input.value = '';
      } catch (err) {
        $('join-error').textContent = refusal(`join #${room}`, err);
      }
    });
    $('dm-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const user = $('dm-user').value.trim().replace(/^@/, '');
      $('dm-error').textContent = '';
      if (!VALID_ID.test(user)) {
        $('dm-error').textContent = 'A user name is 1 to 128 letters, digits or . _ @ + -';
        return;
      }
      $('dm-user').value = '';
      this.session.openDirect(user);
    });
    for (const ul of [$('room-list'), $('dm-list')]) {
      ul.addEventListener('click', (e) => {
        const b = e.target.closest('button[data-conv]');
        if (b) this.session.open(b.dataset.conv);
      });
    }
  }

  #wireConversation($) {
    $('leave-room').addEventListener('click', async () => {
      const [, room] = splitKey(this.session.history.current);
      try {
        await this.session.leaveRoom(room);
        $('join-room').focus();
      } catch (err) {
        this.#view.showNotice(`Could not leave: ${err.message}`);
      }
    });
    $('back').addEventListener('click', () => this.#view.backToList());
    const input = $('composer-input');
    input.addEventListener('input', () => {
      if (input.value.trim()) this.session?.typing();
    });
    input.addEventListener('keydown', (e) => {
      // Enter sends, Shift+Enter starts a new line; not while an input method composes.
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        $('composer').requestSubmit();
      }
    });
    $('composer').addEventListener('submit', (e) => {
      e.preventDefault();
      const text = input.value.trim();
      const key = this.session?.history.current;
      if (!text || !key) return;
      try {
        this.session.send(text); // sent now, or queued until the connection is back
        input.value = '';
      } catch (err) {
        // Refused before sending (too large): the words stay in the box to shorten.
        this.#view.showNotice(err.code === 'too_large' ? `Not sent: the message is too long (${err.message}). Shorten it or split it.` : `Not sent. ${refusal(`send to ${convTitle(key)}`, err)}`);
      }
    });
    // The buttons of a message that failed to send.
    $('pending').addEventListener('click', (e) => {
      const b = e.target.closest('button[data-action]');
      const lid = b?.closest('li[data-lid]')?.dataset.lid;
      if (!lid) return;
      if (b.dataset.action === 'retry') this.session.retry(lid);
      else this.session.discard(lid);
    });
  }
}

// refusal says why the server refused what (a phrase: "join #ops") in words for the user.
export function refusal(what, err) {
  switch (err.code) {
    case 'forbidden':
      return `You are not allowed to ${what}: ${err.message}.`;
    case 'unavailable':
      return `Could not ${what}: the server could not check whether you may (${err.message}). Try again.`;
    case 'not_member':
      return `Join the room first to ${what}.`;
    default:
      return `Could not ${what}: ${err.message}`;
  }
}

// main builds the app in win (the browser window) and starts it.
export function main(win) {
  const doc = win.document;
  const local = localStore(() => win.localStorage);
  const store = new SavedState(local, { delay: SAVE_DELAY_MS });
  // Pending writes land when the page is hidden or unloaded.
  win.addEventListener('pagehide', () => store.flush());
  doc.addEventListener('visibilitychange', () => doc.hidden && store.flush());
  const app = new App({
    doc,
    sessions: new Sessions(local, localStore(() => win.sessionStorage)),
    notifier: new Notifier(win, local),
    store,
    view: new View(doc),
    signin: new SigninForm(doc, local),
    createClient: (options) => new Switchboard(options),
    fetch: (...args) => win.fetch(...args),
  });
  app.wire();
  app.resume();
  return app;
}
