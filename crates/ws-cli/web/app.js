// The chat page of `ws serve`: rooms, members and messages over JSON-RPC
// (`/ws-rpc.js`). No framework, no build step.
//
// How it stays right across connection trouble:
// - every call goes through the RpcClient, which queues calls made while the
//   connection is away and sends them once it is back, after `onReconnect`;
// - a message is known by the server node that numbered it and its `seq`
//   there (with `--redis` several nodes number their own; a restarted one
//   has a new id); the timeline shows messages in the order they came;
// - `onReconnect` joins the room again before the queued messages go out and
//   merges the room's last messages: the same node, and the ones we missed
//   are added; a different node (restarted, or another one of several), and
//   a new part of the timeline starts below a divider;
// - a message we send is shown at once, 'pending' while the connection is
//   away or 'sending', and replaced by the server's `chat.message` that
//   confirms it (the `client_id` we gave it comes back), so it shows exactly
//   once; one whose call failed shows why, with Retry;
// - notifications for a room that come while its join is on its way wait
//   for the join's answer (they are newer than the history it returns).
//
// The page URL may carry `?token=T` (for `ws serve --token T`) and `#room`.

import { RpcClient } from '/ws-rpc.js';

// ------------------------------------------------------------------ setup

const ROOM_RE = /^[a-z0-9_-]{1,32}$/;
const NAME_KEY = 'ws-chat.name';
const ROOM_KEY = 'ws-chat.room';
const ROOMS_EVERY_MS = 5000;
const MAX_TIMELINE = 600; // messages and notes kept in the timeline

const pageUrl = new URL(location.href);
const token = pageUrl.searchParams.get('token') ?? '';
// A token goes as the subprotocol `token.T` unless it cannot be one.
const TCHAR_RE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** @param {string} id */
const $ = (id) => /** @type {HTMLElement} */ (document.querySelector(`[data-testid="${id}"]`));

const ui = {
  app: $('app'),
  status: $('status'),
  statusText: $('status-text'),
  statusCountdown: $('status-countdown'),
  me: $('me'),
  meAvatar: $('me-avatar'),
  meName: $('me-name'),
  banner: $('conn-banner'),
  bannerTitle: $('conn-banner-title'),
  bannerText: $('conn-banner-text'),
  reconnectNow: $('reconnect-now'),
  reload: $('reload'),
  roomList: $('room-list'),
  roomCount: $('room-count'),
  roomsEmpty: $('rooms-empty'),
  newRoomForm: /** @type {HTMLFormElement} */ ($('new-room-form')),
  newRoomInput: /** @type {HTMLInputElement} */ ($('new-room-input')),
  membersPanel: $('members-panel'),
  memberList: $('member-list'),
  memberCount: $('member-count'),
  joinView: $('join-view'),
  joinForm: /** @type {HTMLFormElement} */ ($('join-form')),
  joinName: /** @type {HTMLInputElement} */ ($('join-name')),
  joinRoom: /** @type {HTMLInputElement} */ ($('join-room')),
  joinError: $('join-error'),
  joinSubmit: /** @type {HTMLButtonElement} */ ($('join-submit')),
  roomView: $('room-view'),
  roomTitle: $('room-title'),
  roomSub: $('room-sub'),
  leave: $('leave'),
  messages: $('messages'),
  introTitle: $('intro-title'),
  messageList: $('message-list'),
  jumpLatest: $('jump-latest'),
  composer: /** @type {HTMLFormElement} */ ($('composer')),
  composerInput: /** @type {HTMLTextAreaElement} */ ($('composer-input')),
  composerLabel: $('composer-label'),
  notices: $('notices'),
};

// ------------------------------------------------------------------ state

// This page's id, in the `client_id` of the messages it sends.
const PAGE_ID = [...crypto.getRandomValues(new Uint8Array(8))].map((b) => b.toString(16).padStart(2, '0')).join('');

/**
 * @typedef {{room: string, node: string, seq: number, sender: string, text: string, time: number,
 *   client_id?: string, key?: string, ord?: number}} Msg
 * @typedef {{id: number, key: string, afterOrd: number, text: string, kind: string, time: number}} Note
 * @typedef {{id: number, node: string, messages: Map<string, Msg>, notes: Note[]}} Segment
 * @typedef {{id: number, key: string, clientId: string, room: string, text: string,
 *   status: 'pending'|'sending'|'sent'|'failed', error: string, seq: number | null, node: string, msgKey: string | null,
 *   time: number, attempt: number, abort: AbortController | null, segment: number}} Outgoing
 */

const state = {
  /** 'connecting' | 'open' | 'reconnecting' | 'refused' | 'closed' */
  conn: 'connecting',
  everOpen: false,
  attempt: 0,
  retryAt: 0,
  closedWhy: '',
  name: '',
  /** the room we are in */
  room: /** @type {string | null} */ (null),
  /** a join on its way: its room's notifications wait in `buffer` */
  joining: /** @type {{room: string, name: string} | null} */ (null),
  buffer: /** @type {{method: string, params: any}[]} */ ([]),
  /** the members we know of, with the node each is on */
  memberOn: /** @type {{name: string, node: string}[]} */ ([]),
  /** their names */
  members: /** @type {string[]} */ ([]),
  rooms: /** @type {{name: string, members: number}[]} */ ([]),
  roomsLoaded: false,
  /** the server node we are joined on (its id: new at each start) */
  node: '',
  /** the timeline: one segment per server node seen in this room */
  segments: /** @type {Segment[]} */ ([]),
  outbox: /** @type {Outgoing[]} */ ([]),
  unread: 0,
};

let nextId = 1;
const newId = () => nextId++;

const current = () => state.segments[state.segments.length - 1];
/** A message's identity: the node that numbered it and its number there. */
const msgKey = (m) => `${m.node}/${m.seq}`;
/** Arrival order in the timeline. */
let nextOrd = 1;
const lastOrd = () => nextOrd - 1;
/** Adds `m` to `seg` unless it is known already; the copy kept. */
function addMessage(seg, m, extra = {}) {
  const k = msgKey(m);
  const had = findMessage(k);
  if (had) {
    if (extra.key && !had.key) had.key = extra.key;
    return had;
  }
  const msg = { ...m, ...extra, ord: nextOrd++ };
  seg.messages.set(k, msg);
  return msg;
}
const findMessage = (k) => {
  for (const seg of state.segments) {
    const m = seg.messages.get(k);
    if (m) return m;
  }
  return undefined;
};

// ----------------------------------------------------------------- client

const client = new RpcClient('/rpc', {
  token: token || undefined,
  tokenTransport: !token || TCHAR_RE.test(token) ? 'protocol' : 'query',
  backoff: { initial: 1000, factor: 2, max: 8000, jitter: 0.3 },
  heartbeat: { interval: 15000, timeout: 8000 },
  onReconnect: (ctx) => rejoin(ctx),
});

client.addEventListener('state', (e) => {
  const s = e.detail.state;
  if (s === 'open') state.conn = 'open';
  else if (s === 'closed') state.conn = 'closed';
  else if (s === 'reconnecting') state.conn = 'reconnecting';
  else state.conn = state.attempt > 0 ? 'refused' : 'connecting';
  renderStatus();
});

client.addEventListener('reconnecting', (e) => {
  state.attempt = e.detail.attempt;
  state.retryAt = e.detail.at;
  if (!state.everOpen) state.conn = 'refused';
  renderStatus();
});

client.addEventListener('open', (e) => {
  const again = e.detail.reconnected;
  state.everOpen = true;
  state.attempt = 0;
  state.conn = 'open';
  for (const item of state.outbox) if (item.status === 'pending') item.status = 'sending';
  if (again && state.room) addNote('reconnect', `Reconnected. You are back in #${state.room}.`);
  renderStatus();
  renderTimeline();
  refreshRooms();
});

client.addEventListener('close', (e) => {
  const { code, willReconnect } = e.detail;
  if (state.room && willReconnect) {
    addNote('disconnect', code === 1001 ? 'The server went away (restarting?).' : 'Connection lost.');
    renderTimeline();
  }
});

for (const method of ['chat.message', 'chat.joined', 'chat.left']) {
  client.addEventListener(`notify:${method}`, (e) => onRoomEvent(method, e.detail));
}

// A server that wants a token we did not give: say so and stop trying.
function loginRequired(err) {
  if (err?.kind !== 'server' || err.code !== -32001) return false;
  state.closedWhy = 'token-required';
  client.close();
  renderStatus();
  return true;
}

// ---------------------------------------------------------------- joining

/** Normalize what a person typed as a room name. */
function roomName(s) {
  return s.trim().replace(/^#/, '').toLowerCase().replace(/\s+/g, '-');
}

function describeError(err) {
  if (!err) return 'unknown error';
  switch (err.kind) {
    case 'server':
      return err.message;
    case 'disconnected':
      return 'the connection dropped before the server answered';
    case 'timeout':
      return 'the server did not answer in time';
    case 'queue-full':
      return 'too many calls are waiting for the connection';
    case 'closed':
      return state.closedWhy === 'token-required' ? 'this server needs an access token' : 'the connection is closed';
    default:
      return err.message || String(err);
  }
}

/** Join `room` as `name` (leaving the room we were in once the new one answered). */
async function join(room, name) {
  if (state.joining) return;
  name = name.trim();
  if (!name) return joinFailed('Enter your name first.', ui.joinName);
  if ([...name].length > 32) return joinFailed('Your name can be at most 32 characters.', ui.joinName);
  if (!ROOM_RE.test(room)) return joinFailed('Room names are 1 to 32 lowercase letters, digits, - and _.', ui.joinRoom);
  if (room === state.room) return;
  state.joining = { room, name };
  state.buffer = [];
  showJoinError('');
  renderJoinBusy();
  let res;
  try {
    res = await client.request('chat.join', { room, name }, { timeout: state.conn === 'open' ? 10000 : 60000 });
  } catch (err) {
    state.joining = null;
    state.buffer = [];
    renderJoinBusy();
    if (loginRequired(err)) return joinFailed('This server needs an access token: open the page with ?token=… in its address.');
    return joinFailed(`Could not join #${room}: ${describeError(err)}.`);
  }
  const previous = state.room;
  for (const item of state.outbox) item.abort?.abort();
  state.room = res.room;
  state.name = res.name;
  state.node = res.node;
  setMembers([], res.node, res.members);
  state.segments = [{ id: newId(), node: res.node, messages: new Map(), notes: [] }];
  state.outbox = [];
  for (const m of res.messages) addMessage(current(), m);
  addNote('self', `You joined #${res.room} as ${res.name}.`);
  try {
    localStorage.setItem(NAME_KEY, res.name);
    localStorage.setItem(ROOM_KEY, res.room);
  } catch {
    // storage may be off
  }
  state.joining = null;
  if (previous && previous !== res.room) client.request('chat.leave', { room: previous }).catch(() => {});
  if (location.hash !== `#${res.room}`) history.replaceState(null, '', `#${res.room}`);
  renderJoinBusy();
  renderAll();
  flushBuffer();
  scrollToEnd(true);
  ui.composerInput.focus();
  refreshRoomsSoon();
}

function joinFailed(text, field) {
  if (state.room) notice(text);
  else {
    showJoinError(text);
    (field ?? ui.joinRoom).focus();
  }
}

function showJoinError(text) {
  ui.joinError.textContent = text;
  ui.joinError.hidden = !text;
}

async function leave() {
  const room = state.room;
  if (!room) return;
  for (const item of state.outbox) item.abort?.abort();
  state.room = null;
  setMembers([], '', []);
  state.segments = [];
  state.outbox = [];
  try {
    localStorage.removeItem(ROOM_KEY);
  } catch {
    // storage may be off
  }
  history.replaceState(null, '', location.pathname + location.search);
  renderAll();
  ui.joinRoom.value = room;
  ui.joinRoom.focus();
  ui.joinRoom.select();
  try {
    await client.request('chat.leave', { room }, { timeout: 5000 });
  } catch {
    // gone anyway: the server forgets us when the connection closes
  }
  refreshRoomsSoon();
}

/** `onReconnect`: join the room again, before the queued calls go out. */
async function rejoin(ctx) {
  const room = state.room;
  if (!room) return;
  state.joining = { room, name: state.name };
  state.buffer = [];
  try {
    const res = await ctx.request('chat.join', { room, name: state.name }, { timeout: 8000 });
    if (state.room === room) mergeHistory(res);
  } catch (err) {
    if (state.room === room && !loginRequired(err) && err.kind === 'server') {
      // The server will not have us back: out of the room, and say why.
      state.room = null;
      setMembers([], '', []);
      state.segments = [];
      for (const item of state.outbox) item.abort?.abort();
      state.outbox = [];
      showJoinError(`Could not rejoin #${room} after reconnecting: ${describeError(err)}.`);
      ui.joinRoom.value = room;
    } else if (state.room === room) {
      notice(`Could not rejoin #${room} after reconnecting: ${describeError(err)}. Retrying with the next connection.`);
    }
    throw err;
  } finally {
    state.joining = null;
    renderAll();
    flushBuffer();
  }
}

/**
 * The room's last messages after a re-join. The same node: the ones we
 * missed are added. Another node (restarted, or another one of several): a
 * new segment below a divider, the old one kept above it.
 */
function mergeHistory(res) {
  setMembers([], res.node, res.members);
  let seg = current();
  if (res.node !== seg.node) {
    // Sends the old node answered stay in the old segment.
    for (const item of [...state.outbox]) {
      if (item.status === 'sent' && item.seq !== null) {
        addMessage(seg, { room: item.room, node: item.node, seq: item.seq, sender: state.name, text: item.text, time: item.time }, { key: item.key });
        removeOutgoing(item);
      }
    }
    seg = { id: newId(), node: res.node, messages: new Map(), notes: [] };
    state.segments.push(seg);
    state.node = res.node;
    for (const item of state.outbox) item.segment = seg.id;
  }
  for (const m of res.messages) {
    // A send that failed when the connection dropped may have run after all.
    const item = m.client_id && state.outbox.find((i) => i.clientId === m.client_id);
    if (item) confirm(item, m, seg);
    else addMessage(seg, m);
  }
  for (const item of [...state.outbox]) {
    const m = item.msgKey && findMessage(item.msgKey);
    if (m) confirm(item, m, seg);
  }
  trimTimeline();
}

// ------------------------------------------------------------ room events

function onRoomEvent(method, p) {
  if (!p || typeof p !== 'object') return;
  if (state.joining && p.room === state.joining.room) {
    state.buffer.push({ method, params: p });
    return;
  }
  if (p.room !== state.room) {
    if (method !== 'chat.message') refreshRoomsSoon();
    return;
  }
  applyRoomEvent(method, p);
}

function flushBuffer() {
  const buffered = state.buffer;
  state.buffer = [];
  for (const { method, params } of buffered) if (params.room === state.room) applyRoomEvent(method, params);
}

function applyRoomEvent(method, p) {
  if (method === 'chat.message') {
    receive(p);
  } else if (method === 'chat.joined' || method === 'chat.left') {
    // The event's `members` are its node's: from our node they replace what
    // we have of it; from another (`--redis`) the name is added or taken away.
    if (p.node === state.node && Array.isArray(p.members)) {
      setMembers(state.memberOn.filter((m) => m.node !== state.node), state.node, p.members);
    } else if (typeof p.name === 'string' && typeof p.node === 'string') {
      const others = [...state.memberOn];
      if (method === 'chat.joined') others.push({ name: p.name, node: p.node });
      else {
        const i = others.findIndex((m) => m.name === p.name && m.node === p.node);
        if (i >= 0) others.splice(i, 1);
      }
      setMembers(others, state.node, []);
    }
    addNote(method === 'chat.joined' ? 'joined' : 'left', `${p.name} ${method === 'chat.joined' ? 'joined' : 'left'} the room.`);
    setRoomCount(p.room, state.members.length);
    renderMembers();
    renderTimeline();
    refreshRoomsSoon();
  }
}

/** The members: `others` and `names` on `node`. */
function setMembers(others, node, names) {
  state.memberOn = [...others, ...names.map((name) => ({ name, node }))];
  state.members = state.memberOn.map((m) => m.name);
}

/** A `chat.message` of our room. */
function receive(m) {
  const seg = current();
  if (!seg || typeof m.node !== 'string' || !Number.isInteger(m.seq)) return;
  if (findMessage(msgKey(m))) return; // seen already
  const item = state.outbox.find((i) => (m.client_id && i.clientId === m.client_id) || i.msgKey === msgKey(m));
  if (item) confirm(item, m, seg);
  else addMessage(seg, m);
  trimTimeline();
  const stick = nearEnd();
  if (document.hidden && m.sender !== state.name) state.unread++;
  renderTimeline();
  renderTitle();
  if (stick || m.sender === state.name) scrollToEnd();
  else ui.jumpLatest.hidden = false;
}

// --------------------------------------------------------------- sending

function send(text) {
  if (!state.room || !text.trim()) return false;
  const seg = current();
  const id = newId();
  /** @type {Outgoing} */
  const item = {
    id,
    key: `o${id}`,
    clientId: `${PAGE_ID}-${id}`,
    room: state.room,
    text,
    status: 'pending',
    error: '',
    seq: null,
    node: '',
    msgKey: null,
    time: Date.now(),
    attempt: 0,
    abort: null,
    segment: seg.id,
  };
  state.outbox.push(item);
  dispatch(item);
  return true;
}

function dispatch(item) {
  const attempt = ++item.attempt;
  const open = client.readyState === 'open';
  item.status = open ? 'sending' : 'pending';
  item.error = '';
  item.abort = new AbortController();
  renderTimeline();
  scrollToEnd(true);
  // While the connection is away the call waits in the client's queue, so it
  // gets longer to live.
  const params = { room: item.room, text: item.text, client_id: item.clientId };
  client.request('chat.send', params, { timeout: open ? 15000 : 120000, signal: item.abort.signal }).then(
    (res) => {
      if (item.attempt !== attempt || !state.outbox.includes(item)) return; // confirmed already, or discarded
      item.seq = res.seq;
      item.node = res.node;
      item.msgKey = msgKey(res);
      item.time = res.time;
      item.status = 'sent';
      renderTimeline();
    },
    (err) => {
      if (item.attempt !== attempt || !state.outbox.includes(item) || err.kind === 'aborted') return;
      if (loginRequired(err)) return;
      item.status = 'failed';
      item.error =
        err.kind === 'server'
          ? `Not sent: ${err.message} (error ${err.code}).`
          : err.kind === 'disconnected'
            ? 'Not delivered: the connection to the server dropped before it answered.'
            : `Not sent: ${describeError(err)}.`;
      renderTimeline();
    },
  );
}

/** `item` is `m`, the server's copy: show that one, where the item was. */
function confirm(item, m, seg = current()) {
  if (seg) addMessage(seg, m, { key: item.key });
  removeOutgoing(item);
}

function removeOutgoing(item) {
  const i = state.outbox.indexOf(item);
  if (i >= 0) state.outbox.splice(i, 1);
}

function retry(id) {
  const item = state.outbox.find((i) => i.id === id);
  if (!item || item.status !== 'failed') return;
  // Retried messages go to the end, as new ones.
  removeOutgoing(item);
  state.outbox.push(item);
  item.segment = current()?.id ?? item.segment;
  dispatch(item);
  ui.composerInput.focus();
}

function discard(id) {
  const item = state.outbox.find((i) => i.id === id);
  if (!item) return;
  item.abort?.abort();
  removeOutgoing(item);
  renderTimeline();
  ui.composerInput.focus();
}

// --------------------------------------------------------------- timeline

function addNote(kind, text) {
  const seg = current();
  if (!seg) return;
  const id = newId();
  seg.notes.push({ id, key: `n${id}`, afterOrd: lastOrd(), text, kind, time: Date.now() });
  trimTimeline();
}

function trimTimeline() {
  let total = state.segments.reduce((n, s) => n + s.messages.size + s.notes.length, 0);
  while (total > MAX_TIMELINE && state.segments.length > 0) {
    const seg = state.segments[0];
    // Messages are in the order they came: the first is the oldest.
    const [oldestKey, oldest] = seg.messages.entries().next().value ?? [];
    const oldestNote = seg.notes[0];
    if (oldestNote && (!oldest || oldestNote.afterOrd < oldest.ord)) seg.notes.shift();
    else if (oldest) seg.messages.delete(oldestKey);
    if (seg.messages.size === 0 && seg.notes.length === 0 && state.segments.length > 1) state.segments.shift();
    total--;
  }
}

/** The timeline as rows, in order. */
function rows() {
  const out = [];
  state.segments.forEach((seg, i) => {
    if (i > 0) out.push({ type: 'divider', key: `d${seg.id}` });
    let n = 0;
    for (const m of seg.messages.values()) {
      while (n < seg.notes.length && seg.notes[n].afterOrd < m.ord) out.push({ type: 'note', key: seg.notes[n].key, note: seg.notes[n++] });
      out.push({ type: 'msg', key: m.key ?? `m${msgKey(m)}`, msg: m });
    }
    while (n < seg.notes.length) out.push({ type: 'note', key: seg.notes[n].key, note: seg.notes[n++] });
  });
  for (const item of state.outbox) out.push({ type: 'out', key: item.key, item });
  return out;
}

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'medium' });
const dayFmt = new Intl.DateTimeFormat(undefined, { weekday: 'long', month: 'long', day: 'numeric' });

function dayLabel(t) {
  const d = new Date(t);
  const today = new Date();
  const yesterday = new Date(Date.now() - 86400000);
  if (d.toDateString() === today.toDateString()) return 'Today';
  if (d.toDateString() === yesterday.toDateString()) return 'Yesterday';
  return dayFmt.format(d);
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) e.append(c);
  return e;
}

function hue(name) {
  let h = 0;
  for (const ch of name) h = (h * 31 + ch.codePointAt(0)) >>> 0;
  return h % 360;
}

function initials(name) {
  const words = name.trim().split(/\s+/).filter(Boolean);
  const first = [...(words[0] ?? '?')][0] ?? '?';
  const second = words.length > 1 ? [...words[words.length - 1]][0] : '';
  return (first + (second ?? '')).toUpperCase();
}

function avatar(name, cls = '') {
  const a = el('span', { class: `avatar ${cls}`, 'aria-hidden': 'true', text: initials(name) });
  a.style.setProperty('--hue', String(hue(name)));
  return a;
}

/** The rows, with a signature saying when a row's element must be rebuilt. */
function renderRow(row, prev) {
  if (row.type === 'divider') {
    return el('li', { class: 'divider divider-restart', 'data-testid': 'restart-divider', role: 'separator' },
      el('span', { text: 'Reconnected to a different server: this one restarted, or another took over. The messages above are from before and may no longer be on the server.' }));
  }
  if (row.type === 'note') {
    const n = row.note;
    return el('li', { class: `note note-${n.kind}`, 'data-testid': 'note', 'data-kind': n.kind },
      el('span', { class: 'note-text', text: n.text }),
      el('time', { class: 'note-time', datetime: new Date(n.time).toISOString(), title: fullFmt.format(n.time), text: timeFmt.format(n.time) }));
  }
  const m = row.type === 'msg' ? row.msg : null;
  const item = row.type === 'out' ? row.item : null;
  const sender = m ? m.sender : state.name;
  const text = m ? m.text : item.text;
  const time = m ? m.time : item.time;
  const own = sender === state.name;
  const st = m ? 'sent' : item.status;
  const grouped = prev && prev.sender === sender && time - prev.time < 5 * 60000 && !prev.failed && st !== 'failed';
  const li = el('li', {
    class: `msg${own ? ' msg-own' : ''}${grouped ? ' msg-grouped' : ''} msg-${st}`,
    'data-testid': 'message',
    'data-state': st,
    'data-own': own ? 'true' : 'false',
    'data-sender': sender,
    'data-seq': m ? m.seq : item.seq ?? undefined,
  });
  if (!own) li.append(grouped ? el('span', { class: 'avatar-gap', 'aria-hidden': 'true' }) : avatar(sender));
  const meta = el('div', { class: 'msg-meta' },
    el('span', { class: 'msg-sender', 'data-testid': 'message-sender', text: own ? 'You' : sender }),
    el('time', { class: 'msg-time', 'data-testid': 'message-time', datetime: new Date(time).toISOString(), title: fullFmt.format(time), text: timeFmt.format(time) }));
  const body = el('div', { class: 'msg-body' },
    grouped ? el('span', { class: 'visually-hidden', text: `${own ? 'You' : sender}, ${timeFmt.format(time)}: ` }) : meta,
    el('p', { class: 'msg-text', 'data-testid': 'message-text', text }));
  if (item && item.status !== 'sent') {
    const label = { pending: 'Waiting for the connection…', sending: 'Sending…', failed: item.error }[item.status];
    const status = el('div', { class: 'msg-status', 'data-testid': item.status === 'failed' ? 'message-error' : 'message-status', role: item.status === 'failed' ? 'alert' : undefined },
      statusIcon(item.status),
      el('span', { text: label }));
    if (item.status === 'failed') {
      status.append(
        el('button', { type: 'button', class: 'link-button', 'data-testid': 'message-retry', onclick: () => retry(item.id), text: 'Retry' }),
        el('button', { type: 'button', class: 'link-button link-quiet', 'data-testid': 'message-discard', onclick: () => discard(item.id), text: 'Discard' }),
      );
    }
    body.append(status);
  }
  li.append(body);
  return li;
}

function statusIcon(kind) {
  const paths = {
    pending: '<circle cx="8" cy="8" r="6.2" fill="none" stroke="currentColor" stroke-width="1.5"/><path d="M8 4.6V8l2.3 1.5" fill="none" stroke="currentColor" stroke-width="1.5" stroke-linecap="round"/>',
    sending: '<circle cx="8" cy="8" r="6" fill="none" stroke="currentColor" stroke-width="1.6" stroke-dasharray="26 12" stroke-linecap="round"/>',
    failed: '<circle cx="8" cy="8" r="6.8" fill="currentColor"/><path d="M8 4.3v4.6" stroke="var(--bg-elev)" stroke-width="1.7" stroke-linecap="round"/><circle cx="8" cy="11.4" r="1" fill="var(--bg-elev)"/>',
  };
  const span = el('span', { class: `status-icon status-icon-${kind}`, 'aria-hidden': 'true' });
  span.innerHTML = `<svg viewBox="0 0 16 16" focusable="false">${paths[kind] ?? ''}</svg>`;
  return span;
}

/** Put `rows` in `list`, reusing the elements of rows whose signature did not change. */
function renderTimeline() {
  const list = ui.messageList;
  /** @type {Map<string, {el: HTMLElement, sig: string}>} */
  const old = list._rows ?? new Map();
  const next = new Map();
  let prevMsg = null;
  let prevDay = '';
  let cursor = list.firstChild;
  const place = (key, sig, make) => {
    let entry = old.get(key);
    if (!entry || entry.sig !== sig) {
      const e = make();
      if (entry) {
        if (entry.el === cursor) cursor = e;
        entry.el.replaceWith(e);
      }
      entry = { el: e, sig };
    }
    next.set(key, entry);
    if (entry.el !== cursor) list.insertBefore(entry.el, cursor);
    else cursor = cursor.nextSibling;
  };
  for (const row of rows()) {
    const t = row.type === 'msg' ? row.msg.time : row.type === 'out' ? row.item.time : row.type === 'note' ? row.note.time : null;
    if (t !== null) {
      const day = new Date(t).toDateString();
      if (day !== prevDay) {
        const label = dayLabel(t);
        let key = `day-${day}`;
        while (next.has(key)) key += '+';
        place(key, label, () => el('li', { class: 'divider divider-day', role: 'separator' }, el('span', { text: label })));
        prevDay = day;
        prevMsg = null;
      }
    }
    if (row.type === 'msg' || row.type === 'out') {
      const m = row.type === 'msg' ? row.msg : null;
      const it = row.type === 'out' ? row.item : null;
      const cur = { sender: m ? m.sender : state.name, time: m ? m.time : it.time, failed: it?.status === 'failed' };
      const sig = JSON.stringify([m?.seq, m?.text, m?.sender, it?.status, it?.error, it?.seq, state.name, prevMsg?.sender, prevMsg && cur.time - prevMsg.time < 300000, prevMsg?.failed]);
      const prev = prevMsg;
      place(row.key, sig, () => renderRow(row, prev));
      prevMsg = cur;
    } else {
      place(row.key, 'x', () => renderRow(row, null));
      prevMsg = null;
    }
  }
  for (const [key, entry] of old) if (!next.has(key)) entry.el.remove();
  list._rows = next;
}

function nearEnd() {
  const m = ui.messages;
  return m.scrollHeight - m.scrollTop - m.clientHeight < 80;
}

function scrollToEnd(force = false) {
  if (!force && !nearEnd()) return;
  requestAnimationFrame(() => {
    ui.messages.scrollTop = ui.messages.scrollHeight;
    ui.jumpLatest.hidden = true;
  });
}

// ------------------------------------------------------------------ rooms

let roomsInFlight = false;
let roomsAgain = false;
let roomsSoon = null;

async function refreshRooms() {
  if (client.readyState !== 'open') return;
  if (roomsInFlight) {
    roomsAgain = true;
    return;
  }
  roomsInFlight = true;
  try {
    const list = await client.request('chat.rooms', undefined, { timeout: 5000 });
    if (Array.isArray(list)) {
      state.rooms = list;
      state.roomsLoaded = true;
      renderRooms();
    }
  } catch (err) {
    loginRequired(err);
  } finally {
    roomsInFlight = false;
    if (roomsAgain) {
      roomsAgain = false;
      refreshRoomsSoon();
    }
  }
}

/** Refresh the room list soon, once for a burst of events. */
function refreshRoomsSoon() {
  if (roomsSoon) return;
  roomsSoon = setTimeout(() => {
    roomsSoon = null;
    refreshRooms();
  }, 250 + Math.random() * 250);
}

setInterval(() => {
  if (!document.hidden) refreshRooms();
}, ROOMS_EVERY_MS);

function setRoomCount(room, n) {
  const r = state.rooms.find((x) => x.name === room);
  if (r) r.members = n;
  renderRooms();
}

/** The room list, updated in place (a button keeps its focus across refreshes). */
function renderRooms() {
  const rooms = [...state.rooms];
  if (state.room && !rooms.some((r) => r.name === state.room)) rooms.push({ name: state.room, members: state.members.length });
  rooms.sort((a, b) => a.name.localeCompare(b.name));
  /** @type {Map<string, HTMLElement>} */
  const old = ui.roomList._items ?? new Map();
  const next = new Map();
  let cursor = ui.roomList.firstChild;
  for (const r of rooms) {
    const here = r.name === state.room;
    const count = here ? Math.max(r.members, state.members.length) : r.members;
    let li = old.get(r.name);
    if (!li) {
      const name = r.name;
      li = el('li', {},
        el('button', { type: 'button', class: 'room-button', 'data-testid': 'room-item', 'data-room': name,
          onclick: () => (name === state.room ? ui.composerInput.focus() : joinFromList(name)) },
        el('span', { class: 'room-hash', 'aria-hidden': 'true', text: '#' }),
        el('span', { class: 'room-name', text: name }),
        el('span', { class: 'room-members', 'data-testid': 'room-members', 'aria-hidden': 'true' })));
    }
    const button = /** @type {HTMLElement} */ (li.firstChild);
    button.dataset.members = String(count);
    if (here) button.setAttribute('aria-current', 'true');
    else button.removeAttribute('aria-current');
    button.setAttribute('aria-label', `#${r.name}, ${count} ${count === 1 ? 'member' : 'members'}${here ? ', current room' : ''}`);
    button.lastChild.textContent = String(count);
    next.set(r.name, li);
    if (li !== cursor) ui.roomList.insertBefore(li, cursor);
    else cursor = cursor.nextSibling;
  }
  for (const [name, li] of old) if (!next.has(name)) li.remove();
  ui.roomList._items = next;
  ui.roomCount.textContent = rooms.length ? String(rooms.length) : '';
  ui.roomsEmpty.hidden = rooms.length > 0;
}

function joinFromList(room) {
  const name = state.room ? state.name : ui.joinName.value;
  if (!name.trim()) {
    ui.joinRoom.value = room;
    joinFailed('Enter your name first, then join.', ui.joinName);
    return;
  }
  join(room, name);
}

// ---------------------------------------------------------------- members

function renderMembers() {
  const names = [...state.members].sort((a, b) => (a === state.name ? -1 : b === state.name ? 1 : a.localeCompare(b)));
  ui.memberList.replaceChildren(
    ...names.map((n) =>
      el('li', { class: 'member', 'data-testid': 'member', 'data-name': n },
        avatar(n, 'avatar-sm'),
        el('span', { class: 'member-name', text: n }),
        n === state.name ? el('span', { class: 'member-you', text: 'you' }) : null,
        el('span', { class: 'presence', 'aria-hidden': 'true' }))),
  );
  ui.memberCount.textContent = String(state.members.length);
  const n = state.members.length;
  ui.roomSub.textContent = `${n} ${n === 1 ? 'member' : 'members'} online`;
}

// ---------------------------------------------------------------- status

const COPY = {
  connecting: ['Connecting…', '', ''],
  open: ['Connected', '', ''],
  reconnecting: ['Reconnecting', 'Connection lost', 'Trying to reach the server again. Messages you send now are kept and go out once the connection is back.'],
  refused: ["Can't connect", "Can't connect to the chat server", 'The server refused the connection or is not reachable.'],
  closed: ['Disconnected', 'Disconnected', 'The connection to the chat server is closed. Reload the page to connect again.'],
};

function renderStatus() {
  const s = state.conn;
  ui.status.dataset.state = s;
  ui.app.dataset.conn = s;
  let [label, title, text] = COPY[s];
  if (s === 'refused' && token) text += " The access token in this page's address (?token=…) may be wrong.";
  if (s === 'refused' && !token) text += ' If the server needs an access token, open the page with ?token=… in its address.';
  if (s === 'reconnecting' && state.attempt >= 4) text = "Still can't reach the server: it may be down or refusing the connection. Messages you send now are kept and go out once it is back.";
  if (s === 'closed' && state.closedWhy === 'token-required') {
    title = 'This server needs an access token';
    text = 'Open the page with ?token=… in its address (the token the server was started with).';
  }
  if (ui.statusText.textContent !== label) ui.statusText.textContent = label;
  ui.banner.hidden = !title;
  ui.banner.dataset.kind = s;
  ui.bannerTitle.textContent = title;
  ui.bannerText.textContent = text;
  ui.reconnectNow.hidden = !(s === 'reconnecting' || s === 'refused');
  ui.reload.hidden = s !== 'closed';
  tickCountdown();
}

function tickCountdown() {
  const s = state.conn;
  let text = '';
  if (s === 'reconnecting' || s === 'refused') {
    const left = Math.ceil((state.retryAt - Date.now()) / 1000);
    if (s === 'reconnecting') text = left > 0 ? `in ${left}s` : 'now…';
    else text = left > 0 ? `retry in ${left}s` : 'retrying…';
  }
  if (ui.statusCountdown.textContent !== text) ui.statusCountdown.textContent = text;
}

setInterval(tickCountdown, 250);

// ------------------------------------------------------------------ views

function renderJoinBusy() {
  const busy = !!state.joining && !state.room;
  ui.joinSubmit.disabled = busy;
  ui.joinSubmit.textContent = busy ? (state.conn === 'open' ? 'Joining…' : 'Waiting for the connection…') : 'Join room';
  ui.app.toggleAttribute('data-joining', !!state.joining);
}

function renderTitle() {
  const unread = state.unread > 0 ? `(${state.unread}) ` : '';
  document.title = state.room ? `${unread}#${state.room} · ws chat` : 'ws chat';
}

function renderAll() {
  const inRoom = !!state.room;
  ui.app.dataset.view = inRoom ? 'room' : 'join';
  ui.joinView.hidden = inRoom;
  ui.roomView.hidden = !inRoom;
  ui.membersPanel.hidden = !inRoom;
  ui.me.hidden = !inRoom;
  if (inRoom) {
    ui.roomTitle.textContent = `#${state.room}`;
    ui.introTitle.textContent = `Welcome to #${state.room}`;
    ui.composerInput.placeholder = `Message #${state.room}`;
    ui.composerLabel.textContent = `Message #${state.room}`;
    ui.meName.textContent = state.name;
    ui.meAvatar.textContent = initials(state.name);
    ui.meAvatar.style.setProperty('--hue', String(hue(state.name)));
  }
  renderMembers();
  renderRooms();
  renderTimeline();
  renderTitle();
}

let noticeTimer = 0;
function notice(text) {
  const n = el('div', { class: 'notice', 'data-testid': 'notice' },
    el('span', { text }),
    el('button', { type: 'button', class: 'notice-close', 'aria-label': 'Dismiss', text: '×', onclick: () => n.remove() }));
  ui.notices.append(n);
  while (ui.notices.childElementCount > 3) ui.notices.firstElementChild.remove();
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => n.remove(), 10000);
}

// ----------------------------------------------------------------- wiring

ui.joinForm.addEventListener('submit', (e) => {
  e.preventDefault();
  join(roomName(ui.joinRoom.value), ui.joinName.value);
});

ui.newRoomForm.addEventListener('submit', (e) => {
  e.preventDefault();
  const room = roomName(ui.newRoomInput.value);
  if (!room) return;
  if (!ROOM_RE.test(room)) {
    notice('Room names are 1 to 32 lowercase letters, digits, - and _.');
    return;
  }
  ui.newRoomInput.value = '';
  joinFromList(room);
});

ui.leave.addEventListener('click', () => leave());
ui.reconnectNow.addEventListener('click', () => client.reconnectNow());
ui.reload.addEventListener('click', () => location.reload());

ui.composer.addEventListener('submit', (e) => {
  e.preventDefault();
  const text = ui.composerInput.value;
  if (send(text)) {
    ui.composerInput.value = '';
    autosize();
  }
});

ui.composerInput.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    ui.composer.requestSubmit();
  }
});

function autosize() {
  const t = ui.composerInput;
  t.style.height = 'auto';
  t.style.height = `${Math.min(t.scrollHeight, 160)}px`;
}
ui.composerInput.addEventListener('input', autosize);

// Stay at the newest message when the list or the window changes size.
let atEnd = true;
ui.messages.addEventListener('scroll', () => {
  atEnd = nearEnd();
  if (atEnd) ui.jumpLatest.hidden = true;
});
new ResizeObserver(() => {
  if (atEnd) ui.messages.scrollTop = ui.messages.scrollHeight;
}).observe(ui.messages);
ui.jumpLatest.addEventListener('click', () => scrollToEnd(true));

document.addEventListener('visibilitychange', () => {
  if (!document.hidden) {
    state.unread = 0;
    renderTitle();
    refreshRooms();
  }
});

// The form's defaults: the name we used last, the room from the address.
try {
  ui.joinName.value = localStorage.getItem(NAME_KEY) ?? '';
  ui.joinRoom.value = roomName(decodeURIComponent(location.hash.slice(1))) || localStorage.getItem(ROOM_KEY) || 'lobby';
} catch {
  ui.joinRoom.value = 'lobby';
}
renderAll();
renderStatus();
(ui.joinName.value ? ui.joinRoom : ui.joinName).focus();

// For the console and the tests: the client and the state.
window.chat = { client, state };
