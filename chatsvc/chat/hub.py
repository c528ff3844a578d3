"""
The hub and its rooms: every member, nickname and room, and every rule for what members do to each
other.

Plain Python: nothing here knows about bytes, transports, reactors or wire formats. A door (the
line protocol today) turns what a person typed into calls on the L{Hub}, and turns the events it
delivers back into its own format. Every rule lives here once, so every door gets it.

A L{Hub} holds every member (each with a nickname unique across the server) and every L{Room}. A
member may be in several rooms at once; which room plain text goes to is the door's business.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import structlog
from attrs import frozen
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

from chatsvc.chat.accounts import Accounts, PasswordRequired
from chatsvc.chat.errors import ChatError, NameInUse
from chatsvc.chat.events import (
    describeSpan,
    Acted,
    Event,
    Joined,
    JoinsAndLeaves,
    Left,
    Moderated,
    Renamed,
    Said,
    TopicChanged,
    Whispered,
)
from chatsvc.chat.ids import EventIds
from chatsvc.chat.moderation import (
    ROOM_SETTINGS,
    Moderation,
    Sanction,
    parseDuration,
    rank,
)
from chatsvc.chat.names import nick_key, room_key, validate_nick, validate_room_name
from chatsvc.chat.ports import (
    Account,
    DeliverToMany,
    IBatchDelivery,
    IHistoryStore,
    IMember,
    INicknameRegistry,
    IRelay,
    LocalNicknames,
    NicknamesUnavailable,
    NicknameTaken,
    NoRelay,
    NullStore,
    StoredMessage,
    deliverToEach,
)
from chatsvc.chat.rate import Buckets
from chatsvc.text import neutralize

__all__ = [
    "CROWD_INTERVAL",
    "CROWD_SIZE",
    "DEFAULT_ROOM",
    "Hub",
    "IPresenceWatcher",
    "Whois",
    "MAX_AWAY_LENGTH",
    "MAX_BLANK_RUN",
    "MAX_TEXT_BYTES",
    "MAX_TOPIC_LENGTH",
    "MemberRecord",
    "ROOM_CREATION_INTERVAL",
    "Room",
    "RoomView",
    "showText",
]

MAX_TOPIC_LENGTH = 300
"""The longest topic, in characters."""

MAX_AWAY_LENGTH = 200
"""The longest away message, in characters."""

DEFAULT_ROOM = "lobby"
"""Where every member lands on arrival, unless the server is told otherwise."""

CROWD_SIZE = 100
"""Rooms with more members than this announce joins and leaves in summaries (see L{Hub})."""

CROWD_INTERVAL = 1.0
"""How often, at most, a crowded room announces joins and leaves, in seconds."""

_log = structlog.get_logger("chatsvc.core")  # the namespace logs have always had


MAX_TEXT_BYTES = 4096
"""The longest message, action or topic once made safe to show, in UTF-8 bytes (see L{Hub})."""

MAX_BLANK_RUN = 4
"""The most spaces shown in a row in a message: longer runs of spaces and tabs are cut to this."""

ROOM_CREATION_INTERVAL = 60.0
"""Seconds in which a member, and an address, earn the right to create one more room."""

_BLANK_RUN = re.compile(r"[ \t]{2,}|\t")
_LONG_BLANK = " " * (MAX_BLANK_RUN + 1)


def _showBlanks(match: re.Match[str]) -> str:
    return " " * min(len(match.group()), MAX_BLANK_RUN)


def showText(text: str) -> str:
    """
    C{text} (a message, an action, a topic) as members are shown it: every tab a space, runs
    of more than L{MAX_BLANK_RUN} spaces cut to that many (so that no run of blanks can push
    words to where a terminal starts a new row, there to pass for a line of somebody else's),
    and every unsafe character made visible (L{neutralize}).
    """
    if "\t" in text or _LONG_BLANK in text:
        text = _BLANK_RUN.sub(_showBlanks, text)
    return neutralize(text)


def _clean_text(text: str, what: str, maxBytes: int = MAX_TEXT_BYTES) -> str:
    """
    C{text} as it will be shown (L{showText}).

    @raise ChatError: if nothing is left, or what is shown would be longer than C{maxBytes}
        bytes of UTF-8 (making control characters visible can make text four times longer).
    """
    if not text.strip():
        raise ChatError(f"{what} may not be empty")
    shown = showText(text)
    # Four bytes at most per character: only long texts need encoding to be measured.
    if len(shown) * 4 > maxBytes:
        size = len(shown.encode("utf-8"))
        if size > maxBytes:
            raise ChatError(
                f"{what} may be at most {maxBytes} bytes long once its control characters "
                f"are shown (this one would be {size}); it was discarded"
            )
    return shown


@frozen
class RoomView:
    """What a member is shown of a room on joining it (L{Hub.view}): the same for every door."""

    room: str
    """The room's name as shown."""
    topic: str | None
    """Its topic, if it has one."""
    members: int
    """How many members it has, the newcomer included."""
    nicks: tuple[str, ...] | None
    """The members' nicknames, sorted as L{Hub.nicks} sorts them; L{None} in a crowded room,
    which has too many to list."""
    recent: tuple[StoredMessage, ...]
    """Its latest messages, oldest first."""


@frozen
class Whois:
    """What L{Hub.whois} tells of a member."""

    nick: str
    online: bool
    registered: float | None
    """When its account was registered; None for a guest."""
    admin: bool
    rooms: tuple[str, ...]
    """The rooms it shares with whoever asked."""
    roles: tuple[tuple[str, str], ...]
    """Its roles, room by room, in the rooms it is in."""
    idle: float | None
    """Seconds since it last said something (or arrived); None when not connected."""
    connections: int
    away: str | None = None
    """Its away message, while it is away."""


class Room:
    """
    A named set of members, with a topic and the recent history of what was said in it.
    Created and changed only through the L{Hub}.
    """

    def __init__(self, name: str, historyKept: int) -> None:
        self.name = name
        self.key = room_key(name)
        self.topic: str | None = None
        self.recent: deque[StoredMessage] = deque(maxlen=historyKept)
        """The newest messages of the room, oldest first."""
        self.lastActive = float("-inf")
        """When something last happened in the room (set by the L{Hub}): the room left empty
        longest is the first forgotten when room is needed for a new one."""
        # The connections in the room, and how many each person (a member with all its
        # connections: an account logged in from a laptop and a phone is one) has in it.
        self._members: dict[IMember, None] = {}
        self._people: dict[object, int] = {}
        # The connections that stand for members of other nodes of a cluster (not delivered
        # to here: see Hub.remoteArrive).
        self._remote: set[IMember] = set()
        self._recipients: tuple[IMember, ...] | None = ()
        self._fanOut: tuple[tuple[DeliverToMany, tuple[IMember, ...]], ...] | None = ()
        # The members' nicknames, sorted, while nobody has joined, left or been renamed.
        self._sortedNicks: list[str] | None = None
        # Joins and leaves held for the next announcement of a crowded room (see Hub), in
        # order, with the member concerned; when the room last announced one; the timer of the
        # next announcement.
        self._held: list[tuple[IMember, Joined | Left]] = []
        self._lastAnnounced = float("-inf")
        self._announcement: IDelayedCall | None = None

    def __len__(self) -> int:
        """The number of members (people, however many connections each has here)."""
        return len(self._people)

    def __contains__(self, member: object) -> bool:
        """Whether C{member} (a connection) is in the room."""
        return member in self._members

    @property
    def recipients(self) -> tuple[IMember, ...]:
        """
        The members, in the order they joined, for broadcasting: a snapshot, so that a
        broadcast neither copies the member list nor trips over a member leaving mid-loop;
        taken again only when it is asked for after the membership changed (thousands
        leaving at once, as at shutdown, cost one snapshot, not one each).
        """
        recipients = self._recipients
        if recipients is None:
            recipients = self._recipients = tuple(self._members)
        return recipients

    @property
    def fanOut(self) -> tuple[tuple[DeliverToMany, tuple[IMember, ...]], ...]:
        """
        The members grouped by how a broadcast reaches them: those whose class provides
        L{IBatchDelivery} with its C{deliverToMany}, the others with L{deliverToEach};
        each group in the order its members joined. Taken again, like L{recipients}, only
        after the membership changed.
        """
        fanOut = self._fanOut
        if fanOut is None:
            groups: dict[DeliverToMany, list[IMember]] = {}
            for member in self.recipients:
                kind = type(member)
                deliver = (
                    kind.deliverToMany if IBatchDelivery.providedBy(kind) else deliverToEach
                )
                groups.setdefault(deliver, []).append(member)
            fanOut = self._fanOut = tuple(
                (deliver, tuple(members)) for deliver, members in groups.items()
            )
        return fanOut

    def members(self) -> Iterable[IMember]:
        """The members, in the order they joined."""
        return self.recipients

    def localCount(self, exclude: IMember | None) -> int:
        """How many connections here are this node's own, C{exclude} left out."""
        count = len(self._members) - len(self._remote)
        if exclude is not None and exclude in self._members and exclude not in self._remote:
            count -= 1
        return count

    def history(self, count: int) -> list[StoredMessage]:
        """The last C{count} messages (as many as are kept), oldest first."""
        if count <= 0:
            return []
        recent = self.recent
        return list(recent)[-count:] if count < len(recent) else list(recent)

    def add(self, member: IMember, person: object = None, remote: bool = False) -> None:
        """
        Count C{member} in (the L{Hub} tells the others): a connection of C{person} (by
        default, a person of its own); C{remote} if it stands for a connection on another
        node of a cluster, which this node does not deliver to.
        """
        self._members[member] = None
        if remote:
            self._remote.add(member)
        person = member if person is None else person
        self._people[person] = self._people.get(person, 0) + 1
        self._recipients = self._fanOut = self._sortedNicks = None

    def remove(self, member: IMember, person: object = None) -> None:
        """Count C{member} out (the L{Hub} tells the others)."""
        del self._members[member]
        self._remote.discard(member)
        person = member if person is None else person
        left = self._people[person] - 1
        if left:
            self._people[person] = left
        else:
            del self._people[person]
        self._recipients = self._fanOut = self._sortedNicks = None

    def sortedNicks(self, nameOf: Callable[[IMember], str]) -> list[str]:
        """
        The members' nicknames (C{nameOf} gives each), sorted as a reader would sort them: by
        the names shown, case-insensitively (the keys that make names look-alike-proof would
        sort "rn" with "m"). Sorted once per change of membership or names (L{renamed}).
        """
        if self._sortedNicks is None:
            # One name per person, however many of its connections are here.
            names = dict.fromkeys(nameOf(member) for member in self.recipients)
            self._sortedNicks = sorted(names, key=_readingOrder)
        return list(self._sortedNicks)

    def renamed(self, member: IMember, new: str) -> None:
        """
        C{member} is now called C{new}, and everyone here has been told. So a leave of the
        member held for the next announcement (before it came back) is told under that name
        too: the members told know it by no other.
        """
        self._sortedNicks = None
        if self._held:
            self._held = [
                (someone, Left(held.room, new, held.reason))
                if someone is member and isinstance(held, Left)
                else (someone, held)
                for someone, held in self._held
            ]

    # Crowded rooms: joins and leaves held for the next announcement (see Hub)

    def hold(
        self,
        member: IMember,
        event: Joined | Left,
        crowded: bool,
        now: float,
        interval: float,
        schedule: Callable[[float], IDelayedCall],
    ) -> bool:
        """
        Hold C{event} for the next announcement if the room is C{crowded} and announced one
        less than C{interval} seconds ago, or is holding others already; the first held
        C{schedule}s the announcement, as many seconds ahead as remain of the interval.

        @return: whether it was held; if not, it is to be announced now, and now counts as
            the room's last announcement.
        """
        if self._held or (crowded and now - self._lastAnnounced < interval):
            self._held.append((member, event))
            if self._announcement is None:
                self._announcement = schedule(max(0.0, self._lastAnnounced + interval - now))
            return True
        self._lastAnnounced = now
        return False

    def takeHeld(self, now: float) -> list[tuple[IMember, Joined | Left]]:
        """The announcement is being made, at C{now}: what was held, in order, and no more."""
        self._announcement = None
        self._lastAnnounced = now
        held, self._held = self._held, []
        return held

    def forgetHeld(self) -> None:
        """Nobody is left to tell: drop what was held, and the announcement."""
        if self._announcement is not None:
            self._announcement.cancel()
            self._announcement = None
        self._held.clear()


class MemberRecord:
    """
    What the hub knows of one member: its nickname, the key it is unique by, and its rooms in
    the order joined. One per member, so that what a member is given later (an account, roles)
    has one place to go.
    """

    __slots__ = ("nick", "key", "rooms", "account", "connections", "lastActive", "away")

    def __init__(self, nick: str, key: str, account: Account | None = None) -> None:
        self.nick = nick
        """The nickname as shown."""
        self.key = key
        """The nickname's key (L{nick_key}), by which it is unique."""
        self.rooms: list[Room] = []
        """The rooms the member is in, in the order joined."""
        self.account = account
        """The member's account, if it logged in (or registered); None for a guest."""
        self.lastActive = 0.0
        """When the member arrived or last said something (for /whois)."""
        self.connections: list[IMember] = []
        """The member's connections, in the order they came: one for a guest; an account may
        be logged in from several at once, which share its nickname and rooms. In a cluster,
        some may stand for the member's connections on other nodes (L{Hub.remoteArrive})."""
        self.away: str | None = None
        """The member's away message, while it is away (L{Hub.setAway})."""


class IPresenceWatcher(Protocol):
    """
    What a door that follows members beyond the rooms they share (IRC's C{MONITOR} and
    C{away-notify}) is told by the hub (L{Hub.watch}): members coming, going, renamed, and
    going away or coming back.
    """

    def online(self, nick: str) -> None:
        """The member C{nick} arrived (its first connection)."""

    def offline(self, nick: str) -> None:
        """The member C{nick} left (its last connection)."""

    def renamed(self, old: str, new: str) -> None:
        """The member C{old} is now called C{new}."""

    def awayChanged(self, member: IMember, nick: str, message: str | None) -> None:
        """The member C{nick} (C{member}: one of its connections) is away, or (L{None}) back."""

    def loggedIn(self, member: IMember, nick: str, account: str) -> None:
        """The member C{nick}, a guest until now, registered: it is logged in to C{account}."""


class Hub:
    """
    Every member and every room, and the rules for what members do to each other.

    Each operation checks its arguments (raising L{ChatError}), then delivers events to the
    members concerned. A member that raises from C{deliver} does not keep the event from the
    others: the failure goes to L{onDeliveryError}.

    Crowded rooms: in a room of more than C{crowdSize} members, telling everyone of every join
    and leave at once would cost one delivery per member for each (a room filling up with N
    members, N*N/2), and bury the conversation under notices. There, a join or leave is
    announced at once only if the room announced none in the last C{crowdInterval} seconds;
    otherwise it is held, and those held are announced together when the interval is over, as
    one L{JoinsAndLeaves} (a lone one still as its L{Joined} or L{Left}). Each member is told
    only of what happened after its own join. Smaller rooms are told of each at once.
    """

    def __init__(
        self,
        clock: IReactorTime,
        store: IHistoryStore | None = None,
        defaultRoom: str = DEFAULT_ROOM,
        historyKept: int = 100,
        maxRooms: int = 1000,
        crowdSize: int = CROWD_SIZE,
        crowdInterval: float = CROWD_INTERVAL,
        maxTextBytes: int = MAX_TEXT_BYTES,
        roomsPerMember: int = 5,
        roomsPerAddress: int = 20,
        nicknames: INicknameRegistry | None = None,
        accounts: Accounts | None = None,
        moderation: Moderation | None = None,
        relay: IRelay | None = None,
    ) -> None:
        """
        @param clock: the source of the time stamps of stored messages.
        @param store: where room messages are written; nothing is kept across restarts without
            one.
        @param defaultRoom: the room every member lands in (see L{arrive}).
        @param historyKept: how many recent messages of each room are kept at hand, the most a
            member can ask to see.
        @param maxRooms: the most rooms there may be at once; a room lasts while it has members,
            history or a topic.
        @param crowdSize: rooms with more members than this announce joins and leaves at most
            once every C{crowdInterval} seconds.
        @param crowdInterval: see C{crowdSize}.
        @param maxTextBytes: the longest message, action or topic, in bytes once made safe to
            show (see L{_clean_text}).
        @param roomsPerMember: the most rooms one member may create at once; it may create
            one more every L{ROOM_CREATION_INTERVAL} seconds.
        @param roomsPerAddress: the same, for all the members connected from one address
            (a member's C{host}, when it has one) together.
        @param nicknames: who holds which nickname; by default, this hub alone
            (L{LocalNicknames}).
        @param accounts: the registered nicknames; without, every member is a guest and
            nobody can register.
        @param moderation: the roles, room settings and sanctions; by default, kept in
            memory only.
        @param relay: where what this hub's own members do is told to the other nodes of a
            cluster (see L{remoteArrive}); by default, nowhere.
        """
        self.clock = clock
        self.store: IHistoryStore = store if store is not None else NullStore()
        self.historyKept = historyKept
        self.maxRooms = maxRooms
        self.crowdSize = crowdSize
        self.crowdInterval = crowdInterval
        self.maxTextBytes = maxTextBytes
        self.roomsPerMember = roomsPerMember
        self.roomsPerAddress = roomsPerAddress
        perMinute = 1 / ROOM_CREATION_INTERVAL
        self._memberCreations: Buckets[IMember] = Buckets(perMinute, roomsPerMember, 4 * maxRooms)
        self._addressCreations: Buckets[str] = Buckets(perMinute, roomsPerAddress, 4 * maxRooms)
        self.nicknames: INicknameRegistry = (
            nicknames if nicknames is not None else LocalNicknames()
        )
        self.accounts = accounts
        self.moderation = moderation if moderation is not None else Moderation(clock)
        # Who has been invited to which private room (room key: nickname keys), until they join.
        self._invited: dict[str, set[str]] = {}
        self._records: dict[IMember, MemberRecord] = {}
        self._byKey: dict[str, MemberRecord] = {}
        # Nicknames being claimed (see _claim): by key, the member claiming it (None once it
        # has departed) and the nickname as shown; and each claiming member's key.
        self._claiming: dict[str, tuple[IMember | None, str]] = {}
        self._claimOf: dict[IMember, str] = {}
        # Connections whose password or token is being checked (see arrive).
        self._waitingLogin: set[IMember] = set()
        self.ids = EventIds()
        """Where every event's id comes from (a cluster gives each node a slot of its own)."""
        self.relay: IRelay = relay if relay is not None else NoRelay()
        self._rooms: dict[str, Room] = {}
        self.defaultRoom = self._room(validate_room_name(defaultRoom))
        self._watchers: list[IPresenceWatcher] = []
        # The connections standing for members' connections on other nodes (remoteArrive).
        self._remoteConnections: set[IMember] = set()
        self.messages = 0
        """Messages and actions said in rooms, and private messages, so far (a metric)."""
        self.deliveries = 0
        """Events handed to members' connections in rooms' broadcasts so far (a metric)."""

    # Looking things up

    def __len__(self) -> int:
        """The number of members (an account logged in from several connections is one)."""
        return len(self._byKey)

    def __contains__(self, member: object) -> bool:
        """Whether C{member} (a connection) has arrived and not yet gone."""
        return member in self._records

    def nickOf(self, member: IMember) -> str:
        """
        The nickname of C{member}.

        @raise KeyError: if C{member} is not here.
        """
        return self._records[member].nick

    def memberNamed(self, nick: str) -> IMember | None:
        """
        The member whose nickname matches C{nick} case-insensitively, if any (its first
        connection, if it has several).
        """
        record = self._byKey.get(nick_key(nick))
        return None if record is None else record.connections[0]

    def recordOf(self, member: IMember) -> MemberRecord | None:
        """What the hub knows of C{member} (a connection), if it is here."""
        return self._records.get(member)

    def connectionsOf(self, member: IMember) -> tuple[IMember, ...]:
        """Every connection of C{member}'s, C{member} among them (in the order they came)."""
        record = self._records.get(member)
        return () if record is None else tuple(record.connections)

    def members(self) -> Iterable[IMember]:
        """Every connection of every member, in the order they arrived."""
        return tuple(self._records)

    def nicks(self, room: Room | None = None) -> list[str]:
        """The nicknames of C{room}'s members (of every member, by default), sorted."""
        if room is None:
            return sorted((record.nick for record in self._byKey.values()), key=_readingOrder)
        return room.sortedNicks(self.nickOf)

    def view(self, room: Room, recent: int) -> RoomView:
        """
        What a member is shown of C{room} on joining it, for every door to render its own way:
        its topic, its members (only their number, in a crowded room), and its last C{recent}
        messages.
        """
        nicks = None if self.crowded(room) else tuple(self.nicks(room))
        return RoomView(room.name, room.topic, len(room), nicks, tuple(room.history(recent)))

    def crowded(self, room: Room) -> bool:
        """Whether C{room} has so many members that it summarizes joins and leaves."""
        return len(room) > self.crowdSize

    def rooms(self) -> list[Room]:
        """Every room, sorted by name (case-insensitively, as a reader would sort them)."""
        return sorted(self._rooms.values(), key=lambda room: (room.name.casefold(), room.name))

    def room(self, name: str) -> Room:
        """
        The room called C{name}.

        @raise ChatError: if there is no such room.
        """
        room = self._rooms.get(room_key(name))
        if room is None:
            raise ChatError(f"no such room: {neutralize(name.strip())}")
        return room

    def roomsOf(self, member: IMember) -> list[Room]:
        """The rooms C{member} is in, in the order joined."""
        record = self._records.get(member)
        return [] if record is None else list(record.rooms)

    # Arriving and going

    def arrive(
        self,
        member: IMember,
        nick: str,
        password: str | None = None,
        token: str | None = None,
        loggedIn: Account | None = None,
    ) -> Deferred[str]:
        """
        Claim the nickname C{nick} for C{member}, then put it in the default room.

        A registered nickname is taken only with its account's C{password} (or a C{token} the
        account was given, see L{Accounts.issueToken}), or as C{loggedIn}, the account
        L{Accounts.login} gave the door for it already (IRC's SASL logs in before the
        nickname is known); without any, the arrival fails with L{PasswordRequired}, and the
        door asks for the password. An unregistered one is taken
        as a guest, if the server admits guests.

        The claim goes to the nickname registry (L{INicknameRegistry}), which may answer
        later; until it does, C{member} is not here (L{__contains__}) and the nickname is
        refused to anyone else. A member that departs meanwhile gives the nickname back as
        soon as the answer comes.

        @return: a L{Deferred} firing with the nickname as it will be shown, or failing with
            L{ChatError} if the nickname is invalid, in use, registered (and the password is
            wrong or missing), or cannot be claimed now.
        """
        if member in self._records or member in self._claimOf:
            return fail(ChatError("you already have a nickname"))
        try:
            nick = validate_nick(nick)
        except ChatError:
            return fail()
        key = nick_key(nick)
        accounts = self.accounts
        account = None if accounts is None else accounts.registered(nick)
        holder = self._byKey.get(key)
        if account is None or holder is None or holder.account is None:
            # (An account already here may be logged in to again, from another connection.)
            refusal = self._localRefusal(nick, key)
            if refusal is not None:
                return fail(refusal)
        if accounts is None or account is None:
            if accounts is not None and accounts.lockdown:
                return fail(
                    ChatError(
                        "the server is in lockdown: only registered members may come in just now"
                    )
                )
            if accounts is not None and not accounts.guests:
                return fail(
                    ChatError(
                        f"this server admits registered members only, and {nick} is not "
                        "registered: ask its admin for an account"
                    )
                )
            return self._claim(member, key, nick, self._arrived)
        login: Deferred[Account]
        if loggedIn is not None:
            login = succeed(loggedIn)
        elif token is not None:
            login = accounts.tokenLogin(token)
        elif password is not None:
            login = accounts.login(nick, password, getattr(member, "host", None))
        else:
            return fail(PasswordRequired(account.nick))

        def claim(account: Account) -> Deferred[str] | str:
            if account.key != key:
                raise ChatError("that login is another nickname's: log in with your password")
            if member in self._records or member not in self._waitingLogin:
                raise ChatError(f"gone before logging in as {account.nick}")
            self._waitingLogin.discard(member)
            holder = self._byKey.get(key)
            if holder is not None and holder.account is not None and holder.account.key == key:
                return self._attach(member, holder)
            # Checked again: the nickname may have been taken while the password was.
            refusal = self._localRefusal(account.nick, key)
            if refusal is not None:
                raise refusal
            return self._claim(
                member,
                key,
                _shownNick(account.nick, nick),
                lambda member, key, nick: self._arrived(member, key, nick, account),
            )

        self._waitingLogin.add(member)

        def forget(failure: Failure) -> Failure:
            self._waitingLogin.discard(member)
            return failure

        arrived: Deferred[str] = login.addCallback(claim)
        return arrived.addErrback(forget)

    def _arrived(
        self, member: IMember, key: str, nick: str, account: Account | None = None
    ) -> str:
        record = MemberRecord(nick, key, account)
        record.lastActive = self.clock.seconds()
        record.connections.append(member)
        self._byKey[key] = record
        self._records[member] = record
        for watcher in self._watchers:
            watcher.online(nick)
        self.relay.arrived(nick, None if account is None else account.key, getattr(member, "host", None))
        try:
            self.join(member, self.defaultRoom.name)
        except ChatError as refusal:
            # Banned from the default room (or kept out of it): here, but in no room.
            _log.info("default_room_refused", nick=nick, reason=str(refusal))
        return nick

    def _attach(self, member: IMember, record: MemberRecord) -> str:
        # Another connection of an account already here: it shares the member's nickname and
        # rooms, joining nothing anew and telling nobody but the member's own connections.
        firstHere = not self._hasLocal(record)
        record.connections.append(member)
        self._records[member] = record
        for room in record.rooms:
            self._addTo(room, member, record)
        _log.info("account_connection_added", nick=record.nick, connections=len(record.connections))
        if firstHere:
            # Its other connections are on other nodes, which are told it is here too.
            account = record.account
            self.relay.arrived(record.nick, None if account is None else account.key, getattr(member, "host", None))
        return record.nick

    def ownMembers(self) -> list[MemberRecord]:
        """The members with a connection of this node's own (in a cluster; every member, else)."""
        records = {id(record): record for record in self._records.values()}
        return [record for record in records.values() if self._hasLocal(record)]

    def _hasLocal(self, record: MemberRecord) -> bool:
        # Whether a member has a connection of this node's own.
        remote = self._remoteConnections
        return any(connection not in remote for connection in record.connections)

    def watch(self, watcher: IPresenceWatcher) -> None:
        """
        Tell C{watcher} of every member's coming, going, rename, away status and registration
        from now on.
        """
        self._watchers.append(watcher)

    def setAway(self, member: IMember, message: str | None) -> str | None:
        """
        Mark C{member} away with C{message} (made safe, at most L{MAX_AWAY_LENGTH}
        characters), or (L{None} or blank) back. Every door shows it where it shows who is
        who (C{/whois}, member lists); watchers are told (L{IPresenceWatcher.awayChanged}).

        @return: the message as kept, or L{None} for back.
        @raise ChatError: if the message is too long.
        """
        record = self._records[member]
        if message is not None and message.strip():
            message = _clean_text(message, "an away message", self.maxTextBytes).strip()
        else:
            message = None
        if message is not None and len(message) > MAX_AWAY_LENGTH:
            raise ChatError(f"an away message may be at most {MAX_AWAY_LENGTH} characters long")
        if message == record.away:
            return message
        self._away(member, record, message)
        self.relay.away(record.nick, message)
        return message

    def _away(self, member: IMember, record: MemberRecord, message: str | None) -> None:
        record.away = message
        for watcher in self._watchers:
            watcher.awayChanged(member, record.nick, message)

    def awayOf(self, nick: str) -> str | None:
        """The away message of the member called C{nick}, if it is here and away."""
        record = self._byKey.get(nick_key(nick))
        return None if record is None else record.away

    def audienceOf(self, member: IMember) -> tuple[IMember, ...]:
        """
        The connections that share a room with C{member}, and its own, each once: who is told
        of what concerns the member wherever it is (a rename; on some doors, going away).
        """
        record = self._records.get(member)
        return () if record is None else tuple(_audience(record))

    def accountOf(self, member: IMember) -> Account | None:
        """The account C{member} logged in with (or registered), or None for a guest."""
        record = self._records.get(member)
        return None if record is None else record.account

    def register(
        self, member: IMember, password: str, code: str | None = None
    ) -> Deferred[Account]:
        """
        Register C{member}'s nickname with C{password} (and, on a server that registers by
        invitation, an invite C{code}): from now on the nickname is reserved for its account,
        and C{member} is logged in to it.

        @return: a L{Deferred} firing with the account, or failing with L{ChatError}.
        """
        record = self._records[member]
        accounts = self.accounts
        if accounts is None:
            return fail(ChatError("this server keeps no accounts"))
        if record.account is not None:
            return fail(ChatError(f"you are registered already, as {record.account.nick}"))
        registered = accounts.register(record.nick, password, getattr(member, "host", None), code)

        def attach(account: Account) -> Account:
            _log.info("account_registered", nick=account.nick)
            if self._records.get(member) is record and record.key == account.key:
                record.account = account
                for watcher in self._watchers:
                    watcher.loggedIn(member, record.nick, account.nick)
                self.relay.loggedIn(record.nick, account.key)
            return account

        return registered.addCallback(attach)

    def changePassword(self, member: IMember, old: str, new: str) -> Deferred[Account]:
        """
        Change the password of C{member}'s account from C{old} to C{new}; every token of the
        account stops working.
        """
        record = self._records[member]
        if self.accounts is None or record.account is None:
            return fail(ChatError("you are not logged in to an account (/register makes one)"))
        changed = self.accounts.changePassword(record.account, old, new)

        def update(account: Account) -> Account:
            _log.info("account_password_changed", nick=account.nick)
            if record.account is not None and record.account.key == account.key:
                record.account = account
            return account

        return changed.addCallback(update)

    def depart(self, member: IMember, reason: str | None = None) -> bool:
        """
        Take C{member} out of every room, each room told once (C{Left}), and free its nickname
        (and any it is still claiming, once the registry answers). Departing twice is harmless.

        @return: whether C{member} was here.
        """
        claiming = self._claimOf.pop(member, None)
        if claiming is not None:
            self._claiming[claiming] = (None, self._claiming[claiming][1])
        self._waitingLogin.discard(member)
        record = self._records.get(member)
        if record is None:
            return False
        local = member not in self._remoteConnections
        self._remoteConnections.discard(member)
        if len(record.connections) > 1:
            # One connection of several goes: the member stays, and nobody is told; but if it
            # was this node's last, the other nodes' copies let it go.
            record.connections.remove(member)
            del self._records[member]
            for room in record.rooms:
                room.remove(member, record)
            self._memberCreations.discard(member)
            if local and not self._hasLocal(record):
                self.nicknames.release(record.key)
                self.relay.departed(record.nick, None)
            return True
        reason = _clean_reason(reason)
        for room in self.roomsOf(member):
            self._leaveRoom(member, room, reason)
        key = self._records.pop(member).key
        del self._byKey[key]
        self._memberCreations.discard(member)
        for watcher in self._watchers:
            watcher.offline(record.nick)
        if local:
            self.nicknames.release(key)
            self.relay.departed(record.nick, reason)
        return True

    # Claiming nicknames

    def _claim(
        self,
        member: IMember,
        key: str,
        nick: str,
        granted: Callable[[IMember, str, str], str],
    ) -> Deferred[str]:
        # Ask the registry for key; once it is held, granted(member, key, nick) makes it the
        # member's. Meanwhile the key is refused here to everyone else (_localRefusal).
        self._claiming[key] = (member, nick)
        self._claimOf[member] = key
        claimed = self.nicknames.claim(key, nick)
        return claimed.addCallbacks(
            self._granted,
            self._refused,
            callbackArgs=(member, key, nick, granted),
            errbackArgs=(member, key, nick),
        )

    def _granted(
        self,
        result: None,
        member: IMember,
        key: str,
        nick: str,
        granted: Callable[[IMember, str, str], str],
    ) -> str:
        del self._claiming[key]
        if self._claimOf.get(member) != key:  # departed meanwhile
            self.nicknames.release(key)
            raise ChatError(f"gone before the nickname {nick!r} was claimed")
        del self._claimOf[member]
        return granted(member, key, nick)

    def _refused(self, failure: Failure, member: IMember, key: str, nick: str) -> str:
        del self._claiming[key]
        if self._claimOf.get(member) == key:
            del self._claimOf[member]
        if failure.check(NicknameTaken) is not None:
            holder: str = failure.value.holder  # type: ignore[union-attr]
            raise _taken(nick, holder)
        if failure.check(NicknamesUnavailable) is not None:
            raise ChatError(str(failure.value))
        _log.error("nickname_claim_failed", nick=nick, reason=failure.getErrorMessage())
        raise ChatError(f"nickname {nick!r} cannot be claimed just now; try again")

    def _localRefusal(self, nick: str, key: str) -> ChatError | None:
        # Why key cannot be claimed, if this server's own members hold or are claiming it.
        holder = self._byKey.get(key)
        if holder is not None:
            return _taken(nick, holder.nick)
        claiming = self._claiming.get(key)
        if claiming is not None:
            return _taken(nick, claiming[1])
        return None

    # Rooms

    def join(self, member: IMember, name: str) -> Room:
        """
        Put C{member} in the room called C{name}, creating it if needed, and tell its other
        members (C{Joined}). Joining a room one is already in changes nothing.

        Creating a room spends one of the member's room budget and one of its address's (see
        L{__init__}); when there are L{maxRooms} rooms already, the room left empty longest is
        forgotten to make room (its stored history stays in the store).

        @return: the room.
        @raise ChatError: if the name is invalid, the member or its address has created too
            many rooms lately, or every one of L{maxRooms} rooms has members.
        """
        record = self._records[member]
        room = self._rooms.get(room_key(name))
        if room is None:
            room = self._create(member, validate_room_name(name))
            if record.account is not None and room is not self.defaultRoom:
                settings = self.moderation.settingsFor(room.key, room.name)
                if settings.owner is None:
                    settings.owner = record.account.key
                    self.moderation.saveRoom(settings)
        if member in room:
            return room
        self._mayJoin(record, member, room)
        event = Joined(room.name, record.nick, **self.stamp())
        self._enter(member, record, room, event)
        self.relay.joined(event)
        return room

    def _enter(self, member: IMember, record: MemberRecord, room: Room, event: Joined) -> None:
        self._addTo(room, member, record)
        record.rooms.append(room)
        self._announce(room, member, event)
        # The member's other connections are in the room from now on, and told so.
        for other in record.connections:
            if other is not member:
                self._addTo(room, other, record)
                self.tell(other, event)

    def _addTo(self, room: Room, connection: IMember, record: MemberRecord) -> None:
        room.add(connection, record, connection in self._remoteConnections)

    def _mayJoin(self, record: MemberRecord, member: IMember, room: Room) -> None:
        # Bans, and the private and registered settings (see chatsvc.chat.moderation).
        moderation = self.moderation
        account = None if record.account is None else record.account.key
        role = moderation.role(account, room.key)
        if role == "admin":
            return
        host = getattr(member, "host", None)
        ban = moderation.sanction("ban", room.key, account, record.key, host)
        if ban is not None:
            raise ChatError(f"you are banned from {room.name}{_sanctionTerms(ban, self.clock.seconds())}")
        settings = moderation.settings(room.key)
        if settings is None:
            return
        if settings.registered and account is None:
            raise ChatError(f"only registered members may join {room.name} (/register makes you one)")
        if settings.private and role is None:
            invited = self._invited.get(room.key)
            if not invited or record.key not in invited:
                raise ChatError(f"{room.name} is private: you need an invitation to join")
            invited.discard(record.key)

    def roomsFor(self, member: IMember) -> list[Room]:
        """The rooms C{member} may see listed: all but private ones it is not in (an admin sees all)."""
        record = self._records.get(member)
        account = None if record is None or record.account is None else record.account.key
        admin = account is not None and account in self.moderation.adminKeys
        visible = []
        for room in self.rooms():
            settings = self.moderation.settings(room.key)
            if settings is not None and settings.private and not admin and member not in room:
                continue
            visible.append(room)
        return visible

    def part(self, member: IMember, name: str, reason: str | None = None) -> Room:
        """
        Take C{member} out of the room called C{name}, and tell the others there (C{Left}).

        @return: the room left.
        @raise ChatError: if C{member} is not in that room.
        """
        room = self._memberRoom(member, name)
        self._leaveRoom(member, room, _clean_reason(reason))
        return room

    def setTopic(self, member: IMember, room: Room, topic: str | None) -> None:
        """
        Set (or, with L{None}, clear) the topic of a room C{member} is in, and tell everyone in
        it, C{member} included (C{TopicChanged}).

        @raise ChatError: if C{member} is not in the room, or the topic is too long.
        """
        _checkIn(member, room)
        settings = self.moderation.settings(room.key)
        if settings is not None and settings.topiclock and rank(self.roleOf(member, room)) < rank("op"):
            raise ChatError(f"the topic of {room.name} is locked: only its operators set it")
        if topic is not None:
            topic = _clean_text(topic, "a topic", self.maxTextBytes).strip()
            if len(topic) > MAX_TOPIC_LENGTH:
                raise ChatError(f"a topic may be at most {MAX_TOPIC_LENGTH} characters long")
        event = TopicChanged(room.name, self._records[member].nick, topic, **self.stamp())
        self._topic(room, event)
        settings = self.moderation.settingsFor(room.key, room.name)
        settings.topic = topic
        self.moderation.saveRoom(settings)
        self.relay.topicChanged(event)

    def _topic(self, room: Room, event: TopicChanged) -> None:
        room.topic = event.topic
        room.lastActive = event.time
        self._broadcast(room, event)

    # Talking

    # The rooms a member talks in are passed as the Room objects its front-end holds: a name
    # would be looked up again (normalized and case-folded) for every line.

    def say(self, member: IMember, room: Room, text: str) -> Said:
        """
        Send C{text} from C{member} to the other members of a room it is in (C{Said}).

        @return: the event as delivered, for a door that shows members their own lines.
        """
        _checkIn(member, room)
        record = self._records[member]
        self._maySpeak(record, member, room)
        nick = record.nick
        text = _clean_text(text, "a message", self.maxTextBytes)
        event = Said(room.name, nick, text, **self.stamp())
        self.messages += 1
        record.lastActive = event.time
        self._record(room, event.nick, text, False, event.id, event.time)
        self._broadcast(room, event, exclude=member)
        self.relay.said(event)
        return event

    def act(self, member: IMember, room: Room, action: str) -> Acted:
        """
        Send an action of C{member} to the other members of a room it is in (C{Acted}).

        @return: the event as delivered.
        """
        _checkIn(member, room)
        record = self._records[member]
        self._maySpeak(record, member, room)
        nick = record.nick
        action = _clean_text(action, "an action", self.maxTextBytes)
        event = Acted(room.name, nick, action, **self.stamp())
        self.messages += 1
        record.lastActive = event.time
        self._record(room, nick, action, True, event.id, event.time)
        self._broadcast(room, event, exclude=member)
        self.relay.said(event)
        return event

    def _maySpeak(self, record: MemberRecord, member: IMember, room: Room) -> None:
        # Mutes and moderated rooms. Two dictionary look-ups for a room with neither.
        moderation = self.moderation
        settings = moderation.settings(room.key)
        account = None if record.account is None else record.account.key
        mute = moderation.sanction("mute", room.key, account, record.key, getattr(member, "host", None))
        if mute is None and (settings is None or not settings.moderated):
            return
        role = moderation.role(account, room.key)
        if role in ("admin", "owner", "op"):
            return
        if mute is not None:
            raise ChatError(f"you are muted in {room.name}{_sanctionTerms(mute, self.clock.seconds())}")
        if role != "voice":
            raise ChatError(f"{room.name} is moderated: only voiced members and operators speak")

    def rename(self, member: IMember, newNick: str) -> Deferred[str]:
        """
        Rename C{member} and tell it and everyone who shares a room with it, each once
        (C{Renamed}). A change of case only is allowed. The new nickname is claimed as on
        arrival (L{arrive}); until the claim is answered, C{member} keeps its old one.

        @return: a L{Deferred} firing with the new nickname as it will be shown, or failing
            with L{ChatError} if the nickname is invalid, in use, already C{member}'s, or
            cannot be claimed now.
        @raise KeyError: if C{member} is not here.
        """
        record = self._records[member]
        if member in self._claimOf:
            return fail(ChatError("your last change of nickname is not done yet"))
        old = record.nick
        try:
            new = validate_nick(newNick)
        except ChatError:
            return fail()
        if new == old:
            return fail(ChatError(f"you are already called {old}"))
        newKey = nick_key(new)
        if newKey == record.key:
            self.nicknames.relabel(newKey, new)
            return succeed(self._renamed(member, newKey, new))
        if record.account is not None:
            return fail(
                ChatError(
                    f"you are logged in as {record.account.nick}: an account keeps its nickname"
                )
            )
        registered = None if self.accounts is None else self.accounts.registered(new)
        if registered is not None:
            return fail(ChatError(f"{registered.nick} is registered: only its owner may use it"))
        refusal = self._localRefusal(new, newKey)
        if refusal is not None:
            return fail(refusal)
        return self._claim(member, newKey, new, self._renamed)

    def _renamed(self, member: IMember, newKey: str, new: str) -> str:
        event = self._rename(self._records[member], newKey, new, self.stamp())
        self.relay.renamed(event)
        return new

    def _rename(self, record: MemberRecord, newKey: str, new: str, stamp: dict[str, Any]) -> Renamed:
        old, oldKey = record.nick, record.key
        if newKey != oldKey:
            del self._byKey[oldKey]
            self.nicknames.release(oldKey)  # (nothing, if another node holds it)
            self._byKey[newKey] = record
        record.key = newKey
        record.nick = new
        for room in record.rooms:
            for connection in record.connections:
                room.renamed(connection, new)
        event = Renamed(old, new, **stamp)
        for recipient in _audience(record):
            self.tell(recipient, event)
        for watcher in self._watchers:
            watcher.renamed(old, new)
        return event

    def whisper(self, member: IMember, recipientNick: str, text: str) -> Whispered:
        """
        Send C{text} from C{member} to the member called C{recipientNick} alone (C{Whispered}),
        wherever it is. Never stored.

        @return: the event as delivered, for the sender's receipt.
        @raise ChatError: if there is no such member or nothing to send.
        """
        record = self._records[member]
        recipient = self._byKey.get(nick_key(recipientNick))
        if recipient is None:
            raise ChatError(f"no such member: {neutralize(recipientNick)}")
        event = Whispered(
            record.nick,
            recipient.nick,
            _clean_text(text, "a message", self.maxTextBytes),
            **self.stamp(),
        )
        self.messages += 1
        # Every connection of the recipient's, and the sender's others, which see it as sent.
        for connection in dict.fromkeys([*recipient.connections, *record.connections]):
            if connection is not member:
                self.tell(connection, event)
        return event

    # Moderation (see chatsvc.chat.moderation): every action checked here, told to the room
    # as a Moderated event, logged and kept in the audit.

    def roleOf(self, member: IMember, room: Room) -> str | None:
        """What C{member} is in C{room}: C{admin}, C{owner}, C{op}, C{voice}, or None."""
        record = self._records.get(member)
        if record is None or record.account is None:
            return None
        return self.moderation.role(record.account.key, room.key)

    def rolesIn(self, room: Room) -> dict[str, str]:
        """The nicknames of C{room}'s members who have a role there, with the role."""
        roles: dict[str, str] = {}
        for member in room.recipients:
            record = self._records[member]
            if record.account is not None:
                role = self.moderation.role(record.account.key, room.key)
                if role is not None:
                    roles[record.nick] = role
        return roles

    def _moderator(
        self, member: IMember, name: str, what: str, least: str = "op"
    ) -> tuple[MemberRecord, Room, str]:
        # The moderator's record, the room (one it is in) and its role there, if high enough
        # to do what (said in the refusal).
        room = self._memberRoom(member, name)
        role = self.roleOf(member, room)
        if rank(role) < rank(least):
            if least == "admin":
                raise ChatError(f"only the server's admins can {what}")
            raise ChatError(f"only operators of {room.name} can {what}")
        return self._records[member], room, role or ""

    def _target(self, nick: str) -> tuple[str, str | None, MemberRecord | None]:
        # A member to act on, here or not: its nickname as shown, its account key (if it is
        # registered) and its record (if it is here).
        try:
            shown = validate_nick(nick)
        except ChatError:
            raise ChatError(f"no such member: {neutralize(nick.strip())}") from None
        record = self._byKey.get(nick_key(shown))
        if record is not None:
            return record.nick, None if record.account is None else record.account.key, record
        account = None if self.accounts is None else self.accounts.registered(shown)
        if account is not None:
            return account.nick, account.key, None
        return shown, None, None

    def _outranks(self, role: str, room: Room, account: str | None, shown: str) -> None:
        # A moderator may act only on members below it (an admin on anyone).
        theirs = None if account is None else self.moderation.role(account, room.key)
        if role != "admin" and rank(theirs) >= rank(role):
            raise ChatError(f"you cannot do that to {shown}: they are {_title(theirs)} of {room.name}")

    def _tell(self, room: Room, event: Moderated, also: MemberRecord | None = None) -> None:
        # A moderation event: to the room, and to the target's connections if not in it; and
        # to the other nodes.
        self.relay.moderated(event)
        self._broadcast(room, event)
        if also is not None:
            for connection in also.connections:
                if connection not in room:
                    self.tell(connection, event)

    def _putOut(self, record: MemberRecord, room: Room) -> None:
        # Out of a room, with every connection (the caller tells whom it must).
        if room not in record.rooms:
            return
        for connection in record.connections:
            room.remove(connection, record)
        record.rooms.remove(room)

    def kick(self, member: IMember, name: str, nick: str, reason: str | None = None) -> Moderated:
        """An operator puts a member out of a room (it may come back)."""
        actor, room, role = self._moderator(member, name, "kick")
        shown, account, target = self._target(nick)
        if target is None or room not in target.rooms:
            raise ChatError(f"{shown} is not in {room.name}")
        self._outranks(role, room, account, shown)
        reason = _clean_reason(reason)
        event = Moderated(room.name, "kick", actor.nick, shown, reason, **self.stamp())
        self._putOut(target, room)
        self._tell(room, event, also=target)
        self.moderation.audit(actor.nick, "kick", room.name, shown, reason)
        return event

    def sanction(
        self,
        member: IMember,
        kind: str,
        name: str,
        nick: str,
        duration: str | None = None,
        reason: str | None = None,
    ) -> Moderated:
        """
        An operator bans (C{kind} C{ban}: out of the room, and kept out) or mutes (C{mute}:
        kept from speaking there) a member, for C{duration} (C{10m}, C{2h}, C{7d}) or until
        lifted: the account, if the member is registered (across renames, reconnections and
        new addresses), else the guest's nickname and address.
        """
        if kind not in ("ban", "mute"):
            raise ValueError(kind)
        actor, room, role = self._moderator(member, name, kind)
        shown, account, target = self._target(nick)
        if target is actor:
            raise ChatError(f"you cannot {kind} yourself")
        self._outranks(role, room, account, shown)
        now = self.clock.seconds()
        until = None if duration is None else now + parseDuration(duration)
        reason = _clean_reason(reason)
        host = None
        if account is None and target is not None:
            hosts = {getattr(c, "host", None) for c in target.connections} - {None}
            host = next(iter(hosts)) if len(hosts) == 1 else None
        self.moderation.impose(
            Sanction(
                kind,  # type: ignore[arg-type]
                room.key,
                shown,
                account,
                None if account is not None else nick_key(shown),
                host,
                until,
                reason,
                actor.nick,
                now,
            )
        )
        event = Moderated(room.name, kind, actor.nick, shown, reason, until, **self.stamp())
        if kind == "ban" and target is not None:
            self._putOut(target, room)
        self._tell(room, event, also=target)
        self.moderation.audit(actor.nick, kind, room.name, shown, _detail(reason, until, now))
        return event

    def lift(self, member: IMember, kind: str, name: str, nick: str) -> Moderated:
        """An operator lifts a ban (C{kind} C{ban}) or mute (C{mute})."""
        actor, room, _ = self._moderator(member, name, f"lift {'bans' if kind == 'ban' else 'mutes'}")
        shown, account, target = self._target(nick)
        if not self.moderation.lift(kind, room.key, account, None if account else nick_key(shown)):
            raise ChatError(f"{shown} is not {'banned from' if kind == 'ban' else 'muted in'} {room.name}")
        action = "un" + kind
        event = Moderated(room.name, action, actor.nick, shown, **self.stamp())
        self._tell(room, event, also=target)
        self.moderation.audit(actor.nick, action, room.name, shown, None)
        return event

    def sanctions(self, member: IMember, kind: str, name: str) -> list[Sanction]:
        """The bans or mutes in force in a room, for its operators."""
        _, room, _ = self._moderator(member, name, f"list {'bans' if kind == 'ban' else 'mutes'}")
        return self.moderation.inForce(kind, room.key)

    def setRole(self, member: IMember, name: str, nick: str, role: str, on: bool) -> Moderated:
        """
        The owner or an operator makes a registered member an operator (C{op}) or voiced
        (C{voice}) in a room, or no longer (C{on} false); an admin names its owner (C{owner}).
        """
        least = "admin" if role == "owner" else "op"
        what = "name owners" if role == "owner" else "give roles"
        actor, room, actorRole = self._moderator(member, name, what, least)
        shown, account, target = self._target(nick)
        if account is None:
            raise ChatError(f"{shown} is not registered: roles are for registered members")
        settings = self.moderation.settingsFor(room.key, room.name)
        if role == "owner":
            settings.owner = account
            settings.roles.pop(account, None)
            action = "owner"
        else:
            current = self.moderation.role(account, room.key)
            if actorRole not in ("admin", "owner") and rank(current) >= rank(actorRole):
                raise ChatError(f"you cannot do that to {shown}: they are {_title(current)} of {room.name}")
            if on:
                settings.roles[account] = role
            elif settings.roles.get(account) == role:
                del settings.roles[account]
            else:
                raise ChatError(f"{shown} is not {_title(role)} of {room.name}")
            action = role if on else "de" + role
        self.moderation.saveRoom(settings)
        event = Moderated(room.name, action, actor.nick, shown, **self.stamp())
        self._tell(room, event, also=target)
        self.moderation.audit(actor.nick, action, room.name, shown, None)
        return event

    def setting(self, member: IMember, name: str, setting: str, on: bool) -> Moderated:
        """An operator turns a room's C{setting} (L{ROOM_SETTINGS}) on or off."""
        if setting not in ROOM_SETTINGS:
            raise ChatError(f"no such setting: {neutralize(setting)} (there are {', '.join(ROOM_SETTINGS)})")
        actor, room, _ = self._moderator(member, name, "change its settings")
        settings = self.moderation.settingsFor(room.key, room.name)
        setattr(settings, setting, on)
        self.moderation.saveRoom(settings)
        event = Moderated(room.name, "set", actor.nick, setting=setting, on=on, **self.stamp())
        self._tell(room, event)
        self.moderation.audit(actor.nick, "set", room.name, None, f"{setting} {'on' if on else 'off'}")
        return event

    def roomSettings(self, room: Room) -> dict[str, bool]:
        """Which of L{ROOM_SETTINGS} are on in C{room}."""
        settings = self.moderation.settings(room.key)
        return {name: bool(settings is not None and getattr(settings, name)) for name in ROOM_SETTINGS}

    def invite(self, member: IMember, name: str, nick: str) -> Moderated:
        """
        An operator invites a member (here) into a room: a private one lets it join once. The
        room and the member are told (C{Moderated} C{invite}).
        """
        actor, room, _ = self._moderator(member, name, "invite")
        shown, _, target = self._target(nick)
        if target is None:
            raise ChatError(f"no such member: {neutralize(shown)}")
        if room in target.rooms:
            raise ChatError(f"{shown} is in {room.name} already")
        self._invited.setdefault(room.key, set()).add(target.key)
        event = Moderated(room.name, "invite", actor.nick, shown, **self.stamp())
        # The room sees it, as it sees every moderator's action (the moderator is told by its
        # own door); and so, of course, does the member invited.
        self._broadcast(room, event, exclude=member)
        for connection in target.connections:
            self.tell(connection, event)
        self.relay.moderated(event)
        self.moderation.audit(actor.nick, "invite", room.name, shown, None)
        return event

    def removeMessage(
        self, member: IMember, name: str, id: int | None = None, nick: str | None = None
    ) -> Deferred[Moderated]:
        """
        An operator removes a message from a room: the one with the id C{id} (kept at hand or
        in the store), or C{nick}'s latest among those at hand. It is gone from the history,
        and every member of the room is told (C{remove}, with the message's id), so that
        pages take it away.
        """
        actor, room, _ = self._moderator(member, name, "remove messages")
        recent = list(room.recent)
        if id is None:
            if nick is None:
                raise ChatError("say which message: its id, or whose latest")
            key = nick_key(nick)
            found = [m for m in recent if nick_key(m.nick) == key]
            if not found:
                raise ChatError(f"no recent message by {neutralize(nick)} in {room.name}")
            id = found[-1].id
        store = self.store

        async def remove() -> Moderated:
            message = next((m for m in recent if m.id == id), None)
            if message is None:
                page = await store.page(room.key, id - 1, id + 1, 1, False)
                message = page[0] if page and page[0].id == id else None
            if message is None:
                raise ChatError(f"no such message in {room.name}")
            kept = [m for m in room.recent if m.id != id]
            room.recent.clear()
            room.recent.extend(kept)
            await store.remove(room.key, id)
            event = Moderated(room.name, "remove", actor.nick, message.nick, message=id, **self.stamp())
            self._broadcast(room, event)
            self.relay.moderated(event)
            self.moderation.audit(actor.nick, "remove", room.name, message.nick, message.text[:200])
            return event

        return Deferred.fromCoroutine(remove())

    def whenAdmin(self, member: IMember) -> Deferred[MemberRecord]:
        """
        C{member}'s record, once the store confirms it is a server admin (the admin tool may
        have changed who is, while the server runs); fails with L{ChatError} otherwise.
        """
        record = self._records[member]
        account = record.account

        def check(admins: set[str]) -> MemberRecord:
            if account is None or account.key not in admins:
                raise ChatError("only the server's admins can do that")
            return record

        return self.moderation.refreshAdmins().addCallback(check)

    def announce(self, member: IMember, text: str) -> Deferred[Moderated]:
        """An admin says C{text} to every member, on every door."""
        text = _clean_text(text, "an announcement", self.maxTextBytes)

        def send(record: MemberRecord) -> Moderated:
            event = Moderated(None, "announce", record.nick, text=text, **self.stamp())
            for connection in self.members():
                self.tell(connection, event)
            self.relay.moderated(event)
            self.moderation.audit(record.nick, "announce", None, None, text)
            return event

        return self.whenAdmin(member).addCallback(send)

    def kill(self, member: IMember, nick: str, reason: str | None = None) -> Deferred[Moderated]:
        """
        An admin disconnects a member (every connection of it): each is told by a C{kill}
        event, on which its door closes it, and the member leaves as it would.
        """
        reason = _clean_reason(reason)

        def disconnect(record: MemberRecord) -> Moderated:
            shown, _, target = self._target(nick)
            if target is None:
                raise ChatError(f"no such member: {neutralize(shown)}")
            event = Moderated(None, "kill", record.nick, shown, reason, **self.stamp())
            for connection in list(target.connections):
                self.tell(connection, event)
            self.relay.moderated(event)
            self.moderation.audit(record.nick, "kill", None, shown, reason)
            return event

        return self.whenAdmin(member).addCallback(disconnect)

    def suspend(
        self,
        member: IMember,
        nick: str,
        duration: str | None = None,
        reason: str | None = None,
        on: bool = True,
    ) -> Deferred[Moderated]:
        """
        An admin suspends an account (for C{duration}, or until lifted): it may not log in,
        its tokens are revoked, and its connections end at once, each told by a C{suspend}
        event. With C{on} false, the suspension is lifted.
        """
        accounts = self.accounts
        reason = _clean_reason(reason)

        async def suspend() -> Moderated:
            record = await self.whenAdmin(member)
            account = None if accounts is None else accounts.registered(nick)
            if accounts is None or account is None:
                raise ChatError(f"{neutralize(nick.strip())} is not registered: only accounts are suspended")
            if not on and not account.suspendedAt(self.clock.seconds()):
                raise ChatError(f"the account {account.nick} is not suspended")
            now = self.clock.seconds()
            until = None if duration is None or not on else now + parseDuration(duration)
            changed = await accounts.suspend(account, until, reason, on)
            action = "suspend" if on else "unsuspend"
            event = Moderated(None, action, record.nick, changed.nick, reason, until, **self.stamp())
            target = self._byKey.get(changed.key)
            told = [] if target is None else list(target.connections)
            for connection in dict.fromkeys([*told, member]):
                self.tell(connection, event)
            self.relay.moderated(event)
            self.moderation.audit(record.nick, action, None, changed.nick, _detail(reason, until, now))
            return event

        return Deferred.fromCoroutine(suspend())

    def lockdown(self, member: IMember, on: bool) -> Deferred[Moderated]:
        """
        An admin's one switch for a raid: no registrations, and no guests coming in (those
        here stay); every member is told.
        """

        def switch(record: MemberRecord) -> Moderated:
            if self.accounts is None:
                raise ChatError("this server keeps no accounts")
            self.accounts.lockdown = on
            event = Moderated(None, "lockdown", record.nick, on=on, **self.stamp())
            for connection in self.members():
                self.tell(connection, event)
            self.relay.moderated(event)
            self.moderation.audit(record.nick, "lockdown", None, None, "on" if on else "off")
            return event

        return self.whenAdmin(member).addCallback(switch)

    def whois(self, member: IMember, nick: str) -> Whois:
        """What a member may know of another: account or guest, since when, rooms shared, roles, idle time."""
        mine = self._records[member]
        shown, account, target = self._target(nick)
        registered = None if self.accounts is None else self.accounts.registered(shown)
        if target is None and registered is None:
            raise ChatError(f"no such member: {neutralize(shown)}")
        now = self.clock.seconds()
        shared = [] if target is None else [room.name for room in target.rooms if room in mine.rooms]
        roles: dict[str, str] = {}
        if account is not None:
            for room in (target.rooms if target is not None else []):
                role = self.moderation.role(account, room.key)
                if role is not None:
                    roles[room.name] = role
        return Whois(
            nick=shown,
            online=target is not None,
            registered=None if registered is None else registered.created,
            admin=account is not None and account in self.moderation.adminKeys,
            rooms=tuple(shared),
            roles=tuple(roles.items()),
            idle=None if target is None else max(0.0, now - target.lastActive),
            connections=0 if target is None else len(target.connections),
            away=None if target is None else target.away,
        )

    # History

    def restoreTopics(self) -> None:
        """
        Take back the rooms' kept topics (at start-up, once moderation is read): a room with a
        topic lasts, with or without members (within L{maxRooms}).
        """
        for key, (name, topic) in self.moderation.topics().items():
            room = self._rooms.get(key)
            if room is None:
                if len(self._rooms) >= self.maxRooms:
                    continue
                room = self._room(name)
            room.topic = topic

    def restore(self, history: dict[str, list[StoredMessage]]) -> None:
        """
        Take back the stored recent messages of each room (at start-up, from the store), so
        that members see them on joining. Rooms beyond L{maxRooms} are left out, those with
        the oldest last message first. Every id given from now on is larger than theirs.
        """
        for messages in history.values():
            for message in messages:
                self.ids.seen(message.id)
        newestFirst = sorted(
            (messages for messages in history.values() if messages),
            key=lambda messages: messages[-1].time,
            reverse=True,
        )
        for messages in newestFirst:
            room = self._rooms.get(messages[-1].roomKey)
            if room is None:
                if len(self._rooms) >= self.maxRooms:
                    break
                room = self._room(messages[-1].room)
            room.recent.extend(messages[-self.historyKept :])
            room.lastActive = max(room.lastActive, messages[-1].time)

    def history(
        self, room: Room, before: int | None, after: int | None, limit: int
    ) -> Deferred[tuple[list[StoredMessage], bool]]:
        """
        A page of C{room}'s messages, oldest first: the C{limit} just after the id C{after},
        or else the C{limit} just before C{before} (the latest, if neither is given). Fires
        with the page and whether there is more beyond it (later messages, for C{after};
        earlier ones otherwise).

        What the room keeps at hand answers at once, and so does a room that has never had
        more messages than it keeps (nothing older exists); what is older comes from the store.

        @raise ChatError: if the store cannot answer (the failure of the L{Deferred}).
        """
        recent = list(room.recent)
        first = recent[0].id if recent else None
        # A room that keeps fewer messages than it may has never let one go: it holds them all.
        whole = len(recent) < (room.recent.maxlen or 0)
        if after is not None:
            later = [message for message in recent if message.id > after]
            if whole or (first is not None and after >= first):
                return succeed((later[:limit], len(later) > limit))
            stored = self.store.page(room.key, after, first, limit + 1, newest=False)
            return stored.addCallbacks(
                lambda older: _first(older + later, limit), self._historyFailed
            )
        earlier = [message for message in recent if before is None or message.id < before]
        if len(earlier) > limit or whole:
            return succeed((earlier[-limit:], len(earlier) > limit))
        bound = first if before is None or (first is not None and first < before) else before
        stored = self.store.page(room.key, None, bound, limit + 1 - len(earlier), newest=True)
        return stored.addCallbacks(
            lambda older: _last(older + earlier, limit), self._historyFailed
        )

    def _historyFailed(self, failure: Failure) -> tuple[list[StoredMessage], bool]:
        _log.error("history_read_failed", reason=failure.getErrorMessage())
        raise ChatError("the history cannot be read just now; try again")

    # Members of other nodes
    #
    # In a cluster, every node keeps a copy of every member of the others (a member of its
    # own, standing for it: see chatsvc.cluster), so that member lists, counts, crowded rooms,
    # /whois and nicknames are the same everywhere. An account connected on several nodes is
    # one record on each, holding that node's own connections and one standing for each other
    # node's. What a member does is decided by its own
    # node's hub, which tells the others through its relay (IRelay); theirs do the same to
    # its copy here with these methods, with the event's id and time as its node gave them.
    # They check no rule (its node did), store nothing (its node did), and tell no relay.

    def remoteArrive(
        self,
        member: IMember,
        node: str,
        nick: str,
        account: str | None = None,
        away: str | None = None,
    ) -> None:
        """
        C{member} stands for C{nick}'s connections on the node C{node}, logged in to
        C{account} (its key) if not a guest. A new member is in no room yet (see
        L{remoteJoin}); an account here already (logged in on this node or a third) is the
        same member, and C{member} joins its connections, in its rooms.

        A member of this hub may be claiming the same nickname: the registry gave it to the
        other node, and will refuse this one's claim.

        @raise ChatError: if the nickname is held here by another member: the cluster's
            registry let two nodes have it, and the caller decides which stays.
        """
        key = nick_key(nick)
        holder = self._byKey.get(key)
        if member in self._records:
            raise ChatError(f"{nick} is here already")
        if holder is not None:
            if account is None or holder.account is None or holder.account.key != account:
                raise ChatError(f"nickname {nick!r} is held here already")
            holder.connections.append(member)
            self._records[member] = holder
            self._remoteConnections.add(member)
            for room in holder.rooms:
                self._addTo(room, member, holder)
            return
        known = None if account is None or self.accounts is None else self.accounts.registered(nick)
        record = MemberRecord(nick, key, known if known is not None and known.key == account else None)
        record.lastActive = self.clock.seconds()
        record.away = away
        record.connections.append(member)
        self._byKey[key] = record
        self._records[member] = record
        self._remoteConnections.add(member)
        for watcher in self._watchers:
            watcher.online(nick)

    def remoteJoin(self, member: IMember, name: str, id: int, time: float) -> Room | None:
        """A member of another node joined the room C{name}; L{None} if it cannot be had here."""
        record = self._records[member]
        room = self._rooms.get(room_key(name))
        if room is None:
            if len(self._rooms) >= self.maxRooms and not self._forgetIdleRoom():
                _log.warning("remote_join_no_room", nick=record.nick, room=name)
                return None
            room = self._room(validate_room_name(name))
        if member in room:
            return room
        self.ids.seen(id)
        self._enter(member, record, room, Joined(room.name, record.nick, id=id, time=time))
        return room

    def remoteLeave(
        self, member: IMember, name: str, reason: str | None, id: int, time: float
    ) -> None:
        """A member of another node left the room C{name} (or was never in it here)."""
        room = self._rooms.get(room_key(name))
        if room is not None and member in room:
            self.ids.seen(id)
            self._leaveRoom(member, room, reason, {"id": id, "time": time})

    def remoteSay(
        self, member: IMember, name: str, text: str, action: bool, id: int, time: float
    ) -> Said | Acted | None:
        """
        A member of another node said C{text} (or did it, as an C{action}) in the room
        C{name}: its members here are told, and it is kept at hand (its node stored it).
        """
        room = self._rooms.get(room_key(name))
        if room is None or member not in room:
            return None
        record = self._records[member]
        self.ids.seen(id)
        event: Said | Acted = (
            Acted(room.name, record.nick, text, id=id, time=time)
            if action
            else Said(room.name, record.nick, text, id=id, time=time)
        )
        record.lastActive = time
        room.lastActive = time
        room.recent.append(StoredMessage(room.key, room.name, time, record.nick, text, action, id=id))
        self._broadcast(room, event, exclude=member)
        return event

    def remoteTopic(
        self, member: IMember, name: str, topic: str | None, id: int, time: float
    ) -> None:
        """A member of another node set (or cleared) the topic of the room C{name}."""
        room = self._rooms.get(room_key(name))
        if room is not None:
            self.ids.seen(id)
            self._topic(room, TopicChanged(room.name, self._records[member].nick, topic, id=id, time=time))

    def remoteRename(self, member: IMember, new: str, id: int, time: float) -> None:
        """
        A member of another node is called C{new} now.

        @raise ChatError: if another member holds C{new} here.
        """
        record = self._records[member]
        newKey = nick_key(new)
        holder = self._byKey.get(newKey)
        if holder is not None and holder is not record:  # (one claiming it here will be refused)
            raise ChatError(f"nickname {new!r} is held here already")
        self.ids.seen(id)
        self._rename(record, newKey, new, {"id": id, "time": time})

    def remoteAway(self, member: IMember, message: str | None) -> None:
        """A member of another node went away with C{message}, or (L{None}) came back."""
        record = self._records[member]
        if record.away != message:
            self._away(member, record, message)

    def remoteLoggedIn(self, member: IMember, account: str) -> None:
        """A member of another node registered its nickname (C{account}, its key)."""
        record = self._records[member]
        known = None if self.accounts is None else self.accounts.registered(record.nick)
        if known is not None and known.key == account:
            record.account = known
            for watcher in self._watchers:
                watcher.loggedIn(member, record.nick, known.nick)

    def remoteWhisper(self, event: Whispered) -> bool:
        """
        A member of another node whispered to one of this node's: its connections are told.

        @return: whether the recipient is here.
        """
        record = self._byKey.get(nick_key(event.recipient))
        if record is None or not self._hasLocal(record):
            return False
        remote = self._remoteConnections
        for connection in record.connections:
            if connection not in remote:
                self.tell(connection, event)
        return True

    def remoteModerated(self, event: Moderated) -> None:
        """
        A moderator (or an admin) of another node did something: this node's members are told
        as that node's were, and what it did to members is done to those here (put out of the
        room for a kick or a ban; the door of a member killed or suspended closes it on being
        told). Roles, settings and sanctions are read again from the store by the caller.
        """
        self.ids.seen(event.id)
        target = None if event.target is None else self._byKey.get(nick_key(event.target))
        if event.room is None:
            if event.action == "lockdown" and self.accounts is not None:
                self.accounts.lockdown = bool(event.on)
            told = self.members() if target is None or event.action == "announce" else target.connections
            for connection in tuple(told):
                self.tell(connection, event)
            return
        room = self._rooms.get(room_key(event.room))
        if room is None:
            return
        if event.action in ("kick", "ban") and target is not None:
            self._putOut(target, room)
        elif event.action == "invite" and target is not None:
            self._invited.setdefault(room.key, set()).add(target.key)
        elif event.action == "remove":
            kept = [message for message in room.recent if message.id != event.message]
            room.recent.clear()
            room.recent.extend(kept)
        self._broadcast(room, event)
        if target is not None:
            for connection in target.connections:
                if connection not in room:
                    self.tell(connection, event)

    # Failures

    def onDeliveryError(self, member: IMember, event: Event, error: Exception) -> None:
        """
        Called when C{member.deliver(event)} raised C{error}. By default the failure is logged;
        the member stays, since its front-end is the one to decide that it is gone.
        """
        _log.error(
            "delivery_failed",
            nick=self._nickIfHere(member),
            kind=type(event).__name__,
            exc_info=error,
        )

    # Inside

    def _room(self, name: str) -> Room:
        room = Room(name, self.historyKept)
        room.lastActive = self.clock.seconds()
        self._rooms[room.key] = room
        return room

    def _create(self, member: IMember, name: str) -> Room:
        # A new room, within the creator's budgets and the server's bound.
        now = self.clock.seconds()
        budgets = [self._memberCreations.get(member, now)]
        host = getattr(member, "host", None)
        if isinstance(host, str):
            budgets.append(
                self._addressCreations.get(host, now)
            )
        wait = max(budget.wait(now) for budget in budgets)
        if wait:
            raise ChatError(
                f"you have created too many rooms lately; you may create another in "
                f"{math.ceil(wait)} s, or join one of /rooms"
            )
        if len(self._rooms) >= self.maxRooms and not self._forgetIdleRoom():
            raise ChatError("there are too many rooms already; join one of /rooms")
        for budget in budgets:
            budget.spend()
        return self._room(name)

    def _forgetIdleRoom(self) -> bool:
        # Make room for a new room: forget the one left empty longest, if any is empty.
        idle = [room for room in self._rooms.values() if not room and room is not self.defaultRoom]
        if not idle:
            return False
        room = min(idle, key=lambda candidate: candidate.lastActive)
        del self._rooms[room.key]
        _log.info("room_forgotten", room=room.name, messages=len(room.recent), rooms=len(self._rooms))
        return True

    def _memberRoom(self, member: IMember, name: str) -> Room:
        room = self._rooms.get(room_key(name))
        if room is None or member not in room:
            raise ChatError(f"you are not in room {neutralize(name.strip())}")
        return room

    def _leaveRoom(
        self, member: IMember, room: Room, reason: str | None, stamp: dict[str, Any] | None = None
    ) -> None:
        record = self._records[member]
        crowded = self.crowded(room)
        self._putOut(record, room)
        event = Left(room.name, record.nick, reason, **(stamp or self.stamp()))
        if member not in self._remoteConnections:
            self.relay.left(event)
        for other in record.connections:
            if other is not member:
                self.tell(other, event)
        if room:
            self._announce(room, member, event, crowded)
            return
        # Nobody left to tell: forget what was held for them.
        room.lastActive = self.clock.seconds()
        room.forgetHeld()
        if not room.recent and room.topic is None and room is not self.defaultRoom:
            del self._rooms[room.key]

    def _nickIfHere(self, member: IMember) -> str | None:
        record = self._records.get(member)
        return None if record is None else record.nick

    def _sorted(self, members: Iterable[IMember]) -> list[str]:
        # As a reader would sort them (see Room.sortedNicks), each member once.
        records = self._records
        return sorted(dict.fromkeys(records[member].nick for member in members), key=_readingOrder)

    # Announcing joins and leaves

    def _announce(
        self, room: Room, member: IMember, event: Joined | Left, crowded: bool | None = None
    ) -> None:
        # Tell the room of a join or leave (crowded: whether the room was crowded with the
        # member counted; for a join, it is in the room already), now or with the next
        # announcement (see the class's description).
        if crowded is None:
            crowded = self.crowded(room)
        held = room.hold(
            member,
            event,
            crowded,
            self.clock.seconds(),
            self.crowdInterval,
            lambda delay: self.clock.callLater(delay, self._announceHeld, room),
        )
        if not held:
            self._broadcast(room, event, exclude=member)

    def _announceHeld(self, room: Room) -> None:
        # The interval of a crowded room is over: announce what was held.
        held = room.takeHeld(self.clock.seconds())
        # A join is told under the name the member has now, or had on leaving again: the
        # members told have been told of any renaming since.
        nicks: list[str] = []
        leftAs: dict[IMember, str] = {}
        for member, event in reversed(held):
            if isinstance(event, Left):
                leftAs[member] = event.nick
                nicks.append(event.nick)
            else:
                nicks.append(leftAs.get(member) or self._nickIfHere(member) or event.nick)
        nicks.reverse()
        if len(held) == 1:  # told as itself: a lone leave keeps its reason
            member, event = held[0]
            if isinstance(event, Joined) and event.nick != nicks[0]:
                event = Joined(room.name, nicks[0], id=event.id, time=event.time)
            self._broadcast(room, event, exclude=member)
            return
        # Runs of joins and of leaves, in order.
        runs: list[tuple[bool, list[str]]] = []
        joinedAt: dict[IMember, int] = {}
        for position, (member, event) in enumerate(held):
            joined = isinstance(event, Joined)
            if joined:
                joinedAt[member] = position
            if runs and runs[-1][0] == joined:
                runs[-1][1].append(nicks[position])
            else:
                runs.append((joined, [nicks[position]]))
        stamp = self.stamp()
        everything = JoinsAndLeaves(
            room.name, tuple((joined, tuple(run)) for joined, run in runs), **stamp
        )
        for recipient in room.recipients:
            joinedAsHeld = joinedAt.get(recipient)
            if joinedAsHeld is None:  # in the room before any of it
                self.tell(recipient, everything)
            elif joinedAsHeld + 1 < len(held):  # only what came after its own join
                self.tell(
                    recipient,
                    JoinsAndLeaves(room.name, everything.runs, joinedAsHeld + 1, **stamp),
                )

    def stamp(self) -> dict[str, Any]:
        """The id and time of a new event, as its keywords (C{Moderated(..., **hub.stamp())})."""
        now = self.clock.seconds()
        return {"id": self.ids.next(now), "time": now}

    def _record(
        self, room: Room, nick: str, text: str, action: bool, id: int, when: float
    ) -> None:
        message = StoredMessage(room.key, room.name, when, nick, text, action, id=id)
        room.lastActive = when
        room.recent.append(message)
        self.store.add(message)

    def tell(self, member: IMember, event: Event) -> None:
        """Deliver C{event} to C{member} alone (a failure goes to L{onDeliveryError})."""
        try:
            member.deliver(event)
        except Exception as error:
            self.onDeliveryError(member, event, error)

    def _broadcast(self, room: Room, event: Event, exclude: IMember | None = None) -> None:
        # The hot path of every message: one call for each kind of member in the room.
        failed = self.onDeliveryError
        self.deliveries += room.localCount(exclude)
        for deliverToMany, members in room.fanOut:
            deliverToMany(members, event, exclude, failed)


def _first(messages: list[StoredMessage], limit: int) -> tuple[list[StoredMessage], bool]:
    return messages[:limit], len(messages) > limit


def _last(messages: list[StoredMessage], limit: int) -> tuple[list[StoredMessage], bool]:
    return messages[-limit:], len(messages) > limit


def _audience(record: MemberRecord) -> dict[IMember, None]:
    # The member's connections and those of everyone in its rooms, each once, in that order.
    told: dict[IMember, None] = dict.fromkeys(record.connections)
    for room in record.rooms:
        told.update(dict.fromkeys(room.recipients))
    return told


def _shownNick(registered: str, typed: str) -> str:
    # How an account's member is shown: by the nickname it registered, unless the rules have
    # since tightened past it (IRC's, see chatsvc.chat.names); then by the spelling it logged in
    # with, which has the same key and is valid.
    try:
        validate_nick(registered)
    except ChatError:
        return typed
    return registered


def _taken(nick: str, holder: str) -> NameInUse:
    # The refusal of a nickname whose key is held: naming the holder when the two names differ
    # by more than case, since the newcomer may not see why they are one name.
    if holder.casefold() == nick.casefold():
        return NameInUse(f"nickname {nick!r} is already in use")
    return NameInUse(f"nickname {nick!r} is already in use: it looks too like {holder!r}")


def _readingOrder(name: str) -> tuple[str, str]:
    return (name.casefold(), name)


def _title(role: str | None) -> str:
    return {
        "admin": "an admin",
        "owner": "the owner",
        "op": "an operator",
        "voice": "voiced",
        None: "a member",
    }[role]


def _sanctionTerms(sanction: Sanction, now: float) -> str:
    # " for 9 more minutes (spam)", " until lifted", ...
    span = " until it is lifted" if sanction.until is None else f" for {describeSpan(sanction.until - now)} more"
    return span + (f" ({sanction.reason})" if sanction.reason else "")


def _detail(reason: str | None, until: float | None, now: float) -> str | None:
    parts = [] if until is None else [f"for {describeSpan(until - now)}"]
    if reason:
        parts.append(reason)
    return "; ".join(parts) or None


def _checkIn(member: IMember, room: Room) -> None:
    if member not in room:
        raise ChatError(f"you are not in room {room.name}")


def _clean_reason(reason: str | None) -> str | None:
    if reason is None:
        return None
    return neutralize(reason.strip()) or None
