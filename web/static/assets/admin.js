// admin.js: the admin page served at /admin. Every 2 s it reads this node's subscriptions
// (GET /admin/subscriptions) and the cluster's (?scope=cluster), and shows them. The cluster
// view is optional: a server that does not offer it answers with an error, and the page
// says so quietly and keeps showing the node.

const KEY_STORAGE = 'switchboard.admin:key';
const REFRESH_MS = 2000;
const TIMEOUT_MS = 5000;

const $ = (id) => document.getElementById(id);

let paused = false;
let timer = null;
let lastOK = null;
let generation = 0; // a refresh started later (say, with a new key) supersedes this one

function adminKey() {
  return sessionStorage.getItem(KEY_STORAGE) ?? '';
}

// get fetches an admin endpoint, with the key when there is one. It returns the JSON body,
// or throws an Error whose status is the HTTP status (0 when the server could not be reached).
async function get(path) {
  const headers = {};
  const key = adminKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  let res;
  try {
    res = await fetch(path, { headers, cache: 'no-store', signal: AbortSignal.timeout(TIMEOUT_MS) });
  } catch (err) {
    throw Object.assign(new Error(err.name === 'TimeoutError' ? 'the server did not answer in time' : 'the server cannot be reached'), { status: 0 });
  }
  const body = await res.json().catch(() => null);
  if (!res.ok) {
    throw Object.assign(new Error(body?.error?.message ?? `HTTP ${res.status}`), { status: res.status });
  }
  return body;
}

// refresh loads both views, then schedules the next refresh: one request at a time, so a
// slow server is never asked faster than it answers.
async function refresh() {
  clearTimeout(timer);
  const mine = ++generation;
  const [node, cluster] = await Promise.allSettled([get('/admin/subscriptions'), get('/admin/subscriptions?scope=cluster')]);
  if (mine !== generation) return;
  if (node.status === 'fulfilled') {
    renderNode(node.value);
    lastOK = new Date();
    $('updated').dateTime = lastOK.toISOString();
    $('updated').textContent = lastOK.toLocaleTimeString();
    setStatus('live', 'Live');
    setError('');
  } else {
    const err = node.reason;
    setStatus('stopped', 'Error');
    setError(
      err.status === 401
        ? 'The server wants an admin key, or this one is wrong: enter it above.'
        : `Could not refresh: ${err.message}.${lastOK ? ' Showing the last good data.' : ''}`,
    );
  }
  $('node').classList.toggle('stale', node.status !== 'fulfilled' && lastOK !== null);
  if (cluster.status === 'fulfilled') renderCluster(cluster.value);
  else if (node.status === 'fulfilled') clusterUnavailable(cluster.reason);
  if (!paused) timer = setTimeout(refresh, REFRESH_MS);
}

function setStatus(state, text) {
  $('conn').dataset.state = state;
  $('conn-text').textContent = text;
}

// setError shows an error; it changes the alert only when the message does, so that screen
// readers announce a problem once rather than every 2 s.
function setError(text) {
  if ($('error').textContent !== text) $('error').textContent = text;
}

function renderNode(s) {
  $('node-name').textContent = s.node ? `(${s.node})` : '';
  $('node-connections').textContent = s.connections ?? '–';
  $('node-users').textContent = s.users ?? '–';
  const channels = Array.isArray(s.channels) ? s.channels : [];
  $('node-channels').textContent = channels.length;
  $('node-reconnects-box').hidden = s.pubsub_reconnects === undefined;
  $('node-reconnects').textContent = s.pubsub_reconnects ?? '–';
  const rows = [...channels].sort((a, b) => String(a.user).localeCompare(String(b.user)));
  fillTable($('node-table'), rows, (c) => [cell(c.user), cell(c.channel, 'mono'), cell(c.connections, 'num')], 'No user is connected to this node.', 3);
}

function renderCluster(s) {
  $('cluster-note').hidden = true;
  $('cluster-body').hidden = false;
  const nodes = Array.isArray(s.nodes) ? s.nodes : [];
  const channels = Array.isArray(s.channels) ? s.channels : [];
  $('cluster-nodes').textContent = nodes.length;
  $('cluster-connections').textContent = s.connections ?? '–';
  $('cluster-users').textContent = s.users ?? '–';
  fillTable(
    $('nodes-table'),
    [...nodes].sort((a, b) => String(a.node).localeCompare(String(b.node))),
    (n) => [cell(n.node), cell(n.addr, 'mono'), timeCell(n.started), cell(n.connections, 'num'), cell(n.users, 'num'), timeCell(n.last_seen)],
    'No live node reported.',
    6,
  );
  fillTable(
    $('cluster-table'),
    [...channels].sort((a, b) => String(a.user).localeCompare(String(b.user))),
    (c) => [cell(c.user), cell(c.channel, 'mono'), cell(c.subscribers, 'num')],
    'No user channel is subscribed.',
    3,
  );
}

function clusterUnavailable(err) {
  $('cluster-body').hidden = true;
  $('cluster-note').hidden = false;
  $('cluster-note').textContent =
    err.status === 400 || err.status === 404
      ? 'This server does not offer a cluster view.'
      : `The cluster view is unavailable: ${err.message}.`;
}

function cell(value, className = '') {
  const td = document.createElement('td');
  td.textContent = value ?? '–';
  if (className) td.className = className;
  return td;
}

function timeCell(value) {
  const td = document.createElement('td');
  const d = value ? new Date(value) : null;
  if (!d || Number.isNaN(d.getTime())) {
    td.textContent = value ?? '–';
    return td;
  }
  const t = document.createElement('time');
  t.dateTime = d.toISOString();
  t.textContent = d.toLocaleString();
  td.append(t);
  return td;
}

function fillTable(table, rows, cells, emptyText, width) {
  const body = table.tBodies[0];
  const trs = rows.map((row) => {
    const tr = document.createElement('tr');
    tr.append(...cells(row));
    return tr;
  });
  if (trs.length === 0) {
    const tr = document.createElement('tr');
    const td = cell(emptyText, 'muted');
    td.colSpan = width;
    tr.append(td);
    trs.push(tr);
  }
  body.replaceChildren(...trs);
}

$('key-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const key = $('admin-key').value.trim();
  if (key) sessionStorage.setItem(KEY_STORAGE, key);
  else sessionStorage.removeItem(KEY_STORAGE);
  $('admin-key').value = '';
  $('admin-key').placeholder = key ? 'Key saved for this tab' : 'Admin key';
  refresh();
});

$('forget-key').addEventListener('click', () => {
  sessionStorage.removeItem(KEY_STORAGE);
  $('admin-key').value = '';
  $('admin-key').placeholder = 'Admin key';
  refresh();
});

$('pause').addEventListener('click', () => {
  paused = !paused;
  $('pause').setAttribute('aria-pressed', String(paused));
  $('pause').textContent = paused ? 'Resume' : 'Pause';
  if (paused) {
    clearTimeout(timer);
    setStatus('idle', 'Paused');
  } else {
    refresh();
  }
});

if (adminKey()) $('admin-key').placeholder = 'Key saved for this tab';
refresh();
