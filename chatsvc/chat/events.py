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
    "Renamed",
    "Said",
    "TopicChanged",
    "Whispered",
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


Event = Union[Joined, Left, Said, Acted, TopicChanged, Renamed, Whispered, JoinsAndLeaves]
"""Everything the core can deliver to a member."""
