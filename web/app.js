// The chatgate browser client: a plain script, no framework, no build step.
//
// Three parts, each owning its own state:
//   - protocol: names and server lines, as pure functions (no DOM, no socket);
//   - view: everything on screen (join form, message log, member list,
//     status line), changed only through the functions defined there;
//   - connection: the WebSocket, joining, the commands that change state
//     (/join, /who, /quit) and reconnecting with backoff after a drop.
//
// Text that came from the network or the user reaches the page through
// textContent and text nodes only, never as HTML.
'use strict';

// ---- protocol -------------------------------------------------------------

/** A room or user name, as the server accepts it. */
const NAME = '[A-Za-z0-9_.#-]{1,20}';
const NAME_RE = new RegExp(`^${NAME}$`);
const JOIN_LEAVE_RE = new RegExp(`^(${NAME}) has (joined|left)$`);
const PRIVATE_RE = new RegExp(`^(${NAME}) \\(private\\): ([\\s\\S]*)$`);
const SAID_RE = new RegExp(`^(${NAME}): ([\\s\\S]*)$`);
// Names hold no `*`, so a line starting with one star is always a user's
// `/me`, and only the server can start a line with `*** `.
const ACTION_RE = new RegExp(`^\\* (${NAME}) ([\\s\\S]*)$`);
const SERVER_PREFIX = '*** ';
const WHO_RE = new RegExp(`^\\*\\*\\* users in (${NAME})(?: \\(first (\\d+) of (\\d+)\\))?: (.*)$`);
const SHUTTING_DOWN = '*** server shutting down';
const LINK_LOST = '*** cluster link lost';
const LINK_RESTORED = '*** cluster link restored';
/** The `ERROR` reasons that answer a refused `/join`. */
const JOIN_REFUSALS = [
  'name taken',
  'already in that room',
  'invalid room name',
  'usage: /join',
  'cluster busy',
];

/** The server's limit on one line; a longer one would cost the connection. */
const MAX_LINE_BYTES = 20000;

/** Splits a server line into what the page needs to show it. */
function parseLine(line) {
  if (line.startsWith('ERROR ')) return { kind: 'error', reason: line.slice(6) };
  let m = JOIN_LEAVE_RE.exec(line);
  if (m) return { kind: m[2] === 'joined' ? 'join' : 'leave', user: m[1] };
  m = PRIVATE_RE.exec(line);
  if (m) return { kind: 'private', user: m[1], text: m[2] };
  m = SAID_RE.exec(line);
  if (m) return { kind: 'chat', user: m[1], text: m[2] };
  m = ACTION_RE.exec(line);
  if (m) return { kind: 'me', user: m[1], text: m[2] };
  if (line.startsWith(SERVER_PREFIX)) return { kind: 'server' };
  return { kind: 'other' };
}

/**
 * A `/who` answer for `room` as `{ names, total }`, or null if the line is
 * not one. A room too big for one answer lists only its first names by byte
 * value, and `total` says how many there are.
 */
function parseWho(line, room) {
  const m = WHO_RE.exec(line);
  if (!m || m[1] !== room) return null;
  const names = m[4].split(', ');
  if (!names.every((n) => NAME_RE.test(n))) return null;
  if (m[2] === undefined) return { names, total: names.length };
  const listed = Number(m[2]);
  const total = Number(m[3]);
  if (names.length !== listed || listed > total) return null;
  return { names, total };
}

/** Why a room or user name would be refused, or '' if it is fine. */
function nameProblem(what, value) {
  if (value === '') return `${what} is empty.`;
  if (value.length > 20) return `${what} is longer than 20 characters.`;
  if (!NAME_RE.test(value)) return `${what} may only hold A-Z a-z 0-9 _ - . # (no spaces).`;
  return '';
}

// ---- view -----------------------------------------------------------------

const $ = (id) => document.getElementById(id);
const ui = {
  status: $('status'),
  roomTitle: $('room-title'),
  roomName: $('room-name'),
  joinView: $('join-view'),
  joinForm: $('join-form'),
  roomInput: $('room'),
  nameInput: $('name'),
  joinError: $('join-error'),
  chatView: $('chat-view'),
  log: $('log'),
  jump: $('jump'),
  members: $('members'),
  memberCount: $('member-count'),
  memberList: $('member-list'),
  memberMore: $('member-more'),
  sendForm: $('send-form'),
  message: $('message'),
};

/** Lines kept in the log; older ones are dropped so a long session stays light. */
const MAX_LOG_LINES = 2000;
/** How close to the bottom (px) still counts as "reading the newest lines". */
const STICK_SLACK = 40;

const timeFormat = new Intl.DateTimeFormat([], { hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Shows the connection state: state is one of idle, busy, ok, down. */
function setStatus(state, text) {
  ui.status.dataset.state = state;
  ui.status.textContent = text;
}

function showJoinView(message) {
  ui.chatView.hidden = true;
  ui.roomTitle.hidden = true;
  ui.joinView.hidden = false;
  document.title = 'chatgate';
  ui.joinError.textContent = message || '';
  ui.nameInput.focus();
}

function showChatView(room, fresh) {
  ui.joinView.hidden = true;
  ui.chatView.hidden = false;
  ui.roomTitle.hidden = false;
  ui.joinError.textContent = '';
  if (fresh) ui.log.replaceChildren();
  showRoom(room);
  ui.message.focus();
}

function showRoom(room) {
  ui.roomName.textContent = room;
  document.title = `${room} · chatgate`;
}

function atBottom() {
  return ui.log.scrollHeight - ui.log.scrollTop - ui.log.clientHeight < STICK_SLACK;
}

/**
 * Appends one line to the log. `body` holds the line as the server sent it
 * (or a note of the page's own); `mine` marks the user's own lines.
 */
function addLine(kind, body, mine) {
  const stick = atBottom();
  const now = new Date();
  const item = el('li', mine ? 'line mine' : 'line');
  item.dataset.kind = kind;
  const time = el('time', '', timeFormat.format(now));
  time.dateTime = now.toISOString();
  item.append(time, body);
  ui.log.append(item);
  while (ui.log.childElementCount > MAX_LOG_LINES) ui.log.firstElementChild.remove();
  if (stick) ui.log.scrollTop = ui.log.scrollHeight;
  else ui.jump.hidden = false;
}

/** A line shown whole, as text. */
function addText(kind, text) {
  addLine(kind, el('span', 'body', text), false);
}

/**
 * A user's text in its own isolated run: whatever directions its letters
 * have, it cannot move the name before it or the text around it.
 */
function userText(text) {
  const node = el('span', 'text', text);
  node.dir = 'auto';
  return node;
}

/**
 * `user: text`, `user (private): text` or `* user text`, with the name set
 * apart from the text.
 */
function addMessage(kind, user, text, mine) {
  const body = el('span', 'body');
  if (kind === 'me') {
    body.append('* ', el('b', 'who', user), ' ', userText(text));
  } else {
    body.append(el('b', 'who', user));
    if (kind === 'private') body.append(el('span', 'tag', ' (private)'));
    body.append(': ', userText(text));
  }
  addLine(kind, body, mine);
}

/** A `*** ` line: the server speaking, never a user. */
function addServer(kind, line) {
  addText(kind, line);
  ui.log.lastElementChild.classList.add('server');
}

ui.log.addEventListener('scroll', () => {
  if (atBottom()) ui.jump.hidden = true;
});
ui.jump.addEventListener('click', () => {
  ui.log.scrollTop = ui.log.scrollHeight;
  ui.jump.hidden = true;
  ui.message.focus();
});

/** The member list: exact names, as the server spells them. */
const members = new Set();
/**
 * Members the page knows are there but not by name: a big room's `/who`
 * lists only its first names, and only joins and leaves tell the rest.
 */
let unlisted = 0;

function renderMembers() {
  const sorted = [...members].sort();
  ui.memberCount.textContent = String(sorted.length + unlisted);
  ui.memberMore.textContent = unlisted ? `and ${unlisted} more` : '';
  ui.memberMore.hidden = unlisted === 0;
  ui.memberList.replaceChildren(
    ...sorted.map((name) => {
      const item = el('li', '', name);
      item.dataset.name = name;
      if (session && name === session.name) item.append(el('span', 'you', ' (you)'));
      return item;
    }),
  );
}

/** Replaces the list: `names` of `total` members, the others unnamed. */
function setMembers(names, total = names.length) {
  members.clear();
  names.forEach((n) => members.add(n));
  unlisted = Math.max(0, total - members.size);
  // We are in the room even when our name is past the listed ones.
  if (session && !members.has(session.name)) {
    members.add(session.name);
    unlisted = Math.max(0, unlisted - 1);
  }
  renderMembers();
}

function memberJoined(name) {
  members.add(name);
  renderMembers();
}

function memberLeft(name) {
  if (!members.delete(name)) unlisted = Math.max(0, unlisted - 1);
  renderMembers();
}

// The member list is a sidebar on wide screens and a fold-out on narrow
// ones, where it starts closed so the messages get the room.
const wide = window.matchMedia('(min-width: 48rem)');
ui.members.open = wide.matches;
wide.addEventListener('change', () => {
  ui.members.open = wide.matches;
});

// ---- connection -----------------------------------------------------------

/** The first wait before reconnecting; doubled per failure up to the cap. */
const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 10000;
/** Sent commands remembered for Up/Down recall. */
const MAX_HISTORY = 50;

/** The socket, or null when there is none. */
let ws = null;
/** The room and name the user is in (or is being rejoined to), else null. */
let session = null;
/** Whether the server has confirmed `session` on the current socket. */
let inRoom = false;
/** The room and name of a JOIN sent from the form and not yet answered. */
let pending = null;
/** Set when the user asked to leave, so the close is not a drop. */
let quitting = false;
/** Set when the page closes the socket itself to retry a failed rejoin. */
let retrying = false;
/** The room named by the last `/join`, shown until `/who` confirms it. */
let switchingTo = null;
/** One entry per `/who` in flight: 'auto' (seeding the list) or 'user'. */
let whoQueue = [];
/** Failed connections in a row, for the backoff. */
let failures = 0;
/** The pending reconnect, if any. */
let reconnectTimer = null;

const history = [];
let historyAt = 0;

function wsUrl() {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/ws`;
}

function send(line) {
  ws.send(line);
}

function connect() {
  clearTimeout(reconnectTimer);
  reconnectTimer = null;
  quitting = false;
  retrying = false;
  inRoom = false;
  whoQueue = [];
  setStatus('busy', session ? 'Reconnecting…' : 'Connecting…');
  const socket = new WebSocket(wsUrl());
  ws = socket;
  socket.addEventListener('open', () => {
    const target = session || pending;
    if (target) send(`JOIN ${target.room} ${target.name}`);
    if (!session) setStatus('busy', 'Joining…');
  });
  socket.addEventListener('message', (event) => {
    if (typeof event.data !== 'string') return;
    for (const line of event.data.split('\n')) onLine(line.replace(/\r$/, ''));
  });
  socket.addEventListener('close', (event) => {
    if (ws === socket) onClose(event);
  });
}

function onClose(event) {
  ws = null;
  inRoom = false;
  const left = !retrying && (quitting || event.code === 1000);
  if (session && !left) {
    if (failures === 0) addText('note', 'Connection lost.');
    scheduleReconnect();
    return;
  }
  if (session) {
    ui.roomInput.value = session.room;
    ui.nameInput.value = session.name;
    session = null;
    setStatus('idle', 'Left the chat');
    showJoinView('You left the room. Join again whenever you like.');
    return;
  }
  setStatus('idle', 'Not connected');
  if (pending) {
    pending = null;
    if (!ui.joinError.textContent) ui.joinError.textContent = 'Could not reach the server. Try again in a moment.';
  }
}

function scheduleReconnect() {
  const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** failures) * (0.8 + Math.random() * 0.4);
  failures += 1;
  setStatus('down', `Disconnected. Reconnecting in ${Math.ceil(delay / 1000)} s…`);
  reconnectTimer = setTimeout(connect, delay);
}

// Back online after a network change: no need to wait out the backoff.
window.addEventListener('online', () => {
  if (reconnectTimer) connect();
});

function onLine(line) {
  if (line === '') return;
  if (inRoom) roomLine(line);
  else if (session) rejoinLine(line);
  else loginLine(line);
}

/** Before joining: only the answer to the form's JOIN matters. */
function loginLine(line) {
  const ev = parseLine(line);
  if (ev.kind === 'error') {
    // Only an answer to a JOIN is news: an idle connection left open after
    // a refusal may time out, and the next Join simply reconnects.
    if (!pending) return;
    pending = null;
    setStatus('idle', 'Not joined');
    const hint = ev.reason === 'name taken' ? ' Try another name.' : '';
    ui.joinError.textContent = `${ev.reason}.${hint}`;
    const field = ev.reason.startsWith('invalid room') ? ui.roomInput : ui.nameInput;
    field.focus();
    field.select();
  } else if (line === SHUTTING_DOWN) {
    ui.joinError.textContent = 'The server is shutting down.';
  } else if (pending && ev.kind === 'join' && ev.user === pending.name) {
    session = pending;
    pending = null;
    entered(true);
    addText('join', line);
  }
}

/** After a drop: waiting for the server to take us back. */
function rejoinLine(line) {
  const ev = parseLine(line);
  if (ev.kind === 'join' && ev.user === session.name) {
    entered(false);
    addText('note', 'Reconnected.');
    addText('join', line);
  } else if (ev.kind === 'error') {
    // Most likely our old connection still holds the name; it is dropped
    // within a ping interval, so try again after the backoff.
    addText('error', line);
    retrying = true;
    ws.close();
  } else if (line === SHUTTING_DOWN) {
    addServer('notice', line);
  }
}

/** The server has confirmed `session`: show the room and seed its members. */
function entered(fresh) {
  inRoom = true;
  failures = 0;
  switchingTo = null;
  showChatView(session.room, fresh);
  setStatus('ok', `Connected as ${session.name}`);
  setMembers([session.name]);
  askWho('auto');
}

function askWho(who) {
  whoQueue.push(who);
  send('/who');
}

function roomLine(line) {
  const ev = parseLine(line);
  const me = session.name;
  switch (ev.kind) {
    case 'join':
      if (ev.user === me) {
        // Only a /join of ours shows us our own joining while in a room.
        if (switchingTo) session = { room: switchingTo, name: me };
        switchingTo = null;
        showRoom(session.room);
        addText('note', `You are now in ${session.room}.`);
        setMembers([me]);
        askWho('auto');
      } else {
        memberJoined(ev.user);
      }
      addText('join', line);
      return;
    case 'leave':
      memberLeft(ev.user);
      addText('leave', line);
      return;
    case 'chat':
    case 'me':
    case 'private':
      addMessage(ev.kind, ev.user, ev.text, ev.user === me);
      return;
    case 'error':
      if (JOIN_REFUSALS.some((r) => ev.reason.startsWith(r))) switchingTo = null;
      addText('error', line);
      return;
    case 'server':
      serverLine(line);
      return;
    default:
      addText('info', line);
  }
}

/** A `*** ` line: a `/who` answer, a notice, or another command's answer. */
function serverLine(line) {
  const who = whoQueue.length ? parseWho(line, session.room) : null;
  // A complete list without us is from before a room change, not for now.
  const current = who && (who.names.length < who.total || who.names.includes(session.name));
  if (current) {
    if (whoQueue.shift() === 'user') addServer('info', line);
    setMembers(who.names, who.total);
    return;
  }
  if (line === SHUTTING_DOWN) {
    addServer('notice', line);
    setStatus('down', 'Server shutting down');
    return;
  }
  if (line === LINK_LOST) {
    addServer('notice', line);
    return;
  }
  if (line === LINK_RESTORED) {
    // Names were checked on this node only while the link was down, so
    // the list may have changed unseen.
    addServer('info', line);
    askWho('auto');
    return;
  }
  addServer('info', line);
}

// ---- user input -----------------------------------------------------------

ui.joinForm.addEventListener('submit', (event) => {
  event.preventDefault();
  const room = ui.roomInput.value.trim();
  const name = ui.nameInput.value.trim();
  for (const [what, value, input] of [['Room', room, ui.roomInput], ['Name', name, ui.nameInput]]) {
    const problem = nameProblem(what, value);
    if (problem) {
      ui.joinError.textContent = problem;
      input.focus();
      return;
    }
  }
  if (pending) return;
  ui.joinError.textContent = '';
  pending = { room, name };
  if (!ws) connect();
  else if (ws.readyState === WebSocket.OPEN) {
    setStatus('busy', 'Joining…');
    send(`JOIN ${room} ${name}`);
  }
});

ui.sendForm.addEventListener('submit', (event) => {
  event.preventDefault();
  const line = ui.message.value;
  if (line.trim() === '') return;
  if (new TextEncoder().encode(line).length > MAX_LINE_BYTES) {
    addText('error', `Not sent: a line may be at most ${MAX_LINE_BYTES} bytes.`);
    return;
  }
  if (!inRoom || !ws || ws.readyState !== WebSocket.OPEN) {
    addText('error', 'Not sent: not connected. Your text is kept; send it again once connected.');
    return;
  }
  const command = /^\/(\S+)(?:[ \t]+(\S+))?[ \t]*$/.exec(line);
  const word = command ? command[1].toLowerCase() : '';
  if (word === 'quit' && !command[2]) quitting = true;
  if (word === 'join' && command[2]) switchingTo = command[2];
  if (word === 'who' && !command[2]) {
    askWho('user');
  } else {
    send(line);
  }
  remember(line);
  ui.message.value = '';
  ui.log.scrollTop = ui.log.scrollHeight;
});

function remember(line) {
  if (history[history.length - 1] !== line) history.push(line);
  if (history.length > MAX_HISTORY) history.shift();
  historyAt = history.length;
}

// Up and Down recall sent lines, as in a terminal.
ui.message.addEventListener('keydown', (event) => {
  if (event.key !== 'ArrowUp' && event.key !== 'ArrowDown') return;
  if (event.key === 'ArrowUp' && historyAt > 0) historyAt -= 1;
  else if (event.key === 'ArrowDown' && historyAt < history.length) historyAt += 1;
  else return;
  event.preventDefault();
  ui.message.value = history[historyAt] ?? '';
});
