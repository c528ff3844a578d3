// The chat page: the session with the server (naming, rooms, reconnection, queued lines)
// and the views (sidebar, timeline, member list, input). The protocol is docs/web-protocol.md.

import { COMMAND_NAMES, carriesPassword, helpLines, parseInput } from "./commands.js";
import { Backoff, Connection, socketUrl } from "./connection.js";
import { Conversation, dmKey, roomKey } from "./store.js";
import { renderTimeline } from "./timeline.js";
import {
  appendRichText, el, fold, keyedList, mentionPattern, mentions, nickClass, utf8Length,
} from "./util.js";

const $ = (id) => document.getElementById(id);
const BASE_TITLE = "chatsvc";
const NICK_STORE = "chatsvc.nick";
const INPUT_STORE = "chatsvc.inputHistory";
// The server-issued token that logs this browser in to its account again (never the password).
const LOGIN_STORE = "chatsvc.login";
const DEFAULT_LIMITS = {
  lineBytes: 4096, floodRate: 5, floodBurst: 20, historyPage: 50, frameBytes: 65536, nameTimeout: 30,
};

const state = {
  phase: "login", // "login" (no session yet), "chat", "quit" (left with /quit)
  me: null,
  mentionRe: null,
  wantedNick: null,
  limits: { ...DEFAULT_LIMITS },
  helloSeen: false,
  named: false, // welcomed on the current connection
  ready: false, // named, and back in every room: lines go out at once
  sessionStarted: false, // welcomed at least once: closes are healed by reconnecting
  reconnecting: false,
  awaitingLanding: false,
  quitting: false,
  byeReason: null,
  account: false, // logged in to an account (or registered) on this session
  attached: false, // welcomed as another connection of an account already here
  away: null, // this member's away message, while it is away (/away)
  password: null, // the password to log in with, held only until the server answers it
  usedToken: false, // the last name message logged in with the stored token
  convs: new Map(),
  roomOrder: [], // room keys, most recently joined last
  dmOrder: [],
  shown: null,
  status: new Conversation("status", "chatsvc"),
  directory: [],
  labels: new Map(),
  labelSeq: 0,
  inflight: [], // say/act lines sent, waiting for their echo (resent after a reconnection)
  outbox: [], // what was typed while disconnected, in order
  pendingDm: [],
  titleCount: 0,
  hashRoom: null,
  renderedKey: null,
  prepend: false,
  stick: true, // the timeline follows new lines (the reader is at the bottom)
  scrollToMarker: false,
  reconnectTimer: null,
  reconnectAt: 0,
  countdownTimer: null,
};

const cidPrefix = Array.from(crypto.getRandomValues(new Uint8Array(6)), (b) => b.toString(36).padStart(2, "0")).join("");
let cidSeq = 0;
const newCid = () => `${cidPrefix}-${(cidSeq += 1)}`;

const backoff = new Backoff(1000, 30000);
const conn = new Connection(socketUrl(), { onopen, onmessage, onclose });

const sameNick = (a, b) => a != null && b != null && fold(a) === fold(b);
const bareRoom = (room) => String(room).replace(/^#/, "");

function storageGet(key) {
  try {
    return localStorage.getItem(key);
  } catch {
    return null;
  }
}

function storageSet(key, value) {
  try {
    localStorage.setItem(key, value);
  } catch {
    // Storage may be unavailable (private mode); the page works without it.
  }
}

function savedLogin(nick) {
  try {
    const saved = JSON.parse(storageGet(LOGIN_STORE) || "null");
    if (saved && typeof saved.token === "string" && sameNick(saved.nick, nick)) return saved.token;
  } catch {
    // unreadable: as if there were none
  }
  return null;
}

function saveLogin(nick, token) {
  storageSet(LOGIN_STORE, JSON.stringify({ nick, token }));
}

function forgetLogin() {
  try {
    localStorage.removeItem(LOGIN_STORE);
  } catch {
    // nothing kept, then
  }
}

/** The name message for the nickname wanted: with the password typed, or the token kept. */
function nameMessage() {
  const message = { type: "name", nick: state.wantedNick };
  const token = savedLogin(state.wantedNick);
  state.usedToken = false;
  if (state.password !== null) message.password = state.password;
  else if (token) {
    message.token = token;
    state.usedToken = true;
  }
  return message;
}

// ===================================================================== Sending

function labelled(message, context) {
  state.labelSeq += 1;
  const label = `r${state.labelSeq}`;
  state.labels.set(label, { ...context, type: message.type });
  return { ...message, label };
}

/** Send a request now, or queue it until the connection is back. */
function request(message, context = {}) {
  if (state.ready) conn.send(labelled(message, context));
  else state.outbox.push({ message, context });
}

function takeContext(message, kind, room) {
  if (message.label && state.labels.has(message.label)) {
    const context = state.labels.get(message.label);
    state.labels.delete(message.label);
    return context;
  }
  if (room === undefined) return null;
  for (const [label, context] of state.labels) {
    if (context.kind === kind && context.room !== undefined && fold(bareRoom(context.room)) === fold(room)) {
      state.labels.delete(label);
      return context;
    }
  }
  return null;
}

function transmitLine(item) {
  conn.send({ ...item.message, label: item.cid });
  item.sent = true;
}

function sendLine(conv, type, text) {
  const cid = newCid();
  const entry = conv.addPending({ nick: state.me, text, action: type === "act", own: true, cid });
  const item = { cid, conv, entry, message: { type, room: conv.name, text, cid }, sent: false };
  state.inflight.push(item);
  conv.marker = null;
  if (state.ready) transmitLine(item);
  else state.outbox.push({ line: item });
}

function sendPrivate(nick, text) {
  const conv = ensureDm(nick);
  const cid = newCid();
  const entry = conv.addPending({ nick: state.me, text, own: true, cid });
  const item = { to: nick, text, entry, conv, cid, sent: false };
  state.pendingDm.push(item);
  conv.marker = null;
  // The cid makes a resend after a reconnection harmless: the server says it once.
  const transmit = () => {
    conn.send(labelled({ type: "msg", to: nick, text, cid }, { kind: "msg", item }));
    item.sent = true;
  };
  item.transmit = transmit;
  if (state.ready) transmit();
  else state.outbox.push({ dm: item });
  return conv;
}

function flushOutbox() {
  for (const item of state.inflight) if (item.sent) transmitLine(item);
  const queued = state.outbox;
  state.outbox = [];
  for (const job of queued) {
    if (job.line) {
      if (state.inflight.includes(job.line)) transmitLine(job.line);
    } else if (job.dm) {
      if (!job.dm.entry.failed) job.dm.transmit();
    } else conn.send(labelled(job.message, job.context));
  }
}

// ===================================================================== Conversations

function currentConv() {
  return state.convs.get(state.shown) || state.status;
}

function ensureDm(nick) {
  const key = dmKey(nick);
  let conv = state.convs.get(key);
  if (!conv) {
    conv = new Conversation("dm", nick);
    state.convs.set(key, conv);
    state.dmOrder.push(key);
  }
  return conv;
}

function addLocal(conv, style, textOrLines) {
  const target = conv || currentConv();
  if (Array.isArray(textOrLines)) target.addLocal({ style, lines: textOrLines });
  else target.addLocal({ style, text: textOrLines });
  render();
}

const info = (text, conv) => addLocal(conv, "info", text);
const localError = (text, conv) => addLocal(conv, "error", text);

function tabVisible() {
  return document.visibilityState === "visible";
}

function markSeen(conv) {
  if (!conv || !tabVisible()) return;
  conv.unread = 0;
  conv.mentions = 0;
  if (conv.marker) conv.markerSeen = true;
}

function show(key) {
  const conv = state.convs.get(key);
  if (!conv) return;
  state.scrollToMarker = Boolean(conv.marker && !conv.markerSeen);
  state.shown = key;
  markSeen(conv);
  if (conv.kind === "room") {
    const hash = "#" + encodeURIComponent(conv.name);
    if (location.hash !== hash) history.replaceState(null, "", hash);
  }
  closeDrawers();
  render();
}

function showFallback() {
  const key = state.roomOrder[state.roomOrder.length - 1] || state.dmOrder[state.dmOrder.length - 1] || null;
  state.shown = key;
  if (key) show(key);
  else render();
}

function noteArrival(conv, entry, important) {
  const seen = conv.key === state.shown && tabVisible() && state.phase === "chat";
  if (!seen) {
    conv.unread += 1;
    if (important) conv.mentions += 1;
    if (conv.marker === null || conv.markerSeen) {
      conv.marker = entry;
      conv.markerSeen = false;
    }
  }
  if (!tabVisible() && (conv.key === state.shown || important)) {
    state.titleCount += 1;
    updateTitle();
  }
  if (important && !tabVisible()) notify(conv, entry);
}

function addMessages(conv, messages) {
  let added = 0;
  for (const m of messages || []) {
    if (!m || typeof m.id !== "string") continue;
    conv.noteId(m.id);
    const entry = conv.addEvent({
      kind: "msg", id: m.id, time: m.time, nick: m.nick, text: String(m.text ?? ""),
      action: Boolean(m.action), own: sameNick(m.nick, state.me),
    });
    if (entry) added += 1;
  }
  return added;
}

function requestAfter(conv, after) {
  request({ type: "history", room: conv.name, after, limit: state.limits.historyPage },
    { kind: "history", mode: "after", room: conv.name });
}

function requestOlder(conv) {
  if (conv.kind !== "room" || !conv.moreBefore || conv.loadingBefore || !state.ready) return;
  conv.loadingBefore = true;
  const before = conv.oldestId;
  const message = { type: "history", room: conv.name, limit: state.limits.historyPage };
  if (before) message.before = before;
  request(message, { kind: "history", mode: "before", room: conv.name });
  render();
}

// ===================================================================== Receiving

function onopen() {
  state.helloSeen = false;
}

function onmessage(message) {
  const handler = handlers[message.type];
  if (handler) handler(message);
  render();
}

const handlers = {
  hello(m) {
    state.helloSeen = true;
    if (m.limits && typeof m.limits === "object") state.limits = { ...DEFAULT_LIMITS, ...m.limits };
    if (typeof m.version === "number" && m.version !== 1) {
      info(`The server speaks version ${m.version} of the protocol; this page was written for version 1.`);
    }
    if (state.wantedNick) conn.send(nameMessage());
  },

  password(m) {
    // The nickname is registered: the login form asks for its password.
    state.password = null;
    if (state.usedToken) forgetLogin();
    askPassword(m.nick, state.usedToken ? "Your login on this browser has ended: type your password." : null);
  },

  welcome(m) {
    state.password = null;
    state.account = Boolean(m.account);
    // Another connection of an account already here: its rooms are the account's, never to
    // be left on landing (see room()).
    state.attached = (Number(m.connections) || 1) > 1;
    // A new member is not away; another connection of an account learns it from its rooms.
    state.away = null;
    if (typeof m.token === "string") saveLogin(m.nick, m.token);
    $("login-password").value = "";
    $("login-password-row").hidden = true;
    state.me = m.nick;
    state.wantedNick = m.nick;
    state.mentionRe = mentionPattern(m.nick);
    storageSet(NICK_STORE, m.nick);
    state.named = true;
    state.reconnecting = state.sessionStarted;
    state.sessionStarted = true;
    state.awaitingLanding = true;
    state.phase = "chat";
    state.quitting = false;
    backoff.reset();
    hideBanner();
    showChat();
  },

  room(m) {
    const context = takeContext(m, "join", m.room);
    const key = roomKey(m.room);
    const landing = state.awaitingLanding && (!context || context.kind !== "join");
    if (landing) state.awaitingLanding = false;
    let conv = state.convs.get(key);
    const fresh = !conv;
    const previousLast = conv ? conv.lastId : null;

    if (landing && state.reconnecting && fresh && !state.attached) {
      // Back on the server after a reconnection, in the default room the member had left: leave it again.
      conn.send(labelled({ type: "part", room: m.room }, { kind: "part", room: m.room, silent: true }));
      onLanding(null);
      return;
    }
    if (fresh) {
      conv = new Conversation("room", m.room);
      state.convs.set(key, conv);
    }
    conv.name = m.room;
    conv.topic = typeof m.topic === "string" ? m.topic : null;
    conv.setMembers(m.members, m.count);
    conv.crowded = !Array.isArray(m.members);
    conv.roles = m.roles && typeof m.roles === "object" ? { ...m.roles } : {};
    conv.settings = m.settings && typeof m.settings === "object" ? { ...m.settings } : {};
    conv.setAwayMap(m.away);
    if (state.me && conv.hasMember(state.me)) state.away = conv.awayOf(state.me);
    state.roomOrder = state.roomOrder.filter((k) => k !== key).concat(key);

    const history = Array.isArray(m.history) ? m.history : [];
    addMessages(conv, history);
    const afterMode = Boolean(context && context.after);
    if (fresh) {
      conv.moreBefore = !afterMode && Boolean(m.more);
      conv.addLocal({ style: "info", text: `You joined #${m.room}` });
    }
    if (afterMode && m.more) {
      const last = history.length ? history[history.length - 1].id : context.after;
      requestAfter(conv, last);
    }
    if (landing) {
      if (state.reconnecting && previousLast) requestAfter(conv, previousLast);
      onLanding(conv);
    } else if (!state.reconnecting || !context || !context.rejoin) {
      refreshRooms();
    }
    if ((context && context.show) || (landing && !state.reconnecting && !state.hashRoom)) show(key);
    else if (landing && !state.reconnecting && !state.shown) show(key);
  },

  said(m) {
    onChat(m, false);
  },

  acted(m) {
    onChat(m, true);
  },

  joined(m) {
    const conv = state.convs.get(roomKey(m.room));
    if (!conv) {
      // Joined from another connection of this account: this page is in the room too.
      if (sameNick(m.nick, state.me) && state.ready) request({ type: "join", room: m.room }, { kind: "join", room: m.room });
      return;
    }
    conv.noteId(m.id);
    if (!conv.addEvent({ kind: "joined", id: m.id, time: m.time, nick: m.nick })) return;
    if (!sameNick(m.nick, state.me)) {
      conv.addMember(m.nick);
      conv.setAway(m.nick, typeof m.away === "string" ? m.away : null);
    }
  },

  left(m) {
    const conv = state.convs.get(roomKey(m.room));
    if (!conv) return;
    if (sameNick(m.nick, state.me)) {
      // Left from another connection of this account: so has this page.
      forgetRoom(m.room, `You left #${m.room} from another connection`);
      return;
    }
    conv.noteId(m.id);
    if (!conv.addEvent({ kind: "left", id: m.id, time: m.time, nick: m.nick, reason: m.reason ?? null })) return;
    conv.removeMember(m.nick);
  },

  crowd(m) {
    const conv = state.convs.get(roomKey(m.room));
    if (!conv) return;
    conv.noteId(m.id);
    const runs = Array.isArray(m.runs) ? m.runs : [];
    if (!conv.addEvent({ kind: "crowd", id: m.id, time: m.time, runs })) return;
    for (const run of runs) {
      for (const nick of run.nicks || []) {
        if (run.joined) conv.addMember(nick);
        else conv.removeMember(nick);
      }
    }
  },

  topic(m) {
    takeContext(m);
    const conv = state.convs.get(roomKey(m.room));
    if (!conv) return;
    conv.noteId(m.id);
    const topic = typeof m.topic === "string" ? m.topic : null;
    if (conv.addEvent({ kind: "topic", id: m.id, time: m.time, nick: m.nick, topic })) conv.topic = topic;
  },

  renamed(m) {
    takeContext(m);
    const oldNick = m.old;
    const newNick = m.new;
    const isMe = sameNick(oldNick, state.me);
    if (isMe) {
      state.me = newNick;
      state.wantedNick = newNick;
      state.mentionRe = mentionPattern(newNick);
      storageSet(NICK_STORE, newNick);
    }
    for (const key of state.roomOrder) {
      const conv = state.convs.get(key);
      if (!conv || !(isMe || conv.hasMember(oldNick))) continue;
      conv.renameMember(oldNick, newNick);
      conv.addEvent({ kind: "rename", id: m.id, time: m.time, old: oldNick, new: newNick });
    }
    const dm = state.convs.get(dmKey(oldNick));
    if (dm && !isMe) {
      dm.addEvent({ kind: "rename", id: m.id, time: m.time, old: oldNick, new: newNick });
      const newKey = dmKey(newNick);
      if (!state.convs.has(newKey) || newKey === dm.key) {
        state.convs.delete(dm.key);
        const oldKey = dm.key;
        dm.name = newNick;
        dm.key = newKey;
        state.convs.set(newKey, dm);
        state.dmOrder = state.dmOrder.map((k) => (k === oldKey ? newKey : k));
        if (state.shown === oldKey) state.shown = newKey;
        if (state.renderedKey === oldKey) state.renderedKey = newKey;
      }
    }
  },

  whisper(m) {
    const mine = sameNick(m.from, state.me);
    const other = mine ? m.to : m.from;
    const conv = ensureDm(other);
    if (mine) {
      const index = m.cid
        ? state.pendingDm.findIndex((p) => p.cid === m.cid)
        : state.pendingDm.findIndex((p) => sameNick(p.to, m.to) && p.text === m.text && !p.entry.failed);
      if (index >= 0) {
        const [item] = state.pendingDm.splice(index, 1);
        item.conv.remove(item.entry);
      }
    }
    const entry = conv.addEvent({ kind: "msg", id: m.id, time: m.time, nick: m.from, text: String(m.text ?? ""), own: mine });
    if (entry && !mine) noteArrival(conv, entry, true);
    const away = entry && mine ? knownAway(m.to) : null;
    if (away !== null) conv.addLocal({ style: "notice", text: `${m.to} is away: ${away}` });
  },

  away(m) {
    const context = takeContext(m);
    const message = typeof m.message === "string" ? m.message : null;
    for (const key of state.roomOrder) {
      const conv = state.convs.get(key);
      if (conv && (conv.members === null || conv.hasMember(m.nick))) conv.setAway(m.nick, message);
    }
    if (!sameNick(m.nick, state.me)) return;
    const was = state.away;
    state.away = message;
    if (context) {
      // The answer to this page's own /away.
      if (message !== null) info(`You are marked as away: ${message}`);
      else info(was !== null ? "You are no longer marked as away" : "You are not marked as away");
    } else if (message !== was) {
      info(message !== null ? `You are marked as away from another connection: ${message}` : "You are no longer marked as away (from another connection)");
    }
  },

  notice(m) {
    addLocal(null, "notice", String(m.text ?? ""));
  },

  who(m) {
    const context = takeContext(m, "who", m.room);
    const members = Array.isArray(m.members) ? m.members : [];
    const conv = state.convs.get(roomKey(m.room));
    const away = m.away && typeof m.away === "object" ? m.away : {};
    if (conv) {
      conv.setMembers(members, members.length);
      conv.namesShown = true;
      if (m.roles && typeof m.roles === "object") conv.roles = { ...m.roles };
      conv.setAwayMap(away);
    }
    if (!context || context.print) {
      const names = members.map((nick) => (typeof away[nick] === "string" ? `${nick} (away)` : nick));
      addLocal(null, "info", `Members of #${m.room} (${members.length}): ${names.join(", ")}`);
    }
  },

  rooms(m) {
    const context = takeContext(m, "rooms");
    state.directory = Array.isArray(m.rooms) ? m.rooms : [];
    if (context && context.print) {
      addLocal(null, "info", [
        `Rooms (${state.directory.length}):`,
        ...state.directory.map((r) => `#${r.room} (${r.count} ${r.count === 1 ? "member" : "members"})${r.topic ? ": " + r.topic : ""}`),
      ]);
    }
  },

  history(m) {
    const context = takeContext(m, "history", m.room) || {};
    const conv = state.convs.get(roomKey(m.room));
    if (!conv) return;
    const messages = Array.isArray(m.messages) ? m.messages : [];
    const oldestBefore = conv.oldestId;
    const added = addMessages(conv, messages);
    if (context.mode === "before") {
      conv.loadingBefore = false;
      conv.moreBefore = Boolean(m.more) && messages.length > 0;
      if (conv.key === state.shown) state.prepend = true;
    } else if (context.mode === "after") {
      if (m.more && messages.length) requestAfter(conv, messages[messages.length - 1].id);
    } else {
      if (messages.length && (!oldestBefore || BigInt(messages[0].id) <= BigInt(oldestBefore))) {
        conv.moreBefore = Boolean(m.more);
      }
      info(messages.length
        ? `History of #${conv.name}: the last ${messages.length} messages${added ? `, ${added} of them not shown before` : ", all shown above"}.`
        : `No history in #${conv.name}.`, conv);
    }
  },

  parted(m) {
    const context = takeContext(m, "part", m.room);
    forgetRoom(m.room, context && context.silent ? null : `You left #${m.room}`);
  },

  bye(m) {
    state.byeReason = typeof m.reason === "string" ? m.reason : null;
  },

  moderation(m) {
    takeContext(m);
    const text = String(m.text ?? "");
    if (m.action === "announce") {
      for (const conv of state.convs.values()) conv.addLocal({ style: "notice", text });
      state.status.addLocal({ style: "notice", text });
      return;
    }
    const conv = m.room ? state.convs.get(roomKey(m.room)) : null;
    const me = sameNick(m.target, state.me);
    if (me && (m.action === "kick" || m.action === "ban")) {
      forgetRoom(m.room, m.action === "kick" ? `You were kicked from #${m.room}: ${text}` : `You were banned from #${m.room}: ${text}`);
      return;
    }
    if (m.action === "invite") {
      info(me ? `${m.by} invited you to #${m.room}: /join ${m.room}` : `You invited ${m.target} to #${m.room}`);
      return;
    }
    if (!conv) {
      if (m.action !== "kill") info(m.room ? `#${m.room}: ${text}` : text);
      return;
    }
    if (conv.roles && m.target) {
      if (["op", "voice", "owner"].includes(m.action)) conv.roles[m.target] = m.action;
      else if (m.action === "deop" || m.action === "devoice") delete conv.roles[m.target];
    }
    if (m.action === "set" && conv.settings) conv.settings[m.setting] = Boolean(m.on);
    if (m.action === "remove" && m.message) conv.removeById(String(m.message));
    if (m.action === "kick" || m.action === "ban") conv.removeMember(m.target);
    conv.addLocal({ style: "notice", text });
  },

  sanctions(m) {
    takeContext(m);
    const list = Array.isArray(m.sanctions) ? m.sanctions : [];
    const what = m.kind === "ban" ? "Bans" : "Mutes";
    const lines = [`${what} in #${m.room}: ${list.length || "none"}`];
    for (const s of list) {
      lines.push(`${s.nick} (${s.until ? `until ${new Date(s.until).toLocaleString()}` : "until lifted"}, by ${s.by})${s.reason ? `: ${s.reason}` : ""}`);
    }
    addLocal(null, "info", lines);
  },

  whois(m) {
    takeContext(m);
    const kind = m.registered ? `registered since ${new Date(m.registered).toLocaleDateString()}${m.admin ? ", a server admin" : ""}` : "a guest";
    const lines = [`${m.nick}: ${kind}`];
    if (!m.online) lines.push("not connected now");
    else {
      lines.push(m.idle < 60 ? "active now" : `idle for ${Math.round(m.idle / 60)} minutes`);
      if (typeof m.away === "string") lines.push(`away: ${m.away}`);
      lines.push(`rooms you share: ${(m.rooms || []).map((r) => `#${r}`).join(", ") || "none"}`);
    }
    const roles = Object.entries(m.roles || {}).map(([room, role]) => `${role} of #${room}`);
    if (roles.length) lines.push(roles.join(", "));
    addLocal(null, "info", lines);
  },

  killed(m) {
    takeContext(m);
    info(`${m.nick} is disconnected`);
  },

  registered(m) {
    takeContext(m);
    state.account = true;
    if (typeof m.token === "string") saveLogin(m.nick, m.token);
    closeAccountForm();
    info(`${m.nick} is registered: nobody else may use it, and you log in with your password from now on.`);
  },

  passwordChanged(m) {
    takeContext(m);
    if (typeof m.token === "string") saveLogin(state.me, m.token);
    closeAccountForm();
    info("Your password is changed; other browsers logged in to your account must log in again.");
  },

  error(m) {
    const message = String(m.message ?? "error");
    if (m.for === "name") {
      const wasToken = state.usedToken;
      state.password = null;
      if (wasToken) {
        forgetLogin();
        askPassword(state.wantedNick, message);
        return;
      }
      nameRefused(message);
      return;
    }
    if (m.for === "register" || m.for === "password") {
      takeContext(m);
      if (!$("account-form").hidden) {
        $("account-error").textContent = message;
        $("account-submit").disabled = false;
        return;
      }
    }
    if (!state.named) return;
    // A refused line is marked where it was typed; the error is shown apart only if that is not in view.
    let shownInline = false;
    const line = state.inflight.find((item) => item.cid === m.label);
    if (line) {
      state.inflight.splice(state.inflight.indexOf(line), 1);
      line.entry.failed = true;
      line.entry.error = message;
      shownInline = line.conv === currentConv();
    }
    const context = takeContext(m);
    if (context && context.kind === "msg") {
      context.item.entry.failed = true;
      context.item.entry.error = message;
      state.pendingDm = state.pendingDm.filter((p) => p !== context.item);
      shownInline = context.item.conv === currentConv();
    } else if (context && context.kind === "history" && context.mode === "before") {
      const conv = state.convs.get(roomKey(context.room));
      if (conv) {
        conv.loadingBefore = false;
        conv.moreBefore = false;
      }
    } else if (context && context.kind === "join" && context.rejoin) {
      const conv = state.convs.get(roomKey(context.room));
      if (conv && conv !== currentConv()) conv.addLocal({ style: "error", text: `Could not join #${conv.name} again: ${message}` });
    }
    if (shownInline) render();
    else localError(message);
  },
};

/** The page is out of C{room}: its conversation goes, and C{text} (if any) says so. */
function forgetRoom(room, text) {
  const key = roomKey(room);
  const conv = state.convs.get(key);
  if (conv) {
    state.convs.delete(key);
    state.roomOrder = state.roomOrder.filter((k) => k !== key);
    state.inflight = state.inflight.filter((item) => item.conv !== conv);
  }
  if (text === null) return;
  if (state.shown === key || !state.shown) showFallback();
  info(text);
  refreshRooms();
}

function onChat(m, action) {
  const conv = state.convs.get(roomKey(m.room));
  if (m.label) state.labels.delete(m.label);
  if (m.cid) {
    const index = state.inflight.findIndex((item) => item.cid === m.cid);
    if (index >= 0) {
      const [item] = state.inflight.splice(index, 1);
      item.conv.remove(item.entry);
    }
  }
  if (!conv) return;
  conv.noteId(m.id);
  const own = Boolean(m.cid) || sameNick(m.nick, state.me);
  const text = String(m.text ?? "");
  const entry = conv.addEvent({ kind: "msg", id: m.id, time: m.time, nick: m.nick, text, action, own });
  if (entry && !own) noteArrival(conv, entry, mentions(text, state.mentionRe));
}

/** The landing room arrived: the member is on the server again. Restore the rooms, then send what waited. */
function onLanding(landingConv) {
  if (state.reconnecting) {
    for (const key of [...state.roomOrder]) {
      const conv = state.convs.get(key);
      if (!conv || conv === landingConv) continue;
      const message = { type: "join", room: conv.name };
      if (conv.lastId) message.after = conv.lastId;
      conn.send(labelled(message, { kind: "join", room: conv.name, after: conv.lastId, rejoin: true }));
    }
    info("Reconnected.", currentConv());
  } else if (state.hashRoom && (!landingConv || fold(state.hashRoom) !== fold(landingConv.name))) {
    conn.send(labelled({ type: "join", room: state.hashRoom }, { kind: "join", room: state.hashRoom, show: true }));
  }
  state.hashRoom = null;
  state.ready = true;
  flushOutbox();
  refreshRooms();
}

function refreshRooms() {
  if (state.ready) conn.send(labelled({ type: "rooms" }, { kind: "rooms", print: false }));
}

function nameRefused(message) {
  if (state.phase === "login" || !state.sessionStarted || !$("login").hidden) {
    showLoginError(message);
    return;
  }
  // Reconnecting: the old connection may still hold the nickname until the server notices it is gone.
  conn.drop(1000);
  connectionLost(`could not take back the nickname ${state.wantedNick}: ${message}`, true);
}

function onclose(event) {
  const wasNamed = state.named;
  state.named = false;
  state.ready = false;
  state.helloSeen = false;
  state.labels.clear();
  state.awaitingLanding = false;
  for (const conv of state.convs.values()) conv.loadingBefore = false;
  // Private messages sent but not confirmed go again, with their cid, once reconnected.
  for (const item of state.pendingDm) {
    if (item.sent) {
      item.sent = false;
      state.outbox.push({ dm: item });
    }
  }
  const reason = state.byeReason;
  state.byeReason = null;

  if (state.quitting) {
    state.quitting = false;
    state.phase = "quit";
    showBanner(`You left the chat${reason ? `: ${reason}` : "."}`, "Rejoin", rejoin, { kind: "quit" });
    render();
    return;
  }
  if (!state.sessionStarted) {
    if (state.wantedNick && !$("login").hidden && $("login-submit").disabled) {
      showLoginError(reason ? `The server closed the connection: ${reason}` : "Could not reach the chat server. Try again in a moment.");
    }
    return;
  }
  if (state.phase === "quit") return;
  const why = reason || (event.code === 1006 || !wasNamed ? "connection lost" : `closed (${event.code}${event.reason ? ": " + event.reason : ""})`);
  connectionLost(why, false);
  render();
}

function connectionLost(why, nameTaken) {
  clearTimeout(state.reconnectTimer);
  const delay = backoff.next();
  state.reconnectAt = Date.now() + delay;
  state.reconnectTimer = setTimeout(reconnectNow, delay);
  const update = () => {
    const seconds = Math.max(0, Math.ceil((state.reconnectAt - Date.now()) / 1000));
    showBanner(`Disconnected (${why}). Reconnecting in ${seconds} s…`, "Reconnect now", reconnectNow,
      { kind: "down", rename: nameTaken });
  };
  clearInterval(state.countdownTimer);
  state.countdownTimer = setInterval(update, 1000);
  update();
  render();
}

function reconnectNow() {
  clearTimeout(state.reconnectTimer);
  clearInterval(state.countdownTimer);
  if (conn.active) return;
  showBanner("Reconnecting…", null, null, { kind: "down" });
  conn.connect();
}

function rejoin() {
  state.phase = "chat";
  state.quitting = false;
  backoff.reset();
  reconnectNow();
}

function quit(reason) {
  const message = { type: "quit" };
  if (reason) message.reason = reason;
  leave(message, "You left the chat.");
}

/** Leave with C{message} (quit, or logout); offline, at once, saying C{offline}. */
function leave(message, offline) {
  clearTimeout(state.reconnectTimer);
  clearInterval(state.countdownTimer);
  if (!conn.open || !state.named) {
    conn.drop(1000);
    state.phase = "quit";
    showBanner(offline, "Rejoin", rejoin, { kind: "quit" });
    render();
    return;
  }
  state.quitting = true;
  conn.send(message);
}

// ===================================================================== The input

const inputHistory = (() => {
  try {
    const saved = JSON.parse(sessionStorage.getItem(INPUT_STORE) || "[]");
    return Array.isArray(saved) ? saved.filter((s) => typeof s === "string").slice(-200) : [];
  } catch {
    return [];
  }
})();
let historyIndex = inputHistory.length;
let historyDraft = "";
let completion = null;

function rememberInput(line) {
  if (carriesPassword(line)) return; // never recalled, never kept
  if (inputHistory[inputHistory.length - 1] !== line) inputHistory.push(line);
  if (inputHistory.length > 200) inputHistory.shift();
  historyIndex = inputHistory.length;
  historyDraft = "";
  try {
    sessionStorage.setItem(INPUT_STORE, JSON.stringify(inputHistory));
  } catch {
    // not kept across reloads, then
  }
}

function tooLong(text) {
  const bytes = utf8Length(text);
  if (bytes <= state.limits.lineBytes) return false;
  localError(`a message may be at most ${state.limits.lineBytes} bytes long (this one is ${bytes}); it was not sent`);
  return true;
}

function needRoom(conv, what) {
  if (conv.kind === "room") return true;
  localError(conv.kind === "dm" ? `${what} works in a room; this is a private conversation` : "you are in no room now; /join one");
  return false;
}

function execute(line) {
  const command = parseInput(line);
  const conv = currentConv();
  switch (command.type) {
    case "empty":
      return;
    case "error":
      localError(command.message);
      return;
    case "say":
    case "act":
      if (tooLong(command.text)) return;
      if (conv.kind === "room") sendLine(conv, command.type, command.text);
      else if (conv.kind === "dm" && command.type === "say") sendPrivate(conv.name, command.text);
      else if (conv.kind === "dm") localError("/me works in rooms only");
      else localError("you are in no room now; /join one");
      render();
      return;
    case "join": {
      const existing = state.convs.get(roomKey(bareRoom(command.room)));
      if (existing && existing.kind === "room") show(existing.key);
      else request({ type: "join", room: command.room }, { kind: "join", room: command.room, show: true });
      return;
    }
    case "part": {
      const room = command.room || (conv.kind === "room" ? conv.name : null);
      if (!room) {
        localError("usage: /part ROOM");
        return;
      }
      request({ type: "part", room }, { kind: "part", room });
      return;
    }
    case "nick":
      if (tooLong(command.nick)) return;
      request({ type: "nick", nick: command.nick }, { kind: "nick" });
      return;
    case "msg":
      if (tooLong(command.text)) return;
      show(sendPrivate(command.to, command.text).key);
      return;
    case "topic":
      if (!needRoom(conv, "/topic")) return;
      if (command.topic === undefined) {
        info(conv.topic ? `Topic of #${conv.name}: ${conv.topic}` : `#${conv.name} has no topic`);
        return;
      }
      if (command.topic !== null && tooLong(command.topic)) return;
      request({ type: "topic", room: conv.name, topic: command.topic }, { kind: "topic" });
      return;
    case "who": {
      const room = command.room || (conv.kind === "room" ? conv.name : null);
      if (!room) {
        localError("usage: /who ROOM");
        return;
      }
      request({ type: "who", room }, { kind: "who", room, print: true });
      return;
    }
    case "rooms":
      request({ type: "rooms" }, { kind: "rooms", print: true });
      return;
    case "history":
      if (!needRoom(conv, "/history")) return;
      request({ type: "history", room: conv.name, limit: Math.min(command.limit || 20, state.limits.historyPage) },
        { kind: "history", mode: "latest", room: conv.name });
      return;
    case "register":
      sendAccount({ type: "register", password: command.password, ...(command.code ? { code: command.code } : {}) });
      return;
    case "password":
      sendAccount({ type: "password", old: command.old, new: command.new });
      return;
    case "logout":
      logout();
      return;
    case "away":
      request({ type: "away", message: command.message }, { kind: "away" });
      return;
    case "mod":
      if (command.inRoom) {
        if (!needRoom(conv, `/${command.request.type}`)) return;
        request({ ...command.request, room: conv.name }, { kind: "mod" });
      } else request(command.request, { kind: "mod" });
      return;
    case "settings": {
      if (!needRoom(conv, "/set")) return;
      const shown = Object.entries(conv.settings || {}).map(([name, on]) => `${name} ${on ? "on" : "off"}`);
      info(`Settings of #${conv.name}: ${shown.join(", ") || "none"}`);
      return;
    }
    case "help":
      addLocal(null, "info", helpLines());
      return;
    case "quit":
      quit(command.reason);
      return;
    default:
      localError("that command is not available here");
  }
}

function completionCandidates(word, atStart) {
  if (atStart && word.startsWith("/")) {
    return COMMAND_NAMES.filter((name) => name.startsWith(word.toLowerCase()));
  }
  const prefix = fold(word.replace(/^@/, ""));
  if (!prefix) return [];
  const conv = currentConv();
  let names = [];
  if (conv.kind === "room") {
    names = conv.members ? [...conv.members] : [];
    if (!conv.members) {
      for (let i = conv.entries.length - 1; i >= 0 && names.length < 200; i -= 1) {
        const nick = conv.entries[i].nick;
        if (nick && !names.includes(nick)) names.push(nick);
      }
    }
  } else if (conv.kind === "dm") names = [conv.name];
  return names.filter((n) => !sameNick(n, state.me) && fold(n).startsWith(prefix));
}

function complete(input, backwards) {
  const value = input.value;
  if (!completion || completion.value !== input.value || completion.caret !== input.selectionStart) {
    const caret = input.selectionStart ?? value.length;
    const start = value.lastIndexOf(" ", caret - 1) + 1;
    const word = value.slice(start, caret);
    if (!word) return false;
    const candidates = completionCandidates(word, start === 0);
    if (!candidates.length) return false;
    const isCommand = start === 0 && word.startsWith("/");
    completion = {
      head: value.slice(0, start), tail: value.slice(caret), candidates, index: backwards ? candidates.length - 1 : 0,
      suffix: isCommand ? " " : start === 0 ? ": " : " ",
    };
  } else {
    const n = completion.candidates.length;
    completion.index = (completion.index + (backwards ? n - 1 : 1)) % n;
  }
  const inserted = completion.candidates[completion.index] + completion.suffix;
  input.value = completion.head + inserted + completion.tail;
  const caret = completion.head.length + inserted.length;
  input.setSelectionRange(caret, caret);
  completion.value = input.value;
  completion.caret = caret;
  return true;
}

function onInputKey(event) {
  const input = event.currentTarget;
  if (event.key === "Tab" && !event.altKey && !event.ctrlKey && !event.metaKey) {
    if (complete(input, event.shiftKey)) event.preventDefault();
    return;
  }
  if (event.key !== "Shift") completion = null;
  if (event.key === "ArrowUp" && !event.shiftKey && !event.altKey) {
    if (historyIndex === 0) return;
    if (historyIndex === inputHistory.length) historyDraft = input.value;
    historyIndex -= 1;
    input.value = inputHistory[historyIndex];
    event.preventDefault();
    input.setSelectionRange(input.value.length, input.value.length);
  } else if (event.key === "ArrowDown" && !event.shiftKey && !event.altKey) {
    if (historyIndex >= inputHistory.length) return;
    historyIndex += 1;
    input.value = historyIndex === inputHistory.length ? historyDraft : inputHistory[historyIndex];
    event.preventDefault();
    input.setSelectionRange(input.value.length, input.value.length);
  } else if (event.key === "Escape") {
    closeDrawers();
  }
}

// ===================================================================== Views

let renderQueued = false;

function render() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    renderNow();
  });
}

function renderNow() {
  if (state.phase === "login") return;
  renderHeader();
  renderSidebar();
  renderMembers();
  renderTimelineView();
  updateTitle();
}

function renderHeader() {
  const conv = currentConv();
  $("conv-title").textContent = conv.kind === "status" ? "Not in any room" : conv.title;
  const topic = $("conv-topic");
  topic.replaceChildren();
  topic.classList.remove("empty");
  if (conv.kind === "room") {
    if (conv.topic) {
      appendRichText(topic, conv.topic);
      topic.title = conv.topic;
    } else {
      topic.textContent = "No topic — /topic TEXT sets one";
      topic.classList.add("empty");
      topic.removeAttribute("title");
    }
  } else if (conv.kind === "dm") {
    topic.textContent = "Private conversation";
    topic.classList.add("empty");
  } else {
    topic.textContent = "Join a room from the list, or type /join ROOM";
    topic.classList.add("empty");
  }
  $("me-nick").textContent = state.me || "";
  renderAccount();
  const input = $("input");
  const placeholder = conv.kind === "room" ? `Message #${conv.name}` : conv.kind === "dm" ? `Message ${conv.name} privately` : "Type /join ROOM";
  if (input.placeholder !== placeholder) input.placeholder = placeholder;
  $("input-label").textContent = placeholder;
  const membersButton = $("toggle-members");
  membersButton.hidden = conv.kind !== "room";
  $("members-count").textContent = conv.kind === "room" ? String(conv.count) : "";
}

function convBadges(li, conv) {
  const button = li.firstChild;
  const [name, mentionBadge, unreadBadge] = button.children;
  name.textContent = conv.title;
  const showMentions = conv.mentions > 0 && conv.kind === "room";
  mentionBadge.hidden = !showMentions;
  mentionBadge.textContent = `@${conv.mentions}`;
  unreadBadge.hidden = conv.unread === 0;
  unreadBadge.textContent = String(conv.unread);
  unreadBadge.classList.toggle("strong", conv.kind === "dm");
  button.classList.toggle("has-unread", conv.unread > 0);
  const current = conv.key === state.shown;
  if (current) button.setAttribute("aria-current", "page");
  else button.removeAttribute("aria-current");
  const parts = [conv.kind === "room" ? `room ${conv.name}` : `private conversation with ${conv.name}`];
  if (conv.unread) parts.push(`${conv.unread} unread`);
  if (showMentions) parts.push(`${conv.mentions} mentioning you`);
  button.setAttribute("aria-label", parts.join(", "));
  const close = li.lastChild;
  close.setAttribute("aria-label", conv.kind === "room" ? `Leave #${conv.name}` : `Close the conversation with ${conv.name}`);
  close.title = conv.kind === "room" ? `Leave #${conv.name}` : "Close this conversation";
}

function convItem(conv) {
  return el("li", { class: "conv-item" },
    el("button", { type: "button", class: "conv-button", dataset: { conv: conv.key } },
      el("span", { class: "conv-name" }),
      el("span", { class: "badge mention-badge", hidden: true }),
      el("span", { class: "badge", hidden: true })),
    el("button", { type: "button", class: "icon-button conv-close", dataset: { close: conv.key }, text: "✕" }));
}

function renderSidebar() {
  const rooms = state.roomOrder.map((k) => state.convs.get(k)).filter(Boolean);
  const dms = state.dmOrder.map((k) => state.convs.get(k)).filter(Boolean);
  keyedList($("room-list"), rooms, (c) => c, convItem, convBadges);
  keyedList($("dm-list"), dms, (c) => c, convItem, convBadges);
  $("dm-empty").hidden = dms.length > 0;

  keyedList($("all-rooms"), state.directory, (r) => fold(r.room), (r) => el("li", {},
    el("button", { type: "button", class: "dir-button", dataset: { join: r.room } },
      el("span", { class: "dir-name" }), el("span", { class: "dir-count" }), el("span", { class: "dir-topic" }))),
  (li, r) => {
    const button = li.firstChild;
    const [name, count, topic] = button.children;
    const known = state.convs.get(roomKey(r.room));
    if (known) r.count = known.count;
    const joined = Boolean(known);
    button.dataset.join = r.room;
    name.textContent = `#${r.room}`;
    count.textContent = String(r.count);
    count.title = `${r.count} ${r.count === 1 ? "member" : "members"}`;
    topic.textContent = r.topic || "";
    topic.hidden = !r.topic;
    button.classList.toggle("joined", joined);
    button.setAttribute("aria-label", `${joined ? "Show" : "Join"} #${r.room}, ${r.count} ${r.count === 1 ? "member" : "members"}${r.topic ? ", topic: " + r.topic : ""}`);
  });

  const elsewhere = [...state.convs.values()].some((c) => c.key !== state.shown && c.unread > 0);
  $("sidebar-badge").hidden = !elsewhere;
}

function renderMembers() {
  const conv = currentConv();
  const list = $("member-list");
  const crowdedNote = $("members-crowded");
  const whoButton = $("who-button");
  if (conv.kind !== "room") {
    $("members-title").textContent = conv.kind === "dm" ? "In this conversation" : "Members";
    keyedList(list, conv.kind === "dm" ? [state.me, conv.name].filter(Boolean) : [], (n) => fold(n), memberItem, updateMember);
    crowdedNote.hidden = true;
    whoButton.hidden = true;
    return;
  }
  $("members-title").textContent = `Members (${conv.count})`;
  const names = conv.members || [];
  crowdedNote.hidden = !conv.crowded;
  crowdedNote.textContent = conv.members
    ? `${conv.count} members in this crowded room.`
    : `${conv.count} members: too many to list here.`;
  whoButton.hidden = !conv.crowded;
  whoButton.textContent = conv.members ? "Refresh names" : "Show names";
  keyedList(list, names, (n) => fold(n), memberItem, updateMember);
}

function memberItem() {
  return el("li", {}, el("button", { type: "button", class: "member nick" }));
}

const ROLE_BADGES = { admin: "admin", owner: "owner", op: "op", voice: "voice" };

function updateMember(li, nick) {
  const button = li.firstChild;
  const me = sameNick(nick, state.me);
  const conv = currentConv();
  const away = conv.kind === "room" ? conv.awayOf(nick) : me ? state.away : knownAway(nick);
  button.className = `member nick ${nickClass(nick)}${me ? " me" : ""}${away !== null ? " away" : ""}`;
  button.dataset.nick = nick;
  button.textContent = me ? `${nick} (you)` : nick;
  const role = conv && conv.roles ? conv.roles[nick] : null;
  if (role && ROLE_BADGES[role]) button.append(" ", el("span", { class: `role-badge role-${role}` }, ROLE_BADGES[role]));
  // Away is said in words (the badge, and the title with the message), not by the grey alone.
  if (away !== null) button.append(" ", el("span", { class: "away-badge" }, "away"));
  const what = me ? "This is you" : `Send a private message to ${nick}`;
  button.title = away !== null ? `${me ? "You are" : `${nick} is`} away: ${away}\n${what}` : what;
}

/** The away message of C{nick} as the rooms shown know it, or null. */
function knownAway(nick) {
  if (sameNick(nick, state.me)) return state.away;
  for (const key of state.roomOrder) {
    const conv = state.convs.get(key);
    const away = conv ? conv.awayOf(nick) : null;
    if (away !== null) return away;
  }
  return null;
}

function isAtBottom(node) {
  return node.scrollHeight - node.scrollTop - node.clientHeight < 40;
}

function renderTimelineView() {
  const conv = currentConv();
  const timeline = $("timeline");
  const switching = state.renderedKey !== conv.key;
  const before = { atBottom: state.stick, fromBottom: timeline.scrollHeight - timeline.scrollTop };
  if (switching && state.renderedKey) {
    const previous = state.convs.get(state.renderedKey);
    if (previous) previous.scroll = before;
  }
  if (switching) timeline.setAttribute("aria-busy", "true");
  const role = conv.roles && state.me ? conv.roles[state.me] : null;
  renderTimeline(timeline, conv, {
    mentionRe: state.mentionRe,
    meKey: state.me ? fold(state.me) : "",
    moderator: conv.kind === "room" && ["admin", "owner", "op"].includes(role),
  });
  if (switching) {
    const divider = timeline.querySelector('[data-key="unread"]');
    if (state.scrollToMarker && divider) {
      timeline.scrollTop += divider.getBoundingClientRect().top - timeline.getBoundingClientRect().top - 48;
    } else if (conv.scroll && !conv.scroll.atBottom) {
      timeline.scrollTop = timeline.scrollHeight - conv.scroll.fromBottom;
    } else {
      timeline.scrollTop = timeline.scrollHeight;
    }
    state.renderedKey = conv.key;
    state.scrollToMarker = false;
    timeline.removeAttribute("aria-busy");
  } else if (state.prepend) {
    timeline.scrollTop = timeline.scrollHeight - before.fromBottom;
  } else if (state.stick) {
    timeline.scrollTop = timeline.scrollHeight;
  }
  state.prepend = false;
  state.stick = isAtBottom(timeline);
  $("jump-latest").hidden = isAtBottom(timeline);
  maybeLoadOlder();
}

function maybeLoadOlder() {
  const conv = currentConv();
  const timeline = $("timeline");
  if (conv.kind === "room" && conv.moreBefore && !conv.loadingBefore && timeline.scrollTop < 200) {
    requestOlder(conv);
  }
}

function updateTitle() {
  const title = state.titleCount > 0 ? `(${state.titleCount}) ${BASE_TITLE}` : BASE_TITLE;
  if (document.title !== title) document.title = title;
}

// ----- Banner -----

function showBanner(text, actionText, action, { kind = "down", rename = false } = {}) {
  const banner = $("banner");
  banner.hidden = false;
  banner.dataset.kind = kind;
  $("banner-text").textContent = text;
  const button = $("banner-action");
  button.hidden = !actionText;
  button.textContent = actionText || "";
  button.onclick = action || null;
  $("banner-rename").hidden = !rename;
  document.body.classList.add("has-banner");
}

function hideBanner() {
  clearInterval(state.countdownTimer);
  $("banner").hidden = true;
  document.body.classList.remove("has-banner");
}

// ----- Drawers (narrow screens) -----

function openDrawer(which) {
  const chat = $("chat");
  closeDrawers(false);
  chat.classList.add(`show-${which}`);
  $(which === "sidebar" ? "toggle-sidebar" : "toggle-members").setAttribute("aria-expanded", "true");
  $("scrim").hidden = false;
  // While a drawer covers the page, the rest of it is out of reach of focus and screen readers.
  for (const id of ["conversation", "sidebar", "members"]) if (id !== which) $(id).inert = true;
  document.querySelector(".topbar").inert = true;
  const first = $(which).querySelector("button, input");
  if (first) first.focus();
  if (which === "sidebar") refreshRooms();
}

function closeDrawers(restoreFocus = true) {
  const chat = $("chat");
  for (const id of ["conversation", "sidebar", "members"]) $(id).inert = false;
  document.querySelector(".topbar").inert = false;
  $("scrim").hidden = true;
  for (const which of ["sidebar", "members"]) {
    if (!chat.classList.contains(`show-${which}`)) continue;
    chat.classList.remove(`show-${which}`);
    const toggle = $(which === "sidebar" ? "toggle-sidebar" : "toggle-members");
    toggle.setAttribute("aria-expanded", "false");
    if (restoreFocus && $(which).contains(document.activeElement)) toggle.focus();
  }
}

// ----- Notifications -----

function notificationsPossible() {
  return "Notification" in window && window.isSecureContext;
}

function updateNotifyButton() {
  $("notify-button").hidden = !notificationsPossible() || Notification.permission !== "default";
}

function notify(conv, entry) {
  if (!notificationsPossible() || Notification.permission !== "granted") return;
  try {
    const title = conv.kind === "dm" ? `${entry.nick} (private)` : `${entry.nick} in #${conv.name}`;
    const note = new Notification(title, { body: entry.text.slice(0, 300), tag: conv.key, icon: "/static/favicon.svg" });
    note.addEventListener("click", () => {
      window.focus();
      show(conv.key);
      note.close();
    });
  } catch {
    // Some browsers allow notifications only from a service worker; the title count remains.
  }
}

// ----- The account -----

/** Send a message that carries a password: now, or not at all (never queued while offline). */
function sendAccount(message) {
  if (!state.ready) {
    const text = "Not connected just now; try again once the chat is back.";
    if (!$("account-form").hidden) $("account-error").textContent = text;
    else localError(text);
    return false;
  }
  conn.send(labelled(message, { kind: message.type }));
  return true;
}

function openAccountForm() {
  const form = $("account-form");
  form.hidden = false;
  $("account-toggle").setAttribute("aria-expanded", "true");
  $("account-error").textContent = "";
  $("account-submit").disabled = false;
  $("account-old-row").hidden = !state.account;
  $("account-code-row").hidden = state.account;
  $("account-intro").textContent = state.account
    ? "Browsers logged in with the old password will have to log in again."
    : "Only you will be able to use this nickname, on every device.";
  $("account-new-label").textContent = state.account ? "New password (8 or more characters, no spaces)" : "Password (8 or more characters, no spaces)";
  $("account-submit").textContent = state.account ? "Change password" : "Register";
  (state.account ? $("account-old") : $("account-new")).focus();
}

function closeAccountForm() {
  $("account-form").hidden = true;
  $("account-toggle").setAttribute("aria-expanded", "false");
  for (const id of ["account-old", "account-new", "account-code"]) $(id).value = "";
  $("account-error").textContent = "";
}

function submitAccount(event) {
  event.preventDefault();
  const next = $("account-new").value;
  if (next.length < 8 || /\s/.test(next)) {
    $("account-error").textContent = "A password needs 8 or more characters, and no spaces.";
    $("account-new").focus();
    return;
  }
  const message = state.account
    ? { type: "password", old: $("account-old").value, new: next }
    : { type: "register", password: next };
  const code = $("account-code").value.trim();
  if (!state.account && code) message.code = code;
  if (sendAccount(message)) $("account-submit").disabled = true;
}

function logout() {
  const token = savedLogin(state.me);
  forgetLogin();
  state.account = false;
  leave(token ? { type: "logout", token } : { type: "logout" }, "You are logged out.");
}

function renderAccount() {
  $("account-badge").hidden = !state.account;
  $("logout-button").hidden = !state.account;
  $("account-toggle").textContent = state.account ? "Change password" : "Register this nickname";
}

// ----- Login -----

function askPassword(nick, message) {
  showLogin();
  $("login-nick").value = nick;
  $("login-password-row").hidden = false;
  $("login-error").textContent = message || `${nick} is registered: type its password to log in.`;
  $("login-error").classList.toggle("note", !message);
  $("login-submit").disabled = false;
  $("login-submit").textContent = "Log in";
  $("login-password").focus();
}

function showLoginError(message) {
  $("login-error").textContent = message;
  $("login-error").classList.remove("note");
  $("login-submit").disabled = false;
  $("login-submit").textContent = state.sessionStarted ? "Use this nickname" : "Enter the chat";
  const input = $("login-nick");
  input.setAttribute("aria-invalid", "true");
  input.focus();
  input.select();
}

function showLogin() {
  $("login").hidden = false;
  $("chat").hidden = true;
  const input = $("login-nick");
  input.value = state.wantedNick || storageGet(NICK_STORE) || "";
  $("login-submit").disabled = false;
  input.focus();
}

function showChat() {
  const wasHidden = $("chat").hidden;
  $("login").hidden = true;
  $("chat").hidden = false;
  updateNotifyButton();
  if (wasHidden && matchMedia("(pointer: fine)").matches) $("input").focus();
}

function submitLogin(event) {
  event.preventDefault();
  const nick = $("login-nick").value.trim();
  if (!nick) {
    showLoginError("Please type a nickname.");
    return;
  }
  const asking = !$("login-password-row").hidden;
  const password = $("login-password").value;
  if (asking && !password) {
    showLoginError("Please type the password.");
    $("login-password").focus();
    return;
  }
  if (asking && !sameNick(nick, state.wantedNick)) {
    // Another nickname after all: the password was for the last one.
    $("login-password-row").hidden = true;
  }
  state.password = asking && sameNick(nick, state.wantedNick) ? password : null;
  $("login-password").value = "";
  $("login-error").textContent = "";
  $("login-nick").removeAttribute("aria-invalid");
  $("login-submit").disabled = true;
  $("login-submit").textContent = "Connecting…";
  state.wantedNick = nick;
  if (state.phase === "quit") state.phase = "chat";
  if (conn.open && state.helloSeen && !state.named) conn.send(nameMessage());
  else if (!conn.active) {
    clearTimeout(state.reconnectTimer);
    clearInterval(state.countdownTimer);
    conn.connect();
  }
}

// ===================================================================== Wiring

function openDmWith(nick) {
  if (!nick || sameNick(nick, state.me)) return;
  show(ensureDm(nick).key);
  $("input").focus();
}

function onNickClick(event) {
  const button = event.target.closest("button.nick");
  if (button && button.dataset.nick) {
    openDmWith(button.dataset.nick);
    return true;
  }
  return false;
}

function init() {
  state.hashRoom = location.hash.length > 1 ? safeDecode(location.hash.slice(1)) : null;
  if (state.hashRoom) $("login-room").textContent = `You will join #${bareRoom(state.hashRoom)}.`;

  $("login-form").addEventListener("submit", submitLogin);
  document.querySelector(".skip-link").addEventListener("click", (event) => {
    event.preventDefault();
    const target = $("chat").hidden ? $("login-nick") : $("input");
    target.focus();
  });
  $("login-nick").value = storageGet(NICK_STORE) || "";
  $("login-nick").focus();
  $("login-nick").select();
  // Logged in to an account on this browser: a reload (or a new tab) goes straight back in.
  if (savedLogin($("login-nick").value)) $("login-form").requestSubmit();

  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("input");
    const line = input.value;
    if (!line.trim()) return;
    rememberInput(line);
    input.value = "";
    completion = null;
    execute(line);
  });
  $("input").addEventListener("keydown", onInputKey);

  $("join-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const room = $("join-room").value.trim();
    if (!room) return;
    $("join-room").value = "";
    execute(`/join ${room}`);
  });

  for (const id of ["room-list", "dm-list"]) {
    $(id).addEventListener("click", (event) => {
      const open = event.target.closest("[data-conv]");
      if (open) show(open.dataset.conv);
      const close = event.target.closest("[data-close]");
      if (!close) return;
      const conv = state.convs.get(close.dataset.close);
      if (!conv) return;
      if (conv.kind === "room") execute(`/part ${conv.name}`);
      else {
        state.convs.delete(conv.key);
        state.dmOrder = state.dmOrder.filter((k) => k !== conv.key);
        if (state.shown === conv.key) showFallback();
        render();
      }
    });
  }
  $("all-rooms").addEventListener("click", (event) => {
    const button = event.target.closest("[data-join]");
    if (button) execute(`/join ${button.dataset.join}`);
  });
  $("rooms-refresh").addEventListener("click", refreshRooms);
  $("quit-button").addEventListener("click", () => quit(null));
  $("account-toggle").addEventListener("click", () => {
    if ($("account-form").hidden) openAccountForm();
    else closeAccountForm();
  });
  $("account-form").addEventListener("submit", submitAccount);
  $("logout-button").addEventListener("click", logout);
  $("banner-rename").addEventListener("click", () => {
    clearTimeout(state.reconnectTimer);
    clearInterval(state.countdownTimer);
    hideBanner();
    showLogin();
    $("login-error").textContent = "Your previous nickname is still taken. Pick another, or try it again.";
  });

  $("timeline").addEventListener("click", (event) => {
    if (onNickClick(event)) return;
    if (event.target.closest("[data-older]")) requestOlder(currentConv());
    const remove = event.target.closest("[data-remove]");
    if (remove && currentConv().kind === "room") {
      request({ type: "remove", room: currentConv().name, id: remove.dataset.remove }, { kind: "mod" });
    }
    const expand = event.target.closest("[data-expand]");
    if (expand) {
      currentConv().expanded.add(expand.dataset.expand);
      render();
    }
  });
  $("timeline").addEventListener("scroll", () => {
    state.stick = isAtBottom($("timeline"));
    $("jump-latest").hidden = state.stick;
    maybeLoadOlder();
  }, { passive: true });
  // Stay at the newest line when the timeline shrinks (a banner, a phone's keyboard).
  new ResizeObserver(() => {
    const timeline = $("timeline");
    if (state.stick) timeline.scrollTop = timeline.scrollHeight;
  }).observe($("timeline"));
  $("jump-latest").addEventListener("click", () => {
    const timeline = $("timeline");
    timeline.scrollTop = timeline.scrollHeight;
    $("input").focus();
  });
  $("member-list").addEventListener("click", onNickClick);
  $("conv-topic").addEventListener("click", (event) => {
    if (!event.target.closest("a")) event.currentTarget.classList.toggle("expanded");
  });
  $("who-button").addEventListener("click", () => {
    const conv = currentConv();
    if (conv.kind === "room") request({ type: "who", room: conv.name }, { kind: "who", room: conv.name, print: false });
  });

  $("toggle-sidebar").addEventListener("click", () => {
    if ($("chat").classList.contains("show-sidebar")) closeDrawers();
    else openDrawer("sidebar");
  });
  $("toggle-members").addEventListener("click", () => {
    if ($("chat").classList.contains("show-members")) closeDrawers();
    else openDrawer("members");
  });
  $("scrim").addEventListener("click", () => closeDrawers());
  for (const query of ["(max-width: 899px)", "(max-width: 1099px)"]) {
    matchMedia(query).addEventListener("change", () => closeDrawers(false));
  }
  for (const button of document.querySelectorAll("[data-close]")) {
    if (button.closest(".sidebar-head")) button.addEventListener("click", () => closeDrawers());
  }
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") closeDrawers();
  });

  $("notify-button").addEventListener("click", async () => {
    try {
      await Notification.requestPermission();
    } catch {
      // ignored: the button hides itself once the browser has an answer
    }
    updateNotifyButton();
  });

  document.addEventListener("visibilitychange", () => {
    if (tabVisible()) {
      state.titleCount = 0;
      updateTitle();
      markSeen(state.convs.get(state.shown));
      render();
    }
  });
  window.addEventListener("online", () => {
    if (state.sessionStarted && state.phase === "chat" && !conn.active) reconnectNow();
  });
  window.addEventListener("hashchange", () => {
    if (state.phase !== "chat" || location.hash.length < 2) return;
    const room = bareRoom(safeDecode(location.hash.slice(1)));
    const existing = state.convs.get(roomKey(room));
    if (existing) {
      if (existing.key !== state.shown) show(existing.key);
    } else execute(`/join ${room}`);
  });
}

function safeDecode(text) {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

init();
