"""
Where room messages are kept across restarts.

The core hands every room message to an L{IHistoryStore} with L{IHistoryStore.add}, on the chat
fan-out path, so adding only queues. L{SQLiteStore} writes the queue to a SQLite file in batches,
one transaction each, on a single database thread of Twisted's L{adbapi.ConnectionPool}: the
reactor never waits on the disk. A locked, read-only, vanished or full database costs a logged,
counted error and a retry later; chat goes on, and past a bound the oldest unwritten messages are
given up (and counted).

The one synchronous read, L{IHistoryStore.recent}, happens at start-up, before the server accepts
anyone: each room's latest messages come back into memory, and from then on members are shown
history from there, never from the disk.
"""

from __future__ import annotations

import sqlite3
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import structlog
from attrs import frozen
from twisted.enterprise import adbapi
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorCore, IReactorTime
from twisted.python.failure import Failure
from zope.interface import Interface, implementer

__all__ = [
    "IHistoryStore",
    "NullStore",
    "SCHEMA_VERSION",
    "SQLiteStore",
    "StoreError",
    "StoredMessage",
]

_log = structlog.get_logger("chatsvc.store")


@frozen
class StoredMessage:
    """One room message (or C{/me} action) as kept in history."""

    roomKey: str
    """The room's canonical key (see L{chatsvc.core.room_key}); history is looked up by it."""
    room: str
    """The room's name as shown."""
    time: float
    """When it was said, in POSIX seconds."""
    nick: str
    text: str
    action: bool
    """True for a C{/me} action."""


class StoreError(Exception):
    """The history store cannot be used (at start-up): the message says why."""


class IHistoryStore(Interface):
    """Keeps room messages across restarts."""

    def recent(perRoom: int) -> dict[str, list[StoredMessage]]:
        """
        Up to C{perRoom} latest messages of every room, oldest first, by room key. Called once,
        at start-up, before the server accepts connections.

        @raise StoreError: if the store cannot be opened.
        """

    def start(reactor: IReactorCore) -> None:
        """Begin writing in the background (after L{recent})."""

    def add(message: StoredMessage) -> None:
        """Queue C{message} for writing. Never blocks and never raises."""

    def stop() -> Deferred[None]:
        """Write what is still queued (for a bounded time), then close."""


@implementer(IHistoryStore)
class NullStore:
    """A store that keeps nothing (C{--db :memory:})."""

    def recent(self, perRoom: int) -> dict[str, list[StoredMessage]]:
        """Nothing was kept."""
        return {}

    def start(self, reactor: IReactorCore) -> None:
        """Nothing to start."""

    def add(self, message: StoredMessage) -> None:
        """Forget C{message}."""

    def stop(self) -> Deferred[None]:
        """Nothing to write."""
        return succeed(None)


_SCHEMA_V1 = [
    """
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        room_key TEXT NOT NULL,
        room TEXT NOT NULL,
        time REAL NOT NULL,
        nick TEXT NOT NULL,
        text TEXT NOT NULL,
        action INTEGER NOT NULL
    )
    """,
    "CREATE INDEX messages_by_room ON messages (room_key, id)",
    "CREATE INDEX messages_by_time ON messages (time)",
]

MIGRATIONS: list[Sequence[str]] = [_SCHEMA_V1]
"""Step I{n} (from 0) takes a database from schema version I{n} to I{n + 1}."""

SCHEMA_VERSION = len(MIGRATIONS)
"""The schema version this code writes."""


def migrate(
    connection: sqlite3.Connection, path: str, migrations: Sequence[Sequence[str]] = MIGRATIONS
) -> int:
    """
    Bring the database on C{connection} (in autocommit mode) up to the latest schema, each step
    in a transaction of its own with its version number.

    @return: the version it was at.
    @raise StoreError: if it is newer than this code knows.
    """
    (found,) = connection.execute("PRAGMA user_version").fetchone()
    if found > len(migrations):
        raise StoreError(
            f"{path} has history schema version {found}, but this chatsvc knows versions up "
            f"to {len(migrations)} only; use a newer chatsvc, or another --db"
        )
    for version in range(found, len(migrations)):
        connection.execute("BEGIN IMMEDIATE")
        try:
            for statement in migrations[version]:
                connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {version + 1}")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")
        _log.info("history_migrated", path=path, version=version + 1)
    return int(found)


def _configure(connection: sqlite3.Connection, busyTimeout: float) -> None:
    connection.execute(f"PRAGMA busy_timeout = {int(busyTimeout * 1000)}")
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = NORMAL")


def _insert(cursor: Any, batch: list[StoredMessage]) -> None:
    cursor.executemany(
        "INSERT INTO messages (room_key, room, time, nick, text, action) VALUES (?, ?, ?, ?, ?, ?)",
        [(m.roomKey, m.room, m.time, m.nick, m.text, int(m.action)) for m in batch],
    )


_PRUNE_CHUNK = 5000
"""Most messages one retention pass deletes by age, so that it never holds the database long."""


def _prune(cursor: Any, cutoff: float | None, roomKeys: list[str], keepPerRoom: int) -> int:
    deleted = 0
    if cutoff is not None:
        cursor.execute(
            "DELETE FROM messages WHERE id IN "
            "(SELECT id FROM messages WHERE time < ? ORDER BY time LIMIT ?)",
            (cutoff, _PRUNE_CHUNK),
        )
        deleted += max(cursor.rowcount, 0)
    for key in roomKeys:
        cursor.execute(
            "DELETE FROM messages WHERE room_key = ? AND id <= "
            "(SELECT id FROM messages WHERE room_key = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
            (key, key, keepPerRoom),
        )
        deleted += max(cursor.rowcount, 0)
    return deleted


@implementer(IHistoryStore)
class SQLiteStore:
    """
    History in a SQLite file, written in batches on a database thread of its own.

    @ivar written: messages written so far.
    @ivar failed: messages in write attempts that failed (each retry counts again).
    @ivar dropped: messages given up, never written.
    @ivar batches: transactions that wrote messages.
    @ivar pruned: messages deleted by retention.
    """

    def __init__(
        self,
        path: str,
        *,
        batchInterval: float = 0.1,
        maxBatch: int = 1000,
        maxPending: int = 100_000,
        keepPerRoom: int = 10_000,
        maxAge: float | None = 30 * 86400,
        pruneInterval: float = 300.0,
        busyTimeout: float = 2.0,
        stopTimeout: float = 5.0,
        now: Callable[[], float] = time.time,
    ) -> None:
        """
        @param path: the SQLite file, created if missing.
        @param batchInterval: seconds a message may wait to be written with others.
        @param maxBatch: most messages written in one transaction.
        @param maxPending: most messages waiting to be written; past it the oldest are dropped.
        @param keepPerRoom: messages kept per room; older ones are deleted.
        @param maxAge: seconds a message is kept; L{None} for no limit.
        @param pruneInterval: seconds between retention passes.
        @param busyTimeout: seconds SQLite waits for a lock before a write fails.
        @param stopTimeout: seconds L{stop} may spend writing what is still queued.
        @param now: the wall clock (for message ages).
        """
        self.path = path
        self.batchInterval = batchInterval
        self.maxBatch = maxBatch
        self.maxPending = maxPending
        self.keepPerRoom = keepPerRoom
        self.maxAge = maxAge
        self.pruneInterval = pruneInterval
        self.busyTimeout = busyTimeout
        self.stopTimeout = stopTimeout
        self._now = now
        self.written = self.failed = self.dropped = self.batches = self.pruned = 0
        self._pending: deque[StoredMessage] = deque()
        self._touched: set[str] = set()
        self._pool: adbapi.ConnectionPool | None = None
        self._clock: IReactorTime | None = None
        self._flushCall: IDelayedCall | None = None
        self._pruneCall: IDelayedCall | None = None
        self._writing: Deferred[None] | None = None
        self._backoff = 0.0
        self._lastComplaint: float | None = None
        self._unreported = 0
        self._stopping = False

    # Start-up

    def recent(self, perRoom: int) -> dict[str, list[StoredMessage]]:
        """Open (creating or migrating) the database, and read each room's latest messages."""
        try:
            connection = sqlite3.connect(self.path, isolation_level=None, timeout=self.busyTimeout)
        except sqlite3.Error as error:
            raise StoreError(f"cannot open {self.path}: {error}") from error
        try:
            _configure(connection, self.busyTimeout)
            found = migrate(connection, self.path)
            history: dict[str, list[StoredMessage]] = {}
            keys = [key for (key,) in connection.execute("SELECT DISTINCT room_key FROM messages")]
            for key in keys:
                rows = connection.execute(
                    "SELECT room_key, room, time, nick, text, action FROM messages "
                    "WHERE room_key = ? ORDER BY id DESC LIMIT ?",
                    (key, perRoom),
                ).fetchall()
                history[key] = [StoredMessage(k, r, t, n, x, bool(a)) for k, r, t, n, x, a in reversed(rows)]
            (count,) = connection.execute("SELECT COUNT(*) FROM messages").fetchone()
        except sqlite3.Error as error:
            raise StoreError(f"cannot use {self.path} for history: {error}") from error
        finally:
            connection.close()
        _log.info(
            "history_opened",
            path=self.path,
            version=SCHEMA_VERSION,
            was=found,
            messages=count,
            rooms=len(history),
        )
        return history

    def start(self, reactor: IReactorCore) -> None:
        """Open the database thread and begin writing and pruning."""
        self._clock = reactor  # type: ignore[assignment]
        self._pool = adbapi.ConnectionPool(
            "sqlite3",
            self.path,
            check_same_thread=False,
            timeout=self.busyTimeout,
            cp_min=1,
            cp_max=1,
            cp_openfun=lambda connection: _configure(connection, self.busyTimeout),
            cp_reactor=reactor,
        )
        self._pruneCall = self._later(self.pruneInterval, self._prune)
        if self._pending:
            self._schedule(self.batchInterval)

    # Writing

    def add(self, message: StoredMessage) -> None:
        """Queue C{message}; it is written within about C{batchInterval} seconds."""
        self._pending.append(message)
        if len(self._pending) > self.maxPending:
            self._pending.popleft()
            self._drop(1)
        if self._flushCall is None and self._writing is None and self._pool is not None:
            self._schedule(self.batchInterval)

    def _later(self, delay: float, call: Callable[[], object]) -> IDelayedCall:
        assert self._clock is not None
        return self._clock.callLater(delay, call)

    def _schedule(self, delay: float) -> None:
        if self._flushCall is None and not self._stopping:
            self._flushCall = self._later(delay, self._flush)

    def _flush(self) -> Deferred[None]:
        self._flushCall = None
        if self._writing is not None or not self._pending or self._pool is None:
            return self._writing or succeed(None)
        batch = [self._pending.popleft() for _ in range(min(self.maxBatch, len(self._pending)))]
        writing: Deferred[None] = self._pool.runInteraction(_insert, batch)
        writing.addCallbacks(self._wrote, self._notWritten, callbackArgs=(batch,), errbackArgs=(batch,))
        self._writing = writing
        return writing

    def _wrote(self, result: object, batch: list[StoredMessage]) -> None:
        self._writing = None
        self._backoff = 0.0
        self.written += len(batch)
        self.batches += 1
        self._touched.update(message.roomKey for message in batch)
        if self._pending:
            self._schedule(0)

    def _notWritten(self, failure: Failure, batch: list[StoredMessage]) -> None:
        self._writing = None
        self.failed += len(batch)
        # Put the batch back in front, keeping the newest messages if there is no room.
        room = self.maxPending - len(self._pending)
        if room < len(batch):
            self._drop(len(batch) - max(room, 0))
            batch = batch[len(batch) - max(room, 0) :]
        self._pending.extendleft(reversed(batch))
        self._complain(failure, len(batch))
        self._backoff = min(max(self._backoff * 2, 0.25), 5.0)
        self._schedule(self._backoff)

    def _complain(self, failure: Failure, count: int) -> None:
        # Logged at most every 10 seconds, with how many failed since: a broken disk must not
        # flood the log as well.
        self._unreported += count
        now = self._now()
        if self._lastComplaint is not None and now - self._lastComplaint < 10:
            return
        self._lastComplaint = now
        _log.error(
            "history_write_failed",
            path=self.path,
            reason=failure.getErrorMessage(),
            messages=self._unreported,
            pending=len(self._pending),
            failed=self.failed,
            dropped=self.dropped,
        )
        self._unreported = 0

    def _drop(self, count: int) -> None:
        first = self.dropped == 0
        self.dropped += count
        if first or self.dropped % 10_000 < count:
            _log.error("history_dropped", path=self.path, dropped=self.dropped)

    # Retention

    def _prune(self) -> None:
        self._pruneCall = None
        if self._pool is None or self._stopping:
            return
        cutoff = None if self.maxAge is None else self._now() - self.maxAge
        rooms, self._touched = sorted(self._touched), set()
        pruning = self._pool.runInteraction(_prune, cutoff, rooms, self.keepPerRoom)

        def pruned(count: int) -> None:
            self.pruned += count
            if count:
                _log.info("history_pruned", path=self.path, messages=count)
            # A pass that hit its chunk size has more to do soon.
            again = 1.0 if count >= _PRUNE_CHUNK else self.pruneInterval
            if not self._stopping:
                self._pruneCall = self._later(again, self._prune)

        def notPruned(failure: Failure) -> None:
            self._touched.update(rooms)
            _log.error("history_prune_failed", path=self.path, reason=failure.getErrorMessage())
            if not self._stopping:
                self._pruneCall = self._later(self.pruneInterval, self._prune)

        pruning.addCallbacks(pruned, notPruned)

    # Stopping

    async def _finish(self) -> None:
        assert self._clock is not None
        deadline = self._now() + self.stopTimeout
        while self._pending or self._writing is not None:
            if self._now() >= deadline:
                break
            try:
                await (self._writing or self._flush())
            except Exception:
                pass
            if self._pending and self._writing is None and self.failed and self._backoff:
                # The disk is failing: one more try after a pause, within the deadline.
                pause: Deferred[None] = Deferred()
                self._clock.callLater(min(self._backoff, 0.5), pause.callback, None)
                await pause
        if self._pending:
            self._drop(len(self._pending))
            self._pending.clear()

    def stop(self) -> Deferred[None]:
        """Write what is queued (for at most C{stopTimeout} seconds), then close the database."""
        self._stopping = True
        for call in (self._flushCall, self._pruneCall):
            if call is not None and call.active():
                call.cancel()
        self._flushCall = self._pruneCall = None
        if self._pool is None:
            return succeed(None)
        pool = self._pool

        def close(result: object) -> None:
            self._pool = None
            pool.close()
            _log.info(
                "history_closed",
                path=self.path,
                written=self.written,
                failed=self.failed,
                dropped=self.dropped,
            )

        return Deferred.fromCoroutine(self._finish()).addBoth(close)
