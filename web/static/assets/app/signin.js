// signin.js: the sign-in form. It offers three ways to sign in (a dev name; a token, pasted
// or fetched from a token URL of the site's backend; or the site's own cookie session, which
// the server's connect hook reads) and turns what was given into a session ({user},
// {token}, {tokenUrl}, or {site: true}), or says what is wrong with it.

import { tokenSubject } from '../switchboard.js';

// VALID_ID is what the server accepts as a user or room id.
export const VALID_ID = /^[A-Za-z0-9._@+-]{1,128}$/;

const LAST_NAME_KEY = 'switchboard.app:last-name';

const MODES = ['dev', 'token', 'site'];

// isTokenURL reports whether url is an http(s) URL to fetch tokens from.
export function isTokenURL(url) {
  try {
    return /^https?:$/.test(new URL(url).protocol);
  } catch {
    return false;
  }
}

// isSession reports whether s (read back from sessionStorage) is a session to resume. A
// token URL or site session may carry the user the server named last time (user).
export function isSession(s) {
  if (!s || typeof s !== 'object') return false;
  if (s.user != null && !VALID_ID.test(s.user)) return false;
  if (s.site === true) return true;
  if (typeof s.tokenUrl === 'string') return isTokenURL(s.tokenUrl);
  if (typeof s.token === 'string') return Boolean(tokenSubject(s.token));
  return s.user != null;
}

// SigninForm is the form in doc; names (a Storage) remembers the last dev name typed.
export class SigninForm {
  #doc;
  #names;

  constructor(doc, names) {
    this.#doc = doc;
    this.#names = names;
  }

  $(id) {
    return this.#doc.getElementById(id);
  }

  // wire calls onSession with each session the form accepts.
  wire(onSession) {
    this.$('signin-form').addEventListener('submit', (event) => {
      event.preventDefault();
      const session = this.#read();
      if (session) onSession(session);
    });
    for (const radio of this.#doc.querySelectorAll('input[name=mode]')) {
      radio.addEventListener('change', () => this.setMode(radio.value));
    }
  }

  setMode(mode) {
    if (!MODES.includes(mode)) mode = 'dev';
    this.$(`mode-${mode}`).checked = true;
    for (const m of MODES) this.$(`${m}-fields`).hidden = m !== mode;
  }

  show(message = '') {
    this.$('signin-view').hidden = false;
    this.$('signin-error').textContent = message;
    this.$('signin-name').value ||= this.#names.getItem(LAST_NAME_KEY) ?? '';
    const mode = this.#mode();
    (mode === 'token' ? this.$('signin-token') : mode === 'site' ? this.$('mode-site') : this.$('signin-name')).focus();
  }

  #mode() {
    return this.#doc.querySelector('input[name=mode]:checked').value;
  }

  #read() {
    if (this.#mode() === 'dev') {
      const user = this.$('signin-name').value.trim();
      if (!VALID_ID.test(user)) return this.#refuse('signin-name', 'A name is 1 to 128 letters, digits or . _ @ + -');
      this.#names.setItem(LAST_NAME_KEY, user);
      return { user };
    }
    if (this.#mode() === 'site') return { site: true };
    const token = this.$('signin-token').value.trim();
    const tokenUrl = this.$('signin-token-url').value.trim();
    if (!token && tokenUrl) {
      if (!isTokenURL(tokenUrl)) return this.#refuse('signin-token-url', 'A token URL starts with https:// (or http://).');
      return { tokenUrl };
    }
    const sub = tokenSubject(token);
    if (!sub || !VALID_ID.test(sub)) return this.#refuse('signin-token', token ? 'That is not a token with a user id (its "sub" claim).' : 'Paste a token, or give a token URL.');
    return { token };
  }

  #refuse(field, message) {
    this.$('signin-error').textContent = message;
    this.$(field).focus();
    return null;
  }
}
