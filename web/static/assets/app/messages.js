// messages.js: how one kept entry is drawn. Whatever an entry holds, drawing it yields an
// item, so that one hostile message never breaks the conversation it is in.

export const PLACEHOLDER = 'This message could not be shown.';

// MessageRenderer draws entries into list items of doc.
export class MessageRenderer {
  #doc;
  #time = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
  #dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });

  constructor(doc) {
    this.#doc = doc;
  }

  // item renders one entry; if that throws, it returns a placeholder item instead.
  item(entry) {
    try {
      return this.#render(entry);
    } catch (err) {
      console.warn('switchboard: a message could not be shown', entry?.id, err);
      const li = this.#doc.createElement('li');
      li.className = 'msg';
      if (typeof entry?.id === 'string') li.dataset.id = entry.id;
      if (typeof entry?.key === 'string') li.dataset.key = entry.key;
      li.append(this.#unshowable());
      return li;
    }
  }

  #render(entry) {
    const doc = this.#doc;
    const li = doc.createElement('li');
    li.className = entry.mine ? 'msg mine' : 'msg';
    li.dataset.id = entry.id;
    li.dataset.key = entry.key;
    const meta = doc.createElement('p');
    meta.className = 'meta';
    const from = doc.createElement('span');
    from.className = 'from';
    from.textContent = entry.mine ? 'You' : (entry.from ?? 'Backend');
    const time = doc.createElement('time');
    const when = new Date(entry.ms);
    time.dateTime = when.toISOString();
    time.title = this.#dateTime.format(when);
    time.textContent = this.#time.format(when);
    meta.append(from, ' ', time);
    li.append(meta, this.#body(entry));
    return li;
  }

  // body returns what to show of a payload: its text when it has one, else its JSON.
  #body(entry) {
    if (entry.unshowable) return this.#unshowable();
    if (entry.b64 !== undefined) {
      const padding = entry.b64.endsWith('==') ? 2 : entry.b64.endsWith('=') ? 1 : 0;
      return this.#paragraph('text muted', `Binary payload, ${(entry.b64.length / 4) * 3 - padding} bytes`);
    }
    const d = entry.data;
    const text = typeof d === 'string' ? d : typeof d?.text === 'string' ? d.text : null;
    if (text !== null) return this.#paragraph('text', text);
    let json;
    try {
      json = JSON.stringify(d, null, 2);
    } catch {
      return this.#unshowable();
    }
    const pre = this.#doc.createElement('pre');
    pre.className = 'json';
    pre.textContent = json;
    return pre;
  }

  #unshowable() {
    return this.#paragraph('text muted unshowable', PLACEHOLDER);
  }

  #paragraph(className, text) {
    const p = this.#doc.createElement('p');
    p.className = className;
    p.textContent = text;
    return p;
  }
}
