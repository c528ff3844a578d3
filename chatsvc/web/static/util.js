// Small helpers shared by the page's modules: DOM building, ids, times, nicknames, rich text.
// Nothing here ever parses HTML: every piece of text goes into the DOM through text nodes.

/** Build an element. attrs: class, text, dataset, on<event> handlers, or plain attributes. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2), value);
    } else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child !== null && child !== undefined && child !== false) node.append(child);
  }
  return node;
}

/** Ids are strings of decimal digits; compare them as numbers. */
export function idValue(id) {
  try {
    return BigInt(id);
  } catch {
    return 0n;
  }
}

export function compareIds(a, b) {
  const x = idValue(a);
  const y = idValue(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

/** A key under which names that differ only in case (and width) are one. */
export function fold(name) {
  return String(name).normalize("NFKC").toLowerCase();
}

export function utf8Length(text) {
  return new TextEncoder().encode(text).length;
}

// ----- Times -----

const pad = (n) => String(n).padStart(2, "0");

export function parseTime(iso) {
  const d = iso ? new Date(iso) : new Date();
  return Number.isNaN(d.getTime()) ? new Date() : d;
}

export function clock(date) {
  return `${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

export function fullTime(date) {
  return date.toLocaleString(undefined, { dateStyle: "full", timeStyle: "medium" });
}

export function dayKey(date) {
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

export function dayLabel(date) {
  const today = new Date();
  const yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1);
  if (dayKey(date) === dayKey(today)) return "Today";
  if (dayKey(date) === dayKey(yesterday)) return "Yesterday";
  return date.toLocaleDateString(undefined, {
    weekday: "long", year: "numeric", month: "long", day: "numeric",
  });
}

export function timeElement(date) {
  return el("time", {
    datetime: date.toISOString(),
    title: fullTime(date),
    text: clock(date),
  });
}

// ----- Nicknames -----

export const NICK_COLOURS = 12;

/** A stable colour class per nickname: an FNV-1a hash of its folded form into the palette. */
export function nickClass(nick) {
  let hash = 0x811c9dc5;
  for (const ch of fold(nick)) {
    hash ^= ch.codePointAt(0);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return `nc${hash % NICK_COLOURS}`;
}

/** A nickname as a button (a click opens a private conversation with it). */
export function nickButton(nick, { focusable = false } = {}) {
  return el("button", {
    type: "button",
    class: `nick ${nickClass(nick)}`,
    dataset: { nick },
    tabindex: focusable ? null : "-1",
    title: `Send a private message to ${nick}`,
    text: nick,
  });
}

const WORD = "[\\p{L}\\p{N}\\p{M}_]";

/** A regular expression finding `nick` as a whole word, in any case. */
export function mentionPattern(nick) {
  if (!nick) return null;
  const escaped = nick.replace(/[\\^$.*+?()[\]{}|/]/g, "\\$&");
  try {
    return new RegExp(`(?<!${WORD})${escaped}(?!${WORD})`, "giu");
  } catch {
    return null;
  }
}

export function mentions(text, pattern) {
  if (!pattern) return false;
  pattern.lastIndex = 0;
  const found = pattern.test(text);
  pattern.lastIndex = 0;
  return found;
}

// ----- Rich text: links and mentions, built as nodes -----

const URL_PATTERN = /\bhttps?:\/\/[^\s<>"`]+/giu;
const TRAILING = /[.,;:!?'"*]+$/u;

function trimUrl(raw) {
  let url = raw.replace(TRAILING, "");
  // A closing bracket at the end belongs to the URL only if the URL opened one.
  for (const [open, close] of [["(", ")"], ["[", "]"], ["{", "}"]]) {
    while (url.endsWith(close) && url.split(open).length < url.split(close).length) {
      url = url.slice(0, -1).replace(TRAILING, "");
    }
  }
  return url;
}

function safeHref(text) {
  try {
    const url = new URL(text);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch {
    return null;
  }
}

function appendMentions(parent, text, pattern) {
  if (!pattern || !text) {
    parent.append(text);
    return;
  }
  pattern.lastIndex = 0;
  let last = 0;
  for (const match of text.matchAll(pattern)) {
    parent.append(text.slice(last, match.index));
    parent.append(el("mark", { class: "mention-word", text: match[0] }));
    last = match.index + match[0].length;
  }
  parent.append(text.slice(last));
}

/** Text with its http(s) links as anchors and mentions of `pattern` marked, into `parent`. */
export function appendRichText(parent, text, pattern = null) {
  let last = 0;
  for (const match of text.matchAll(URL_PATTERN)) {
    const url = trimUrl(match[0]);
    const href = safeHref(url);
    if (!href) continue;
    appendMentions(parent, text.slice(last, match.index), pattern);
    parent.append(el("a", {
      href, target: "_blank", rel: "noopener noreferrer", text: url,
    }));
    last = match.index + url.length;
  }
  appendMentions(parent, text.slice(last), pattern);
  return parent;
}

/** Make `container`'s children exactly `nodes`, moving as few as possible. */
export function reconcile(container, nodes) {
  let current = container.firstChild;
  for (const node of nodes) {
    if (current === node) {
      current = current.nextSibling;
      continue;
    }
    container.insertBefore(node, current);
  }
  while (current) {
    const next = current.nextSibling;
    container.removeChild(current);
    current = next;
  }
}

/** Render `items` into `list` as one node each, kept (and updated in place) by key. */
export function keyedList(list, items, keyOf, create, update) {
  if (!list.keyedNodes) list.keyedNodes = new Map();
  const nodes = list.keyedNodes;
  const keep = new Set();
  const ordered = items.map((item) => {
    const key = keyOf(item);
    keep.add(key);
    let node = nodes.get(key);
    if (!node) {
      node = create(item);
      nodes.set(key, node);
    }
    update(node, item);
    return node;
  });
  for (const key of [...nodes.keys()]) if (!keep.has(key)) nodes.delete(key);
  reconcile(list, ordered);
}
