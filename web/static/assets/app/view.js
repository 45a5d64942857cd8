// view.js: the signed-in page (connection indicator, banner, notice, sidebar, the open
// conversation). It draws what a History holds and keeps no state of the conversation.

import { State } from '../switchboard.js';
import { convTitle, splitKey } from './history.js';
import { MessageRenderer } from './messages.js';
import { typingText } from './activity.js';

const TITLE = 'Switchboard';

const STATE_TEXT = {
  [State.IDLE]: 'Offline',
  [State.CONNECTING]: 'Connecting…',
  [State.LIVE]: 'Live',
  [State.RECONNECTING]: 'Reconnecting…',
  [State.STOPPED]: 'Stopped',
};

const NOTICE_MS = 8000;

const STATUS_TEXT = { queued: 'Waiting for the connection…', sending: 'Sending…' };

// View draws the app in doc (the page's document).
export class View {
  #doc;
  #messages;
  #timers;
  #noticeTimer = null;
  #online = new Set(); // users seen online, for the dots of the direct conversations

  constructor(doc, { timers = globalThis } = {}) {
    this.#doc = doc;
    this.#messages = new MessageRenderer(doc);
    this.#timers = timers;
  }

  $(id) {
    return this.#doc.getElementById(id);
  }

  showConnection(state) {
    this.$('conn').dataset.state = state;
    this.$('conn-text').textContent = STATE_TEXT[state];
  }

  showSignedIn(me) {
    this.$('who-name').textContent = me;
    this.$('who').hidden = false;
    this.$('signin-view').hidden = true;
    this.$('app-view').hidden = false;
  }

  showSignedOut() {
    this.showConnection(State.IDLE);
    this.#doc.title = TITLE;
    this.showMembers(null);
    this.showTyping([]);
    this.$('who').hidden = true;
    this.$('app-view').hidden = true;
  }

  // showBanner shows text above the conversation, with a button saying action (when given),
  // or with renew, the form that takes a new token.
  showBanner(text, action = '', { renew = false } = {}) {
    this.$('banner-text').textContent = text;
    this.$('banner-action').hidden = !action;
    this.$('banner-action').textContent = action;
    const wasRenewing = !this.$('renew-form').hidden;
    this.$('renew-form').hidden = !renew;
    if (renew && !wasRenewing) {
      this.$('renew-token').value = '';
      this.$('renew-error').textContent = '';
    }
    this.$('banner').hidden = false;
  }

  hideBanner() {
    this.$('banner').hidden = true;
    this.$('renew-form').hidden = true;
  }

  showNotice(text) {
    this.$('notice').textContent = text;
    this.#timers.clearTimeout(this.#noticeTimer);
    this.#noticeTimer = this.#timers.setTimeout(() => (this.$('notice').textContent = ''), NOTICE_MS);
  }

  // announce tells a screen reader about a message in a conversation that is not open.
  announce(text) {
    this.$('announcer').textContent = text;
  }

  // showConversation draws the conversation history has open, or the empty pane.
  showConversation(history, { focus = true } = {}) {
    const key = history.current;
    const $ = (id) => this.$(id);
    $('app-view').dataset.view = key ? 'chat' : 'list';
    const [kind, name] = key ? splitKey(key) : [null, null];
    $('conv-title').textContent = key ? convTitle(key) : 'No conversation open';
    $('leave-room').hidden = kind !== 'room';
    // A backend's messages cannot be answered: there is nobody to send to.
    $('composer').hidden = !key || key === 'backend';
    $('composer-input').placeholder = key ? `Message ${convTitle(key)}` : 'Message';
    $('notice').textContent = '';

    // A fresh list, not a cleared one: screen readers announce what is added to a live log,
    // and reading out a whole conversation on every switch would drown the new messages.
    const list = $('messages').cloneNode(false);
    const entries = key ? history.conv(key).messages : [];
    for (const entry of entries) {
      const li = this.#messages.item(entry);
      li.dataset.ms = entry.ms;
      list.append(li);
    }
    $('messages').replaceWith(list);
    $('empty').hidden = entries.length > 0;
    $('empty').textContent = !key
      ? 'Join a room or open a direct message to start talking.'
      : kind === 'room'
        ? `No messages in ${convTitle(key)} yet. Say hello.`
        : key === 'backend'
          ? 'Messages your backend sends you without naming a sender appear here.'
          : `No messages with ${name} yet.`;
    list.scrollTop = list.scrollHeight;
    this.renderSidebar(history);
    if (focus && key && key !== 'backend') $('composer-input').focus();
  }

  // showPending draws the open conversation's unsent messages (an outbox's items) below
  // its log: waiting for the connection, being sent, or failed with why and what to do.
  showPending(items) {
    const ol = this.$('pending');
    ol.replaceChildren();
    ol.hidden = items.length === 0;
    for (const item of items) {
      const li = this.#element('li', `msg mine pending ${item.state}`);
      li.dataset.lid = item.lid;
      li.append(this.#element('p', 'text', typeof item.data?.text === 'string' ? item.data.text : JSON.stringify(item.data)));
      const status = this.#element('p', 'status small', STATUS_TEXT[item.state] ?? item.reason ?? '');
      if (item.state === 'failed') {
        status.textContent = item.reason ?? 'Not sent.';
        status.setAttribute('role', 'alert');
        li.append(status, this.#button('Retry', 'retry'), ' ', this.#button('Discard', 'discard'));
      } else {
        li.append(status);
      }
      ol.append(li);
    }
    if (items.length > 0) this.$('messages').scrollTop = this.$('messages').scrollHeight;
  }

  // giveBack puts text back in the composer, when the user has not typed something else.
  giveBack(text) {
    const input = this.$('composer-input');
    if (!input.value) input.value = text;
  }

  #button(text, action) {
    const b = this.#element('button', 'quiet small', text);
    b.type = 'button';
    b.dataset.action = action;
    return b;
  }

  // appendMessage adds entry to the open conversation, in time order.
  appendMessage(entry) {
    const list = this.$('messages');
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 80;
    // Keep time order: a sent direct message can be acknowledged after a later reply arrived.
    let before = null;
    for (let el = list.lastElementChild; el && Number(el.dataset.ms) > entry.ms; el = el.previousElementSibling) before = el;
    const li = this.#messages.item(entry);
    li.dataset.ms = entry.ms;
    list.insertBefore(li, before);
    this.$('empty').hidden = true;
    // Follow the conversation, unless the reader has scrolled up to read older messages.
    if (atBottom || entry.mine) list.scrollTop = list.scrollHeight;
  }

  // showTyping says who types in the open conversation (none: nothing).
  showTyping(users) {
    this.$('typing').textContent = typingText(users);
  }

  // showMembers lists the open room's members with their online dots ({user, online}), or
  // hides the list (null: not a room).
  showMembers(members) {
    const ul = this.$('member-list');
    ul.hidden = !members;
    ul.replaceChildren();
    for (const { user, online } of members ?? []) {
      const li = this.#element('li', 'member');
      li.dataset.user = user;
      li.dataset.online = String(online);
      li.title = online ? `${user} is online` : `${user} is not connected`;
      li.append(this.#element('span', `presence-dot${online ? ' online' : ''}`), this.#element('span', 'member-name', user));
      li.append(this.#element('span', 'visually-hidden', online ? ' (online)' : ' (offline)'));
      ul.append(li);
    }
  }

  // setOnline takes who is online now, for the dots beside direct conversations.
  setOnline(users) {
    this.#online = users;
    for (const b of this.#doc.querySelectorAll('#dm-list button.conv[data-conv^="user:"]')) {
      b.querySelector('.presence-dot')?.classList.toggle('online', users.has(splitKey(b.dataset.conv)[1]));
    }
  }

  // showNotifications sets the notifications button: hidden where the browser has none.
  showNotifications({ supported, enabled, permission }) {
    const b = this.$('notify');
    b.hidden = !supported;
    b.textContent = enabled ? 'Notifications on' : 'Notify me';
    b.setAttribute('aria-pressed', String(enabled));
    b.title = permission === 'denied' ? 'Notifications are blocked in this browser’s settings for this site' : '';
  }

  renderSidebar(history) {
    // The tab's title counts what is unread, so it shows in a background tab.
    const unread = Object.values(history.convs).reduce((n, c) => n + (c.unread > 0 ? c.unread : 0), 0);
    this.#doc.title = unread > 0 ? `(${unread > 99 ? '99+' : unread}) ${TITLE}` : TITLE;
    this.#renderList(history, this.$('room-list'), history.rooms.map((r) => `room:${r}`), 'No rooms yet.');
    const dms = [...history.dms].sort((a, b) => (a === 'backend') - (b === 'backend') || a.localeCompare(b));
    this.#renderList(history, this.$('dm-list'), dms, 'No conversations yet.');
  }

  // backToList shows the conversation list on a narrow screen.
  backToList() {
    this.$('app-view').dataset.view = 'list';
    this.#doc.querySelector('.conv[aria-current]')?.focus();
  }

  #renderList(history, ul, keys, emptyText) {
    ul.replaceChildren();
    if (keys.length === 0) {
      ul.append(this.#element('li', 'muted small', emptyText));
      return;
    }
    for (const key of keys) {
      const li = this.#doc.createElement('li');
      const b = this.#element('button', 'conv');
      b.type = 'button';
      b.dataset.conv = key;
      if (key === history.current) b.setAttribute('aria-current', 'page');
      if (key.startsWith('user:')) b.append(this.#element('span', `presence-dot${this.#online.has(splitKey(key)[1]) ? ' online' : ''}`));
      b.append(this.#element('span', 'conv-name', convTitle(key)));
      const unread = history.convs[key]?.unread ?? 0;
      if (unread > 0) {
        const badge = this.#element('span', 'badge', unread > 99 ? '99+' : String(unread));
        badge.append(this.#element('span', 'visually-hidden', unread === 1 ? ' unread message' : ' unread messages'));
        b.append(badge);
      }
      li.append(b);
      ul.append(li);
    }
  }

  #element(tag, className, text) {
    const el = this.#doc.createElement(tag);
    el.className = className;
    if (text !== undefined) el.textContent = text;
    return el;
  }
}
