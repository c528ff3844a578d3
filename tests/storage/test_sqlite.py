"""
Tests for L{chatsvc.storage.sqlite}: real SQLite files in a temporary directory, written on the store's own
database thread while the real reactor runs. Nothing waits by sleeping: tests wait on Deferreds,
or poll a condition in short steps of the reactor, with a deadline.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.internet.testing import EventLoggingObserver, MemoryReactorClock
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from chatsvc.chat import room_key
from chatsvc.chat import IHistoryStore, NullStore, StoredMessage, StoreError
from chatsvc.storage.sqlite import (
    MIGRATIONS,
    ROOM_KEY_RULES,
    SCHEMA_VERSION,
    SchemaVersionError,
    SQLiteStore,
    _deleteOlderThan,
    migrate,
    rekeyRooms,
)

DEADLINE = 10.0
"""Seconds a test waits for a condition before failing."""

# Short intervals keep the file fast: batches every 10 ms, locks waited for 50 ms, retries at
# most 50 ms apart.
FAST: dict[str, Any] = dict(
    batchInterval=0.01, busyTimeout=0.05, maxRetryDelay=0.05, stopTimeout=2.0
)


def message(number: int, room: str = "Lobby", when: float | None = None) -> StoredMessage:
    """Message number C{number} in C{room}; every fifth one is an action."""
    return StoredMessage(
        room.casefold(),
        room,
        time.time() if when is None else when,
        f"nick{number % 3}",
        f"text {number}",
        number % 5 == 4,
    )


def texts(path: str, roomKey: str | None = None) -> list[str]:
    """The texts stored in C{path} (of one room, if given), in the order written."""
    connection = sqlite3.connect(path)
    try:
        if roomKey is None:
            rows = connection.execute("SELECT text FROM messages ORDER BY id")
        else:
            rows = connection.execute(
                "SELECT text FROM messages WHERE room_key = ? ORDER BY id", (roomKey,)
            )
        return [text for (text,) in rows]
    finally:
        connection.close()


def insert(path: str, messages: list[StoredMessage]) -> None:
    """Write C{messages} straight into the database at C{path}, as an earlier run would have."""
    connection = sqlite3.connect(path)
    try:
        with connection:
            connection.executemany(
                "INSERT INTO messages (room_key, room, time, nick, text, action) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(m.roomKey, m.room, m.time, m.nick, m.text, m.action) for m in messages],
            )
    finally:
        connection.close()


def userVersion(path: str) -> int:
    """The schema version recorded in the file at C{path}."""
    connection = sqlite3.connect(path)
    try:
        (version,) = connection.execute("PRAGMA user_version").fetchone()
        return int(version)
    finally:
        connection.close()


def tables(path: str) -> set[str]:
    """The names of the tables and indexes in the file at C{path}."""
    connection = sqlite3.connect(path)
    try:
        return {name for (name,) in connection.execute("SELECT name FROM sqlite_master")}
    finally:
        connection.close()


def writableDespiteMode(directory: str) -> bool:
    """Whether this process may write a file whose mode forbids it (as root may)."""
    probe = os.path.join(directory, "probe")
    with open(probe, "w"):
        pass
    os.chmod(probe, 0o444)
    try:
        with open(probe, "a"):
            return True
    except PermissionError:
        return False
    finally:
        os.remove(probe)


async def waitUntil(condition: Callable[[], object], what: str) -> None:
    """Let the reactor run, in steps of 5 ms, until C{condition()} holds; fail after a while."""
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting, after {DEADLINE} s, for {what}")
        await deferLater(reactor, 0.005)


def fields(observer: EventLoggingObserver, name: str) -> list[dict[str, Any]]:
    """The fields of every structlog event called C{name} seen by C{observer}."""
    return [
        event["chatsvc_fields"]
        for event in observer
        if event.get("chatsvc_fields", {}).get("event") == name
    ]


class DatabaseFiles:
    """A fresh database path for each test, in the test's own temporary directory."""

    mktemp: Callable[[], str]

    def newPath(self) -> str:
        """A path for a new database file, in a directory of its own."""
        directory = Path(self.mktemp()).resolve()
        directory.mkdir(parents=True)
        return str(directory / "history.db")


class NullStoreTests(SynchronousTestCase):
    """L{NullStore} keeps nothing."""

    def test_keepsNothing(self) -> None:
        """It provides the interface, forgets what it is given and stops at once."""
        store = NullStore()
        verifyObject(IHistoryStore, store)
        self.assertEqual(store.recent(20), {})
        store.start(MemoryReactorClock())
        store.add(message(1))
        self.assertIsNone(self.successResultOf(store.stop()))
        self.assertEqual((store.written, store.failed, store.dropped), (0, 0, 0))
        self.assertEqual(store.recent(20), {})


class OpeningTests(DatabaseFiles, SynchronousTestCase):
    """Opening a database: creating it, migrating it, or refusing it."""

    def setUp(self) -> None:
        self.observer = EventLoggingObserver.createWithCleanup(
            self, globalLogPublisher  # type: ignore[arg-type]  # any trial test case works
        )

    def test_interface(self) -> None:
        """L{SQLiteStore} provides L{IHistoryStore}, counters included."""
        verifyObject(IHistoryStore, SQLiteStore(self.newPath()))

    def test_constructorLeavesFileAlone(self) -> None:
        """Making a store touches no file: the database is opened at start-up, by recent()."""
        path = self.newPath()
        SQLiteStore(path)
        self.assertFalse(os.path.exists(path))

    def test_createsFileAndSchema(self) -> None:
        """A missing file is created with the current schema, in WAL mode, and that is logged."""
        path = self.newPath()
        self.assertEqual(SQLiteStore(path).recent(10), {})
        self.assertEqual(userVersion(path), SCHEMA_VERSION)
        self.assertTrue({"messages", "messages_by_room"} <= tables(path))
        self.assertNotIn("messages_by_time", tables(path))
        connection = sqlite3.connect(path)
        self.addCleanup(connection.close)
        self.assertEqual(connection.execute("PRAGMA journal_mode").fetchone(), ("wal",))
        self.assertEqual(
            fields(self.observer, "history_opened"),
            [
                {
                    "event": "history_opened",
                    "path": path,
                    "schema_version": SCHEMA_VERSION,
                    "messages": 0,
                }
            ],
        )

    def test_migratesVersionZero(self) -> None:
        """A database at version 0 with no tables gets the whole schema, and works."""
        path = self.newPath()
        sqlite3.connect(path).close()
        self.assertEqual(userVersion(path), 0)
        store = SQLiteStore(path)
        self.assertEqual(store.recent(10), {})
        self.assertEqual(userVersion(path), SCHEMA_VERSION)
        (migrated,) = fields(self.observer, "history_migrated")
        self.assertEqual(
            (migrated["from_version"], migrated["to_version"]), (0, SCHEMA_VERSION)
        )
        insert(path, [message(1)])
        self.assertEqual(SQLiteStore(path).recent(10)["lobby"][0].text, "text 1")

    def test_refusesNewerVersion(self) -> None:
        """A database from a newer chatsvc is refused, the error naming both versions."""
        path = self.newPath()
        SQLiteStore(path).recent(1)
        connection = sqlite3.connect(path)
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        connection.close()
        error = self.assertRaises(SchemaVersionError, SQLiteStore(path).recent, 10)
        self.assertIsInstance(error, StoreError)
        self.assertEqual((error.found, error.known), (SCHEMA_VERSION + 1, SCHEMA_VERSION))
        self.assertIn(f"schema version {SCHEMA_VERSION + 1}", str(error))
        self.assertIn(f"up to {SCHEMA_VERSION} only", str(error))
        self.assertIn(path, str(error))
        self.assertEqual(userVersion(path), SCHEMA_VERSION + 1)
        self.assertRaises(SchemaVersionError, SQLiteStore(path).start, MemoryReactorClock())

    def test_migrationIsOneTransaction(self) -> None:
        """When a step fails, no step applies: the database stays as it was."""
        path = self.newPath()
        connection = sqlite3.connect(path, isolation_level=None)
        self.addCleanup(connection.close)
        broken = [*MIGRATIONS, ["CREATE TABLE topics (room_key TEXT)", "THIS IS NOT SQL"]]
        self.assertRaises(sqlite3.OperationalError, migrate, connection, broken)
        self.assertEqual(userVersion(path), 0)
        self.assertEqual(tables(path), set())
        self.assertFalse(connection.in_transaction)

    def test_migrationRunsMissingStepsOnly(self) -> None:
        """Only the steps past the database's version run; at the latest, none does."""
        path = self.newPath()
        SQLiteStore(path).recent(1)
        insert(path, [message(1)])
        connection = sqlite3.connect(path, isolation_level=None)
        self.addCleanup(connection.close)
        later = [*MIGRATIONS, ["ALTER TABLE messages ADD COLUMN edited REAL"]]
        latest = SCHEMA_VERSION + 1
        self.assertEqual(migrate(connection, later), (SCHEMA_VERSION, latest))
        self.assertEqual(migrate(connection, later), (latest, latest))
        self.assertEqual(
            connection.execute("SELECT text, edited FROM messages").fetchall(),
            [("text 1", None)],
        )
        self.assertEqual(userVersion(path), latest)

    def test_migratesVersionOne(self) -> None:
        """
        A database written at version 1 keeps its messages at version 2, without the index
        on time, and its expired messages still go.
        """
        path = self.newPath()
        connection = sqlite3.connect(path, isolation_level=None)
        self.addCleanup(connection.close)
        self.assertEqual(migrate(connection, MIGRATIONS[:1]), (0, 1))
        self.assertIn("messages_by_time", tables(path))
        now = time.time()
        insert(path, [message(1, "Lobby", now - 7200), message(2, "Lobby", now)])
        self.assertEqual(migrate(connection, MIGRATIONS[:2]), (1, 2))
        self.assertNotIn("messages_by_time", tables(path))
        self.assertEqual(texts(path), ["text 1", "text 2"])
        self.assertEqual(_deleteOlderThan(connection, now - 3600, 10), 1)
        self.assertEqual(texts(path), ["text 2"])

    def test_expiryInStorageOrder(self) -> None:
        """
        Expiry takes the oldest messages in the order they were stored, up to the first that
        is not old, a chunk at a time; an old message stored after a young one (the clock was
        set back) waits until that one goes.
        """
        path = self.newPath()
        SQLiteStore(path).recent(1)
        now = time.time()
        old, young = now - 7200, now
        insert(path, [message(n, "Lobby", old) for n in range(1, 4)])
        insert(path, [message(4, "Lobby", young), message(5, "Lobby", old)])
        connection = sqlite3.connect(path, isolation_level=None)
        self.addCleanup(connection.close)
        self.assertEqual(_deleteOlderThan(connection, now - 3600, 2), 2)
        self.assertEqual(_deleteOlderThan(connection, now - 3600, 2), 1)
        self.assertEqual(_deleteOlderThan(connection, now - 3600, 2), 0)
        self.assertEqual(texts(path), ["text 4", "text 5"])
        self.assertEqual(_deleteOlderThan(connection, now + 1, 10), 2)
        self.assertEqual(texts(path), [])

    def test_notADatabase(self) -> None:
        """A file that is not a database is a StoreError naming it."""
        path = self.newPath()
        with open(path, "wb") as garbage:
            garbage.write(b"not a database " * 200)
        error = self.assertRaises(StoreError, SQLiteStore(path).recent, 10)
        self.assertIn(path, str(error))

    def test_memoryRefused(self) -> None:
        """C{:memory:} is not a place to keep history: that is what NullStore is for."""
        self.assertRaises(ValueError, SQLiteStore, ":memory:")


class RecentTests(DatabaseFiles, SynchronousTestCase):
    """What recent() reads back at start-up."""

    def test_newestPerRoomOldestFirst(self) -> None:
        """Each room gets its own newest messages, up to the number asked, oldest first."""
        path = self.newPath()
        SQLiteStore(path).recent(1)
        now = time.time()
        written = [message(n, "Lobby" if n % 4 else "Games", now + n) for n in range(20)]
        insert(path, written)
        history = SQLiteStore(path).recent(3)
        self.assertEqual(sorted(history), ["games", "lobby"])
        self.assertEqual(history["games"], [m for m in written if m.room == "Games"][-3:])
        self.assertEqual(history["lobby"], [m for m in written if m.room == "Lobby"][-3:])
        self.assertEqual([m.action for m in history["lobby"]], [False, False, True])
        everything = SQLiteStore(path).recent(100)
        self.assertEqual(len(everything["games"]) + len(everything["lobby"]), 20)

    def test_noneAskedFor(self) -> None:
        """Zero messages a room is no history; a negative number is a mistake."""
        path = self.newPath()
        SQLiteStore(path).recent(1)
        insert(path, [message(1)])
        self.assertEqual(SQLiteStore(path).recent(0), {})
        self.assertRaises(ValueError, SQLiteStore(path).recent, -1)

    def test_expiredLeftOut(self) -> None:
        """Messages older than maxAge are not history any more, even before they are pruned."""
        path = self.newPath()
        SQLiteStore(path).recent(1)
        now = time.time()
        insert(path, [message(1, "Old", now - 7200), message(2, "Lobby", now - 7200),
                      message(3, "Lobby", now)])
        history = SQLiteStore(path, maxAge=3600).recent(10)
        self.assertEqual({key: [m.text for m in ms] for key, ms in history.items()},
                         {"lobby": ["text 3"]})
        self.assertEqual(len(SQLiteStore(path, maxAge=None).recent(10)["lobby"]), 2)


class LifeCycleTests(DatabaseFiles, SynchronousTestCase):
    """Starting and stopping, without a database thread."""

    def test_stopWithoutStart(self) -> None:
        """Stopping a store never started fires at once; what it was given is dropped."""
        observer = EventLoggingObserver.createWithCleanup(
            self, globalLogPublisher  # type: ignore[arg-type]
        )
        path = self.newPath()
        store = SQLiteStore(path)
        store.add(message(1))
        store.add(message(2))
        self.assertIsNone(self.successResultOf(store.stop()))
        self.assertEqual((store.written, store.dropped, store.pending), (0, 2, 0))
        self.assertEqual(fields(observer, "history_dropped")[0]["messages"], 2)
        store.add(message(3))
        self.assertEqual(store.dropped, 3)
        self.assertIsNone(self.successResultOf(store.stop()))
        self.assertFalse(os.path.exists(path))

    def test_reactorWithoutThreads(self) -> None:
        """
        A reactor that cannot run threads (a test's memory reactor) gets a store that queues
        and writes nothing, starts no thread, and stops at once.
        """
        path = self.newPath()
        store = SQLiteStore(path)
        store.recent(10)
        clock = MemoryReactorClock()
        threads = threading.active_count()
        store.start(clock)
        store.add(message(1))
        clock.advance(1000)
        self.assertEqual(threading.active_count(), threads)
        self.assertIsNone(self.successResultOf(store.stop()))
        self.assertEqual((store.written, store.dropped), (0, 1))
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertEqual(clock.triggers, {})

    def test_startTwice(self) -> None:
        """Starting twice is a mistake, said at once."""
        store = SQLiteStore(self.newPath())
        store.recent(1)
        store.start(MemoryReactorClock())
        self.assertRaises(RuntimeError, store.start, MemoryReactorClock())
        self.successResultOf(store.stop())


class WritingTests(DatabaseFiles, TestCase):
    """Writing on the database thread while the reactor runs."""

    def setUp(self) -> None:
        self.observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def started(self, path: str, **settings: Any) -> SQLiteStore:
        """A store on C{path}, opened, started on the reactor, and stopped after the test."""
        store = SQLiteStore(path, **{**FAST, **settings})
        store.recent(10)
        store.start(reactor)
        self.addCleanup(store.stop)
        return store

    async def test_roundTripAcrossRestart(self) -> None:
        """What one run writes is the next run's history, room by room."""
        path = self.newPath()
        first = self.started(path)
        written = [message(n, "Games" if n % 2 else "Lobby") for n in range(10)]
        for each in written:
            first.add(each)
        await first.stop()
        self.assertEqual((first.written, first.failed, first.dropped), (10, 0, 0))
        history = SQLiteStore(path).recent(3)
        self.assertEqual(history["lobby"], written[4::2][-3:])
        self.assertEqual(history["games"], written[5::2][-3:])
        self.assertEqual(fields(self.observer, "history_opened")[-1]["messages"], 10)
        self.assertEqual(fields(self.observer, "history_closed")[0]["written"], 10)

    async def test_keptUnderTheirIds(self) -> None:
        """
        A message is stored under the id it was said with and read back with it; one with no
        id (stored before messages had them) gets the next rowid, so the order holds.
        """
        path = self.newPath()
        store = self.started(path)
        legacy = message(1)
        store.add(legacy)
        await waitUntil(lambda: store.written == 1, "the first message written")
        stamped = [attrs.evolve(message(n), id=(1_800_000_000_000 + n) << 10) for n in (2, 3)]
        for each in stamped:
            store.add(each)
        await store.stop()
        history = SQLiteStore(path).recent(10)["lobby"]
        self.assertEqual(history, [legacy, *stamped])
        self.assertEqual([each.id for each in history], [1, *(each.id for each in stamped)])

    async def test_pages(self) -> None:
        """
        Pages of one room by id, on the database thread: the newest or the oldest of those
        between two ids, oldest first; none before start.
        """
        path = self.newPath()
        self.assertEqual(self.successResultOf(SQLiteStore(path).page("lobby", None, None, 5, True)), [])
        store = self.started(path)
        for n in range(1, 31):
            store.add(attrs.evolve(message(n, "Lobby" if n % 3 else "Games"), id=n))
        await waitUntil(lambda: store.written == 30, "every message written")
        newest = await store.page("lobby", None, 20, 4, True)
        self.assertEqual([m.id for m in newest], [14, 16, 17, 19])
        oldest = await store.page("lobby", 20, None, 3, False)
        self.assertEqual([m.id for m in oldest], [22, 23, 25])
        self.assertEqual((oldest[0].nick, oldest[0].text, oldest[0].room), ("nick1", "text 22", "Lobby"))
        self.assertEqual([m.id for m in await store.page("games", 24, None, 10, False)], [27, 30])

    async def test_batching(self) -> None:
        """Many messages added at once are written in few transactions, in order."""
        path = self.newPath()
        store = self.started(path, maxBatch=400)
        for number in range(1000):
            store.add(message(number))
        self.assertEqual(store.pending, 1000)
        await waitUntil(lambda: store.written == 1000, "1000 messages written")
        self.assertEqual(store.batches, 3)
        store.add(message(1000))
        await waitUntil(lambda: store.written == 1001, "one more")
        self.assertEqual(store.batches, 4)
        self.assertEqual(texts(path), [f"text {n}" for n in range(1001)])

    async def test_stopFlushesPending(self) -> None:
        """Stopping writes what is queued; after that, new messages are dropped."""
        path = self.newPath()
        store = self.started(path, batchInterval=60)
        for number in range(5):
            store.add(message(number))
        self.assertEqual(store.written, 0)
        await store.stop()
        self.assertEqual((store.written, store.dropped), (5, 0))
        self.assertEqual(texts(path), [f"text {n}" for n in range(5)])
        store.add(message(5))
        self.assertEqual(store.dropped, 1)

    async def test_refusedMessageDropped(self) -> None:
        """A message the database will never take is dropped; the rest of its batch is written."""
        path = self.newPath()
        store = self.started(path)
        store.add(message(1))
        store.add(StoredMessage("lobby", "Lobby", time.time(), "x", "bad \ud800 text", False))
        store.add(message(3))
        await waitUntil(lambda: store.written + store.dropped == 3, "the batch settled")
        self.assertEqual((store.written, store.dropped, store.failed), (2, 1, 0))
        self.assertEqual(texts(path), ["text 1", "text 3"])
        (dropped,) = fields(self.observer, "history_dropped")
        self.assertEqual(dropped["messages"], 1)
        self.assertIn("refused", dropped["reason"])

    async def test_lockedDatabase(self) -> None:
        """
        While another connection holds the database exclusively, writes fail, are counted and
        logged once (not once per attempt), and are retried: after the lock is released every
        message is written, in order.
        """
        path = self.newPath()
        store = self.started(path)
        locker = sqlite3.connect(path, isolation_level=None, timeout=0)
        self.addCleanup(locker.close)
        locker.execute("BEGIN EXCLUSIVE")
        for number in range(10):
            store.add(message(number))
        await waitUntil(lambda: store.failed >= 30, "three failed attempts")
        self.assertEqual(store.written, 0)
        (failure,) = fields(self.observer, "history_write_failed")
        self.assertEqual(failure["messages"], 10)
        self.assertIn("locked", failure["reason"])
        (event,) = [e for e in self.observer if e.get("chatsvc_fields") is failure]
        self.assertEqual(event["log_level"], LogLevel.error)
        locker.execute("COMMIT")
        await waitUntil(lambda: store.written == 10, "the writes to go through")
        self.assertEqual(store.dropped, 0)
        self.assertEqual(store.failed % 10, 0)
        self.assertEqual(len(fields(self.observer, "history_write_recovered")), 1)
        self.assertEqual(texts(path), [f"text {n}" for n in range(10)])

    async def test_stopGivesUpInTime(self) -> None:
        """Stopping while the database stays locked ends in time, counting what is lost."""
        path = self.newPath()
        store = self.started(path, stopTimeout=0.2)
        locker = sqlite3.connect(path, isolation_level=None, timeout=0)
        self.addCleanup(locker.close)
        locker.execute("BEGIN EXCLUSIVE")
        for number in range(3):
            store.add(message(number))
        began = time.monotonic()
        await store.stop()
        self.assertLess(time.monotonic() - began, 2.0)
        self.assertEqual((store.written, store.dropped), (0, 3))
        self.assertIn("not written", fields(self.observer, "history_dropped")[-1]["reason"])
        locker.execute("ROLLBACK")

    async def test_vanishedDirectory(self) -> None:
        """
        When the database's directory is deleted, writes fail (SQLite alone would go on writing
        to the deleted file) without an exception escaping; once the directory is back, the
        database is created again and the queued messages are written.
        """
        path = self.newPath()
        directory = os.path.dirname(path)
        # No retention pass, whose failure could come first and be the one logged.
        store = self.started(path, maxAge=None)
        store.add(message(0))
        await waitUntil(lambda: store.written == 1, "the first message")
        shutil.rmtree(directory)
        for number in range(1, 6):
            store.add(message(number))
        await waitUntil(lambda: store.failed >= 10, "two failed attempts")
        (failure,) = fields(self.observer, "history_write_failed")
        self.assertIn("deleted or replaced", failure["reason"])
        self.assertEqual(store.written, 1)
        os.mkdir(directory)
        await waitUntil(lambda: store.written == 6, "the rest written to a new file")
        self.assertEqual(store.dropped, 0)
        self.assertEqual(texts(path), [f"text {n}" for n in range(1, 6)])

    async def test_readOnlyFile(self) -> None:
        """
        A database file that cannot be written makes writes fail, without an exception
        escaping; once its files are writable again, the writes go through.
        """
        path = self.newPath()
        directory = os.path.dirname(path)
        if writableDespiteMode(directory):
            self.skipTest("this process may write read-only files (root)")

        def chmodDatabase(mode: int) -> None:
            # SQLite gives the -wal and -shm files it creates the database file's mode.
            for name in os.listdir(directory):
                os.chmod(os.path.join(directory, name), mode)

        store = SQLiteStore(path, **FAST)
        store.recent(1)
        chmodDatabase(0o444)
        self.addCleanup(chmodDatabase, 0o644)
        store.start(reactor)
        self.addCleanup(store.stop)
        store.add(message(1))
        await waitUntil(lambda: store.failed >= 2, "two failed attempts")
        self.assertEqual(store.written, 0)
        (failure,) = fields(self.observer, "history_write_failed")
        self.assertIn("readonly", failure["reason"])
        chmodDatabase(0o644)
        await waitUntil(lambda: store.written == 1, "the write to go through")
        self.assertEqual(texts(path), ["text 1"])

    async def test_maxPendingDropsOldest(self) -> None:
        """Past maxPending queued messages the oldest are dropped, counted and logged."""
        path = self.newPath()
        store = self.started(path, maxPending=10, batchInterval=60)
        for number in range(15):
            store.add(message(number))
        self.assertEqual((store.pending, store.dropped), (10, 5))
        self.assertEqual(len(fields(self.observer, "history_dropped")), 1)
        await store.stop()
        self.assertEqual(sum(e["messages"] for e in fields(self.observer, "history_dropped")), 5)
        self.assertEqual((store.written, store.dropped), (10, 5))
        self.assertEqual(texts(path), [f"text {n}" for n in range(5, 15)])

    async def test_retentionByAge(self) -> None:
        """Messages older than maxAge are deleted in the background, a chunk at a time."""
        path = self.newPath()
        SQLiteStore(path).recent(1)
        now = time.time()
        insert(path, [message(n, "Lobby", now - 7200 - n) for n in range(10)])
        insert(path, [message(n, "Lobby", now) for n in range(10, 14)])
        store = self.started(path, maxAge=3600, pruneChunk=3)
        await waitUntil(lambda: fields(self.observer, "history_pruned"), "a retention pass")
        self.assertEqual(store.pruned, 10)
        self.assertEqual(fields(self.observer, "history_pruned")[0]["messages"], 10)
        self.assertEqual(texts(path), [f"text {n}" for n in range(10, 14)])

    async def test_retentionPerRoom(self) -> None:
        """
        Each room written to, and each room found at start-up, is cut down to its keepPerRoom
        newest messages; other rooms are not touched.
        """
        path = self.newPath()
        SQLiteStore(path).recent(1)
        insert(path, [message(n, "Found") for n in range(8)])
        store = self.started(path, keepPerRoom=5, maxAge=None, pruneInterval=0.05, pruneChunk=2)
        await waitUntil(lambda: store.pruned == 3, "the room found at start-up cut down")
        for number in range(12):
            store.add(message(number, "Busy"))
        for number in range(3):
            store.add(message(number, "Quiet"))
        await waitUntil(lambda: store.pruned == 10, "the busy room cut down")
        self.assertEqual(texts(path, "found"), [f"text {n}" for n in range(3, 8)])
        self.assertEqual(texts(path, "busy"), [f"text {n}" for n in range(7, 12)])
        self.assertEqual(texts(path, "quiet"), [f"text {n}" for n in range(3)])

    def test_addIsCheap(self) -> Deferred[None]:
        """add() queues without touching the disk or the thread: a burst only schedules once."""
        path = self.newPath()
        store = self.started(path, batchInterval=60)
        calls = len(reactor.getDelayedCalls())
        for number in range(1000):
            store.add(message(number))
        self.assertEqual(len(reactor.getDelayedCalls()), calls + 1)
        self.assertEqual(store.pending, 1000)
        return store.stop()


def usedBytes(path: str) -> int:
    """The bytes of the pages in use in the database at C{path}, as SQLite counts them."""
    connection = sqlite3.connect(path)
    try:
        (pages,) = connection.execute("PRAGMA page_count").fetchone()
        (free,) = connection.execute("PRAGMA freelist_count").fetchone()
        (size,) = connection.execute("PRAGMA page_size").fetchone()
        return int((pages - free) * size)
    finally:
        connection.close()


def long(number: int, room: str = "Lobby") -> StoredMessage:
    """Message number C{number} in C{room}, with 200 characters of text after its number."""
    plain = message(number, room)
    return StoredMessage(
        plain.roomKey, plain.room, plain.time, plain.nick, f"{plain.text} {'x' * 200}", False
    )


class SizeBoundTests(DatabaseFiles, TestCase):
    """The database is kept within maxBytes, the oldest messages going first."""

    BOUND = 300_000
    """A small bound, a few batches of L{long} messages big."""

    MARGIN = 6 * 4096
    """
    What may be written past the bound before making room comes first: one batch (20 of these
    messages fill two pages of 4 KiB) and the table and index pages it may split.
    """

    def setUp(self) -> None:
        self.observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def test_settings(self) -> None:
        """The bound is 256 MiB by default, may be switched off, and must be positive."""
        path = self.newPath()
        self.assertEqual(SQLiteStore(path).maxBytes, 256 * 1024 * 1024)
        self.assertIsNone(SQLiteStore(path, maxBytes=None).maxBytes)
        for bad in (0, -1):
            self.assertRaises(ValueError, SQLiteStore, path, maxBytes=bad)

    async def test_writesStayWithinBound(self) -> None:
        """
        Writing four times the bound's worth of messages, the database's pages in use never
        take more than the bound and a batch, and its file no more either: the oldest messages
        went, in the order they were written, and the newest are all kept. Once the writing
        stops, the store is down to 90 % of the bound, and has logged what went.
        """
        path = self.newPath()
        store = SQLiteStore(
            path, **{**FAST, "maxBatch": 20, "pruneChunk": 50, "maxAge": None,
                     "maxBytes": self.BOUND}
        )
        store.recent(1)
        store.start(reactor)
        self.addCleanup(store.stop)
        rooms = ["Lobby", "Games", "Music", "News"]
        written = [long(number, rooms[number % 4]) for number in range(4000)]
        for each in written:
            store.add(each)
        peaks: list[int] = []

        def allWritten() -> bool:
            peaks.append(usedBytes(path))
            return store.written == len(written)

        await waitUntil(allWritten, "every message written")
        await waitUntil(
            lambda: fields(self.observer, "history_pruned")
            and store.pruned == len(written) - len(texts(path)),
            "the last pruning",
        )
        await store.stop()
        self.assertLessEqual(max(peaks), self.BOUND + self.MARGIN)
        self.assertLessEqual(os.path.getsize(path), self.BOUND + self.MARGIN)
        kept = texts(path)
        self.assertGreater(len(kept), 100)
        self.assertLess(len(kept), 2000)
        self.assertEqual(kept, [m.text for m in written[-len(kept):]])
        self.assertEqual(store.dropped, 0)
        events = fields(self.observer, "history_pruned")
        self.assertEqual(sum(event["messages"] for event in events), store.pruned)
        for event in events:
            self.assertEqual(event["max_bytes"], self.BOUND)
            self.assertLessEqual(event["used_bytes"], self.BOUND * 0.9)

    async def test_checkedAtStart(self) -> None:
        """
        A database found over the bound at start-up (the bound was lowered) is cut down by the
        first retention pass, to 90 % of the bound, the oldest messages first.
        """
        path = self.newPath()
        SQLiteStore(path).recent(1)
        insert(path, [long(number) for number in range(3000)])
        self.assertGreater(usedBytes(path), 2 * self.BOUND)
        store = SQLiteStore(path, **{**FAST, "maxAge": None, "maxBytes": self.BOUND})
        store.recent(1)
        store.start(reactor)
        self.addCleanup(store.stop)
        await waitUntil(lambda: fields(self.observer, "history_pruned"), "a pruning")
        (event,) = fields(self.observer, "history_pruned")
        self.assertLessEqual(usedBytes(path), self.BOUND * 0.9)
        self.assertEqual(event["used_bytes"], usedBytes(path))
        kept = texts(path)
        self.assertEqual(event["messages"], 3000 - len(kept))
        self.assertEqual(store.pruned, 3000 - len(kept))
        self.assertEqual(kept, [long(number).text for number in range(3000 - len(kept), 3000)])

    async def test_unbounded(self) -> None:
        """Without a bound, nothing is deleted for size."""
        path = self.newPath()
        SQLiteStore(path).recent(1)
        insert(path, [long(number) for number in range(3000)])
        store = SQLiteStore(path, **{**FAST, "maxAge": None, "maxBytes": None})
        store.recent(1)
        store.start(reactor)
        self.addCleanup(store.stop)
        store.add(long(3000))
        await waitUntil(lambda: store.written == 1, "a write")
        await store.stop()
        self.assertEqual((store.pruned, len(texts(path))), (0, 3001))


class UnshowableTimeTests(DatabaseFiles, SynchronousTestCase):
    """Stored messages with times the server cannot show are left out of the history read."""

    BAD_TIMES: list[object] = [
        1e300,
        float("inf"),
        float("-inf"),
        -1.0,
        253402300800.0,  # 10000-01-01T00:00:00Z
        "NaN",  # SQLite stores a NaN parameter as NULL, which NOT NULL refuses; text it keeps
        b"\x01\x02",
    ]
    """Times that C{time.gmtime} cannot take, or that no clock gives."""

    def insertTimes(self, path: str, roomKey: str, times: list[object]) -> None:
        """Write one message at each of C{times} into C{roomKey}, as another program might."""
        connection = sqlite3.connect(path)
        try:
            with connection:
                connection.executemany(
                    "INSERT INTO messages (room_key, room, time, nick, text, action) "
                    "VALUES (?, ?, ?, 'someone', ?, 0)",
                    [(roomKey, roomKey.title(), when, f"at {when!r}") for when in times],
                )
        finally:
            connection.close()

    def test_skippedAndLogged(self) -> None:
        """
        recent() returns only the messages with showable times, as many as asked for where
        there are that many, never raising; what it left out is logged once, with its count
        and rooms. A room with nothing but such messages has no history.
        """
        observer = EventLoggingObserver.createWithCleanup(
            self, globalLogPublisher  # type: ignore[arg-type]  # any trial test case works
        )
        path = self.newPath()
        SQLiteStore(path).recent(1)
        now = time.time()
        good = [now - 3, now - 2, now - 1]
        self.insertTimes(path, "lobby", [good[0], *self.BAD_TIMES[:3], good[1]])
        self.insertTimes(path, "lobby", [*self.BAD_TIMES[3:], good[2], *self.BAD_TIMES])
        self.insertTimes(path, "broken", self.BAD_TIMES)
        self.insertTimes(path, "fine", [0.0, 253402300799.0])

        history = SQLiteStore(path, maxAge=None).recent(2)
        self.assertEqual(sorted(history), ["fine", "lobby"])
        self.assertEqual([m.time for m in history["lobby"]], good[1:])
        self.assertEqual([m.time for m in history["fine"]], [0.0, 253402300799.0])
        for messages in history.values():
            for each in messages:
                time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(each.time))
        # Newest first, the lobby's reading stops at its second good message: past 7 + 4 bad.
        bad = len(self.BAD_TIMES)
        (skipped,) = fields(observer, "history_rows_skipped")
        self.assertEqual(
            (skipped["messages"], skipped["rooms"]),
            (bad + bad + 4, {"lobby": bad + 4, "broken": bad}),
        )

        everything = SQLiteStore(path).recent(100)
        self.assertEqual([m.time for m in everything["lobby"]], good)
        self.assertEqual(len(fields(observer, "history_rows_skipped")), 2)

    def test_nothingToSkip(self) -> None:
        """A database with sane times logs nothing about skipping."""
        observer = EventLoggingObserver.createWithCleanup(
            self, globalLogPublisher  # type: ignore[arg-type]  # any trial test case works
        )
        path = self.newPath()
        SQLiteStore(path).recent(1)
        insert(path, [message(1), message(2)])
        self.assertEqual(len(SQLiteStore(path).recent(10)["lobby"]), 2)
        self.assertEqual(fields(observer, "history_rows_skipped"), [])


def roomKeyRules(path: str) -> str | None:
    """The room key rules the database at C{path} records, if any."""
    connection = sqlite3.connect(path)
    try:
        row = connection.execute("SELECT value FROM meta WHERE name = 'room_key_rules'").fetchone()
        return None if row is None else str(row[0])
    finally:
        connection.close()


class RoomKeyTests(DatabaseFiles, SynchronousTestCase):
    """Stored room keys follow the rules of L{room_key}, whatever rules made them."""

    def setUp(self) -> None:
        self.observer = EventLoggingObserver.createWithCleanup(
            self, globalLogPublisher  # type: ignore[arg-type]  # any trial test case works
        )

    def oldDatabase(self) -> str:
        """
        A database as the previous version left it: schema version 2, and its messages keyed
        by the case-folded name, under which "Games" and fullwidth "Ｇａｍｅｓ" were one room.
        """
        path = self.newPath()
        connection = sqlite3.connect(path, isolation_level=None)
        try:
            migrate(connection, MIGRATIONS[:2])
        finally:
            connection.close()
        now = time.time()
        insert(path, [
            StoredMessage("games", "Games", now + 1, "alice", "one", False),
            StoredMessage("lobby", "Lobby", now + 2, "bob", "two", False),
            StoredMessage("games", "Ｇａｍｅｓ", now + 3, "carol", "three", False),
            StoredMessage("main", "Main", now + 4, "dave", "four", True),
        ])
        return path

    def test_oldKeysRekeyed(self) -> None:
        """
        Opening a database keyed by the old rules gives every stored room its key by the
        current rules before reading, keeping each room's messages together and in order;
        this is logged, and recorded, so that the next opening has nothing to do.
        """
        path = self.oldDatabase()
        history = SQLiteStore(path).recent(10)
        self.assertEqual(sorted(history), sorted({room_key("Games"), "lobby", room_key("Main")}))
        self.assertNotIn("games", history)
        self.assertEqual([m.text for m in history[room_key("Games")]], ["one", "three"])
        self.assertEqual({m.roomKey for m in history[room_key("Games")]}, {room_key("Games")})
        self.assertEqual([m.text for m in history[room_key("Main")]], ["four"])
        self.assertEqual(roomKeyRules(path), ROOM_KEY_RULES)
        (rekeyed,) = fields(self.observer, "history_rooms_rekeyed")
        self.assertEqual((rekeyed["rooms"], rekeyed["messages"]), (3, 3))
        self.assertEqual(SQLiteStore(path).recent(10), history)
        self.assertEqual(len(fields(self.observer, "history_rooms_rekeyed")), 1)

    def test_newDatabaseRecordsRules(self) -> None:
        """A new database records the current rules at once, and logs no rekeying."""
        path = self.newPath()
        SQLiteStore(path).recent(1)
        self.assertEqual(roomKeyRules(path), ROOM_KEY_RULES)
        self.assertEqual(fields(self.observer, "history_rooms_rekeyed"), [])

    def test_otherRulesRekeyed(self) -> None:
        """
        A database that records other rules is rekeyed too (the rules changed again), in one
        transaction; keys already right are left alone.
        """
        path = self.newPath()
        SQLiteStore(path).recent(1)
        insert(path, [message(1, "Lobby"), message(2, "Music")])
        connection = sqlite3.connect(path, isolation_level=None)
        self.addCleanup(connection.close)
        connection.execute("UPDATE meta SET value = 'some-later-rules'")
        self.assertEqual(rekeyRooms(connection), (1, 1))
        self.assertFalse(connection.in_transaction)
        self.assertEqual(rekeyRooms(connection), (0, 0))
        self.assertEqual(texts(path, room_key("Music")), ["text 2"])
        self.assertEqual(texts(path, "lobby"), ["text 1"])
