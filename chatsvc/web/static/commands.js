// The line door's commands, typed in the page's input, parsed into what the page should do.
// parseInput never talks to the server: app.js turns its answer into protocol messages.

export const COMMANDS = [
  { name: "join", args: "ROOM", help: "join ROOM (created if needed) and show it" },
  { name: "part", args: "[ROOM]", help: "leave ROOM (the room shown, by default)" },
  { name: "nick", args: "NEWNAME", help: "change your nickname" },
  { name: "me", args: "ACTION", help: "send an action: the others see * you ACTION" },
  { name: "msg", args: "NICK TEXT", help: "send TEXT to NICK alone" },
  { name: "topic", args: "[TEXT]", help: "show the room's topic, or set it to TEXT; /topic - clears it" },
  { name: "who", args: "[ROOM]", help: "list the members of ROOM (the room shown, by default)" },
  { name: "rooms", args: "", help: "list every room, with member counts and topics" },
  { name: "history", args: "[N]", help: "load the last N messages of the room shown" },
  { name: "say", args: "TEXT", help: "say TEXT exactly as typed, even if it starts with /" },
  { name: "register", args: "PASSWORD [CODE]", help: "register your nickname, so that only you may use it" },
  { name: "password", args: "OLD NEW", help: "change your account's password" },
  { name: "logout", args: "", help: "log out of your account on this page, and leave" },
  { name: "kick", args: "NICK [REASON]", help: "put NICK out of the room shown (operators)" },
  { name: "ban", args: "NICK [DURATION] [REASON]", help: "keep NICK out of the room (10m, 2h, 7d; none: until /unban)" },
  { name: "unban", args: "NICK", help: "lift NICK's ban" },
  { name: "bans", args: "", help: "list the room's bans" },
  { name: "mute", args: "NICK [DURATION] [REASON]", help: "keep NICK from speaking in the room" },
  { name: "unmute", args: "NICK", help: "lift NICK's mute" },
  { name: "mutes", args: "", help: "list the room's mutes" },
  { name: "op", args: "NICK", help: "make NICK an operator of the room" },
  { name: "deop", args: "NICK", help: "NICK is no longer an operator" },
  { name: "voice", args: "NICK", help: "let NICK speak in a moderated room" },
  { name: "devoice", args: "NICK", help: "NICK is no longer voiced" },
  { name: "invite", args: "NICK", help: "let NICK into a private room" },
  { name: "remove", args: "NICK", help: "remove NICK's latest message from the room's history (operators; or a message's Remove button)" },
  { name: "set", args: "[SETTING on|off]", help: "show or change the room's settings: private, moderated, topiclock, registered" },
  { name: "owner", args: "NICK", help: "make NICK the room's owner (server admins)" },
  { name: "announce", args: "TEXT", help: "say TEXT to everyone on the server (server admins)" },
  { name: "kill", args: "NICK [REASON]", help: "disconnect NICK (server admins)" },
  { name: "suspend", args: "NICK [DURATION] [REASON]", help: "suspend NICK's account: it may not log in (server admins)" },
  { name: "unsuspend", args: "NICK", help: "lift a suspension (server admins)" },
  { name: "lockdown", args: "on|off", help: "no registrations and no new guests (server admins)" },
  { name: "whois", args: "NICK", help: "who NICK is: account or guest, rooms you share, roles, idle time, away message" },
  { name: "away", args: "[MESSAGE]", help: "mark yourself away, with MESSAGE for the others to see; /away alone: back" },
  { name: "help", args: "", help: "list these commands" },
  { name: "quit", args: "[REASON]", help: "leave the chat, with a reason the others see" },
];

export const COMMAND_NAMES = COMMANDS.map((c) => `/${c.name}`);

/** Whether a typed line carries a password, and so is never kept for Up to recall. */
export function carriesPassword(line) {
  return /^\/(register|password)(\s|$)/i.test(line);
}

export function helpLines() {
  return [
    "Commands (plain text is said in the room shown):",
    ...COMMANDS.map((c) => `/${c.name}${c.args ? " " + c.args : ""} — ${c.help}`),
    "//TEXT — say /TEXT (the first / is removed)",
    "Tab completes nicknames and commands; Up and Down recall what you typed.",
  ];
}

function usage(name) {
  const command = COMMANDS.find((c) => c.name === name);
  return { type: "error", message: `usage: /${name}${command.args ? " " + command.args : ""}` };
}

/** Split off the first space-separated word: [word, rest]. */
function firstWord(text) {
  const trimmed = text.replace(/^ +/, "");
  const space = trimmed.indexOf(" ");
  if (space < 0) return [trimmed, ""];
  return [trimmed.slice(0, space), trimmed.slice(space + 1)];
}

/** "NICK [DURATION] [REASON]" as a request of type C{type}; null without a nickname. */
function nickDurationReason(type, args) {
  const [nick, rest] = firstWord(args);
  if (!nick) return null;
  const [first, after] = firstWord(rest);
  const timed = /^[0-9]{1,6}[smhdw]$/i.test(first);
  const request = { type, nick };
  if (timed) request.duration = first;
  const reason = (timed ? after : rest).trim();
  if (reason) request.reason = reason;
  return request;
}

/**
 * Parse one line typed in the input. Returns one of:
 * {type:"empty"}, {type:"error", message}, {type:"say"|"act", text}, {type:"join", room},
 * {type:"part", room|null}, {type:"nick", nick}, {type:"msg", to, text},
 * {type:"topic", topic: undefined (show) | null (clear) | string}, {type:"who", room|null},
 * {type:"rooms"}, {type:"history", limit|null}, {type:"help"}, {type:"quit", reason|null},
 * {type:"register", password, code|null}, {type:"password", old, new}, {type:"logout"},
 * {type:"mod", request, inRoom} (a moderation request; the room shown is added when inRoom),
 * {type:"settings"} (show the room's settings), {type:"away", message|null} (null: back).
 */
export function parseInput(line) {
  if (line.trim() === "") return { type: "empty" };
  if (line.startsWith("//")) return { type: "say", text: line.slice(1) };
  if (!line.startsWith("/")) return { type: "say", text: line };

  const [word, rest] = firstWord(line.slice(1));
  const name = word.toLowerCase();
  const args = rest.trim();
  switch (name) {
    case "join": {
      const [room] = firstWord(args);
      return room ? { type: "join", room } : usage("join");
    }
    case "part": {
      const [room] = firstWord(args);
      return { type: "part", room: room || null };
    }
    case "nick": {
      const [nick] = firstWord(args);
      return nick ? { type: "nick", nick } : usage("nick");
    }
    case "me":
      return args ? { type: "act", text: rest } : usage("me");
    case "msg": {
      const [to, text] = firstWord(args);
      return to && text.trim() ? { type: "msg", to, text } : usage("msg");
    }
    case "topic":
      if (!args) return { type: "topic", topic: undefined };
      return { type: "topic", topic: args === "-" ? null : args };
    case "who": {
      const [room] = firstWord(args);
      return { type: "who", room: room || null };
    }
    case "rooms":
      return { type: "rooms" };
    case "history": {
      if (!args) return { type: "history", limit: null };
      if (!/^[0-9]+$/.test(args) || Number(args) < 1) return usage("history");
      return { type: "history", limit: Number(args) };
    }
    case "say":
      return rest.trim() ? { type: "say", text: rest } : usage("say");
    case "register": {
      const words = args.split(/ +/).filter(Boolean);
      if (words.length < 1 || words.length > 2) return usage("register");
      return { type: "register", password: words[0], code: words[1] || null };
    }
    case "password": {
      const words = args.split(/ +/).filter(Boolean);
      return words.length === 2 ? { type: "password", old: words[0], new: words[1] } : usage("password");
    }
    case "logout":
      return { type: "logout" };
    case "kick":
    case "kill": {
      const [nick, reason] = firstWord(args);
      if (!nick) return usage(name);
      const request = { type: name, nick };
      if (reason.trim()) request.reason = reason.trim();
      return { type: "mod", request, inRoom: name === "kick" };
    }
    case "suspend": {
      const request = nickDurationReason(name, args);
      return request ? { type: "mod", request, inRoom: false } : usage(name);
    }
    case "unsuspend": {
      const [nick] = firstWord(args);
      return nick ? { type: "mod", request: { type: "suspend", nick, on: false }, inRoom: false } : usage(name);
    }
    case "lockdown":
      return /^(on|off)$/i.test(args) ? { type: "mod", request: { type: "lockdown", on: args.toLowerCase() === "on" }, inRoom: false } : usage(name);
    case "whois": {
      const [nick] = firstWord(args);
      return nick ? { type: "mod", request: { type: "whois", nick }, inRoom: false } : usage(name);
    }
    case "ban":
    case "mute": {
      const request = nickDurationReason(name, args);
      return request ? { type: "mod", request, inRoom: true } : usage(name);
    }
    case "unban":
    case "unmute":
    case "remove":
    case "invite": {
      const [nick] = firstWord(args);
      return nick ? { type: "mod", request: { type: name, nick }, inRoom: true } : usage(name);
    }
    case "op":
    case "deop":
    case "voice":
    case "devoice":
    case "owner": {
      const [nick] = firstWord(args);
      if (!nick) return usage(name);
      const role = name.replace(/^de/, "");
      return { type: "mod", request: { type: "role", nick, role, on: !name.startsWith("de") }, inRoom: true };
    }
    case "bans":
    case "mutes":
      return { type: "mod", request: { type: "sanctions", kind: name.slice(0, -1) }, inRoom: true };
    case "set": {
      if (!args) return { type: "settings" };
      const words = args.split(/ +/);
      if (words.length !== 2 || !/^(on|off)$/i.test(words[1])) return usage("set");
      return { type: "mod", request: { type: "set", setting: words[0].toLowerCase(), on: words[1].toLowerCase() === "on" }, inRoom: true };
    }
    case "announce":
      return args ? { type: "mod", request: { type: "announce", text: rest }, inRoom: false } : usage("announce");
    case "away":
      return { type: "away", message: args || null };
    case "help":
      return { type: "help" };
    case "quit":
      return { type: "quit", reason: args || null };
    default:
      return { type: "error", message: `unknown command /${word} (try /help)` };
  }
}
