// signin.js: the sign-in form. It offers both ways to sign in (a dev name, or a token) and
// turns what was typed into a session ({user} or {token}), or says what is wrong with it.

import { tokenSubject } from '../switchboard.js';

// VALID_ID is what the server accepts as a user or room id.
export const VALID_ID = /^[A-Za-z0-9._@+-]{1,128}$/;

const LAST_NAME_KEY = 'switchboard.app:last-name';

// isSession reports whether s (read back from sessionStorage) is a session to resume.
export const isSession = (s) => Boolean(s && (VALID_ID.test(s.user ?? '') || tokenSubject(s.token ?? '')));

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
    this.$(mode === 'token' ? 'mode-token' : 'mode-dev').checked = true;
    this.$('dev-fields').hidden = mode !== 'dev';
    this.$('token-fields').hidden = mode !== 'token';
  }

  show(message = '') {
    this.$('signin-view').hidden = false;
    this.$('signin-error').textContent = message;
    this.$('signin-name').value ||= this.#names.getItem(LAST_NAME_KEY) ?? '';
    (this.#mode() === 'token' ? this.$('signin-token') : this.$('signin-name')).focus();
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
    const token = this.$('signin-token').value.trim();
    const sub = tokenSubject(token);
    if (!sub || !VALID_ID.test(sub)) return this.#refuse('signin-token', 'That is not a token with a user id (its "sub" claim).');
    return { token };
  }

  #refuse(field, message) {
    this.$('signin-error').textContent = message;
    this.$(field).focus();
    return null;
  }
}
