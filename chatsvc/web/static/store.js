// What the page knows: one Conversation per room joined and per private correspondent.
// A conversation's entries stay sorted by the server's ids; each id is kept once.

import { fold, idValue, parseTime } from "./util.js";

const PENDING_BASE = 1n << 200n; // pending lines sort after every real event
let localSequence = 0;

export function roomKey(room) {
  return "#" + fold(room);
}

export function dmKey(nick) {
  return "@" + fold(nick);
}

function compareEntries(a, b) {
  if (a.sort !== b.sort) return a.sort < b.sort ? -1 : 1;
  return a.sub - b.sub;
}

export class Conversation {
  constructor(kind, name) {
    this.kind = kind; // "room" or "dm"
    this.name = name; // the room or the other nickname, as the server shows it
    this.key = kind === "room" ? roomKey(name) : dmKey(name);
    this.entries = [];
    this.ids = new Set();
    this.topic = null;
    this.members = null; // sorted nicknames, or null when not known (crowded room)
    this.away = new Map(); // fold(nick) -> away message, for the members who are away
    this.count = 0;
    this.crowded = false;
    this.lastId = null; // the newest room event id seen, for join {after}
    this.moreBefore = false;
    this.loadingBefore = false;
    this.unread = 0;
    this.mentions = 0;
    this.marker = null; // the entry the "new messages" divider goes above
    this.markerSeen = true;
    this.scroll = null; // {bottom: true} or {fromBottom: px}, kept while not shown
    this.nodeCache = new Map();
    this.expanded = new Set(); // keys of condensed join/leave lines shown in full
  }

  get title() {
    return this.kind === "room" ? `#${this.name}` : this.name;
  }

  get oldestId() {
    for (const entry of this.entries) if (entry.id) return entry.id;
    return null;
  }

  get newestMessageId() {
    for (let i = this.entries.length - 1; i >= 0; i -= 1) {
      if (this.entries[i].id) return this.entries[i].id;
    }
    return null;
  }

  noteId(id) {
    if (id && (this.lastId === null || idValue(id) > idValue(this.lastId))) this.lastId = id;
  }

  insert(entry) {
    const list = this.entries;
    if (list.length === 0 || compareEntries(list[list.length - 1], entry) <= 0) {
      list.push(entry);
      return entry;
    }
    let low = 0;
    let high = list.length;
    while (low < high) {
      const mid = (low + high) >> 1;
      if (compareEntries(list[mid], entry) <= 0) low = mid + 1;
      else high = mid;
    }
    list.splice(low, 0, entry);
    return entry;
  }

  /** Add an event from the server; null if that id is already here. */
  addEvent(fields) {
    if (!fields.id || this.ids.has(fields.id)) return null;
    this.ids.add(fields.id);
    return this.insert({
      ...fields,
      sort: idValue(fields.id),
      sub: 0,
      date: parseTime(fields.time),
      key: `e${fields.id}`,
    });
  }

  /** Add a line of the page's own (errors, notices, help) after everything known so far. */
  addLocal(fields) {
    localSequence += 1;
    const newest = this.newestMessageId;
    return this.insert({
      kind: "local",
      ...fields,
      sort: newest ? idValue(newest) : 0n,
      sub: localSequence,
      date: new Date(),
      key: `l${localSequence}`,
    });
  }

  /** Add a line typed but not confirmed yet: shown at the end, dimmed. */
  addPending(fields) {
    localSequence += 1;
    return this.insert({
      kind: "msg",
      pending: true,
      ...fields,
      sort: PENDING_BASE,
      sub: localSequence,
      date: new Date(),
      key: `p${localSequence}`,
    });
  }

  /** Take away the entry of the message C{id}, if it is shown; whether it was. */
  removeById(id) {
    const entry = this.entries.find((e) => e.id === id);
    if (entry) this.remove(entry);
    return Boolean(entry);
  }

  remove(entry) {
    const index = this.entries.indexOf(entry);
    if (index >= 0) this.entries.splice(index, 1);
    if (entry.id) this.ids.delete(entry.id);
  }

  // ----- Members -----

  hasMember(nick) {
    const key = fold(nick);
    return this.members !== null && this.members.some((m) => fold(m) === key);
  }

  addMember(nick) {
    if (this.members === null) {
      this.count += 1;
      return;
    }
    if (this.hasMember(nick)) return;
    this.members.push(nick);
    this.members.sort((a, b) => a.localeCompare(b, undefined, { sensitivity: "base" }));
    this.count = Math.max(this.count + 1, this.members.length);
  }

  removeMember(nick) {
    const key = fold(nick);
    this.away.delete(key);
    if (this.members === null) {
      this.count = Math.max(0, this.count - 1);
      return;
    }
    const before = this.members.length;
    this.members = this.members.filter((m) => fold(m) !== key);
    if (this.members.length < before) this.count = Math.max(this.members.length, this.count - 1);
  }

  renameMember(oldNick, newNick) {
    const key = fold(oldNick);
    const away = this.away.get(key);
    if (away !== undefined) {
      this.away.delete(key);
      this.away.set(fold(newNick), away);
    }
    if (this.members === null) return;
    this.members = this.members.map((m) => (fold(m) === key ? newNick : m));
    this.members.sort((a, b) => a.localeCompare(b, undefined, { sensitivity: "base" }));
  }

  setMembers(members, count) {
    this.members = Array.isArray(members) ? [...members] : null;
    this.count = typeof count === "number" ? count : this.members ? this.members.length : 0;
  }

  // ----- Away -----

  /** The away message of C{nick}, or null if it is not away (as far as this room knows). */
  awayOf(nick) {
    return this.away.get(fold(nick)) ?? null;
  }

  /** C{nick} is away with C{message}, or back (null). */
  setAway(nick, message) {
    if (typeof message === "string") this.away.set(fold(nick), message);
    else this.away.delete(fold(nick));
  }

  /** Who is away, all at once: the server's {nick: message} map (of a room or who message). */
  setAwayMap(map) {
    this.away = new Map();
    if (!map || typeof map !== "object") return;
    for (const [nick, message] of Object.entries(map)) {
      if (typeof message === "string") this.away.set(fold(nick), message);
    }
  }
}
