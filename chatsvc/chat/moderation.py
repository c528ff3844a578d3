"""
Moderation: who may do what in a room, and what stops whom.

- Roles, kept per account: server admins (made from the command line, C{chatsvc-admin}); a
  room's owner (the registered member who created it, or one an admin names); its operators
  and voiced members (named by the owner or an operator). L{Moderation.role} says what a member
  is in a room, the highest first: C{admin}, C{owner}, C{op}, C{voice}, or nothing.
- Sanctions, per room: bans (no joining) and mutes (no speaking), on an account (across
  renames, reconnections and new addresses), or on a guest's nickname and address; each until
  a time, or until lifted. Expired ones are simply no longer found.
- Room settings: C{private} (join by invitation only, hidden from the room list of non-members),
  C{moderated} (only voiced members and operators speak), C{topiclock} (only operators set the
  topic), C{registered} (guests may not join).

What is kept, and where, is the store's (L{IModerationStore}): every change is written through
(the hub does not wait for it, and a failure is logged), and everything is read once at
startup (L{Moderation.load}) and kept at hand, since it is asked on every join and every line.
The hub (L{chatsvc.chat.hub.Hub}) applies these rules; this module only keeps them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Literal

import structlog
from attrs import define, field, frozen
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from zope.interface import Interface, implementer

from chatsvc.chat.errors import ChatError

__all__ = [
    "AuditEntry",
    "IModerationStore",
    "MemoryModerationStore",
    "Moderation",
    "ROLES",
    "ROOM_SETTINGS",
    "RoomSettings",
    "Sanction",
    "parseDuration",
]

ROLES = ("admin", "owner", "op", "voice")
"""Roles, the highest first."""

_RANK = {"admin": 4, "owner": 3, "op": 2, "voice": 1, None: 0}

ROOM_SETTINGS = ("private", "moderated", "topiclock", "registered")

MAX_DURATION = 366 * 86400
"""The longest ban or mute with a duration: a year (a longer one is given with none)."""

_log = structlog.get_logger("chatsvc.moderation")

Role = Literal["admin", "owner", "op", "voice"]


def rank(role: str | None) -> int:
    """How high C{role} is: 0 for none."""
    return _RANK[role]


def parseDuration(text: str) -> float:
    """
    Seconds, from a duration as moderators write one: C{30s}, C{10m}, C{2h}, C{7d}, C{1w}.

    @raise ChatError: if it is not one, or longer than a year.
    """
    match = re.fullmatch(r"([0-9]{1,6})([smhdw])", text.strip().lower())
    if match is None:
        raise ChatError(f"not a duration: {text!r} (write 30s, 10m, 2h, 7d or 1w)")
    seconds = int(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[match.group(2)]
    if not 0 < seconds <= MAX_DURATION:
        raise ChatError("a duration is from 1 second to a year (for longer, give none: until lifted)")
    return float(seconds)


@frozen
class Sanction:
    """
    A ban or a mute in the room C{roomKey}: on the account C{account} (its key), or on a guest's
    nickname key C{nick} and address C{host}; until C{until} (L{None}: until lifted).
    """

    kind: Literal["ban", "mute"]
    roomKey: str
    target: str
    """The nickname it was given to, as shown then."""
    account: str | None
    nick: str | None
    host: str | None
    until: float | None
    reason: str | None
    by: str
    created: float

    def applies(self, account: str | None, nick: str, host: str | None, now: float) -> bool:
        """Whether it holds, at C{now}, for a member with this account (key), nickname key and address."""
        if self.until is not None and self.until <= now:
            return False
        if self.account is not None:
            return account == self.account
        # A guest's: its nickname, and (for guests) its address.
        return nick == self.nick or (account is None and host is not None and host == self.host)


@define
class RoomSettings:
    """A room's owner, settings and roles (by account key), as kept across restarts."""

    key: str
    name: str
    owner: str | None = None
    private: bool = False
    moderated: bool = False
    topiclock: bool = False
    registered: bool = False
    roles: dict[str, str] = field(factory=dict)
    """Account key: C{op} or C{voice}."""
    topic: str | None = None
    """The room's topic, kept across restarts (L{None}: none)."""


@frozen
class AuditEntry:
    """One moderation action, as the audit keeps it: who did what to whom, where and why."""

    time: float
    actor: str
    action: str
    room: str | None
    target: str | None
    detail: str | None


class IModerationStore(Interface):
    """Where roles, settings, sanctions and the audit are kept."""

    def loadModeration() -> Deferred[tuple[set[str], list[RoomSettings], list[Sanction]]]:
        """The admins (account keys), every room's settings, and the sanctions in force."""

    def admins() -> Deferred[set[str]]:
        """The admins as kept now (the admin tool may have changed them while the server runs)."""

    def saveRoom(settings: RoomSettings) -> Deferred[None]:
        """Keep a room's settings and roles, replacing what was kept."""

    def addSanction(sanction: Sanction) -> Deferred[None]:
        """Keep a sanction, replacing one of the same kind on the same target in that room."""

    def removeSanction(kind: str, roomKey: str, account: str | None, nick: str | None) -> Deferred[None]:
        """Forget a sanction."""

    def audit(entry: AuditEntry) -> Deferred[None]:
        """Keep an entry of the audit."""


@implementer(IModerationStore)
class MemoryModerationStore:
    """Keeps it all in memory, answering at once: a server that keeps no files."""

    def __init__(self) -> None:
        self.adminKeys: set[str] = set()
        self.rooms: dict[str, RoomSettings] = {}
        self.sanctions: list[Sanction] = []
        self.entries: list[AuditEntry] = []

    def loadModeration(self) -> Deferred[tuple[set[str], list[RoomSettings], list[Sanction]]]:
        return succeed((set(self.adminKeys), list(self.rooms.values()), list(self.sanctions)))

    def admins(self) -> Deferred[set[str]]:
        return succeed(set(self.adminKeys))

    def saveRoom(self, settings: RoomSettings) -> Deferred[None]:
        self.rooms[settings.key] = settings
        return succeed(None)

    def addSanction(self, sanction: Sanction) -> Deferred[None]:
        self.sanctions = [s for s in self.sanctions if not _same(s, sanction.kind, sanction.roomKey, sanction.account, sanction.nick)]
        self.sanctions.append(sanction)
        return succeed(None)

    def removeSanction(self, kind: str, roomKey: str, account: str | None, nick: str | None) -> Deferred[None]:
        self.sanctions = [s for s in self.sanctions if not _same(s, kind, roomKey, account, nick)]
        return succeed(None)

    def audit(self, entry: AuditEntry) -> Deferred[None]:
        self.entries.append(entry)
        return succeed(None)


def _same(sanction: Sanction, kind: str, roomKey: str, account: str | None, nick: str | None) -> bool:
    return (
        sanction.kind == kind
        and sanction.roomKey == roomKey
        and sanction.account == account
        and (account is not None or sanction.nick == nick)
    )


class Moderation:
    """
    The roles, settings and sanctions of a server, kept at hand (see the module's
    description), with every change written through to the store.
    """

    def __init__(self, clock: IReactorTime, store: IModerationStore | None = None) -> None:
        self.clock = clock
        self.store: IModerationStore = store if store is not None else MemoryModerationStore()
        self.adminKeys: set[str] = set()
        self._rooms: dict[str, RoomSettings] = {}
        # By room key: a room without any costs its members' every line one dictionary look-up.
        self._sanctions: dict[str, list[Sanction]] = {}

    def load(self) -> Deferred[None]:
        """Read everything from the store (at startup, before anyone connects)."""

        def keep(loaded: tuple[set[str], list[RoomSettings], list[Sanction]]) -> None:
            admins, rooms, sanctions = loaded
            self.adminKeys = set(admins)
            self._rooms = {room.key: room for room in rooms}
            self._sanctions = {}
            for sanction in sanctions:
                self._sanctions.setdefault(sanction.roomKey, []).append(sanction)

        return self.store.loadModeration().addCallback(keep)

    def refreshAdmins(self) -> Deferred[set[str]]:
        """The admins as kept now, remembered (an admin's command asks before it is obeyed)."""

        def keep(admins: set[str]) -> set[str]:
            self.adminKeys = set(admins)
            return self.adminKeys

        return self.store.admins().addCallback(keep)

    def _written(self, written: Deferred[None], what: str) -> None:
        def failed(failure: Failure) -> None:
            _log.error("moderation_store_failed", what=what, reason=failure.getErrorMessage())

        written.addErrback(failed)

    # Rooms

    def settings(self, key: str) -> RoomSettings | None:
        """A room's settings, if it has any kept (an owner, a setting or a role)."""
        return self._rooms.get(key)

    def settingsFor(self, key: str, name: str) -> RoomSettings:
        """A room's settings, made if it has none yet."""
        settings = self._rooms.get(key)
        if settings is None:
            settings = self._rooms[key] = RoomSettings(key, name)
        return settings

    def topics(self) -> dict[str, tuple[str, str]]:
        """The rooms that have a topic kept: by room key, the room's name and its topic."""
        return {
            key: (settings.name, settings.topic)
            for key, settings in self._rooms.items()
            if settings.topic is not None
        }

    def saveRoom(self, settings: RoomSettings) -> None:
        """Keep what changed of a room's settings."""
        self._written(self.store.saveRoom(settings), "room")

    def rememberRoom(self, settings: RoomSettings) -> None:
        """A room's settings as another node of a cluster kept them (in the store already)."""
        self._rooms[settings.key] = settings

    def role(self, account: str | None, roomKey: str) -> Role | None:
        """What the account C{account} (its key; None for a guest) is in the room, if anything."""
        if account is None:
            return None
        if account in self.adminKeys:
            return "admin"
        settings = self._rooms.get(roomKey)
        if settings is None:
            return None
        if settings.owner == account:
            return "owner"
        return settings.roles.get(account)  # type: ignore[return-value]

    # Sanctions

    def sanction(
        self, kind: str, roomKey: str, account: str | None, nick: str, host: str | None
    ) -> Sanction | None:
        """The ban or mute (C{kind}) that holds now for such a member in that room, if any."""
        sanctions = self._sanctions.get(roomKey)
        if not sanctions:
            return None
        now = self.clock.seconds()
        for sanction in sanctions:
            if sanction.kind == kind and sanction.applies(account, nick, host, now):
                return sanction
        return None

    def impose(self, sanction: Sanction) -> None:
        """Keep a sanction (replacing the same kind on the same target in that room)."""
        self.remember(sanction)
        self._written(self.store.addSanction(sanction), "sanction")

    def remember(self, sanction: Sanction) -> None:
        """L{impose}, but kept at hand only: another node of a cluster stored it."""
        kept = [
            s for s in self._sanctions.get(sanction.roomKey, [])
            if not _same(s, sanction.kind, sanction.roomKey, sanction.account, sanction.nick)
        ]
        self._sanctions[sanction.roomKey] = [*kept, sanction]

    def lift(self, kind: str, roomKey: str, account: str | None, nick: str | None) -> bool:
        """Lift a sanction; whether one was in force."""
        inForce = self.forget(kind, roomKey, account, nick)
        self._written(self.store.removeSanction(kind, roomKey, account, nick), "sanction")
        return inForce

    def forget(self, kind: str, roomKey: str, account: str | None, nick: str | None) -> bool:
        """L{lift}, but at hand only: another node of a cluster lifted it in the store."""
        now = self.clock.seconds()
        sanctions = self._sanctions.get(roomKey, [])
        before = [
            s for s in sanctions
            if _same(s, kind, roomKey, account, nick) and (s.until is None or s.until > now)
        ]
        kept = [s for s in sanctions if not _same(s, kind, roomKey, account, nick)]
        if kept:
            self._sanctions[roomKey] = kept
        else:
            self._sanctions.pop(roomKey, None)
        return bool(before)

    def inForce(self, kind: str, roomKey: str) -> list[Sanction]:
        """The bans or mutes in force in a room, oldest first."""
        now = self.clock.seconds()
        return [
            s for s in self._sanctions.get(roomKey, [])
            if s.kind == kind and (s.until is None or s.until > now)
        ]

    # The audit

    def audit(self, actor: str, action: str, room: str | None, target: str | None, detail: str | None) -> None:
        """Log and keep one moderation action."""
        _log.info("moderation", actor=actor, action=action, room=room, target=target, detail=detail)
        entry = AuditEntry(self.clock.seconds(), actor, action, room, target, detail)
        self._written(self.store.audit(entry), "audit")


def highest(roles: Iterable[str | None]) -> str | None:
    """The highest of C{roles}."""
    return max(roles, key=rank, default=None)
