"""
Tests for L{chatsvc.store}: real SQLite files in a temporary directory, written on the store's
own database thread while the reactor runs.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from chatsvc.store import (
    SCHEMA_VERSION,
    IHistoryStore,
    NullStore,
    SQLiteStore,
    StoreError,
    StoredMessage,
    migrate,
)

TIMEOUT = 20.0


def message(number: int, room: str = "lobby", when: float = 1000.0, action: bool = False) -> StoredMessage:
    """A stored message numbered C{number}."""
    return StoredMessage(room.lower(), room, when + number, f"nick{number % 3}", f"text {number}", action)


def rows(path: str) -> list[tuple[str, str]]:
    """(room key, text) of every stored message, in order."""
    with sqlite3.connect(path) as connection:
        return connection.execute("SELECT room_key, text FROM messages ORDER BY id").fetchall()


async def until(condition: object, timeout: float = TIMEOUT) -> None:
    """Wait, without blocking the reactor, until C{condition()} is true."""
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout} s: {condition}")
        await deferLater(reactor, 0.01)


class StoreTestCase(TestCase):
    """Stores on a fresh file each test, always stopped afterwards."""

    def path(self) -> str:
        directory = Path(self.mktemp()).resolve()
        directory.mkdir()
        return str(directory / "history.db")

    def store(self, path: str, **options: object) -> SQLiteStore:
        options.setdefault("batchInterval", 0.01)
        options.setdefault("busyTimeout", 0.05)
        store = SQLiteStore(path, **options)  # type: ignore[arg-type]
        self.addCleanup(store.stop)
        return store

    def started(self, path: str, **options: object) -> SQLiteStore:
        store = self.store(path, **options)
        store.recent(10)
        store.start(reactor)
        return store


class InterfaceTests(SynchronousTestCase):
    """Both stores provide the interface the core writes to."""

    def test_provides(self) -> None:
        verifyObject(IHistoryStore, NullStore())
        verifyObject(IHistoryStore, SQLiteStore("unused.db"))

    def test_nullStore(self) -> None:
        """The null store keeps nothing and stops at once."""
        store = NullStore()
        store.add(message(1))
        self.assertEqual(store.recent(10), {})
        self.successResultOf(store.stop())


class RoundTripTests(StoreTestCase):
    """What is written comes back after a restart."""

    async def test_surviveRestart(self) -> None:
        """Messages written by one store are the recent history of the next, per room."""
        path = self.path()
        first = self.started(path)
        for number in range(5):
            first.add(message(number, "lobby"))
            first.add(message(number, "Games", action=number == 4))
        await first.stop()
        self.assertEqual(first.written, 10)
        history = self.store(path).recent(3)
        self.assertEqual(sorted(history), ["games", "lobby"])
        self.assertEqual(history["lobby"], [message(n, "lobby") for n in (2, 3, 4)])
        self.assertEqual(history["games"][-1], message(4, "Games", action=True))

    async def test_batched(self) -> None:
        """Many messages added at once are written in few transactions, in order."""
        path = self.path()
        store = self.started(path, maxBatch=500)
        for number in range(1200):
            store.add(message(number))
        await until(lambda: store.written == 1200)
        self.assertEqual(store.batches, 3)
        self.assertEqual([text for _, text in rows(path)], [f"text {n}" for n in range(1200)])

    async def test_stopWritesPending(self) -> None:
        """Stopping writes what is still queued."""
        path = self.path()
        store = self.started(path, batchInterval=60)
        store.add(message(1))
        await store.stop()
        self.assertEqual(rows(path), [("lobby", "text 1")])


class SchemaTests(SynchronousTestCase):
    """The versioned schema."""

    def path(self) -> str:
        directory = Path(self.mktemp()).resolve()
        directory.mkdir()
        return str(directory / "history.db")

    def test_newFile(self) -> None:
        """A new file gets the current schema version."""
        path = self.path()
        SQLiteStore(path).recent(1)
        with sqlite3.connect(path) as connection:
            self.assertEqual(connection.execute("PRAGMA user_version").fetchone(), (SCHEMA_VERSION,))

    def test_stepsInOrder(self) -> None:
        """Each migration step runs once, in order, and records its version."""
        connection = sqlite3.connect(self.path(), isolation_level=None)
        steps = [["CREATE TABLE a (x)"], ["ALTER TABLE a ADD COLUMN y", "CREATE TABLE b (z)"]]
        self.assertEqual(migrate(connection, "test", steps[:1]), 0)
        self.assertEqual(migrate(connection, "test", steps), 1)
        self.assertEqual(migrate(connection, "test", steps), 2)
        self.assertEqual(connection.execute("PRAGMA user_version").fetchone(), (2,))
        connection.execute("INSERT INTO a (x, y) VALUES (1, 2)")

    def test_failedStepRolledBack(self) -> None:
        """A step that fails leaves the database as it was, version included."""
        connection = sqlite3.connect(self.path(), isolation_level=None)
        steps = [["CREATE TABLE a (x)", "THIS IS NOT SQL"]]
        self.assertRaises(sqlite3.Error, migrate, connection, "test", steps)
        self.assertEqual(connection.execute("PRAGMA user_version").fetchone(), (0,))
        self.assertEqual(
            connection.execute("SELECT name FROM sqlite_master WHERE name = 'a'").fetchall(), []
        )

    def test_futureVersionRefused(self) -> None:
        """A database from a newer chatsvc is refused, saying both versions."""
        path = self.path()
        with sqlite3.connect(path) as connection:
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        error = self.assertRaises(StoreError, SQLiteStore(path).recent, 1)
        self.assertIn(f"version {SCHEMA_VERSION + 1}", str(error))
        self.assertIn(f"up to {SCHEMA_VERSION}", str(error))

    def test_notADatabase(self) -> None:
        """A file that is not SQLite is a clear start-up error."""
        path = self.path()
        Path(path).write_bytes(b"this is not a database, just text " * 100)
        error = self.assertRaises(StoreError, SQLiteStore(path).recent, 1)
        self.assertIn(path, str(error))

    def test_unopenable(self) -> None:
        """A file in a directory that does not exist is a clear start-up error."""
        error = self.assertRaises(StoreError, SQLiteStore("/nonexistent/dir/h.db").recent, 1)
        self.assertIn("/nonexistent/dir/h.db", str(error))


class FailureTests(StoreTestCase):
    """A database that cannot be written degrades to counted, logged errors."""

    async def test_lockedThenReleased(self) -> None:
        """
        While another process holds the database locked, writes fail, are counted and logged
        once; once it lets go, every queued message is written.
        """
        path = self.path()
        store = self.started(path)
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        locker = sqlite3.connect(path, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        for number in range(10):
            store.add(message(number))
        await until(lambda: store.failed >= 20)
        self.assertEqual(store.written, 0)
        failures = [e for e in events if e.get("chatsvc_fields", {}).get("event") == "history_write_failed"]
        self.assertEqual(len(failures), 1)
        locker.execute("ROLLBACK")
        locker.close()
        await until(lambda: store.written == 10, timeout=15)
        self.assertEqual(len(rows(path)), 10)
        self.assertEqual(store.dropped, 0)

    async def test_pendingBounded(self) -> None:
        """Past C{maxPending} unwritten messages, the oldest are dropped and counted."""
        path = self.path()
        store = self.started(path, maxPending=5)
        locker = sqlite3.connect(path, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        for number in range(8):
            store.add(message(number))
        await until(lambda: store.failed > 0)
        for number in range(8, 12):
            store.add(message(number))
        self.assertGreaterEqual(store.dropped, 7)
        locker.execute("ROLLBACK")
        locker.close()
        await until(lambda: store.written == 5, timeout=15)
        self.assertEqual([text for _, text in rows(path)], [f"text {n}" for n in range(7, 12)])

    async def test_vanished(self) -> None:
        """A database whose directory disappears neither raises nor stops chat: it is counted."""
        path = self.path()
        store = self.started(path, stopTimeout=0.5)
        store.add(message(1))
        await until(lambda: store.written == 1)
        directory = Path(path).parent
        for entry in directory.iterdir():
            entry.unlink()
        os.chmod(directory, 0o500)
        self.addCleanup(os.chmod, directory, 0o700)
        store.add(message(2))
        await store.stop()
        if os.geteuid() != 0:  # root writes anywhere; then the message was written again
            self.assertEqual(store.written + store.dropped, 2)


class RetentionTests(StoreTestCase):
    """Old messages are deleted in the background."""

    async def test_perRoomCap(self) -> None:
        """Each room keeps its newest C{keepPerRoom} messages."""
        path = self.path()
        store = self.started(path, keepPerRoom=3, maxAge=None, pruneInterval=0.05)
        for number in range(6):
            store.add(message(number, "lobby"))
        store.add(message(0, "games"))
        await until(lambda: store.pruned == 3)
        self.assertEqual(
            rows(path),
            [("lobby", "text 3"), ("lobby", "text 4"), ("lobby", "text 5"), ("games", "text 0")],
        )

    async def test_maxAge(self) -> None:
        """Messages older than C{maxAge} go."""
        path = self.path()
        now = 100_000.0
        store = self.started(path, maxAge=50, pruneInterval=0.05, now=lambda: now)
        store.add(message(0, when=now - 100))
        store.add(message(0, when=now - 10))
        await until(lambda: store.pruned == 1)
        self.assertEqual(len(rows(path)), 1)


class AddCostTests(SynchronousTestCase):
    """Adding is only queueing."""

    def test_addBeforeStart(self) -> None:
        """Messages added before the store starts are kept for it, bounded like any others."""
        store = SQLiteStore("unused.db", maxPending=3)
        for number in range(5):
            store.add(message(number))
        self.assertEqual(store.dropped, 2)
        self.successResultOf(store.stop())
