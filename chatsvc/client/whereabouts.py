"""
Where the member is, as the client learns it from the server's lines: the nickname (renames
included), the rooms joined and the one talked in, and the account's password once it is known.
After a dropped connection, this is what the client takes back: L{Whereabouts.rejoin} says which
lines put a new connection where the old one was.

It reads the line door's notices (docs/protocol.md lists them); a test drives a real server
through every one of them, so that the two cannot drift apart unseen.
"""

from __future__ import annotations

import re

__all__ = ["Whereabouts"]

_JOINED = re.compile(r"^\*\*\* You joined (?P<room>\S+?)(?P<elsewhere> from another connection)?(?:; now talking there)?$")
_TALKING = re.compile(r"^\*\*\* Now talking in (?P<room>\S+)$")
_LEFT = re.compile(
    r"^\*\*\* You (?:left|are out of) (?P<room>\S+?)(?: from another connection)?; "
    r"(?:now talking in (?P<now>\S+)|you are in no room now.*)$"
)
_WELCOME = re.compile(
    r"^\*\*\* Type /help for commands, /quit to leave; "
    r"(?:you are talking in (?P<room>\S+)\.|you are in no room \(/join one\)\.?)$"
)
_ATTACHED = re.compile(r"^\*\*\* You are logged in from \d+ connections; your rooms: (?P<rooms>.*)$")
_RENAMED = re.compile(r"^\*\*\* (?P<old>\S+) is now known as (?P<new>\S+)$")
_REGISTERED = re.compile(r"^\*\*\* (?P<nick>\S+) is registered: nobody else may use it")
_PASSWORD_CHANGED = "*** Your password is changed."


class Whereabouts:
    """
    The member's nickname, rooms and password, kept up to date from the server's lines.

    @ivar nick: the nickname, as the server last named it.
    @ivar rooms: the rooms joined, in the order they were joined.
    @ivar current: the room talked in, or L{None}.
    @ivar password: the account's password, once given or set; L{None} for a guest.
    @ivar welcomed: whether this connection's welcome has arrived (the rooms are known).
    @ivar attached: whether this connection joined an account already connected elsewhere
        (it is then where the account's other connections are).
    """

    def __init__(self, nick: str, password: str | None = None) -> None:
        self.nick = nick
        self.password = password
        self.rooms: list[str] = []
        self.current: str | None = None
        self.welcomed = False
        self.attached = False
        self._pending: str | None = None

    def typed(self, line: str) -> None:
        """
        A line the member sends: a new password (C{/register}, C{/password}) is held until the
        server says it took it.
        """
        command, _, argument = line.partition(" ")
        words = argument.split()
        if command.lower() == "/register" and 1 <= len(words) <= 2:
            self._pending = words[0]
        elif command.lower() == "/password" and len(words) == 2:
            self._pending = words[1]

    def learn(self, text: str) -> bool:
        """
        Learn from one line the server sent; whether the room talked in (or the nickname)
        changed with it.
        """
        if not text.startswith("*** "):
            return False
        if (match := _WELCOME.match(text)) is not None:
            room = match.group("room")
            if not self.attached:
                self.rooms = [room] if room else []
            self.current = room
            self.welcomed = True
            return True
        if (match := _ATTACHED.match(text)) is not None and not self.welcomed:
            names = match.group("rooms")
            self.rooms = [] if names == "none" else names.split(", ")
            self.attached = True
            return False
        if (match := _JOINED.match(text)) is not None:
            room = match.group("room")
            self._add(room)
            if text.endswith("now talking there"):
                self.current = room
                return True
            return False
        if (match := _TALKING.match(text)) is not None:
            self._add(match.group("room"))
            self.current = match.group("room")
            return True
        if (match := _LEFT.match(text)) is not None:
            self._remove(match.group("room"))
            self.current = match.group("now")
            return True
        if (match := _RENAMED.match(text)) is not None:
            if match.group("old").casefold() == self.nick.casefold():
                self.nick = match.group("new")
                return True
            return False
        if (match := _REGISTERED.match(text)) is not None:
            if match.group("nick").casefold() == self.nick.casefold() and self._pending:
                self.password, self._pending = self._pending, None
            return False
        if text == _PASSWORD_CHANGED and self._pending:
            self.password, self._pending = self._pending, None
        return False

    def rejoin(self, now: Whereabouts) -> list[str]:
        """
        The lines that take a new connection, welcomed at C{now}, back to where this one was:
        a C{/join} for each room it is not in yet, in the order they were joined, a C{/part}
        for each room it should not be in, and a C{/join} of the room talked in, last. None
        when the account is connected elsewhere too: its rooms are where it is now.
        """
        if now.attached:
            return []
        lines = []
        have = {room.casefold() for room in now.rooms}
        want = {room.casefold() for room in self.rooms}
        lines += [f"/join {room}" for room in self.rooms if room.casefold() not in have]
        lines += [f"/part {room}" for room in now.rooms if room.casefold() not in want]
        if self.current is not None:
            last = lines[-1] if lines else f"/join {now.current}"
            if last.casefold() != f"/join {self.current}".casefold():
                lines.append(f"/join {self.current}")
        return lines

    def _add(self, room: str) -> None:
        if all(room.casefold() != known.casefold() for known in self.rooms):
            self.rooms.append(room)

    def _remove(self, room: str) -> None:
        self.rooms = [known for known in self.rooms if known.casefold() != room.casefold()]
