// The chatgate browser client: a plain script, no framework, no build step.
//
// Three parts, each owning its own state:
//   - protocol: names and the server's JSON events (the subprotocol
//     chatgate.v2.json), as pure functions (no DOM, no socket);
//   - view: everything on screen (join form, message log, member list,
//     status line), changed only through the functions defined there;
//   - connection: the WebSocket, joining, the commands that change state
//     (/join, /who, /quit), the room's history on joining, and reconnecting
//     with backoff after a drop, resuming from the last message shown.
//
// Text that came from the network or the user reaches the page through
// textContent and text nodes only, never as HTML.
'use strict';

// ---- protocol -------------------------------------------------------------

/**
 * The page asks for JSON events: it never reads the lines meant for telnet
 * users, so nothing a user types can pass for a notice of the server's.
 */
const SUBPROTOCOL = 'chatgate.v2.json';

/** A room or user name, as the server accepts it. */
const NAME_RE = /^[A-Za-z0-9_.#-]{1,20}$/;
/** The `error` texts that answer a refused `/join`. */
const JOIN_REFUSALS = [
  'name taken',
  'already in that room',
  'invalid room name',
  'usage: /join',
  'cluster busy',
];

/** The server's limit on one line; a longer one would cost the connection. */
const MAX_LINE_BYTES = 20000;

/** Lines of the room's history shown on joining it. */
const HISTORY_ON_JOIN = 50;

/** One event from a WebSocket message, or null if it is not one. */
function parseEvent(data) {
  try {
    const event = JSON.parse(data);
    return event && typeof event === 'object' && typeof event.type === 'string' ? event : null;
  } catch {
    return null;
  }
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
 * Appends one line to the log. `body` holds what to show; `mine` marks the
 * user's own lines; `at` is when the server received it (an RFC 3339 time;
 * now if not given), shown in the viewer's time zone.
 */
function addLine(kind, body, mine, at) {
  const stick = atBottom();
  const when = at ? new Date(at) : new Date();
  const item = el('li', mine ? 'line mine' : 'line');
  item.dataset.kind = kind;
  const time = el('time', '', timeFormat.format(when));
  time.dateTime = when.toISOString();
  time.title = when.toLocaleString();
  item.append(time, body);
  ui.log.append(item);
  while (ui.log.childElementCount > MAX_LOG_LINES) ui.log.firstElementChild.remove();
  if (stick) ui.log.scrollTop = ui.log.scrollHeight;
  else ui.jump.hidden = false;
}

/** A line shown whole, as text. */
function addText(kind, text, at) {
  addLine(kind, el('span', 'body', text), false, at);
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
function addMessage(kind, user, text, mine, at) {
  const body = el('span', 'body');
  if (kind === 'me') {
    body.append('* ', el('b', 'who', user), ' ', userText(text));
  } else {
    body.append(el('b', 'who', user));
    if (kind === 'private') body.append(el('span', 'tag', ' (private)'));
    body.append(': ', userText(text));
  }
  addLine(kind, body, mine, at);
}

/** The server speaking (never a user): shown as a `*** ` line. */
function addServer(kind, text, at) {
  addText(kind, `*** ${text}`, at);
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
/** Sent lines remembered for Up/Down recall. */
const MAX_RECALL = 50;

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
/**
 * While the page waits for a `/history` answer it asked for itself:
 * `{ resume }` (resuming after a drop, or showing a room just joined) and
 * the messages that arrived meanwhile, shown after the history.
 */
let historyWait = null;
/** Ids of the messages shown, so that none is shown twice. */
const shown = new Set();
/** The id of the last message shown, to resume from after a drop. */
let lastId = null;

/** Lines the user sent, for Up and Down. */
const recall = [];
let recallAt = 0;

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
  historyWait = null;
  setStatus('busy', session ? 'Reconnecting…' : 'Connecting…');
  const socket = new WebSocket(wsUrl(), SUBPROTOCOL);
  ws = socket;
  socket.addEventListener('open', () => {
    const target = session || pending;
    if (target) send(`JOIN ${target.room} ${target.name}`);
    if (!session) setStatus('busy', 'Joining…');
  });
  socket.addEventListener('message', (message) => {
    if (typeof message.data !== 'string') return;
    const event = parseEvent(message.data);
    if (event) onEvent(event);
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

function onEvent(event) {
  if (inRoom) roomEvent(event);
  else if (session) rejoinEvent(event);
  else loginEvent(event);
}

/** Before joining: only the answer to the form's JOIN matters. */
function loginEvent(event) {
  if (event.type === 'error') {
    // Only an answer to a JOIN is news: an idle connection left open after
    // a refusal may time out, and the next Join simply reconnects.
    if (!pending) return;
    pending = null;
    setStatus('idle', 'Not joined');
    const reason = String(event.text);
    const hint = reason === 'name taken' ? ' Try another name.' : '';
    ui.joinError.textContent = `${reason}.${hint}`;
    const field = reason.startsWith('invalid room') ? ui.roomInput : ui.nameInput;
    field.focus();
    field.select();
  } else if (event.type === 'notice' && event.code === 'shutdown') {
    ui.joinError.textContent = 'The server is shutting down.';
  } else if (pending && event.type === 'join' && event.user === pending.name) {
    session = pending;
    pending = null;
    forgetShown();
    entered(true);
    addJoinLeave(event);
    askHistory(false);
  }
}

/** After a drop: waiting for the server to take us back. */
function rejoinEvent(event) {
  if (event.type === 'join' && event.user === session.name) {
    entered(false);
    addText('note', 'Reconnected.');
    addJoinLeave(event);
    askHistory(lastId !== null);
  } else if (event.type === 'error') {
    // Most likely our old connection still holds the name; it is dropped
    // within a ping interval, so try again after the backoff.
    addText('error', `ERROR ${event.text}`);
    retrying = true;
    ws.close();
  } else if (event.type === 'notice' && event.code === 'shutdown') {
    addServer('notice', event.text);
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

/**
 * Asks for what the room said before: after a drop, everything since the
 * last message shown; on joining, its last lines. Messages arriving before
 * the answer wait for it, so that everything shows in the order said.
 */
function askHistory(resume) {
  historyWait = { resume, waiting: [] };
  send(resume ? `/history since ${lastId}` : `/history ${HISTORY_ON_JOIN}`);
}

function forgetShown() {
  shown.clear();
  lastId = null;
}

/** A `say` or `me` event, unless it was shown already. */
function showSaid(event) {
  if (typeof event.id === 'string') {
    if (shown.has(event.id)) return;
    shown.add(event.id);
    // Kept about as long as the lines themselves.
    if (shown.size > MAX_LOG_LINES) shown.delete(shown.values().next().value);
    lastId = event.id;
  }
  const kind = event.type === 'me' ? 'me' : 'chat';
  addMessage(kind, event.user, event.text, event.user === session.name, event.time);
}

function addJoinLeave(event) {
  const verb = event.type === 'join' ? 'joined' : 'left';
  addText(event.type, `${event.user} has ${verb}`, event.time);
}

/** Whether an `error` answers the page's own `/history`. */
function historyRefused(text) {
  return ['history is off', 'cluster busy', 'rate limited'].some((r) => String(text).startsWith(r));
}

/** The answer to a `/history` the page asked for. */
function historyAnswer(event) {
  const { resume, waiting } = historyWait;
  historyWait = null;
  const lines = Array.isArray(event.lines) ? event.lines : [];
  if (resume && event.complete === false) {
    addText('note', 'Some messages sent while you were away are no longer kept and cannot be shown.');
  } else if (!resume && lines.length > 0) {
    addText('note', `Earlier in ${session.room}:`);
  }
  lines.forEach(showSaid);
  waiting.forEach(showSaid);
}

function roomEvent(event) {
  const me = session.name;
  switch (event.type) {
    case 'join':
      if (event.user === me) {
        // Only a /join of ours shows us our own joining while in a room.
        if (switchingTo) session = { room: switchingTo, name: me };
        switchingTo = null;
        showRoom(session.room);
        addText('note', `You are now in ${session.room}.`);
        setMembers([me]);
        forgetShown();
        addJoinLeave(event);
        askWho('auto');
        askHistory(false);
        return;
      }
      memberJoined(event.user);
      addJoinLeave(event);
      return;
    case 'leave':
      memberLeft(event.user);
      addJoinLeave(event);
      return;
    case 'say':
    case 'me':
      if (historyWait) historyWait.waiting.push(event);
      else showSaid(event);
      return;
    case 'private':
      addMessage('private', event.from, event.text, event.from === me, event.time);
      return;
    case 'who':
      whoAnswer(event);
      return;
    case 'history':
      if (historyWait && event.room === session.room) {
        historyAnswer(event);
      } else {
        // One the user asked for: shown as it is, without skipping.
        addServer('info', `history of ${event.room}: ${event.lines.length} lines`);
        for (const line of event.lines) {
          addMessage(line.type === 'me' ? 'me' : 'chat', line.user, line.text, line.user === me, line.time);
        }
        addServer('info', 'end of history');
      }
      return;
    case 'rooms': {
      const listed = event.rooms.map((r) => `${r.room} (${r.count})`).join(', ');
      addServer('info', listed ? `rooms: ${listed}` : 'rooms: none');
      return;
    }
    case 'help':
      for (const line of event.lines) addServer('info', line);
      return;
    case 'notice':
      noticeEvent(event);
      return;
    case 'error':
      if (JOIN_REFUSALS.some((r) => String(event.text).startsWith(r))) switchingTo = null;
      if (historyWait && historyRefused(event.text)) {
        // The history the page asked for will not come (off, busy, or
        // over the rate): show what waited for it, and say so.
        const { resume, waiting } = historyWait;
        historyWait = null;
        if (resume) addText('note', 'Messages sent while you were away could not be fetched.');
        waiting.forEach(showSaid);
        return;
      }
      addText('error', `ERROR ${event.text}`);
      return;
    case 'info':
      addServer('info', event.text);
      return;
    default:
      // A type this page does not know yet: nothing to show.
  }
}

/** A `/who` answer: the member list, and a line if the user asked. */
function whoAnswer(event) {
  if (!whoQueue.length || event.room !== session.room || !Array.isArray(event.users)) return;
  const names = event.users.filter((n) => typeof n === 'string' && NAME_RE.test(n));
  const total = Number.isInteger(event.total) ? event.total : names.length;
  // A complete list without us is from before a room change, not for now.
  if (names.length >= total && !names.includes(session.name)) return;
  if (whoQueue.shift() === 'user') {
    const head = names.length < total ? `users in ${event.room} (first ${names.length} of ${total})` : `users in ${event.room}`;
    addServer('info', `${head}: ${names.join(', ')}`);
  }
  setMembers(names, total);
}

function noticeEvent(event) {
  switch (event.code) {
    case 'shutdown':
      addServer('notice', event.text);
      setStatus('down', 'Server shutting down');
      return;
    case 'link_restored':
      // Names were checked on this node only while the link was down, so
      // the list may have changed unseen.
      addServer('info', event.text);
      askWho('auto');
      return;
    default:
      addServer('notice', event.text);
  }
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
  if (recall[recall.length - 1] !== line) recall.push(line);
  if (recall.length > MAX_RECALL) recall.shift();
  recallAt = recall.length;
}

// Up and Down recall sent lines, as in a terminal.
ui.message.addEventListener('keydown', (event) => {
  if (event.key !== 'ArrowUp' && event.key !== 'ArrowDown') return;
  if (event.key === 'ArrowUp' && recallAt > 0) recallAt -= 1;
  else if (event.key === 'ArrowDown' && recallAt < recall.length) recallAt += 1;
  else return;
  event.preventDefault();
  ui.message.value = recall[recallAt] ?? '';
});
