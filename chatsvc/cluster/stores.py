"""
The cluster's durable stores, on Redis: the rooms' history (L{RedisHistoryStore}), the accounts
with their tokens and invite codes (L{RedisAccountStore}), and moderation (L{RedisModerationStore}),
each implementing the core's port, all three on one txredisapi connection shared with the rest
of the node (see L{chatsvc.cluster.url.connectRedis}).

Why Redis, with its append-only file, is the cluster's one durable home:

  - The cluster needs Redis anyway, to carry events between its nodes; keeping the data there
    too adds no component to run, back up and watch. Every node sees the same accounts, bans
    and history at once, with nothing to copy between nodes.
  - txredisapi is a Twisted client: a write is a command written on the reactor's own socket,
    and its answer a L{Deferred}. No thread, nothing blocking.
  - Commands on one connection are carried out in the order they are written. A node writes a
    message (C{ZADD}) before it publishes it to the other nodes, on the same connection, so
    whatever another node has seen is already stored: there is no window in which a message
    was shown but would be missing from the history after a crash of the node.
  - Single commands and Lua scripts are atomic: an invite code is used once (C{DEL} answers 1
    to one caller only), an account is made once (C{HSETNX}), a token is kept or forgotten
    together with its entry in its account's set.

What it costs:

  - Redis keeps everything in memory. The history is therefore capped per room
    (C{keepPerRoom}, 10000 by default, about 3 MB a room with 200-byte messages) and may be
    capped by age (C{maxAge}); plan the server's memory (and C{maxmemory}, with the
    C{noeviction} policy: an evicted key would be an account or a room's history lost).
  - Durable only with the append-only file: C{appendonly yes}, with C{appendfsync everysec}
    (a crash of Redis or of its machine may lose the last second of writes) or
    C{appendfsync always} (nothing acknowledged is lost, at the price of an fsync per write).
    Without it, a restart of Redis starts empty. L{checkDurability} says what is missing, for
    the server to log at start-up.
  - Meant for one Redis server (with replicas if need be), not Redis Cluster: the scripts
    touch keys they do not declare.

The keys, each starting with the C{prefix} (C{chatsvc:} by default), so that several chats may
share one Redis database::

    history:ROOMKEY         sorted set: one member per message, scored by its id
    accounts                hash: account key -> the account, as JSON
    token:DIGEST            string: the token's account and creation time, as JSON
    account-tokens:KEY      set: the digests of the account's tokens (for removeTokens)
    invite:DIGEST           string: the invite code's creation time, as JSON
    admins                  set: the admins' account keys
    rooms                   hash: room key -> the room's settings and roles, as JSON
    sanctions               hash: JSON [kind, room key, "account"|"nick", key] -> the sanction
    audit                   list: the audit's entries as JSON, the newest first, capped

A message is a member such as C{{"id":1843..,"room":"Lobby","time":1800000000.5,"nick":"Alice",
"text":"hi","action":false}}: compact JSON, the id first. Ids are below 2**53, so a score (a
double) holds them exactly, and C{ZRANGEBYSCORE} with C{(} bounds pages through a room.

Every value read back is JSON (an object), or a key name; sets hold account keys and digests
as they are. The connection must therefore not convert numeric replies to numbers, which
would make C{"007"} C{7}: L{connectRedis}'s do not, txredisapi's own C{Connection} does unless
told not to (C{convertNumbers=False}), and the stores refuse such a connection.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import structlog
from attrs import asdict
from twisted.internet.defer import Deferred, fail, gatherResults, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorCore, IReactorTime
from twisted.python.failure import Failure
from zope.interface import implementer

from chatsvc.chat import Account, IAccountStore, IHistoryStore, StoredMessage, StoreError
from chatsvc.chat.ids import ID_SEQUENCE_BITS
from chatsvc.chat.rate import Throttle
from chatsvc.chat.moderation import AuditEntry, IModerationStore, RoomSettings, Sanction
from chatsvc.cluster.url import RedisCommands

__all__ = [
    "AUDIT_KEEP",
    "AccountExists",
    "DEFAULT_PREFIX",
    "KEEP_PER_ROOM",
    "RedisAccountStore",
    "RedisHistoryStore",
    "RedisModerationStore",
    "checkDurability",
    "decodeMessage",
    "decodeRoom",
    "decodeSanction",
    "encodeMessage",
    "encodeRoom",
    "encodeSanction",
    "isConnected",
    "scanKeys",
]

_log = structlog.get_logger("chatsvc.cluster.stores")

DEFAULT_PREFIX = "chatsvc:"
"""What every key starts with, unless told otherwise."""

KEEP_PER_ROOM = 10_000
"""The most messages kept of each room, by default."""

TRIM_EVERY = 100
"""A room is cut down to C{keepPerRoom} after every this many messages this node adds to it."""

AUDIT_KEEP = 10_000
"""The most entries the audit keeps, by default."""

STOP_TIMEOUT = 5.0
"""Seconds L{RedisHistoryStore.stop} waits for the answers to what it sent."""

SCAN_COUNT = 1000
"""How many keys each C{SCAN} step looks at."""

_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
"""Compact JSON; a time that is not a finite number is refused, not written as C{NaN}."""


class AccountExists(Exception):
    """L{RedisAccountStore.addAccount} was given a key that is taken already."""

    def __init__(self, key: str) -> None:
        super().__init__(f"an account with the key {key!r} exists already")
        self.key = key


def isConnected(redis: object) -> bool:
    """
    Whether C{redis} (a txredisapi connection handler or protocol) has a usable connection
    just now, so that a command made on it is written at once rather than waiting for one.
    """
    # A handler answers any attribute it lacks with a command wrapper: its factory is asked
    # first, and only a protocol for its own flag.
    factory = getattr(redis, "_factory", None)
    if factory is not None:  # a handler: the connections of its pool
        return any(connection.connected for connection in getattr(factory, "pool", ()))
    return bool(getattr(redis, "connected", True))


def _checkConnection(redis: object) -> None:
    """Refuse a connection that turns numeric replies into numbers (see the module's description)."""
    factory = getattr(redis, "_factory", None)
    source = factory if factory is not None else redis
    converts = vars(source).get("convertNumbers", False) if hasattr(source, "__dict__") else False
    if converts:
        raise ValueError(
            "the Redis stores need a connection that leaves replies as text "
            "(txredisapi's convertNumbers=False, as chatsvc.cluster.url.connectRedis makes)"
        )


def _text(value: object) -> str:
    """A reply's bulk string as text (txredisapi gives L{str} for UTF-8, L{bytes} otherwise)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8")
    raise StoreError(f"Redis answered {value!r} where text was expected")


def _scalar(value: object) -> str:
    """A reply that may have been made a number by the connection (a cursor, a setting), as text."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return _text(value)


def _escapeGlob(text: str) -> str:
    """C{text} matched literally in a C{SCAN ... MATCH} pattern."""
    return "".join("\\" + character if character in "*?[]\\" else character for character in text)


def _describe(error: BaseException | None) -> str:
    """A one-line reason for a log event."""
    return f"{type(error).__name__}: {error}"


def _failureReason(failure: Failure) -> str:
    return _describe(failure.value)


async def scanKeys(redis: RedisCommands, pattern: str) -> list[str]:
    """Every key matching the C{SCAN} pattern C{pattern}, each once, by C{SCAN} (never C{KEYS})."""
    found: dict[str, None] = {}
    cursor = "0"
    while True:
        reply = await redis.execute_command("SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_COUNT)
        following, keys = reply
        for key in keys:
            found[_text(key)] = None
        cursor = _scalar(following)
        if cursor == "0":
            return list(found)


def _pairs(reply: list[Any]) -> Iterable[tuple[Any, Any]]:
    """The field, value pairs of a flat C{HGETALL} reply."""
    return zip(reply[0::2], reply[1::2])


# The history.

def encodeMessage(message: StoredMessage, id: int) -> bytes:
    """
    The sorted set member of C{message}, stored under C{id}: compact JSON, the id first.

    @raise ValueError: for a message that cannot be kept (a time that is not a finite number,
        text that is not Unicode).
    """
    body = _JSON.encode(
        {
            "id": id,
            "room": message.room,
            "time": message.time,
            "nick": message.nick,
            "text": message.text,
            "action": message.action,
        }
    )
    return body.encode("utf-8")


def decodeMessage(roomKey: str, member: object) -> StoredMessage:
    """
    The message a sorted set member of C{roomKey}'s history holds.

    @raise ValueError: if it holds none (not JSON, fields missing or of the wrong types).
    """
    try:
        fields = json.loads(_text(member))
        when = fields["time"]
        if not isinstance(when, (int, float)) or isinstance(when, bool) or not math.isfinite(when):
            raise ValueError(f"a time that is not a number: {when!r}")
        room, nick, text, action, id = (
            fields["room"], fields["nick"], fields["text"], fields["action"], fields["id"]
        )
        if not (
            isinstance(room, str) and isinstance(nick, str) and isinstance(text, str)
            and isinstance(action, bool) and isinstance(id, int) and not isinstance(id, bool)
        ):
            raise ValueError("fields of the wrong types")
    except (KeyError, TypeError, UnicodeError, StoreError, json.JSONDecodeError) as error:
        raise ValueError(f"not a stored message ({_describe(error)})") from None
    return StoredMessage(roomKey, room, float(when), nick, text, action, id=id)


# Stores a message that came without an id (0) under one larger than any of its room's, and
# at least ARGV[2] (made from its time, as chatsvc.chat.ids does): read and written in one
# step, so that two nodes never give the same one. The member is ARGV[1] (its JSON, without
# the id) with the id put first; ids are below 2**53, which a Lua number holds exactly.
_ADD_NEXT = """
local top = redis.call('ZREVRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local id = tonumber(ARGV[2])
if top[2] and tonumber(top[2]) >= id then id = tonumber(top[2]) + 1 end
local text = string.format('%d', id)
redis.call('ZADD', KEYS[1], text, '{"id":' .. text .. ',' .. string.sub(ARGV[1], 2))
return text
"""


def _timeId(when: float) -> int:
    """The smallest id of an event at C{when} (POSIX seconds), as L{chatsvc.chat.ids} makes them."""
    return int(when * 1000) << ID_SEQUENCE_BITS


@implementer(IHistoryStore)
class RedisHistoryStore:
    """
    The rooms' history in Redis: a sorted set per room, scored by the messages' ids (see the
    module's description).

    L{add} writes each message at once on the shared connection, in the order it is given,
    and counts it in L{written} when Redis answers, in L{failed} (and L{dropped}: it is not
    tried again) when Redis answers with an error or the connection is lost first, and in
    L{dropped} straight away when there is no connection to write it on (logged once per
    outage, as C{history_not_connected}, and the recovery as C{history_connected}).

    Each room is cut down to its C{keepPerRoom} newest messages after every C{trimEvery}
    messages this node adds to it (and at L{start}, the rooms L{preload} found), and, with a
    C{maxAge}, messages older than that go every C{pruneInterval} seconds (from every room
    this node knows), and are never read back meanwhile.

    The start-up read is asynchronous (Redis answers through the reactor), while the port's
    L{recent} is synchronous: the server calls L{preload} first, and L{recent} hands out what
    it read. The rooms are found by C{SCAN} over C{history:*}, not by a set of room keys kept
    beside them: it is done once, at start-up, and so needs no second write per message nor a
    set that could disagree with the keys that are there.
    """

    def __init__(
        self,
        redis: RedisCommands,
        prefix: str = DEFAULT_PREFIX,
        *,
        keepPerRoom: int = KEEP_PER_ROOM,
        trimEvery: int = TRIM_EVERY,
        maxAge: float | None = None,
        pruneInterval: float = 300.0,
        stopTimeout: float = STOP_TIMEOUT,
        logInterval: float = 10.0,
    ) -> None:
        """
        @param redis: the node's txredisapi connection (handler), shared.
        @param prefix: what every key starts with.
        @param keepPerRoom: the most messages kept of each room.
        @param trimEvery: how many messages this node adds to a room between two cuts.
        @param maxAge: seconds a message is kept; L{None}: until C{keepPerRoom} newer ones
            push it out.
        @param pruneInterval: seconds between two passes that remove messages older than
            C{maxAge}.
        @param stopTimeout: seconds L{stop} waits for Redis's answers.
        @param logInterval: at most one C{history_write_failed} event per this many seconds.
        """
        _checkConnection(redis)
        for name, value in [("keepPerRoom", keepPerRoom), ("trimEvery", trimEvery)]:
            if value < 1:
                raise ValueError(f"{name} must be at least 1, not {value!r}")
        for name, positive in [
            ("maxAge", 1.0 if maxAge is None else maxAge),
            ("pruneInterval", pruneInterval),
        ]:
            if not positive > 0:
                raise ValueError(f"{name} must be positive, not {positive!r}")
        if stopTimeout < 0:
            raise ValueError(f"stopTimeout may not be negative, not {stopTimeout!r}")
        self.redis = redis
        self.prefix = prefix
        self.keepPerRoom = keepPerRoom
        self.trimEvery = trimEvery
        self.maxAge = maxAge
        self.pruneInterval = pruneInterval
        self.stopTimeout = stopTimeout

        self._written = 0
        self._failed = 0
        self._dropped = 0
        # Commands sent and not answered yet, and the messages among them.
        self._inFlight = 0
        self._messagesInFlight = 0
        # Messages added to each room since it was last cut down: the rooms this node knows.
        self._sinceTrim: dict[str, int] = {}
        self._preloaded: dict[str, list[StoredMessage]] | None = None
        self._preloadedPerRoom = 0
        self._outage = False
        self._droppedInOutage = 0
        self._failureThrottle = Throttle(logInterval)
        self._clock: IReactorTime | None = None
        self._pruneCall: IDelayedCall | None = None
        self._stopCall: IDelayedCall | None = None
        self._started = False
        self._stopping = False
        self._stopped = False
        self._stopWaiters: list[Deferred[None]] = []

    @property
    def written(self) -> int:
        """Messages Redis has confirmed."""
        return self._written

    @property
    def failed(self) -> int:
        """Messages whose write Redis refused, or whose answer was lost with the connection."""
        return self._failed

    @property
    def dropped(self) -> int:
        """
        Messages given up on: not sent for want of a connection (or after L{stop}), refused
        before sending, failed (see L{failed}), or still unanswered when L{stop} gave up.
        """
        return self._dropped

    @property
    def pending(self) -> int:
        """Messages sent and not answered yet."""
        return self._messagesInFlight

    def historyKey(self, roomKey: str) -> str:
        """The key of a room's sorted set."""
        return f"{self.prefix}history:{roomKey}"

    # Start-up.

    def roomKeys(self) -> Deferred[list[str]]:
        """The keys of the rooms that have history, found by C{SCAN}."""
        start = len(self.historyKey(""))

        async def scan() -> list[str]:
            keys = await scanKeys(self.redis, _escapeGlob(self.historyKey("")) + "*")
            return [key[start:] for key in keys]

        return Deferred.fromCoroutine(scan())

    def preload(self, perRoom: int) -> Deferred[None]:
        """
        Read every room's C{perRoom} newest messages (leaving out those older than C{maxAge},
        and any member that is not a message, logged once as C{history_rows_skipped}), for
        L{recent} to hand out. Call it before L{recent}, at start-up.

        @return: a L{Deferred} that fires once read, or fails with L{StoreError}.
        """
        if perRoom < 0:
            raise ValueError(f"perRoom may not be negative, not {perRoom!r}")

        async def read() -> None:
            try:
                rooms = await self.roomKeys()
                replies: list[Any] = []
                if perRoom:
                    low = self._oldestScore()
                    replies = await gatherResults(
                        [
                            self.redis.execute_command(
                                "ZREVRANGEBYSCORE", self.historyKey(room), "+inf", low,
                                "LIMIT", 0, perRoom,
                            )
                            for room in rooms
                        ],
                        consumeErrors=True,
                    )
            except Exception as error:
                raise StoreError(f"cannot read the history from Redis: {_unwrap(error)}") from error
            history: dict[str, list[StoredMessage]] = {}
            skipped: dict[str, int] = {}
            for room, members in zip(rooms, replies):
                messages = self._decode(room, reversed(members), skipped)
                if messages:
                    history[room] = messages
            if skipped:
                _log.warning(
                    "history_rows_skipped",
                    messages=sum(skipped.values()),
                    rooms=skipped,
                    reason="not a stored message",
                )
            for room in rooms:
                self._sinceTrim.setdefault(room, 0)
            self._preloaded = history
            self._preloadedPerRoom = perRoom
            _log.info(
                "history_opened",
                store="redis",
                rooms=len(rooms),
                messages=sum(len(messages) for messages in history.values()),
            )

        return Deferred.fromCoroutine(read())

    def recent(self, perRoom: int) -> dict[str, list[StoredMessage]]:
        """
        What L{preload} read: up to C{perRoom} newest messages of every room, oldest first.

        @raise StoreError: if L{preload} was not called (or did not finish), or read fewer
            messages a room than C{perRoom}.
        """
        if self._preloaded is None:
            raise StoreError(
                "the Redis history store reads asynchronously: call preload() and wait for it "
                "before recent()"
            )
        if perRoom > self._preloadedPerRoom:
            raise StoreError(
                f"preload() read {self._preloadedPerRoom} messages a room, "
                f"recent() asks for {perRoom}"
            )
        if perRoom <= 0:
            return {}
        return {room: messages[-perRoom:] for room, messages in self._preloaded.items()}

    def start(self, reactor: IReactorCore) -> None:
        """
        Cut the rooms L{preload} found down to C{keepPerRoom} (and by C{maxAge}), and with a
        C{maxAge}, schedule the passes that remove old messages. L{add} writes whether or not
        this was called; L{stop} waits for answers (within C{stopTimeout}) only if it was.

        @param reactor: an L{IReactorTime} too.
        @raise RuntimeError: if called twice, or after L{stop}.
        """
        if self._started or self._stopping:
            raise RuntimeError("this history store was already started or stopped")
        self._started = True
        self._clock = IReactorTime(reactor)
        for room in list(self._sinceTrim):
            self._trim(room)
        if self.maxAge is not None:
            self._pruneCall = self._clock.callLater(self.pruneInterval, self._prune)

    # Writing.

    def add(self, message: StoredMessage) -> None:
        """
        Write C{message} now, on the shared connection (see the class's description). Never
        blocks nor raises; constant time.
        """
        if self._stopped:
            self._dropped += 1
            return
        key = self.historyKey(message.roomKey)
        try:
            if message.id:
                command: tuple[Any, ...] = ("ZADD", key, message.id, encodeMessage(message, message.id))
            else:
                command = (
                    "EVAL", _ADD_NEXT, 1, key, encodeMessage(message, 0).replace(b'"id":0,', b"", 1),
                    _timeId(message.time),
                )
        except (ValueError, TypeError, OverflowError, UnicodeError) as error:
            self._dropped += 1
            _log.error("history_dropped", messages=1, total=self._dropped, reason=_describe(error))
            return
        if not self._send(command, message=True):
            return
        sinceTrim = self._sinceTrim.get(message.roomKey, 0) + 1
        if sinceTrim >= self.trimEvery:
            self._trim(message.roomKey)
        else:
            self._sinceTrim[message.roomKey] = sinceTrim

    def write(self, message: StoredMessage) -> Deferred[None]:
        """
        Write one message (under its id, which must be given) and say when Redis has it: for
        tools (L{chatsvc.cluster.migrate}), not for the chat, which uses L{add}. Counted in
        none of the counters; the room is not cut down.
        """
        if not message.id:
            return fail(ValueError("write() needs a message with its id"))
        try:
            member = encodeMessage(message, message.id)
        except (ValueError, TypeError, OverflowError, UnicodeError) as error:
            return fail(error)
        written = self.redis.execute_command(
            "ZADD", self.historyKey(message.roomKey), message.id, member
        )
        return written.addCallback(lambda reply: None)

    def _send(self, command: tuple[Any, ...], message: bool) -> bool:
        """
        Write C{command} now, if there is a connection; whether it was sent. A message not
        sent is dropped, and the first of an outage logged.
        """
        if not isConnected(self.redis):
            if message:
                self._notConnected("no connection to Redis")
            return False
        try:
            sent = self.redis.execute_command(*command)
        except Exception as error:  # a protocol that has just lost its connection
            if message:
                self._notConnected(_describe(error))
            return False
        if self._outage:
            self._outage = False
            _log.info("history_connected", dropped=self._droppedInOutage, total=self._dropped)
            self._droppedInOutage = 0
        self._inFlight += 1
        if message:
            self._messagesInFlight += 1
            sent.addCallbacks(self._wrote, self._writeFailed)
        else:
            sent.addCallbacks(self._answered, self._trimFailed)
        return True

    def _notConnected(self, reason: str) -> None:
        self._dropped += 1
        self._droppedInOutage += 1
        if not self._outage:
            self._outage = True
            _log.error("history_not_connected", reason=reason, total=self._dropped)

    def _wrote(self, reply: object) -> None:
        if self._stopped:
            return  # stop() gave up on it already
        self._messagesInFlight -= 1
        self._written += 1
        self._answered(reply)

    def _writeFailed(self, failure: Failure) -> None:
        if self._stopped:
            return
        self._messagesInFlight -= 1
        self._failed += 1
        self._dropped += 1
        if self._failureThrottle.ready(time.monotonic()):
            _log.error(
                "history_write_failed",
                reason=_failureReason(failure),
                failed=self._failed,
                dropped=self._dropped,
            )
        self._answered(None)

    def _answered(self, reply: object) -> None:
        if self._stopped:
            return
        self._inFlight -= 1
        if self._stopping and not self._inFlight:
            self._finish()

    def _trimFailed(self, failure: Failure) -> None:
        if self._failureThrottle.ready(time.monotonic()):
            _log.error("history_prune_failed", reason=_failureReason(failure))
        self._answered(None)

    # Retention.

    def _oldestScore(self) -> str:
        """The lowest score still read back (inclusive): that of the oldest message kept."""
        if self.maxAge is None:
            return "-inf"
        return str(_timeId(time.time() - self.maxAge))

    def _trim(self, roomKey: str) -> None:
        """Cut a room down to C{keepPerRoom} (and by C{maxAge}), without waiting for it."""
        self._sinceTrim[roomKey] = 0
        key = self.historyKey(roomKey)
        self._send(("ZREMRANGEBYRANK", key, 0, -(self.keepPerRoom + 1)), message=False)
        if self.maxAge is not None:
            self._send(("ZREMRANGEBYSCORE", key, "-inf", "(" + self._oldestScore()), message=False)

    def _prune(self) -> None:
        assert self._clock is not None
        self._pruneCall = self._clock.callLater(self.pruneInterval, self._prune)
        cutoff = "(" + self._oldestScore()
        for roomKey in self._sinceTrim:
            self._send(("ZREMRANGEBYSCORE", self.historyKey(roomKey), "-inf", cutoff), message=False)

    # Reading.

    def _decode(
        self, roomKey: str, members: Iterable[object], skipped: dict[str, int] | None = None
    ) -> list[StoredMessage]:
        messages = []
        for member in members:
            try:
                messages.append(decodeMessage(roomKey, member))
            except ValueError:
                if skipped is not None:
                    skipped[roomKey] = skipped.get(roomKey, 0) + 1
        return messages

    def page(
        self, roomKey: str, after: int | None, before: int | None, limit: int, newest: bool
    ) -> Deferred[list[StoredMessage]]:
        """
        Up to C{limit} messages of the room with ids between C{after} and C{before} (each
        excluded), oldest first: the newest such if C{newest}. Messages older than C{maxAge}
        are left out. Fails with L{StoreError} when there is no connection.
        """
        if limit < 1:
            return succeed([])
        if not isConnected(self.redis):
            return fail(StoreError("no connection to Redis"))
        low = self._oldestScore()
        if after is not None and (low == "-inf" or after >= int(low)):
            low = f"({after}"
        high = "+inf" if before is None else f"({before}"
        key = self.historyKey(roomKey)
        if newest:
            read = self.redis.execute_command("ZREVRANGEBYSCORE", key, high, low, "LIMIT", 0, limit)
        else:
            read = self.redis.execute_command("ZRANGEBYSCORE", key, low, high, "LIMIT", 0, limit)

        def decode(members: list[object]) -> list[StoredMessage]:
            return self._decode(roomKey, reversed(members) if newest else members)

        return read.addCallback(decode)

    def remove(self, roomKey: str, id: int) -> Deferred[None]:
        """Forget the message C{id} of the room C{roomKey}."""
        removed = self.redis.execute_command("ZREMRANGEBYSCORE", self.historyKey(roomKey), id, id)
        return removed.addCallback(lambda reply: None)

    # Stopping.

    def stop(self) -> Deferred[None]:
        """
        Wait for the answers to what was sent (within C{stopTimeout} seconds, then count the
        messages still unanswered as dropped), and stop: L{add} drops from then on. The shared
        connection is left open. Safe to call more than once, and without L{start} (when
        nothing is waited for).
        """
        if self._stopped:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._stopWaiters.append(waiter)
        if not self._stopping:
            self._stopping = True
            if self._pruneCall is not None and self._pruneCall.active():
                self._pruneCall.cancel()
            self._pruneCall = None
            if not self._inFlight:
                self._finish()
            elif self._clock is None:
                self._giveUp("the history store was not started")
            else:
                self._stopCall = self._clock.callLater(
                    self.stopTimeout, self._giveUp, f"no answer from Redis within {self.stopTimeout:g} s"
                )
        return waiter

    def _giveUp(self, reason: str) -> None:
        self._stopCall = None
        left = self._messagesInFlight
        if left:
            self._dropped += left
            self._messagesInFlight = 0
            _log.error("history_dropped", messages=left, total=self._dropped, reason=reason)
        self._finish()

    def _finish(self) -> None:
        if self._stopCall is not None and self._stopCall.active():
            self._stopCall.cancel()
        self._stopCall = None
        self._stopped = True
        _log.info(
            "history_closed",
            store="redis",
            written=self._written,
            failed=self._failed,
            dropped=self._dropped,
        )
        waiters, self._stopWaiters = self._stopWaiters, []
        for waiter in waiters:
            waiter.callback(None)


def _unwrap(error: BaseException) -> str:
    """The reason inside a L{gatherResults} failure, or the error's own."""
    inner = getattr(error, "subFailure", None)
    if isinstance(inner, Failure):
        return _describe(inner.value)
    return _describe(error)


# Accounts.

def _encodeAccount(account: Account) -> str:
    return _JSON.encode(asdict(account))


def _decodeAccount(value: object) -> Account:
    return Account(**json.loads(_text(value)))


# Keeps what changed of an account that is kept (HSET would make one that is not).
_UPDATE_ACCOUNT = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
    redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
return 0
"""

# A token and its entry in its account's set, together. KEYS: the token's key, the set's.
_ADD_TOKEN = """
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[2])
return 0
"""

# Forgets a token and its entry in its account's set. KEYS: the token's key; ARGV: the prefix
# of the sets' keys, the digest.
_REMOVE_TOKEN = """
local value = redis.call('GET', KEYS[1])
if value then
    redis.call('SREM', ARGV[1] .. cjson.decode(value)['account'], ARGV[2])
    redis.call('DEL', KEYS[1])
end
return 0
"""

# Forgets every token of an account. KEYS: the account's set; ARGV: the prefix of tokens' keys.
_REMOVE_TOKENS = """
for _, digest in ipairs(redis.call('SMEMBERS', KEYS[1])) do
    redis.call('DEL', ARGV[1] .. digest)
end
redis.call('DEL', KEYS[1])
return 0
"""


def _none(reply: object) -> None:
    return None


@implementer(IAccountStore)
class RedisAccountStore:
    """
    Accounts in one hash (account key to JSON), tokens and invite codes as keys of their own
    (see the module's description). Every method is one command or one script: atomic.
    """

    def __init__(self, redis: RedisCommands, prefix: str = DEFAULT_PREFIX) -> None:
        _checkConnection(redis)
        self.redis = redis
        self.prefix = prefix
        self.accountsKey = f"{prefix}accounts"

    def _tokenKey(self, digest: str) -> str:
        return f"{self.prefix}token:{digest}"

    def _tokensOf(self, key: str) -> str:
        return f"{self.prefix}account-tokens:{key}"

    def _inviteKey(self, digest: str) -> str:
        return f"{self.prefix}invite:{digest}"

    def loadAccounts(self) -> Deferred[list[Account]]:
        """Every account (in one C{HGETALL}: at start-up), by key."""

        def decode(reply: list[Any]) -> list[Account]:
            accounts = [_decodeAccount(value) for _, value in _pairs(reply)]
            return sorted(accounts, key=lambda account: account.key)

        return self.redis.execute_command("HGETALL", self.accountsKey).addCallback(decode)

    def loadAccount(self, key: str) -> Deferred[Account | None]:
        """The account C{key} as kept now (another node may have changed it), if there is one."""

        def decode(value: object) -> Account | None:
            return None if value is None else _decodeAccount(value)

        return self.redis.execute_command("HGET", self.accountsKey, key).addCallback(decode)

    def countAccounts(self) -> Deferred[int]:
        """How many accounts are kept."""
        return self.redis.execute_command("HLEN", self.accountsKey).addCallback(int)

    def addAccount(self, account: Account) -> Deferred[None]:
        """Keep a new account; fails with L{AccountExists} if its key is taken (C{HSETNX})."""

        def added(reply: int) -> None:
            if reply != 1:
                raise AccountExists(account.key)

        return self.redis.execute_command(
            "HSETNX", self.accountsKey, account.key, _encodeAccount(account)
        ).addCallback(added)

    def updateAccount(self, account: Account) -> Deferred[None]:
        """Keep what changed of an account; one that is not kept is not made."""
        return self.redis.execute_command(
            "EVAL", _UPDATE_ACCOUNT, 1, self.accountsKey, account.key, _encodeAccount(account)
        ).addCallback(_none)

    def addToken(self, digest: str, key: str, created: float) -> Deferred[None]:
        value = _JSON.encode({"account": key, "created": created})
        return self.redis.execute_command(
            "EVAL", _ADD_TOKEN, 2, self._tokenKey(digest), self._tokensOf(key), value, digest
        ).addCallback(_none)

    def tokenAccount(self, digest: str) -> Deferred[str | None]:
        def decode(value: object) -> str | None:
            if value is None:
                return None
            account: str = json.loads(_text(value))["account"]
            return account

        return self.redis.execute_command("GET", self._tokenKey(digest)).addCallback(decode)

    def removeToken(self, digest: str) -> Deferred[None]:
        return self.redis.execute_command(
            "EVAL", _REMOVE_TOKEN, 1, self._tokenKey(digest), self._tokensOf(""), digest
        ).addCallback(_none)

    def removeTokens(self, key: str) -> Deferred[None]:
        return self.redis.execute_command(
            "EVAL", _REMOVE_TOKENS, 1, self._tokensOf(key), self._tokenKey("")
        ).addCallback(_none)

    def addInvite(self, digest: str, created: float) -> Deferred[None]:
        value = _JSON.encode({"created": created})
        return self.redis.execute_command("SET", self._inviteKey(digest), value).addCallback(_none)

    def useInvite(self, digest: str) -> Deferred[bool]:
        """Forget an invite code; whether it was kept. Of two nodes using it at once, one gets C{True}."""
        used = self.redis.execute_command("DEL", self._inviteKey(digest))
        return used.addCallback(lambda reply: reply == 1)


# Moderation.

def encodeRoom(settings: RoomSettings) -> str:
    """A room's settings and roles, as kept (JSON, every field by its name)."""
    return _JSON.encode(asdict(settings))


def decodeRoom(value: object) -> RoomSettings:
    """The room's settings L{encodeRoom} made."""
    fields = json.loads(_text(value))
    fields["roles"] = dict(fields["roles"])
    return RoomSettings(**fields)


def _sanctionField(kind: str, roomKey: str, account: str | None, nick: str | None) -> str:
    """
    The field a sanction is kept under: one per kind, room and target, the target being the
    account when there is one, else the guest's nickname key (as the core matches them).
    """
    target = ["account", account] if account is not None else ["nick", nick]
    return _JSON.encode([kind, roomKey, *target])


def encodeSanction(sanction: Sanction) -> str:
    """A sanction, as kept (JSON, every field by its name)."""
    return _JSON.encode(asdict(sanction))


def decodeSanction(value: object) -> Sanction:
    """The sanction L{encodeSanction} made."""
    return Sanction(**json.loads(_text(value)))


def _encodeAudit(entry: AuditEntry) -> str:
    return _JSON.encode(asdict(entry))


def _decodeAudit(value: object) -> AuditEntry:
    return AuditEntry(**json.loads(_text(value)))


@implementer(IModerationStore)
class RedisModerationStore:
    """
    The admins (a set), every room's settings and roles (a hash of JSON, one field a room),
    the sanctions (a hash of JSON, one field per kind, room and target) and the audit (a
    list, capped at C{auditKeep} entries); see the module's description.
    """

    def __init__(
        self,
        redis: RedisCommands,
        prefix: str = DEFAULT_PREFIX,
        *,
        auditKeep: int = AUDIT_KEEP,
        now: Callable[[], float] = time.time,
    ) -> None:
        """
        @param auditKeep: the most entries the audit keeps (the oldest go).
        @param now: the time, in POSIX seconds: what a sanction's end is compared with.
        """
        _checkConnection(redis)
        if auditKeep < 1:
            raise ValueError(f"auditKeep must be at least 1, not {auditKeep!r}")
        self.redis = redis
        self.prefix = prefix
        self.auditKeep = auditKeep
        self.now = now
        self.adminsKey = f"{prefix}admins"
        self.roomsKey = f"{prefix}rooms"
        self.sanctionsKey = f"{prefix}sanctions"
        self.auditKey = f"{prefix}audit"

    def loadModeration(self) -> Deferred[tuple[set[str], list[RoomSettings], list[Sanction]]]:
        """
        The admins, every room's settings (by room key) and the sanctions in force (oldest
        first). Expired sanctions are not returned, and are forgotten.
        """

        async def load() -> tuple[set[str], list[RoomSettings], list[Sanction]]:
            reads: list[Deferred[Any]] = [
                self.admins(),
                self.redis.execute_command("HGETALL", self.roomsKey),
                self.redis.execute_command("HGETALL", self.sanctionsKey),
            ]
            admins, rooms, sanctions = await gatherResults(reads, consumeErrors=True)
            now = self.now()
            inForce: list[tuple[float, str, Sanction]] = []
            expired = []
            for name, value in _pairs(sanctions):
                sanction = decodeSanction(value)
                if sanction.until is not None and sanction.until <= now:
                    expired.append(name)
                else:
                    inForce.append((sanction.created, _text(name), sanction))
            if expired:
                await self.redis.execute_command("HDEL", self.sanctionsKey, *expired)
            settings = sorted((decodeRoom(value) for _, value in _pairs(rooms)), key=lambda room: room.key)
            inForce.sort(key=lambda each: each[:2])  # oldest first; the same moment by field
            return admins, settings, [sanction for _, _, sanction in inForce]

        return Deferred.fromCoroutine(load())

    def admins(self) -> Deferred[set[str]]:
        def decode(members: list[object]) -> set[str]:
            return {_text(member) for member in members}

        return self.redis.execute_command("SMEMBERS", self.adminsKey).addCallback(decode)

    def setAdmin(self, accountKey: str, admin: bool) -> Deferred[None]:
        """Make the account C{accountKey} an admin, or no longer one (the admin tool's)."""
        command = "SADD" if admin else "SREM"
        return self.redis.execute_command(command, self.adminsKey, accountKey).addCallback(_none)

    def saveRoom(self, settings: RoomSettings) -> Deferred[None]:
        return self.redis.execute_command(
            "HSET", self.roomsKey, settings.key, encodeRoom(settings)
        ).addCallback(_none)

    def addSanction(self, sanction: Sanction) -> Deferred[None]:
        name = _sanctionField(sanction.kind, sanction.roomKey, sanction.account, sanction.nick)
        return self.redis.execute_command(
            "HSET", self.sanctionsKey, name, encodeSanction(sanction)
        ).addCallback(_none)

    def removeSanction(
        self, kind: str, roomKey: str, account: str | None, nick: str | None
    ) -> Deferred[None]:
        name = _sanctionField(kind, roomKey, account, nick)
        return self.redis.execute_command("HDEL", self.sanctionsKey, name).addCallback(_none)

    def audit(self, entry: AuditEntry) -> Deferred[None]:
        """Keep an entry (C{LPUSH}), and let the oldest beyond C{auditKeep} go (C{LTRIM})."""
        pushed = self.redis.execute_command("LPUSH", self.auditKey, _encodeAudit(entry))
        trimmed = self.redis.execute_command("LTRIM", self.auditKey, 0, self.auditKeep - 1)
        return gatherResults([pushed, trimmed], consumeErrors=True).addCallback(_none)

    def readAudit(self, limit: int) -> Deferred[list[AuditEntry]]:
        """The last C{limit} entries of the audit, oldest first."""
        if limit < 1:
            return succeed([])

        def decode(values: list[object]) -> list[AuditEntry]:
            return [_decodeAudit(value) for value in reversed(values)]

        return self.redis.execute_command("LRANGE", self.auditKey, 0, limit - 1).addCallback(decode)


# Durability.

async def _configValue(redis: RedisCommands, name: str) -> str | None:
    reply = await redis.execute_command("CONFIG", "GET", name)
    values = {_scalar(key): value for key, value in _pairs(list(reply))}
    return None if name not in values else _scalar(values[name])


def checkDurability(redis: RedisCommands) -> Deferred[list[str]]:
    """
    What keeps the Redis behind C{redis} from being a durable home (see the module's
    description), as warnings for the server to log at start-up; none if it is one. Never
    fails: a refused C{CONFIG GET} (a managed Redis, an ACL) is itself a warning.
    """

    async def check() -> list[str]:
        try:
            appendonly = await _configValue(redis, "appendonly")
            appendfsync = await _configValue(redis, "appendfsync")
            maxmemory = await _configValue(redis, "maxmemory")
            policy = await _configValue(redis, "maxmemory-policy")
        except Exception as error:
            return [
                f"cannot check Redis's durability (CONFIG GET refused: {_describe(error)}): "
                f"make sure it runs with appendonly yes and appendfsync everysec or always, "
                f"or the history, accounts and moderation may be lost"
            ]
        warnings = []
        if appendonly != "yes":
            warnings.append(
                f"Redis runs with appendonly {appendonly or 'unknown'}: whatever it holds "
                f"(history, accounts, moderation) is lost when it restarts, or goes back to "
                f"its last snapshot; set appendonly yes (and appendfsync everysec or always)"
            )
        elif appendfsync == "no":
            warnings.append(
                "Redis runs with appendfsync no: the operating system decides when writes reach "
                "the disk, and a crash of the machine may lose many seconds of them; set "
                "appendfsync everysec (up to a second lost) or always (nothing lost)"
            )
        if maxmemory not in (None, "0") and policy is not None and policy.startswith("allkeys-"):
            warnings.append(
                f"Redis runs with maxmemory {maxmemory} and maxmemory-policy {policy}: when "
                f"full it evicts keys, which would be accounts or rooms' history lost; set "
                f"maxmemory-policy noeviction (writes then fail, and are counted, instead)"
            )
        return warnings

    return Deferred.fromCoroutine(check())
