"""
The chat core: rooms, members, nicknames, and the events a room sends to its members.

Plain Python: nothing here knows about bytes, transports, reactors or wire formats. A front-end (the
line protocol today) turns what a person typed into calls on a L{Room}, and turns the events the
room delivers back into its own format. Every rule lives here once, so every front-end gets it.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from typing import Union

from attrs import frozen
import structlog
from zope.interface import Interface

from chatsvc.text import neutralize

__all__ = [
    "Acted",
    "ChatError",
    "Event",
    "IMember",
    "Joined",
    "Left",
    "MAX_NICK_LENGTH",
    "QUIT_WORDS",
    "Renamed",
    "Room",
    "Said",
    "Whispered",
    "nick_key",
    "validate_nick",
]

MAX_NICK_LENGTH = 32
"""The longest nickname, in characters."""

QUIT_WORDS = frozenset({"q", "exit", "close", "disconnect"})
"""Lines that end a session, kept from the original chat room; never valid as nicknames."""

_log = structlog.get_logger("chatsvc.core")

_RESERVED_FIRST = "/*#@"
_FORBIDDEN_CHARACTERS = ":,"


class ChatError(Exception):
    """
    A member asked for something that cannot be done.

    The message (C{str(error)}) is written for that member and is safe to show them; front-ends
    send it back as one error line and carry on.
    """


# Events: small immutable records a room delivers to its members. cache_hash because a front-end
# may look the same event up once per recipient (see chatsvc.protocol's renderer).


@frozen(cache_hash=True)
class Joined:
    """C{nick} joined the room."""

    nick: str


@frozen(cache_hash=True)
class Left:
    """C{nick} left the room; C{reason} is what they or the server gave, if anything."""

    nick: str
    reason: str | None = None


@frozen(cache_hash=True)
class Said:
    """C{nick} said C{text} to the room."""

    nick: str
    text: str


@frozen(cache_hash=True)
class Acted:
    """C{nick} did C{action} (C{/me}); shown as C{* nick action}."""

    nick: str
    action: str


@frozen(cache_hash=True)
class Renamed:
    """The member called C{old} is now called C{new}."""

    old: str
    new: str


@frozen(cache_hash=True)
class Whispered:
    """C{sender} said C{text} to C{recipient} alone."""

    sender: str
    recipient: str
    text: str


Event = Union[Joined, Left, Said, Acted, Renamed, Whispered]
"""Everything a room can deliver to a member."""


class IMember(Interface):
    """
    Anything that can be in a room: a connection, a test double, a bridge to another server.
    """

    def deliver(event: Event) -> None:
        """
        Take one event from a room. Must not raise for ordinary trouble (a closed connection); a
        room isolates its other members from an exception here anyway.
        """


def nick_key(nick: str) -> str:
    """
    The form in which nicknames are compared: Unicode compatibility-normalized and case-folded,
    so C{Alice}, C{ALICE} and fullwidth C{Ａｌｉｃｅ} are the same name.
    """
    # Normalized again after folding: folding can undo a composition (U+0390 folds to three
    # code points, while the folded capital form composes to two).
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", nick).casefold())


def _forbidden_character(character: str) -> bool:
    return (
        character.isspace()
        or unicodedata.category(character) in {"Cc", "Cf", "Cs", "Zs", "Zl", "Zp"}
        or character in _FORBIDDEN_CHARACTERS
    )


def validate_nick(raw: str) -> str:
    """
    Check a requested nickname and return it as it will be used (trimmed, NFC-normalized).

    @raise ChatError: with a message saying what is wrong with it.
    """
    nick = unicodedata.normalize("NFC", raw.strip())
    if not nick:
        raise ChatError("a nickname may not be empty")
    if len(nick) > MAX_NICK_LENGTH:
        raise ChatError(f"a nickname may be at most {MAX_NICK_LENGTH} characters long")
    if any(character.isspace() for character in nick):
        raise ChatError("a nickname may not contain spaces")
    if any(_forbidden_character(character) for character in nick):
        raise ChatError(
            "a nickname may not contain control or formatting characters, ':' or ','"
        )
    if nick[0] in _RESERVED_FIRST:
        raise ChatError(f"a nickname may not start with {nick[0]!r}")
    if nick.lower() in QUIT_WORDS:
        raise ChatError(f"{nick!r} is a quit word and cannot be a nickname")
    return nick


def _clean_text(text: str, what: str) -> str:
    if not text.strip():
        raise ChatError(f"{what} may not be empty")
    return neutralize(text)


class Room:
    """
    A set of members with unique nicknames, and the rules for what they say to each other.

    Each operation checks its arguments (raising L{ChatError}), then delivers one event to the
    members concerned. A member that raises from C{deliver} does not keep the event from the
    others: the failure goes to C{onDeliveryError}.
    """

    def __init__(self, name: str = "lobby") -> None:
        """
        @param name: the room's name, as members see it.
        """
        self.name = name
        self._byKey: dict[str, IMember] = {}
        self._nicks: dict[IMember, str] = {}
        # Snapshot of the members for broadcasting; rebuilt only when membership changes, so
        # a broadcast neither copies the member list nor trips over a member leaving mid-loop.
        self._recipients: tuple[IMember, ...] = ()

    def __len__(self) -> int:
        """The number of members."""
        return len(self._nicks)

    def __contains__(self, member: object) -> bool:
        """Whether C{member} is in the room."""
        return member in self._nicks

    def nicks(self) -> list[str]:
        """The members' nicknames, sorted case-insensitively."""
        return sorted(self._nicks.values(), key=nick_key)

    def nickOf(self, member: IMember) -> str:
        """
        The nickname of C{member}.

        @raise KeyError: if C{member} is not in the room.
        """
        return self._nicks[member]

    def memberNamed(self, nick: str) -> IMember | None:
        """The member whose nickname matches C{nick} case-insensitively, if any."""
        return self._byKey.get(nick_key(nick))

    def join(self, member: IMember, nick: str) -> str:
        """
        Add C{member} as C{nick} and tell everyone else (C{Joined}).

        @return: the nickname as it will be shown.
        @raise ChatError: if the nickname is invalid or in use.
        """
        if member in self._nicks:
            raise ChatError("you are already in the room")
        nick = validate_nick(nick)
        key = nick_key(nick)
        if key in self._byKey:
            raise ChatError(f"nickname {nick!r} is already in use")
        self._byKey[key] = member
        self._nicks[member] = nick
        self._membershipChanged()
        self._broadcast(Joined(nick), exclude=member)
        return nick

    def leave(self, member: IMember, reason: str | None = None) -> bool:
        """
        Remove C{member} and tell the others (C{Left}). Leaving twice is harmless.

        @return: whether C{member} was in the room.
        """
        nick = self._nicks.pop(member, None)
        if nick is None:
            return False
        del self._byKey[nick_key(nick)]
        self._membershipChanged()
        if reason is not None:
            reason = neutralize(reason.strip()) or None
        self._broadcast(Left(nick, reason))
        return True

    def say(self, member: IMember, text: str) -> None:
        """Send C{text} from C{member} to every other member (C{Said})."""
        nick = self._nicks[member]
        self._broadcast(Said(nick, _clean_text(text, "a message")), exclude=member)

    def act(self, member: IMember, action: str) -> None:
        """Send an action of C{member} to every other member (C{Acted})."""
        nick = self._nicks[member]
        self._broadcast(Acted(nick, _clean_text(action, "an action")), exclude=member)

    def rename(self, member: IMember, newNick: str) -> str:
        """
        Rename C{member} and tell everyone, C{member} included (C{Renamed}). A change of case
        only is allowed.

        @return: the new nickname as it will be shown.
        @raise ChatError: if the nickname is invalid, in use, or already C{member}'s.
        """
        old = self._nicks[member]
        new = validate_nick(newNick)
        if new == old:
            raise ChatError(f"you are already called {old}")
        oldKey, newKey = nick_key(old), nick_key(new)
        if newKey != oldKey and newKey in self._byKey:
            raise ChatError(f"nickname {new!r} is already in use")
        del self._byKey[oldKey]
        self._byKey[newKey] = member
        self._nicks[member] = new
        self._broadcast(Renamed(old, new))
        return new

    def whisper(self, member: IMember, recipientNick: str, text: str) -> Whispered:
        """
        Send C{text} from C{member} to the member called C{recipientNick} alone (C{Whispered}).

        @return: the event as delivered, for the sender's receipt.
        @raise ChatError: if there is no such member or nothing to send.
        """
        sender = self._nicks[member]
        recipient = self.memberNamed(recipientNick)
        if recipient is None:
            raise ChatError(f"no such member: {neutralize(recipientNick)}")
        recipientName = self._nicks[recipient]
        event = Whispered(sender, recipientName, _clean_text(text, "a message"))
        self._deliverTo(recipient, event)
        return event

    def onDeliveryError(self, member: IMember, event: Event, error: Exception) -> None:
        """
        Called when C{member.deliver(event)} raised C{error}. By default the failure is logged;
        the member stays, since its front-end is the one to decide that it is gone.
        """
        _log.error(
            "delivery_failed",
            room=self.name,
            nick=self._nicks.get(member),
            kind=type(event).__name__,
            exc_info=error,
        )

    def _membershipChanged(self) -> None:
        self._recipients = tuple(self._nicks)

    def _deliverTo(self, member: IMember, event: Event) -> None:
        try:
            member.deliver(event)
        except Exception as error:
            self.onDeliveryError(member, event, error)

    def _broadcast(self, event: Event, exclude: IMember | None = None) -> None:
        for member in self._recipients:
            if member is not exclude:
                self._deliverTo(member, event)

    def members(self) -> Iterable[IMember]:
        """The members, in the order they joined."""
        return self._recipients

