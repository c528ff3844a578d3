// The timeline of one conversation: its entries as lines, with day separators, the
// "new messages" divider and consecutive joins and leaves condensed into one line.
// Lines are cached per conversation and the container is reconciled, not rebuilt, so that
// new messages neither move what is shown nor lose the reader's selection or focus.

import {
  appendRichText, dayKey, dayLabel, el, mentions, nickButton, reconcile, timeElement,
} from "./util.js";

const NAMES_SHOWN = 6;

function srOnly(text) {
  return el("span", { class: "sr-only", text });
}

function lineElement(classes, date, ...body) {
  return el("div", { class: `line ${classes}` }, date ? timeElement(date) : el("span", { class: "time-gap" }),
    el("span", { class: "body" }, ...body));
}

function messageItem(entry, ctx) {
  const mention = !entry.own && !entry.pending && mentions(entry.text, ctx.mentionRe);
  const removable = Boolean(ctx.moderator && entry.id && !entry.pending);
  const sig = [entry.pending, entry.failed, entry.error, mention, ctx.meKey, removable].join("|");
  return {
    key: entry.key,
    sig,
    build() {
      const classes = ["msg"];
      if (entry.action) classes.push("action");
      if (entry.own) classes.push("own");
      if (entry.pending) classes.push("pending");
      if (entry.failed) classes.push("failed");
      if (mention) classes.push("mention");
      const text = appendRichText(el("span", { class: "text" }), entry.text, entry.own ? null : ctx.mentionRe);
      const parts = entry.action
        ? [el("span", { class: "star", "aria-hidden": "true", text: "* " }), nickButton(entry.nick), " ", text]
        : [nickButton(entry.nick), srOnly(": "), text];
      if (entry.failed) parts.push(el("span", { class: "status", text: ` — not sent: ${entry.error || "refused"}` }));
      else if (entry.pending) parts.push(el("span", { class: "status", text: " — sending…" }));
      if (mention) parts.unshift(srOnly("Mentions you: "));
      if (removable) {
        parts.push(el("button", {
          type: "button", class: "remove-message linkish small", dataset: { remove: entry.id },
          title: `Remove this message by ${entry.nick} from the room's history`, text: "Remove",
        }));
      }
      return lineElement(classes.join(" "), entry.date, ...parts);
    },
  };
}

/** The names of a run of joins or leaves, shortened unless expanded. */
function appendNames(parent, names, expanded, groupKey) {
  const shown = expanded || names.length <= NAMES_SHOWN ? names : names.slice(0, NAMES_SHOWN - 1);
  shown.forEach((name, i) => {
    if (i > 0) parent.append(", ");
    parent.append(nickButton(name.nick));
    if (name.reason) parent.append(el("span", { class: "reason", text: ` (${name.reason})` }));
  });
  if (shown.length < names.length) {
    parent.append(" and ", el("button", {
      type: "button", class: "more linkish", dataset: { expand: groupKey },
      text: `${names.length - shown.length} more`,
    }));
  }
}

function groupItem(entries, conv) {
  const segments = [];
  const push = (joined, nick, reason = null) => {
    const last = segments[segments.length - 1];
    if (last && last.joined === joined) last.names.push({ nick, reason });
    else segments.push({ joined, names: [{ nick, reason }] });
  };
  for (const entry of entries) {
    if (entry.kind === "joined") push(true, entry.nick);
    else if (entry.kind === "left") push(false, entry.nick, entry.reason);
    else if (entry.kind === "crowd") {
      for (const run of entry.runs || []) {
        for (const nick of run.nicks || []) push(Boolean(run.joined), nick);
      }
    }
  }
  const key = `g${entries[0].key}`;
  const expanded = conv.expanded.has(key);
  const sig = `${entries.map((e) => e.key).join(",")}|${expanded}`;
  return {
    key,
    sig,
    build() {
      const body = [];
      segments.forEach((segment, i) => {
        const span = el("span", { class: segment.joined ? "joins" : "leaves" });
        appendNames(span, segment.names, expanded, key);
        span.append(segment.joined ? " joined" : " left");
        if (i > 0) body.push(el("span", { class: "dot", "aria-hidden": "true", text: " · " }), srOnly("; "));
        body.push(span);
      });
      return lineElement("event presence", entries[0].date, ...body);
    },
  };
}

function eventItem(entry) {
  return {
    key: entry.key,
    sig: "",
    build() {
      if (entry.kind === "topic") {
        if (entry.topic === null || entry.topic === undefined || entry.topic === "") {
          return lineElement("event topic", entry.date, nickButton(entry.nick), " cleared the topic");
        }
        return lineElement("event topic", entry.date, nickButton(entry.nick), " set the topic: ",
          appendRichText(el("q", { class: "text" }), entry.topic));
      }
      if (entry.kind === "rename") {
        return lineElement("event rename", entry.date, nickButton(entry.old), " is now known as ",
          nickButton(entry.new));
      }
      return lineElement("event", entry.date, String(entry.kind));
    },
  };
}

function localItem(entry) {
  return {
    key: entry.key,
    sig: "",
    build() {
      const lines = entry.lines || [entry.text];
      const style = entry.style || "info";
      const label = style === "error" ? "Error: " : "";
      const body = lines.map((line, i) => {
        const div = el("div", { class: "local-line" });
        if (i === 0 && label) div.append(el("strong", { text: label }));
        appendRichText(div, line);
        return div;
      });
      const node = lineElement(`local ${style}`, entry.date, ...body);
      if (style === "error") node.setAttribute("role", "alert");
      return node;
    },
  };
}

function topItem(conv) {
  if (conv.kind === "dm") {
    return {
      key: "top", sig: `dm|${conv.name}`,
      build: () => el("div", { class: "line boundary" },
        el("p", { text: `Your private conversation with ${conv.name}.` }),
        el("p", { class: "hint", text: "Private messages are not stored: they are gone once you leave or reload." })),
    };
  }
  if (conv.kind === "status") {
    return {
      key: "top", sig: "status",
      build: () => el("div", { class: "line boundary" },
        el("p", { text: "You are in no room now." }),
        el("p", { class: "hint", text: "Join one from the room list, or type /join ROOM." })),
    };
  }
  if (conv.moreBefore) {
    return {
      key: "top", sig: `more|${conv.loadingBefore}`,
      build: () => el("div", { class: "line boundary" },
        conv.loadingBefore
          ? el("p", { class: "hint", text: "Loading older messages…" })
          : el("button", { type: "button", class: "linkish", dataset: { older: "1" }, text: "Load older messages" })),
    };
  }
  return {
    key: "top", sig: `begin|${conv.name}`,
    build: () => el("div", { class: "line boundary" }, el("p", { text: `Beginning of #${conv.name}` })),
  };
}

function buildItems(conv, ctx) {
  const items = [topItem(conv)];
  let day = null;
  let group = [];
  const flush = () => {
    if (group.length) items.push(groupItem(group, conv));
    group = [];
  };
  for (const entry of conv.entries) {
    const thisDay = dayKey(entry.date);
    if (thisDay !== day) {
      flush();
      day = thisDay;
      const label = dayLabel(entry.date);
      items.push({
        key: `d${thisDay}`, sig: label,
        build: () => el("div", { class: "day", role: "separator" }, el("span", { text: label })),
      });
    }
    if (entry === conv.marker) {
      flush();
      items.push({
        key: "unread", sig: "",
        build: () => el("div", { class: "unread-divider", role: "separator" }, el("span", { text: "New messages" })),
      });
    }
    if (entry.kind === "joined" || entry.kind === "left" || entry.kind === "crowd") {
      group.push(entry);
      continue;
    }
    flush();
    if (entry.kind === "msg") items.push(messageItem(entry, ctx));
    else if (entry.kind === "local") items.push(localItem(entry));
    else items.push(eventItem(entry));
  }
  flush();
  return items;
}

/** ctx: {mentionRe, meKey, moderator (the reader may remove messages)}. */
export function renderTimeline(container, conv, ctx) {
  const items = buildItems(conv, ctx);
  const nodes = items.map((item) => {
    const cached = conv.nodeCache.get(item.key);
    if (cached && cached.sig === item.sig) return cached.node;
    const node = item.build();
    node.dataset.key = item.key;
    conv.nodeCache.set(item.key, { sig: item.sig, node });
    return node;
  });
  if (conv.nodeCache.size > nodes.length + 200) {
    const keep = new Set(items.map((item) => item.key));
    for (const key of conv.nodeCache.keys()) if (!keep.has(key)) conv.nodeCache.delete(key);
  }
  reconcile(container, nodes);
}
