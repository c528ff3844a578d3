"""
The events the core delivers to members: small immutable records, one class per kind of thing that
happens, rendered by each door in its own format.
"""

from __future__ import annotations

from typing import ClassVar, Union

from attrs import field, frozen

__all__ = [
    "Acted",
    "Event",
    "Joined",
    "JoinsAndLeaves",
    "Left",
    "Moderated",
    "Renamed",
    "Said",
    "TopicChanged",
    "Whispered",
    "describeSpan",
]


# Events: small immutable records delivered to members. cache_hash because a front-end may look
# the same event up once per recipient (see chatsvc.line.protocol's renderer).
#
# Every event also carries, as keywords, the id and the time the hub gave it (see
# chatsvc.chat.ids.EventIds): a door that shows them (the browser's) has them, and two events
# that say the same thing compare equal whatever their ids, as tests compare them.


@frozen(cache_hash=True)
class Joined:
    """C{nick} joined C{room}."""

    room: str
    nick: str
    id: int = field(default=0, eq=False, kw_only=True)
    """The event's id: events of a room are ordered by it (L{chatsvc.chat.ids.EventIds})."""
    time: float = field(default=0.0, eq=False, kw_only=True)
    """When it happened, in POSIX seconds."""


@frozen(cache_hash=True)
class Left:
    """C{nick} left C{room}; C{reason} is what they or the server gave, if anything."""

    room: str
    nick: str
    reason: str | None = None
    id: int = field(default=0, eq=False, kw_only=True)
    """The event's id: events of a room are ordered by it (L{chatsvc.chat.ids.EventIds})."""
    time: float = field(default=0.0, eq=False, kw_only=True)
    """When it happened, in POSIX seconds."""


@frozen(cache_hash=True)
class Said:
    """C{nick} said C{text} in C{room}."""

    room: str
    nick: str
    text: str
    id: int = field(default=0, eq=False, kw_only=True)
    """The event's id: events of a room are ordered by it (L{chatsvc.chat.ids.EventIds})."""
    time: float = field(default=0.0, eq=False, kw_only=True)
    """When it happened, in POSIX seconds."""


@frozen(cache_hash=True)
class Acted:
    """C{nick} did C{action} (C{/me}) in C{room}; shown as C{* nick action}."""

    room: str
    nick: str
    action: str
    id: int = field(default=0, eq=False, kw_only=True)
    """The event's id: events of a room are ordered by it (L{chatsvc.chat.ids.EventIds})."""
    time: float = field(default=0.0, eq=False, kw_only=True)
    """When it happened, in POSIX seconds."""


@frozen(cache_hash=True)
class TopicChanged:
    """C{nick} set the topic of C{room} to C{topic} (L{None}: cleared it)."""

    room: str
    nick: str
    topic: str | None
    id: int = field(default=0, eq=False, kw_only=True)
    """The event's id: events of a room are ordered by it (L{chatsvc.chat.ids.EventIds})."""
    time: float = field(default=0.0, eq=False, kw_only=True)
    """When it happened, in POSIX seconds."""


@frozen(cache_hash=True)
class Renamed:
    """The member called C{old} is now called C{new}. Not tied to a room: each sees it once."""

    room: ClassVar[None] = None
    """Not tied to a room."""

    old: str
    new: str
    id: int = field(default=0, eq=False, kw_only=True)
    """The event's id: events of a room are ordered by it (L{chatsvc.chat.ids.EventIds})."""
    time: float = field(default=0.0, eq=False, kw_only=True)
    """When it happened, in POSIX seconds."""


@frozen(cache_hash=True)
class Whispered:
    """C{sender} said C{text} to C{recipient} alone."""

    room: ClassVar[None] = None
    """Not tied to a room."""

    sender: str
    recipient: str
    text: str
    id: int = field(default=0, eq=False, kw_only=True)
    """The event's id: events of a room are ordered by it (L{chatsvc.chat.ids.EventIds})."""
    time: float = field(default=0.0, eq=False, kw_only=True)
    """When it happened, in POSIX seconds."""


@frozen(cache_hash=True)
class JoinsAndLeaves:
    """
    What happened to the membership of a crowded C{room} since its last announcement: C{runs}
    of joins (C{True}) and leaves (C{False}), in the order they happened, each with the
    nicknames concerned; of which the first C{since} (counting names from the start) happened
    before the recipient joined, and are not for it (see L{shown}).

    Every member of the room is handed the same C{runs}, so that a front-end can render them
    once for all, however many joined in the interval.
    """

    room: str
    runs: tuple[tuple[bool, tuple[str, ...]], ...]
    since: int = 0
    id: int = field(default=0, eq=False, kw_only=True)
    """The event's id: events of a room are ordered by it (L{chatsvc.chat.ids.EventIds})."""
    time: float = field(default=0.0, eq=False, kw_only=True)
    """When it happened, in POSIX seconds."""

    def shown(self) -> tuple[tuple[bool, tuple[str, ...]], ...]:
        """The runs the recipient is told of: those after the first C{since} names."""
        skip = self.since
        for index, (joined, nicks) in enumerate(self.runs):
            if skip < len(nicks):
                return ((joined, nicks[skip:]),) + self.runs[index + 1 :] if skip else self.runs[index:]
            skip -= len(nicks)
        return ()


@frozen(cache_hash=True)
class Moderated:
    """
    A moderator (C{by}) did C{action} in C{room} (L{None}: server-wide, as an announcement):
    to the member C{target}, for C{reason}, until C{until} (POSIX time; L{None}: until lifted),
    or (C{set}) turned the room's C{setting} C{on} or off; C{text} for an announcement.

    Actions: C{kick}, C{ban}, C{unban}, C{mute}, C{unmute}, C{op}, C{deop}, C{voice},
    C{devoice}, C{owner}, C{set}, C{invite}, C{announce}, C{kill}, C{suspend},
    C{unsuspend}, C{lockdown} (with C{on}). L{describe} says what happened in words every door
    may show.
    """

    room: str | None
    action: str
    by: str
    target: str | None = None
    reason: str | None = None
    until: float | None = None
    setting: str | None = None
    on: bool | None = None
    text: str | None = None
    message: int | None = None
    """The id of the message removed (C{remove})."""
    id: int = field(default=0, eq=False, kw_only=True)
    """The event's id: events of a room are ordered by it (L{chatsvc.chat.ids.EventIds})."""
    time: float = field(default=0.0, eq=False, kw_only=True)
    """When it happened, in POSIX seconds."""

    def describe(self) -> str:
        """What happened, as one sentence (without the room's name)."""
        why = f" ({self.reason})" if self.reason else ""
        span = "" if self.until is None else f" for {describeSpan(self.until - self.time)}"
        target, by = self.target, self.by
        match self.action:
            case "kick":
                return f"{target} was kicked by {by}{why}"
            case "ban":
                return f"{target} was banned by {by}{span}{why}"
            case "unban":
                return f"{target} was unbanned by {by}"
            case "mute":
                return f"{target} was muted by {by}{span}{why}"
            case "unmute":
                return f"{target} was unmuted by {by}"
            case "op" | "voice" | "owner":
                title = {"op": "an operator", "voice": "voiced", "owner": "the owner"}[self.action]
                return f"{target} is now {title} (by {by})"
            case "deop" | "devoice":
                title = {"deop": "an operator", "devoice": "voiced"}[self.action]
                return f"{target} is no longer {title} (by {by})"
            case "set":
                return f"{by} turned {self.setting} {'on' if self.on else 'off'}"
            case "invite":
                return f"{by} invited {target}"
            case "announce":
                return f"Announcement from {by}: {self.text}"
            case "kill":
                return f"{target} was disconnected by {by}{why}"
            case "remove":
                return f"{by} removed a message by {target}"
            case "suspend":
                return f"{target}'s account was suspended by {by}{span}{why}"
            case "unsuspend":
                return f"{target}'s account is no longer suspended (by {by})"
            case "lockdown" if self.on:
                return f"{by} turned lockdown on: no new registrations, and only registered members may come in"
            case "lockdown":
                return f"{by} turned lockdown off"
            case _:
                return f"{by}: {self.action} {target or ''}".rstrip()


def describeSpan(seconds: float) -> str:
    """A duration as people say it: C{9 minutes}, C{2 hours}, C{7 days}."""
    # To the second first: a span measured between two readings of the clock is a hair short.
    # A unit is used once the next smaller one would round up to it: 3,599 seconds is "1 hour",
    # not "60 minutes".
    seconds = max(0, round(seconds))
    units = (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1))
    for (unit, size), (_, smaller) in zip(units, units[1:]):
        if seconds >= size or round(seconds / smaller) * smaller >= size:
            count = max(1, round(seconds / size))
            return f"{count} {unit}{'' if count == 1 else 's'}"
    count = max(1, round(seconds))
    return f"{count} second{'' if count == 1 else 's'}"


Event = Union[
    Joined, Left, Said, Acted, TopicChanged, Renamed, Whispered, JoinsAndLeaves, Moderated
]
"""Everything the core can deliver to a member."""
