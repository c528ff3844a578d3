"""
The ports the core talks through: what a member is (L{IMember}), where history is kept
(L{IHistoryStore}, with L{NullStore}, which keeps nothing), and who holds which nickname
(L{INicknameRegistry}, with L{LocalNicknames} for a server on its own), where accounts are
kept (L{IAccountStore}, with L{MemoryAccountStore}) and how passwords are hashed
(L{IPasswordHasher}), and where what this server's members do is told to the other nodes of a
cluster (L{IRelay}, with L{NoRelay} for a server on its own). Doors implement the first;
storage backends the history and the accounts; a cluster backend the registry and the relay.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Union

from attrs import field, frozen
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorCore
from zope.interface import Attribute, Interface, implementer

from chatsvc.chat.events import Acted, Event, Joined, Left, Moderated, Renamed, Said, TopicChanged

__all__ = [
    "Account",
    "DeliverToMany",
    "DeliveryFailed",
    "IAccountStore",
    "IBatchDelivery",
    "IHistoryStore",
    "IMember",
    "INicknameRegistry",
    "IPasswordHasher",
    "IRelay",
    "LocalNicknames",
    "MemoryAccountStore",
    "NicknameTaken",
    "NicknamesUnavailable",
    "NoRelay",
    "NullStore",
    "StoreError",
    "StoredMessage",
    "deliverToEach",
]


DeliveryFailed = Callable[["IMember", Event, Exception], None]
"""Told of a member whose C{deliver} raised: the member, the event and the exception."""


class IMember(Interface):
    """
    Anything that can be in a room: a connection, a test double, a bridge to another server.
    """

    def deliver(event: Event) -> None:
        """
        Take one event. Must not raise for ordinary trouble (a closed connection); the hub
        isolates the other members from an exception here anyway.

        A member's class may also provide L{IBatchDelivery}, to be handed a broadcast for all
        the room's members of that class at once.
        """


class IBatchDelivery(Interface):
    """
    Provided by a class of members (C{@provider(IBatchDelivery)}) that can take one event for
    many of its members in one call, faster than a L{IMember.deliver} call each: a door that
    renders an event once and adds the same bytes to what each of its connections is sent. A
    broadcast hands each such class all of the room's members of that class at once (see
    L{chatsvc.chat.hub.Room.fanOut}); other members get L{deliverToEach}.
    """

    def deliverToMany(
        members: Sequence[IMember],
        event: Event,
        exclude: IMember | None,
        failed: DeliveryFailed,
    ) -> None:
        """
        Deliver C{event} to each of C{members} but C{exclude}, exactly as L{deliverToEach}
        would: a member whose delivery raises is reported to C{failed}, and the others still
        get the event.
        """



DeliverToMany = Callable[[Sequence[IMember], Event, Union[IMember, None], DeliveryFailed], None]
"""Delivers an event to many members but one left out, as L{deliverToEach} does."""


def deliverToEach(
    members: Sequence[IMember], event: Event, exclude: IMember | None, failed: DeliveryFailed
) -> None:
    """
    Deliver C{event} to each of C{members} but C{exclude}, with one C{deliver} call each; a
    member that raises is reported to C{failed}, and the others still get the event.
    """
    for member in members:
        if member is not exclude:
            try:
                member.deliver(event)
            except Exception as error:
                failed(member, event, error)


@frozen
class StoredMessage:
    """One line of a room's history: a plain message or a C{/me} action."""

    roomKey: str
    """The room's key (made by the caller with L{room_key}); history is looked up by it."""
    room: str
    """The room's name as shown."""
    time: float
    """When it was said, in POSIX seconds."""
    nick: str
    """Who said it."""
    text: str
    """What was said (for an action, what was done)."""
    action: bool
    """C{True} for a C{/me} action, C{False} for a plain message."""
    id: int = field(default=0, eq=False, kw_only=True)
    """The id it was said with (that of its L{Said} or L{Acted} event): the store keeps it under
    this id, and a room's history is in the order of its ids. 0: none given (the store then
    gives it one larger than any before). Two messages that say the same compare equal."""


class IHistoryStore(Interface):
    """
    Where the rooms' history is kept between runs of the server.

    The server reads it once, before accepting connections (L{recent}), then starts it
    (L{start}), hands it every message as it is said (L{add}) and stops it on shutdown
    (L{stop}).
    """

    written = Attribute("Messages written so far (read-only).")
    failed = Attribute(
        "Write attempts that failed, counted in messages: a batch of 10 failing twice counts 20 "
        "(read-only)."
    )
    dropped = Attribute("Messages given up on, never to be written (read-only).")

    def recent(perRoom: int) -> dict[str, list[StoredMessage]]:
        """
        Up to C{perRoom} most recent messages of every room, oldest first, keyed by C{roomKey}.

        Called once at start-up, before the server accepts connections: it reads synchronously.

        @raise StoreError: if the store cannot be used; the message says why.
        """

    def start(reactor: IReactorCore) -> None:
        """
        Begin writing in the background (after L{recent}).

        @param reactor: the reactor to schedule on and deliver results through: also an
            L{IReactorTime} and an L{IReactorFromThreads}, as every real reactor is.
        """

    def add(message: StoredMessage) -> None:
        """
        Queue C{message} for writing. Never blocks, never raises, takes constant time: it is on
        the path of every chat message.
        """

    def stop() -> Deferred[None]:
        """
        Write what is still queued (giving up after a bounded time), then close. Safe to call
        whether or not L{start} was called, and more than once.
        """

    def page(
        roomKey: str, after: int | None, before: int | None, limit: int, newest: bool
    ) -> Deferred[list[StoredMessage]]:
        """
        Up to C{limit} stored messages of a room with ids between C{after} and C{before}
        (each excluded; L{None}: no bound), oldest first: the newest of them if C{newest},
        else the oldest. Read in the background, off the reactor thread, while the server
        runs; messages still queued for writing are not among them.
        """

    def remove(roomKey: str, id: int) -> Deferred[None]:
        """Forget the message C{id} of a room, whether written yet or still queued."""


@implementer(IHistoryStore)
class NullStore:
    """A history store that keeps nothing: no history survives a restart (C{--db :memory:})."""

    written = 0
    """Always 0."""
    failed = 0
    """Always 0."""
    dropped = 0
    """Always 0: a message not kept on purpose is not given up on."""

    def recent(self, perRoom: int) -> dict[str, list[StoredMessage]]:
        """No history: an empty dictionary."""
        return {}

    def start(self, reactor: IReactorCore) -> None:
        """Nothing to start."""

    def add(self, message: StoredMessage) -> None:
        """Forget C{message}."""

    def stop(self) -> Deferred[None]:
        """Nothing to write: already stopped."""
        return succeed(None)

    def page(
        self, roomKey: str, after: int | None, before: int | None, limit: int, newest: bool
    ) -> Deferred[list[StoredMessage]]:
        """Nothing is kept: no messages."""
        return succeed([])

    def remove(self, roomKey: str, id: int) -> Deferred[None]:
        """Nothing is kept: nothing to forget."""
        return succeed(None)


class StoreError(Exception):
    """The history store cannot be used (at start-up): the message says why, naming the file."""


class NicknameTaken(Exception):
    """A registry's refusal of a claim: the nickname's key is held already."""

    def __init__(self, holder: str) -> None:
        """
        @param holder: the nickname, as shown, of whoever holds the key: the newcomer is told
            it when it differs by more than case (it may not see why the two are one name).
        """
        super().__init__(holder)
        self.holder = holder


class NicknamesUnavailable(Exception):
    """
    A registry's refusal to answer now (a cluster whose other nodes are out of reach): the
    message, shown to the member, says why and that it is worth trying again.
    """


class INicknameRegistry(Interface):
    """
    Who holds which nickname, by its key (L{chatsvc.chat.names.nick_key}): the one authority on
    a nickname being free, for this server alone or for every node of a cluster.

    The hub asks it only for keys none of its own members holds or is claiming, and releases
    every key it was granted exactly once. A claim may be answered later (a cluster asks the
    other nodes); meanwhile the member waits, and its door does not read from it.
    """

    def claim(key: str, nick: str) -> Deferred[None]:
        """
        Hold C{key} for a member of this server, shown as C{nick}.

        @return: a L{Deferred} that fires with L{None} once the key is held, or fails with
            L{NicknameTaken} if it is held already, or L{NicknamesUnavailable} if the
            registry cannot answer now, saying why (any other failure: neither can it).
        """

    def relabel(key: str, nick: str) -> None:
        """A held key is now shown as C{nick} (a change of case, or of look-alike letters)."""

    def release(key: str) -> None:
        """Give up C{key}, held since its claim: anyone may claim it now."""


@implementer(INicknameRegistry)
class LocalNicknames:
    """The nicknames of a server on its own: held in memory, every claim answered at once."""

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held: dict[str, str] = {}

    def __len__(self) -> int:
        """The number of keys held."""
        return len(self._held)

    def __contains__(self, key: object) -> bool:
        """Whether C{key} is held."""
        return key in self._held

    def claim(self, key: str, nick: str) -> Deferred[None]:
        """Hold C{key} at once, unless it is held already."""
        holder = self._held.get(key)
        if holder is not None:
            return fail(NicknameTaken(holder))
        self._held[key] = nick
        return succeed(None)

    def relabel(self, key: str, nick: str) -> None:
        """Show C{key} as C{nick} from now on."""
        if key in self._held:
            self._held[key] = nick

    def release(self, key: str) -> None:
        """Forget C{key}."""
        self._held.pop(key, None)


@frozen
class Account:
    """A registered nickname: its owner logs in with its password."""

    key: str
    """The nickname's key (L{chatsvc.chat.names.nick_key}), by which the account is known."""
    nick: str
    """The nickname as registered."""
    passwordHash: str = field(repr=False)
    """The password, as the hasher keeps it (never the password itself)."""
    created: float
    """When it was registered (POSIX time)."""
    suspended: bool = False
    """Whether an admin suspended it: it may not log in."""
    suspendedUntil: float | None = None
    """Until when (POSIX time), if suspended for a time; None: until lifted."""
    suspendReason: str | None = None

    def suspendedAt(self, now: float) -> bool:
        """Whether the account is suspended at C{now}."""
        return self.suspended and (self.suspendedUntil is None or self.suspendedUntil > now)


class IAccountStore(Interface):
    """Where accounts, and the digests of their tokens and of invite codes, are kept."""

    def loadAccounts() -> Deferred[list[Account]]:
        """Every account."""

    def addAccount(account: Account) -> Deferred[None]:
        """Keep a new account."""

    def updateAccount(account: Account) -> Deferred[None]:
        """Keep what changed of an account (its password)."""

    def addToken(digest: str, key: str, created: float) -> Deferred[None]:
        """Keep a token (by its digest) that logs in as the account C{key}."""

    def tokenAccount(digest: str) -> Deferred[str | None]:
        """The key of the account a token logs in as, if the token is kept."""

    def removeToken(digest: str) -> Deferred[None]:
        """Forget one token."""

    def removeTokens(key: str) -> Deferred[None]:
        """Forget every token of the account C{key}."""

    def addInvite(digest: str, created: float) -> Deferred[None]:
        """Keep a one-use invite code (by its digest)."""

    def useInvite(digest: str) -> Deferred[bool]:
        """Forget an invite code; whether it was kept (and so may be used)."""


class IPasswordHasher(Interface):
    """Hashes passwords with a hash made for them (slow on purpose): off the reactor's thread."""

    def hash(password: str) -> Deferred[str]:
        """The password's hash, salted, with its parameters."""

    def verify(passwordHash: str, password: str) -> Deferred[bool]:
        """Whether C{password} is the one C{passwordHash} was made from."""


@implementer(IAccountStore)
class MemoryAccountStore:
    """Keeps accounts in memory only, answering at once: a server that keeps no files."""

    def __init__(self) -> None:
        self.accounts: dict[str, Account] = {}
        self.tokens: dict[str, str] = {}
        self.invites: set[str] = set()

    def loadAccounts(self) -> Deferred[list[Account]]:
        return succeed(list(self.accounts.values()))

    def addAccount(self, account: Account) -> Deferred[None]:
        self.accounts[account.key] = account
        return succeed(None)

    def updateAccount(self, account: Account) -> Deferred[None]:
        self.accounts[account.key] = account
        return succeed(None)

    def addToken(self, digest: str, key: str, created: float) -> Deferred[None]:
        self.tokens[digest] = key
        return succeed(None)

    def tokenAccount(self, digest: str) -> Deferred[str | None]:
        return succeed(self.tokens.get(digest))

    def removeToken(self, digest: str) -> Deferred[None]:
        self.tokens.pop(digest, None)
        return succeed(None)

    def removeTokens(self, key: str) -> Deferred[None]:
        for digest in [digest for digest, owner in self.tokens.items() if owner == key]:
            del self.tokens[digest]
        return succeed(None)

    def addInvite(self, digest: str, created: float) -> Deferred[None]:
        self.invites.add(digest)
        return succeed(None)

    def useInvite(self, digest: str) -> Deferred[bool]:
        if digest in self.invites:
            self.invites.discard(digest)
            return succeed(True)
        return succeed(False)


class IRelay(Interface):
    """
    Where the hub tells what its own members did (never what it was told of members of other
    nodes), for the other nodes of a cluster to do the same to their copies: each call is
    made once the hub has decided and done it here, with the event it delivered.
    """

    def arrived(nick: str, account: str | None, host: str | None) -> None:
        """A member arrived (its first connection): C{account} is its key, if logged in."""

    def departed(nick: str, reason: str | None) -> None:
        """A member left (its last connection), having left each of its rooms (L{left})."""

    def joined(event: Joined) -> None:
        """A member joined a room."""

    def left(event: Left) -> None:
        """A member left a room (parting, or departing)."""

    def said(event: Said | Acted) -> None:
        """A member said something, or did a C{/me}, in a room."""

    def topicChanged(event: TopicChanged) -> None:
        """A member set or cleared a room's topic."""

    def renamed(event: Renamed) -> None:
        """A member changed its nickname."""

    def away(nick: str, message: str | None) -> None:
        """A member went away with C{message}, or (L{None}) came back."""

    def loggedIn(nick: str, account: str) -> None:
        """A guest registered its nickname: it is logged in to C{account} now."""

    def moderated(event: Moderated) -> None:
        """A moderator (or an admin) did something, told as the hub told its own members."""


@implementer(IRelay)
class NoRelay:
    """The relay of a server on its own: nobody else to tell."""

    def arrived(self, nick: str, account: str | None, host: str | None) -> None:
        pass

    def departed(self, nick: str, reason: str | None) -> None:
        pass

    def joined(self, event: Joined) -> None:
        pass

    def left(self, event: Left) -> None:
        pass

    def said(self, event: Said | Acted) -> None:
        pass

    def topicChanged(self, event: TopicChanged) -> None:
        pass

    def renamed(self, event: Renamed) -> None:
        pass

    def away(self, nick: str, message: str | None) -> None:
        pass

    def loggedIn(self, nick: str, account: str) -> None:
        pass

    def moderated(self, event: Moderated) -> None:
        pass
