"""
Tests for L{chatsvc.cluster.stores}: the history, account and moderation stores on a real
C{redis-server} of each test's own (L{tests.redis.RedisServer}), through txredisapi on the real
reactor, connected by L{chatsvc.cluster.url.connectRedis}. Nothing sleeps: a test waits for the
answers to what it sent by sending a C{PING} on the same connection (answered after everything
sent before it), or for a Deferred, with a deadline.
"""

from __future__ import annotations

import json
import time
from typing import Any, cast

import txredisapi  # type: ignore[import-untyped]
from attrs import evolve
from twisted.internet import reactor
from twisted.internet.defer import gatherResults
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from chatsvc.chat import Account, IAccountStore, IHistoryStore, StoredMessage, StoreError
from chatsvc.chat.ids import ID_SEQUENCE_BITS
from chatsvc.chat.moderation import AuditEntry, IModerationStore, RoomSettings, Sanction
from chatsvc.cluster.stores import (
    AccountExists,
    RedisAccountStore,
    RedisHistoryStore,
    RedisModerationStore,
    checkDurability,
    decodeMessage,
    encodeMessage,
    isConnected,
)
from chatsvc.cluster.url import RedisConnection, connectRedis, parseRedisUrl
from tests.processes import TIMEOUT
from tests.redis import RedisServer
from tests.storage.test_sqlite import fields


async def connect(test: TestCase, server: RedisServer, url: str | None = None, **options: Any) -> RedisConnection:
    """A txredisapi connection to C{server} (or to C{url}), closed after the test."""
    redis = await connectRedis(reactor, parseRedisUrl(url or server.url), **options)
    test.addCleanup(redis.disconnect)
    return redis


async def settled(redis: RedisConnection) -> None:
    """Return once every command sent on C{redis} before this call is answered."""
    await redis.execute_command("PING").addTimeout(TIMEOUT, reactor)


async def reconnected(redis: RedisConnection) -> None:
    """
    Return once C{redis} has a working connection again, after its server went away: the
    first C{PING} may go out on the dead connection and fail; the next waits for a new one.
    """
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            await redis.execute_command("PING").addTimeout(TIMEOUT, reactor)
            return
        except (ConnectionError, txredisapi.ConnectionError):
            if time.monotonic() > deadline:
                raise


def message(number: int, room: str = "Lobby", when: float | None = None, id: int | None = None) -> StoredMessage:
    """Message number C{number} in C{room}, under the id C{number << 10} unless told otherwise."""
    return StoredMessage(
        room.casefold(),
        room,
        1_800_000_000.0 + number if when is None else when,
        f"nick{number % 3}",
        f"text {number} \N{SNOWMAN}",
        number % 5 == 4,
        id=number << ID_SEQUENCE_BITS if id is None else id,
    )


def withIds(messages: list[StoredMessage]) -> list[tuple[int, StoredMessage]]:
    """What to compare: the messages and their ids (which L{StoredMessage} equality leaves out)."""
    return [(each.id, each) for each in messages]


class RedisTestCase(TestCase):
    """A real redis-server for each test, and a log observer."""

    def setUp(self) -> None:
        self.server = RedisServer(self)
        self.observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def events(self, name: str) -> list[dict[str, Any]]:
        return fields(self.observer, name)


class HistoryStoreTests(RedisTestCase):
    """L{RedisHistoryStore}: a sorted set per room, written at once, read back by id."""

    async def store(self, **options: Any) -> tuple[RedisConnection, RedisHistoryStore]:
        redis = await connect(self, self.server)
        store = RedisHistoryStore(redis, **options)
        self.addCleanup(store.stop)
        return redis, store

    async def test_interface(self) -> None:
        """It provides L{IHistoryStore}, counters included."""
        redis, store = await self.store()
        verifyObject(IHistoryStore, store)
        self.assertEqual((store.written, store.failed, store.dropped, store.pending), (0, 0, 0, 0))

    async def test_layout(self) -> None:
        """A message is one member of its room's sorted set: compact JSON, scored by its id."""
        redis, store = await self.store()
        store.start(reactor)
        said = StoredMessage("lobby", "Lobby", 1_800_000_000.25, "Alice", "hi \N{SNOWMAN}", True, id=(2**53) - 1)
        store.add(said)
        await settled(redis)
        self.assertEqual(store.written, 1)
        member = (
            '{"id":9007199254740991,"room":"Lobby","time":1800000000.25,"nick":"Alice",'
            '"text":"hi \N{SNOWMAN}","action":true}'
        ).encode()
        self.assertEqual(
            self.server.command("ZRANGE", "chatsvc:history:lobby", 0, -1, "WITHSCORES"),
            [member, b"9007199254740991"],
        )
        self.assertEqual(encodeMessage(said, said.id), member)
        self.assertEqual(withIds([decodeMessage("lobby", member)]), withIds([said]))

    async def test_prefix(self) -> None:
        """Every key starts with the prefix given."""
        redis = await connect(self, self.server)
        store = RedisHistoryStore(redis, "chat-b:")
        store.add(message(1))
        await settled(redis)
        self.assertEqual(self.server.command("KEYS", "*"), [b"chat-b:history:lobby"])

    async def test_page(self) -> None:
        """Pages with exclusive bounds, oldest first: the oldest or the newest of them."""
        redis, store = await self.store()
        store.start(reactor)
        said = [message(number) for number in range(1, 11)]
        for each in said:
            store.add(each)
        store.add(message(1, "Games"))
        await settled(redis)
        self.assertEqual((store.written, store.pending), (11, 0))
        ids = [each.id for each in said]

        async def page(after: int | None, before: int | None, limit: int, newest: bool) -> list[int]:
            return [each.id for each in await store.page("lobby", after, before, limit, newest)]

        self.assertEqual(await page(None, None, 3, True), ids[7:])
        self.assertEqual(await page(None, None, 3, False), ids[:3])
        self.assertEqual(await page(ids[2], ids[6], 10, False), ids[3:6])
        self.assertEqual(await page(ids[2], ids[6], 2, False), ids[3:5])
        self.assertEqual(await page(ids[2], ids[6], 2, True), ids[4:6])
        self.assertEqual(await page(ids[8], None, 10, False), ids[9:])
        self.assertEqual(await page(None, ids[0], 10, True), [])
        self.assertEqual(await page(None, None, 0, True), [])
        self.assertEqual(await page(None, None, 100, False), ids)
        self.assertEqual(withIds(await store.page("lobby", None, None, 1, False)), withIds(said[:1]))
        self.assertEqual(await store.page("nowhere", None, None, 10, True), [])

    async def test_storedOnce(self) -> None:
        """A message added twice under its id is kept once."""
        redis, store = await self.store()
        store.add(message(1))
        store.add(message(1))
        await settled(redis)
        self.assertEqual(self.server.command("ZCARD", "chatsvc:history:lobby"), 1)
        self.assertEqual(store.written, 2)

    async def test_withoutId(self) -> None:
        """
        A message without an id is given one larger than its room's largest (in Redis, in one
        step), or, in an empty room, the first id of its time.
        """
        redis, store = await self.store()
        firstOfItsTime = int(message(8).time * 1000) << ID_SEQUENCE_BITS
        store.add(message(7, id=firstOfItsTime + 5))
        store.add(evolve(message(8), id=0))
        store.add(evolve(message(8), text="the same moment", id=0))
        store.add(evolve(message(1, "Games"), id=0))
        await settled(redis)
        self.assertEqual(store.written, 4)
        lobby = await store.page("lobby", None, None, 10, False)
        self.assertEqual([each.id for each in lobby], [firstOfItsTime + 5, firstOfItsTime + 6, firstOfItsTime + 7])
        self.assertEqual([each.text for each in lobby], [message(7).text, message(8).text, "the same moment"])
        [games] = await store.page("games", None, None, 10, False)
        self.assertEqual(games.id, int(message(1).time * 1000) << ID_SEQUENCE_BITS)

    async def test_remove(self) -> None:
        """A message removed is gone; the others stay."""
        redis, store = await self.store()
        for number in range(1, 4):
            store.add(message(number))
        await store.remove("lobby", message(2).id)
        await store.remove("lobby", message(99).id)
        self.assertEqual(
            [each.id for each in await store.page("lobby", None, None, 10, False)],
            [message(1).id, message(3).id],
        )

    async def test_capped(self) -> None:
        """After every C{trimEvery} messages a room is cut down to its C{keepPerRoom} newest."""
        redis, store = await self.store(keepPerRoom=5, trimEvery=10)
        store.start(reactor)
        for number in range(1, 26):
            store.add(message(number))
        for number in range(1, 8):
            store.add(message(number, "Games"))
        await settled(redis)
        self.assertEqual(store.written, 32)
        # Cut to 5 after the 10th and the 20th; 5 more since.
        self.assertEqual(
            [each.id for each in await store.page("lobby", None, None, 100, False)],
            [message(number).id for number in range(16, 26)],
        )
        self.assertEqual(self.server.command("ZCARD", "chatsvc:history:games"), 7)

    async def test_cappedAtStart(self) -> None:
        """The rooms found at start-up are cut down when the store starts."""
        redis, store = await self.store(keepPerRoom=3)
        for number in range(1, 8):
            store.add(message(number))
        await settled(redis)
        self.assertEqual(self.server.command("ZCARD", "chatsvc:history:lobby"), 7)
        await store.preload(10)
        store.start(reactor)
        await settled(redis)
        self.assertEqual(
            [each.id for each in await store.page("lobby", None, None, 100, False)],
            [message(number).id for number in range(5, 8)],
        )

    async def test_maxAge(self) -> None:
        """
        Messages older than C{maxAge} are never read back, and go when the store starts (and
        at every pruning pass after).
        """
        redis, store = await self.store(maxAge=3600)
        now = time.time()
        old = [message(number, when=now - 7200, id=int((now - 7200 + number) * 1000) << 10) for number in range(3)]
        new = [message(number, when=now, id=int((now + number) * 1000) << 10) for number in range(3)]
        for each in old + new:
            store.add(each)
        await settled(redis)
        self.assertEqual(self.server.command("ZCARD", "chatsvc:history:lobby"), 6)
        self.assertEqual(withIds(await store.page("lobby", None, None, 10, False)), withIds(new))
        self.assertEqual(withIds(await store.page("lobby", old[0].id, None, 10, False)), withIds(new))
        await store.preload(10)
        self.assertEqual(withIds(store.recent(10)["lobby"]), withIds(new))
        store.start(reactor)
        await settled(redis)
        self.assertEqual(self.server.command("ZCARD", "chatsvc:history:lobby"), 3)

    async def test_preloadAndRecent(self) -> None:
        """
        L{recent} hands out what L{preload} read: each room's newest, oldest first. Members that
        are not messages are skipped and logged; other prefixes' keys are not read, even when
        the prefix has C{SCAN}'s wildcards in it.
        """
        redis = await connect(self, self.server)
        store = RedisHistoryStore(redis, "chat*:")
        with self.assertRaises(StoreError):
            store.recent(3)
        for number in range(1, 6):
            store.add(message(number))
        store.add(message(1, "Games"))
        other = RedisHistoryStore(redis, "chatb:")
        other.add(message(1, "Elsewhere"))
        await settled(redis)
        self.server.command("ZADD", "chat*:history:games", 5, "not json")
        await store.preload(3)
        recent = store.recent(3)
        self.assertEqual(sorted(recent), ["games", "lobby"])
        self.assertEqual(withIds(recent["lobby"]), withIds([message(n) for n in range(3, 6)]))
        self.assertEqual(withIds(recent["games"]), withIds([message(1, "Games")]))
        self.assertEqual(withIds(store.recent(2)["lobby"]), withIds([message(4), message(5)]))
        self.assertEqual(store.recent(0), {})
        with self.assertRaises(StoreError):
            store.recent(4)
        [skipped] = self.events("history_rows_skipped")
        self.assertEqual(skipped["rooms"], {"games": 1})
        self.assertEqual(sorted(await store.roomKeys()), ["games", "lobby"])

    async def test_preloadEmpty(self) -> None:
        """An empty Redis: no history."""
        redis, store = await self.store()
        await store.preload(10)
        self.assertEqual(store.recent(10), {})

    async def test_writeFailed(self) -> None:
        """A write Redis refuses is counted as failed and dropped, and logged."""
        redis, store = await self.store()
        self.server.command("SET", "chatsvc:history:lobby", "not a sorted set")
        store.add(message(1))
        store.add(message(2))
        await settled(redis)
        self.assertEqual((store.written, store.failed, store.dropped), (0, 2, 2))
        [failed] = self.events("history_write_failed")  # the second within logInterval
        self.assertIn("WRONGTYPE", failed["reason"])

    async def test_refusedBeforeSending(self) -> None:
        """A message that cannot be kept (its time is not a number) is dropped, not sent."""
        redis, store = await self.store()
        store.add(evolve(message(1), time=float("nan")))
        store.add(evolve(message(2), time=float("inf"), id=0))
        await settled(redis)
        self.assertEqual((store.written, store.failed, store.dropped), (0, 0, 2))
        self.assertEqual(self.server.command("DBSIZE"), 0)

    async def test_stop(self) -> None:
        """
        L{stop} fires once what was sent is answered; after it, messages are dropped. It may be
        called again.
        """
        redis, store = await self.store()
        store.start(reactor)
        for number in range(1, 101):
            store.add(message(number))
        stopped = store.stop()
        store.add(message(101))  # while stopping: still written
        await stopped
        self.assertEqual((store.written, store.pending, store.dropped), (101, 0, 0))
        store.add(message(102))
        self.assertEqual(store.dropped, 1)
        await store.stop()
        self.assertEqual(self.server.command("ZCARD", "chatsvc:history:lobby"), 101)
        [closed] = self.events("history_closed")
        self.assertEqual(closed["written"], 101)

    async def test_stopGivesUp(self) -> None:
        """
        When Redis does not answer within C{stopTimeout}, L{stop} fires anyway, counting what
        was not answered as dropped.
        """
        redis, store = await self.store(stopTimeout=0.2)
        store.start(reactor)
        self.server.command("CLIENT", "PAUSE", 30_000, "WRITE")
        self.addCleanup(self.server.command, "CLIENT", "UNPAUSE")
        store.add(message(1))
        store.add(message(2))
        await store.stop().addTimeout(TIMEOUT, reactor)
        self.assertEqual((store.written, store.dropped, store.pending), (0, 2, 0))
        [dropped] = self.events("history_dropped")
        self.assertEqual(dropped["messages"], 2)
        self.assertIn("no answer from Redis within 0.2 s", dropped["reason"])

    async def test_stopBeforeStart(self) -> None:
        """Never started and nothing sent: L{stop} fires at once."""
        redis, store = await self.store()
        await store.stop()
        store.add(message(1))
        self.assertEqual(store.dropped, 1)

    async def test_refusesConvertingConnection(self) -> None:
        """A connection that turns replies into numbers (txredisapi's default) is refused."""
        redis = await txredisapi.Connection("127.0.0.1", self.server.port, reconnect=False)
        self.addCleanup(redis.disconnect)
        for store in (RedisHistoryStore, RedisAccountStore, RedisModerationStore):
            self.assertRaises(ValueError, store, redis)

    async def test_restart(self) -> None:
        """
        With appendonly, everything confirmed survives a crash of Redis; meanwhile messages are
        dropped (logged once), and once the connection is back they are written again.
        """
        self.server = RedisServer(self, appendonly=True)
        redis, store = await self.store()
        store.start(reactor)
        before = [message(number) for number in range(1, 4)]
        for each in before:
            store.add(each)
        await settled(redis)
        self.assertEqual(store.written, 3)

        self.server.kill()
        with self.assertRaises((ConnectionError, txredisapi.ConnectionError)):
            await redis.execute_command("PING")  # the connection's loss is seen
        self.assertFalse(isConnected(redis))
        store.add(message(4))
        store.add(message(5))
        self.assertEqual((store.written, store.dropped), (3, 2))
        with self.assertRaises(StoreError):
            await store.page("lobby", None, None, 10, False)
        [outage] = self.events("history_not_connected")
        self.assertEqual(outage["total"], 1)

        self.server.restart()
        await reconnected(redis)
        self.assertTrue(isConnected(redis))
        after = message(6)
        store.add(after)
        await settled(redis)
        self.assertEqual((store.written, store.dropped, store.failed), (4, 2, 0))
        [back] = self.events("history_connected")
        self.assertEqual(back["dropped"], 2)
        self.assertEqual(
            withIds(await store.page("lobby", None, None, 10, False)), withIds(before + [after])
        )


class AccountStoreTests(RedisTestCase):
    """L{RedisAccountStore}: accounts, tokens and invite codes."""

    async def store(self) -> RedisAccountStore:
        return RedisAccountStore(await connect(self, self.server))

    async def test_interface(self) -> None:
        """It provides L{IAccountStore}."""
        verifyObject(IAccountStore, await self.store())

    async def test_roundTrip(self) -> None:
        """
        Accounts are kept and read back whole, all at once or one by one, their keys as they
        are (one that looks like a number too).
        """
        store = await self.store()
        alice = Account("alice", "Alice", "hash-a", 1_800_000_000.5)
        bond = Account("007", "Bond", "hash-b", 1_800_000_001.0)
        await store.addAccount(alice)
        await store.addAccount(bond)
        suspended = evolve(bond, passwordHash="hash-b2", suspended=True, suspendedUntil=1_900_000_000.0, suspendReason="spam")
        await store.updateAccount(suspended)
        await store.updateAccount(Account("nobody", "Nobody", "h", 1.0))  # not made by an update
        self.assertEqual(await store.loadAccounts(), [suspended, alice])
        self.assertEqual(await store.loadAccount("007"), suspended)
        self.assertIsNone(await store.loadAccount("nobody"))
        self.assertEqual(await store.countAccounts(), 2)

    async def test_duplicateRefused(self) -> None:
        """A key that is taken is refused with L{AccountExists}; the first account stays."""
        store = await self.store()
        alice = Account("alice", "Alice", "h", 1.0)
        await store.addAccount(alice)
        with self.assertRaises(AccountExists) as caught:
            await store.addAccount(Account("alice", "ALICE", "h2", 2.0))
        self.assertEqual(caught.exception.key, "alice")
        self.assertIn("'alice' exists already", str(caught.exception))
        self.assertEqual(await store.loadAccounts(), [alice])

    async def test_tokens(self) -> None:
        """A token logs in as its account until it, or every token of its account, is forgotten."""
        store = await self.store()
        await store.addToken("digest-1", "alice", 1.0)
        await store.addToken("digest-2", "alice", 2.0)
        await store.addToken("digest-3", "bob", 3.0)
        self.assertEqual(await store.tokenAccount("digest-1"), "alice")
        self.assertEqual(await store.tokenAccount("digest-3"), "bob")
        self.assertIsNone(await store.tokenAccount("digest-9"))
        await store.removeToken("digest-1")
        await store.removeToken("digest-9")
        self.assertIsNone(await store.tokenAccount("digest-1"))
        self.assertEqual(self.server.command("SMEMBERS", "chatsvc:account-tokens:alice"), [b"digest-2"])
        await store.removeTokens("alice")
        self.assertIsNone(await store.tokenAccount("digest-2"))
        self.assertEqual(await store.tokenAccount("digest-3"), "bob")
        self.assertEqual(
            sorted(cast(list[bytes], self.server.command("KEYS", "*"))),
            [b"chatsvc:account-tokens:bob", b"chatsvc:token:digest-3"],
        )

    async def test_invitesOnce(self) -> None:
        """An invite code works once, even when two nodes use it at the same moment."""
        store = await self.store()
        await store.addInvite("code-1", 1.0)
        await store.addInvite("code-2", 1.0)
        self.assertTrue(await store.useInvite("code-1"))
        self.assertFalse(await store.useInvite("code-1"))
        self.assertFalse(await store.useInvite("never"))
        other = RedisAccountStore(await connect(self, self.server))
        results = await gatherResults([store.useInvite("code-2"), other.useInvite("code-2")])
        self.assertEqual(sorted(results), [False, True])


class ModerationStoreTests(RedisTestCase):
    """L{RedisModerationStore}: admins, room settings, sanctions and the audit."""

    async def store(self, **options: Any) -> RedisModerationStore:
        return RedisModerationStore(await connect(self, self.server), **options)

    async def test_interface(self) -> None:
        """It provides L{IModerationStore}."""
        verifyObject(IModerationStore, await self.store())

    async def test_roundTrip(self) -> None:
        """
        What is kept is read back: a room's settings replaced whole, the sanctions in force
        (not the lifted nor the expired, which are forgotten), the admins.
        """
        store = await self.store()
        now = time.time()
        await store.saveRoom(RoomSettings("games", "Games", "alice", private=True, roles={"carol": "op", "dave": "voice"}))
        await store.saveRoom(RoomSettings("games", "Games", "alice", private=True, moderated=True, roles={"carol": "op"}))
        await store.saveRoom(RoomSettings("123", "#123"))
        ban = Sanction("ban", "games", "Bob", None, "bob", "203.0.113.5", now + 3600, "spam", "Alice", now)
        accountBan = Sanction("ban", "games", "Bob", "bob", None, None, None, None, "Alice", now + 1)
        await store.addSanction(ban)
        await store.addSanction(accountBan)
        await store.addSanction(Sanction("mute", "games", "Eve", "eve", None, None, None, None, "Alice", now))
        await store.addSanction(Sanction("mute", "games", "Old", "old", None, None, now - 1, None, "Alice", now - 10))
        await store.removeSanction("mute", "games", "eve", None)
        await store.setAdmin("root", True)
        await store.setAdmin("gone", True)
        await store.setAdmin("gone", False)

        admins, rooms, sanctions = await store.loadModeration()
        self.assertEqual(admins, {"root"})
        self.assertEqual(
            rooms,
            [
                RoomSettings("123", "#123"),
                RoomSettings("games", "Games", "alice", True, True, False, False, {"carol": "op"}),
            ],
        )
        self.assertEqual(sanctions, [ban, accountBan])
        self.assertEqual(self.server.command("HLEN", "chatsvc:sanctions"), 2)  # the expired one forgotten
        self.assertEqual(await store.admins(), {"root"})

    async def test_replacesSameTarget(self) -> None:
        """A sanction replaces one of the same kind on the same target in the same room only."""
        store = await self.store()
        first = Sanction("ban", "games", "Bob", None, "bob", None, None, "first", "Alice", 1.0)
        second = evolve(first, reason="second", created=2.0)
        await store.addSanction(first)
        await store.addSanction(second)
        mute = evolve(first, kind="mute", created=3.0)
        elsewhere = evolve(first, roomKey="lobby", created=4.0)
        await store.addSanction(mute)
        await store.addSanction(elsewhere)
        _, _, sanctions = await store.loadModeration()
        self.assertEqual(sanctions, [second, mute, elsewhere])

    async def test_expiredByTheClock(self) -> None:
        """A sanction's end is compared with the time the store is given."""
        now = [1000.0]
        store = await self.store(now=lambda: now[0])
        sanction = Sanction("mute", "games", "Eve", "eve", None, None, 1500.0, None, "Alice", 900.0)
        await store.addSanction(sanction)
        self.assertEqual((await store.loadModeration())[2], [sanction])
        now[0] = 1500.0
        self.assertEqual((await store.loadModeration())[2], [])

    async def test_auditCapped(self) -> None:
        """The audit keeps its newest C{auditKeep} entries, read back oldest first."""
        store = await self.store(auditKeep=3)
        entries = [AuditEntry(float(n), "Alice", "ban", "games", f"Bob{n}", None) for n in range(5)]
        for entry in entries:
            await store.audit(entry)
        self.assertEqual(await store.readAudit(10), entries[2:])
        self.assertEqual(await store.readAudit(2), entries[3:])
        self.assertEqual(await store.readAudit(0), [])
        self.assertEqual(self.server.command("LLEN", "chatsvc:audit"), 3)
        self.assertEqual(
            json.loads(self.server.command("LINDEX", "chatsvc:audit", 0)),  # type: ignore[arg-type]
            {"time": 4.0, "actor": "Alice", "action": "ban", "room": "games", "target": "Bob4", "detail": None},
        )


class DurabilityTests(TestCase):
    """L{checkDurability} says what keeps Redis from keeping what it is given."""

    async def check(self, server: RedisServer, url: str | None = None) -> list[str]:
        return await checkDurability(await connect(self, server, url))

    async def test_appendonlyOff(self) -> None:
        """Without the append-only file, a warning that says how to turn it on."""
        [warning] = await self.check(RedisServer(self))
        self.assertIn("appendonly no", warning)
        self.assertIn("set appendonly yes", warning)

    async def test_appendonlyOn(self) -> None:
        """With C{appendonly yes} and C{appendfsync always} (and no eviction): no warning."""
        self.assertEqual(await self.check(RedisServer(self, appendonly=True)), [])

    async def test_appendfsyncNo(self) -> None:
        """An append-only file synced whenever the system likes: a warning."""
        server = RedisServer(self, appendonly=True)
        server.command("CONFIG", "SET", "appendfsync", "no")
        [warning] = await self.check(server)
        self.assertIn("appendfsync no", warning)

    async def test_evicting(self) -> None:
        """A memory bound that evicts any key: a warning; one that refuses writes: none."""
        server = RedisServer(self, appendonly=True)
        server.command("CONFIG", "SET", "maxmemory", "100mb")
        server.command("CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
        [warning] = await self.check(server)
        self.assertIn("maxmemory-policy allkeys-lru", warning)
        server.command("CONFIG", "SET", "maxmemory-policy", "noeviction")
        self.assertEqual(await self.check(server), [])

    async def test_configRefused(self) -> None:
        """A user that may not use CONFIG (as on a managed Redis) gets a warning, not a failure."""
        server = RedisServer(self, appendonly=True)
        server.command("ACL", "SETUSER", "chat", "on", ">chat-password", "~*", "+@all", "-config")
        [warning] = await self.check(server, f"redis://chat:chat-password@127.0.0.1:{server.port}/0")
        self.assertIn("cannot check Redis's durability", warning)
        self.assertIn("NOPERM", warning)

