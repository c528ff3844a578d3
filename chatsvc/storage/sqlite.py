"""
Chat history on disk: an SQLite database, read once at start-up and then written in the background,
so that a slow, locked or broken disk never makes the reactor wait.

Life cycle of an L{SQLiteStore}, as the server drives it:

  1. C{recent(perRoom)} opens the file (creating it if needed), brings its schema up to date and
     reads each room's latest messages, synchronously, on a connection of its own that it closes
     before returning: this happens before the reactor serves anyone, so that a database this
     server cannot use stops start-up with a clear L{StoreError} instead of failing later.
  2. C{start(reactor)} starts the database thread (opening the file first, as above, if
     C{recent} was not called). From then on the reactor thread never touches the disk:
     L{SQLiteStore.add} appends to a queue in memory and, when nothing is scheduled yet, schedules
     a flush C{batchInterval} seconds later. A flush hands up to C{maxBatch} messages to the
     thread, which inserts them in one transaction. One operation at a time is in flight.
  3. C{stop()} writes what is still queued, within C{stopTimeout} seconds, and closes everything.

Failures never reach the chat. A write that fails (the database locked by another program for
longer than the busy timeout, a read-only file, a full disk, the file or its directory deleted)
puts its messages back at the head of the queue, is counted in C{failed} and logged as
C{history_write_failed} (at most once every C{logInterval} seconds, with the number of attempts
not logged in between), and is retried with exponential backoff up to C{maxRetryDelay} seconds.
Messages are only lost when the queue outgrows C{maxPending} (the oldest go first), when the
database refuses a message itself (text it cannot encode, say), or when C{stop()} runs out of
time; all three are counted in C{dropped} and logged as C{history_dropped}.

After any failure other than "busy", the thread closes its connection and the next attempt opens
the file afresh: a connection that fell back to read-only stays so after the permissions are
fixed (those of the database and of its C{-wal} and C{-shm} files, which SQLite creates with the
database's mode), and SQLite in WAL mode keeps writing, without complaint, to a file that has
been unlinked.
Before every operation the thread therefore also checks that the path still names the file it
opened; when it does not, the operation fails, and the next one recreates the database (or keeps
failing, and retrying, while the directory is gone).

Retention runs in the same thread, between writes, in transactions of at most C{pruneChunk}
deletions: every C{pruneInterval} seconds (and once at start), messages older than C{maxAge} go,
and every room written since the previous pass (or returned by L{SQLiteStore.recent}) is cut down
to its C{keepPerRoom} newest messages.

The whole database is also kept within C{maxBytes}, counted as SQLite counts its own pages: those
in use, C{(page_count - freelist_count) * page_size}. Deleted messages free pages that later
writes reuse, so the file stops growing at about the bound (plus the write-ahead log, which
SQLite keeps to a few megabytes by checkpointing). The bytes in use are measured after every
write (three PRAGMAs, no I/O) and at the start of every retention pass; past the bound, the
oldest messages, in storage order, go a chunk at a time until the database is down to 90 % of
it, so that a database at its bound does not prune after every write. While it is over the
bound itself, deleting comes before writing, so it overshoots by one batch at most.

The schema is versioned with C{PRAGMA user_version}: L{MIGRATIONS} lists the steps, the first
taking an empty database to version 1; L{migrate} applies the missing ones in a single transaction
and refuses a database newer than it knows (L{SchemaVersionError}).

Messages are stored under their room's key (L{chatsvc.chat.names.room_key}), which is how the server
finds a room's history again. The rules that make keys may change (they did, from the case-folded
name to its confusable skeleton), so the database records which rules made its keys, in its
C{meta} table, under C{room_key_rules}; when opened by code with other rules (L{ROOM_KEY_RULES}),
the key of every distinct stored room name is made again, and the messages moved to it, in one
transaction, before anything is read. Two rooms whose names now have one key become one room,
their messages in the order they were stored.

Why a private one-thread L{ThreadPool} and not L{twisted.enterprise.adbapi.ConnectionPool}:
adbapi wraps each call in its own commit and rollback, and the recovery above does not fit in
that wrapping. A call that throws its broken connection away (C{Connection.reconnect}) and then
fails to open a new one, because the directory is still missing, leaves adbapi rolling back a
closed connection, which it logs as a "Rollback failed" traceback on every retry; and
L{ConnectionPool.disconnect} may only be called from the pool's thread, which outside a call
means reaching into the pool's thread pool anyway. adbapi also starts its threads from
C{callWhenRunning} and stops them from a shutdown trigger of its own. With one thread of our
own, each operation opens its transaction itself (C{BEGIN IMMEDIATE}, so that waiting for the
write lock happens at the start, never half-way), the connection is ours to close and reopen,
and the thread lives from the first operation after L{SQLiteStore.start} to L{SQLiteStore.stop}.
"""

from __future__ import annotations

import math
import os
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any, TypeVar

from attrs import frozen
import structlog
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import (
    IDelayedCall,
    IReactorCore,
    IReactorFromThreads,
    IReactorTime,
)
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from chatsvc.chat.rate import Throttle
from chatsvc.chat import (
    KEY_RULES,
    IHistoryStore,
    StoredMessage,
    StoreError,
    room_key,
)

__all__ = [
    "MIGRATIONS",
    "ROOM_KEY_RULES",
    "SCHEMA_VERSION",
    "DEFAULT_MAX_BYTES",
    "SQLiteStore",
    "SchemaVersionError",
    "migrate",
    "rekeyRooms",
]

_log = structlog.get_logger("chatsvc.store")

_T = TypeVar("_T")


class SchemaVersionError(StoreError):
    """
    The database's schema is newer than this code knows: it was written by a later version of
    chatsvc, and this one refuses to guess at it.
    """

    def __init__(self, found: int, known: int, path: str = "") -> None:
        """
        @param found: the database's schema version.
        @param known: the newest schema version this code knows.
        @param path: the database file, when known.
        """
        self.found = found
        self.known = known
        self.path = path
        where = f"{path}: " if path else ""
        super().__init__(
            f"{where}the history database has schema version {found}, but this version of "
            f"chatsvc knows schema versions up to {known} only; upgrade chatsvc, or use another "
            f"database file"
        )


MIGRATIONS: Sequence[Sequence[str]] = (
    # Version 1: the messages, an index for "the latest N of a room" (newest first by id) and
    # one for expiry by age.
    (
        """
        CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            room_key TEXT NOT NULL,
            room TEXT NOT NULL,
            time REAL NOT NULL,
            nick TEXT NOT NULL,
            text TEXT NOT NULL,
            action INTEGER NOT NULL CHECK (action IN (0, 1))
        )
        """,
        "CREATE INDEX messages_by_room ON messages (room_key, id)",
        "CREATE INDEX messages_by_time ON messages (time)",
    ),
    # Version 2: expiry by age walks the messages in the order they were stored, which is the
    # order of their times, so the index on time goes: keeping it up was about a fifth of
    # the CPU that writing a message takes (1.5 of 6.6 to 8.2 microseconds, in batches of
    # 500).
    ("DROP INDEX messages_by_time",),
    # Version 3: facts about the stored data as a whole, such as which rules made its room
    # keys (room_key_rules; none recorded means the rules before that record existed).
    ("CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",),
    # Version 4: accounts (by the key of their nickname), the digests of the tokens that keep
    # a browser logged in, and of one-use invite codes (chatsvc.storage.accounts).
    (
        """
        CREATE TABLE accounts (
            key TEXT PRIMARY KEY,
            nick TEXT NOT NULL,
            password_hash TEXT NOT NULL,
            created REAL NOT NULL
        ) WITHOUT ROWID
        """,
        """
        CREATE TABLE tokens (
            digest TEXT PRIMARY KEY,
            account_key TEXT NOT NULL REFERENCES accounts (key) ON DELETE CASCADE,
            created REAL NOT NULL
        ) WITHOUT ROWID
        """,
        "CREATE INDEX tokens_by_account ON tokens (account_key)",
        "CREATE TABLE invites (digest TEXT PRIMARY KEY, created REAL NOT NULL) WITHOUT ROWID",
    ),
    # Version 5: moderation (chatsvc.storage.moderation): the server's admins, each room's
    # owner, settings and roles, the bans and mutes, and the audit of every action.
    (
        "CREATE TABLE admins (account_key TEXT PRIMARY KEY) WITHOUT ROWID",
        """
        CREATE TABLE room_settings (
            room_key TEXT PRIMARY KEY,
            room TEXT NOT NULL,
            owner_key TEXT,
            private INTEGER NOT NULL DEFAULT 0,
            moderated INTEGER NOT NULL DEFAULT 0,
            topiclock INTEGER NOT NULL DEFAULT 0,
            registered INTEGER NOT NULL DEFAULT 0
        ) WITHOUT ROWID
        """,
        """
        CREATE TABLE room_roles (
            room_key TEXT NOT NULL,
            account_key TEXT NOT NULL,
            role TEXT NOT NULL CHECK (role IN ('op', 'voice')),
            PRIMARY KEY (room_key, account_key)
        ) WITHOUT ROWID
        """,
        """
        CREATE TABLE sanctions (
            kind TEXT NOT NULL CHECK (kind IN ('ban', 'mute')),
            room_key TEXT NOT NULL,
            target TEXT NOT NULL,
            account_key TEXT,
            nick_key TEXT,
            host TEXT,
            until REAL,
            reason TEXT,
            by TEXT NOT NULL,
            created REAL NOT NULL
        )
        """,
        "CREATE INDEX sanctions_by_room ON sanctions (room_key)",
        """
        CREATE TABLE audit (
            id INTEGER PRIMARY KEY,
            time REAL NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            room TEXT,
            target TEXT,
            detail TEXT
        )
        """,
    ),
    # Version 6: an account may be suspended by an admin, for a time or until lifted.
    (
        "ALTER TABLE accounts ADD COLUMN suspended INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE accounts ADD COLUMN suspended_until REAL",
        "ALTER TABLE accounts ADD COLUMN suspend_reason TEXT",
    ),
    # Version 7: a room's topic is kept across restarts, with its settings.
    ("ALTER TABLE room_settings ADD COLUMN topic TEXT",),
)
"""
The schema's history: step M{i} takes a database from version M{i} to M{i + 1}. Append only;
a released step is never edited.
"""

SCHEMA_VERSION = len(MIGRATIONS)
"""The schema version this code writes."""

ROOM_KEY_RULES = KEY_RULES
"""The rules by which room keys are made now (L{chatsvc.chat.names.KEY_RULES})."""

_MAX_ID = 2**63 - 1
"""SQLite's largest rowid."""

DEFAULT_MAX_BYTES = 256 * 1024 * 1024
"""The default bound on the database's size: 256 MiB, small enough for a small machine's disk."""

_SHRINK_TO = 0.9
"""Once over C{maxBytes}, old messages go until the database is down to this fraction of it."""


@contextmanager
def _transaction(connection: sqlite3.Connection) -> Iterator[None]:
    """
    One write transaction on an autocommit connection. C{BEGIN IMMEDIATE} takes the write lock
    at once (waiting up to the busy timeout), so a transaction never fails half-way for want
    of it.
    """
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if connection.in_transaction:
            with suppress(sqlite3.Error):
                connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def migrate(
    connection: sqlite3.Connection, migrations: Sequence[Sequence[str]] = MIGRATIONS
) -> tuple[int, int]:
    """
    Bring the schema of the database behind C{connection} up to version C{len(migrations)},
    running the missing steps, and setting C{PRAGMA user_version}, in one transaction: either
    every step applies or none does.

    @param connection: an autocommit connection (C{isolation_level=None}).
    @param migrations: the steps, each a sequence of SQL statements; L{MIGRATIONS} by default.
    @return: the version found and the version now.
    @raise SchemaVersionError: if the database is newer than C{migrations} knows.
    """
    known = len(migrations)
    with _transaction(connection):
        (found,) = connection.execute("PRAGMA user_version").fetchone()
        if found > known:
            path = next(
                (row[2] for row in connection.execute("PRAGMA database_list") if row[1] == "main"),
                "",
            )
            raise SchemaVersionError(found, known, path)
        for step in migrations[found:]:
            for statement in step:
                connection.execute(statement)
        if found != known:
            connection.execute(f"PRAGMA user_version = {known:d}")
    return found, known


def _connect(path: str, busyTimeout: float) -> sqlite3.Connection:
    """
    An autocommit connection to C{path} (created if missing), in WAL mode, with
    C{synchronous=NORMAL}: a commit waits for the write-ahead log, not for the database file,
    and a power cut can lose the last commits but never corrupt the file.
    """
    # timeout is SQLite's busy timeout: how long a statement waits for another connection's lock.
    # check_same_thread=False: the database thread owns this connection, but a pool thread is
    # not guaranteed to be the same thread from one operation to the next.
    connection = sqlite3.connect(
        path, timeout=busyTimeout, isolation_level=None, check_same_thread=False
    )
    try:
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = NORMAL")
    except BaseException:
        connection.close()
        raise
    return connection


def rekeyRooms(connection: sqlite3.Connection) -> tuple[int, int]:
    """
    Unless the database behind C{connection} records L{ROOM_KEY_RULES} as the rules that made
    its room keys, make the key of each distinct stored room name again with L{room_key}, move
    its messages to the new key where it differs, and record L{ROOM_KEY_RULES}: all in one
    transaction.

    @param connection: an autocommit connection to a database at L{SCHEMA_VERSION}.
    @return: how many (old key, room name) pairs got a new key, and how many messages moved.
    """
    with _transaction(connection):
        recorded = connection.execute(
            "SELECT value FROM meta WHERE name = 'room_key_rules'"
        ).fetchone()
        if recorded == (ROOM_KEY_RULES,):
            return 0, 0
        rooms = moved = 0
        pairs = connection.execute("SELECT DISTINCT room_key, room FROM messages").fetchall()
        for old, room in pairs:
            new = room_key(room) if isinstance(room, str) else old
            if new != old:
                cursor = connection.execute(
                    "UPDATE messages SET room_key = ? WHERE room_key = ? AND room = ?",
                    (new, old, room),
                )
                rooms += 1
                moved += cursor.rowcount
        connection.execute(
            "INSERT OR REPLACE INTO meta (name, value) VALUES ('room_key_rules', ?)",
            (ROOM_KEY_RULES,),
        )
    return rooms, moved


@frozen
class _Opened:
    """What opening a database found and did."""

    connection: sqlite3.Connection
    """An autocommit connection to it."""
    found: int
    """The schema version it had."""
    version: int
    """The schema version it has now."""
    rekeyed: tuple[int, int]
    """What L{rekeyRooms} did: rooms given a new key, messages moved."""


def _openDatabase(path: str, busyTimeout: float) -> _Opened:
    """Connect to C{path}, migrate it to L{SCHEMA_VERSION} and bring its room keys up to date."""
    connection = _connect(path, busyTimeout)
    try:
        found, now = migrate(connection)
        rekeyed = rekeyRooms(connection)
    except BaseException:
        connection.close()
        raise
    return _Opened(connection, found, now, rekeyed)


def _fileIdentity(path: str) -> tuple[int, int] | None:
    """The device and inode C{path} names, or L{None} if it names nothing."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_dev, status.st_ino


def _isBusy(error: BaseException) -> bool:
    """Whether C{error} says only that another connection holds a lock (worth waiting for)."""
    code = getattr(error, "sqlite_errorcode", None)
    return code is not None and (code & 0xFF) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _describe(error: BaseException) -> str:
    """A one-line reason for a log event."""
    return f"{type(error).__name__}: {error}"


# A message is stored under the id it was said with (its event's, see chatsvc.chat.ids), which
# is the table's rowid; one with none (0) is given the next rowid.
_INSERT = (
    "INSERT INTO messages (id, room_key, room, time, nick, text, action) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)

# What the database (or sqlite3's binding of parameters) raises for a message it will not take,
# however often it is asked: text that cannot be encoded, a time that is not a number.
_REFUSED = (
    sqlite3.IntegrityError,
    sqlite3.DataError,
    sqlite3.InterfaceError,
    ValueError,
    OverflowError,
    TypeError,
)

# The distinct room keys, by a skip scan of the room index: one index lookup per room, however
# many messages each room has.
_ROOM_KEYS = """
    WITH RECURSIVE rooms(key) AS (
        SELECT min(room_key) FROM messages
        UNION ALL
        SELECT (SELECT min(room_key) FROM messages WHERE room_key > rooms.key)
        FROM rooms WHERE rooms.key IS NOT NULL
    )
    SELECT key FROM rooms WHERE key IS NOT NULL
"""

# A room's messages, newest first; recent() reads only as many as it keeps.
_LATEST = """
    SELECT id, room, time, nick, text, action FROM messages
    WHERE room_key = ? AND time >= ?
    ORDER BY id DESC
"""

_END_OF_9999 = 253402300800.0
"""10000-01-01T00:00:00Z in POSIX seconds: C{time.gmtime} and C{strftime} format any time before."""


def _isShowable(when: object) -> bool:
    """
    Whether C{when}, a stored message's time, is one the server can show: a number from 1970
    to the end of 9999. Nothing this code writes is anything else, but a file written by hand,
    or by another program, may hold anything: a time of 1e300, infinity or text.
    """
    return isinstance(when, (int, float)) and math.isfinite(when) and 0 <= when < _END_OF_9999


@frozen
class _Inserted:
    """What one write did."""

    refused: int
    """Messages the database refused (see L{_REFUSED}); the others were written."""
    reason: str | None
    """Why the first refused message was refused."""
    rooms: frozenset[str]
    """The room keys written to."""


def _insertMessages(connection: sqlite3.Connection, batch: Sequence[StoredMessage]) -> _Inserted:
    """
    Write C{batch} in one transaction. Should the database refuse a message, the batch is
    written again one message at a time, skipping the ones it refuses: one bad message must not
    keep the others from being written, nor be retried for ever.
    """
    rows = [
        (
            message.id or None,
            message.roomKey,
            message.room,
            message.time,
            message.nick,
            message.text,
            message.action,
        )
        for message in batch
    ]
    rooms = frozenset(row[1] for row in rows)
    try:
        with _transaction(connection):
            connection.executemany(_INSERT, rows)
        return _Inserted(0, None, rooms)
    except _REFUSED:
        pass
    refused = 0
    reason = None
    with _transaction(connection):
        for row in rows:
            try:
                connection.execute(_INSERT, row)
            except _REFUSED as error:
                refused += 1
                reason = reason or _describe(error)
    return _Inserted(refused, reason, rooms)


def _deleteOlderThan(connection: sqlite3.Connection, cutoff: float, limit: int) -> int:
    """
    Delete up to C{limit} of the oldest messages, those stored before the first one that is
    not older than C{cutoff}; return how many went.

    Messages are stored in the order of their times, so walking them by id from the oldest
    finds the ones to go without an index on time, in steps as long as what goes. A message
    stored with an earlier time than one before it (the clock was set back) goes once those
    before it have gone; L{SQLiteStore.recent} leaves it out meanwhile.
    """
    with _transaction(connection):
        cursor = connection.execute(
            "DELETE FROM messages WHERE id IN (SELECT id FROM messages WHERE id <= coalesce("
            "(SELECT id FROM messages WHERE time >= ? ORDER BY id LIMIT 1) - 1, ?) "
            "ORDER BY id LIMIT ?)",
            (cutoff, _MAX_ID, limit),
        )
    return cursor.rowcount


_USED_BYTES = """
    SELECT ((SELECT page_count FROM pragma_page_count())
            - (SELECT freelist_count FROM pragma_freelist_count()))
           * (SELECT page_size FROM pragma_page_size())
"""


def _usedBytes(connection: sqlite3.Connection) -> int:
    """
    The bytes of the database's pages in use, free pages left out: what it really takes on disk,
    since a free page is reused before the file grows. Read from SQLite's page counts, without
    touching the messages.
    """
    (used,) = connection.execute(_USED_BYTES).fetchone()
    return int(used)


def _deleteOldest(connection: sqlite3.Connection, above: int, limit: int) -> tuple[int, int]:
    """
    If the database uses more than C{above} bytes, delete up to C{limit} of its oldest messages
    (in storage order); return how many went and the bytes in use afterwards.
    """
    used = _usedBytes(connection)
    if used <= above:
        return 0, used
    with _transaction(connection):
        cursor = connection.execute(
            "DELETE FROM messages WHERE id IN (SELECT id FROM messages ORDER BY id LIMIT ?)",
            (limit,),
        )
    return cursor.rowcount, _usedBytes(connection)


def _capRoom(connection: sqlite3.Connection, roomKey: str, keep: int, limit: int) -> int:
    """
    Delete up to C{limit} of the oldest messages of the room C{roomKey} beyond its C{keep}
    newest; return how many went.
    """
    row = connection.execute(
        "SELECT id FROM messages WHERE room_key = ? ORDER BY id DESC LIMIT 1 OFFSET ?",
        (roomKey, keep),
    ).fetchone()
    if row is None:
        return 0
    # Only this thread writes, and new messages get larger ids, so the newest message to go
    # stays the same until the room has been cut down.
    with _transaction(connection):
        cursor = connection.execute(
            "DELETE FROM messages WHERE id IN (SELECT id FROM messages "
            "WHERE room_key = ? AND id <= ? ORDER BY id LIMIT ?)",
            (roomKey, row[0], limit),
        )
    return cursor.rowcount


_MIN_RETRY_DELAY = 0.05
"""The first retry of a failed write waits at least this long, whatever C{batchInterval}."""


@implementer(IHistoryStore)
class SQLiteStore:
    """
    History in an SQLite file, written by a thread of its own (see the module's description).

    The settings given to the constructor are kept as attributes of the same names. Counters,
    all read-only and in messages unless said otherwise: L{written}, L{failed}, L{dropped},
    L{pruned}, L{pending}, and L{batches} (write transactions committed).
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
        pruneChunk: int = 1000,
        maxBytes: int | None = DEFAULT_MAX_BYTES,
        busyTimeout: float = 2.0,
        maxRetryDelay: float = 5.0,
        stopTimeout: float = 3.0,
        logInterval: float = 10.0,
    ) -> None:
        """
        Take the settings; the file is not touched until L{recent} or L{start}.

        @param path: the database file. Not C{":memory:"}: use L{NullStore} for no history.
        @param batchInterval: seconds a message may wait so that the messages around it are
            written in the same transaction.
        @param maxBatch: the most messages written in one transaction.
        @param maxPending: the most messages waiting to be written; beyond it the oldest are
            dropped. A batch being written does not count.
        @param keepPerRoom: the most messages kept of each room.
        @param maxAge: seconds a message is kept; L{None} keeps messages for ever (or until
            C{keepPerRoom} newer ones push them out).
        @param pruneInterval: seconds between two retention passes.
        @param pruneChunk: the most messages deleted in one transaction, so that writes never
            wait long behind a retention pass.
        @param maxBytes: the most bytes the database's pages in use may take (see the module's
            description); past it the oldest messages go. L{None}: no bound.
        @param busyTimeout: seconds a statement waits for another program's lock on the file
            before failing (a locked write is then retried later).
        @param maxRetryDelay: the longest wait before retrying a failed write; waits start at
            C{batchInterval} (at least 50 ms) and double.
        @param stopTimeout: seconds L{stop} keeps trying to write what is queued. An operation
            already under way when the time is up is waited for; it is bounded by
            C{busyTimeout} plus the disk's own time.
        @param logInterval: at most one C{history_write_failed} (and one C{history_dropped},
            one C{history_prune_failed}) event per this many seconds.
        """
        if path == ":memory:" or path.startswith("file:"):
            raise ValueError("SQLiteStore needs a file path; use NullStore to keep no history")
        for name, value in [
            ("maxBatch", maxBatch),
            ("maxPending", maxPending),
            ("keepPerRoom", keepPerRoom),
            ("pruneChunk", pruneChunk),
            ("maxBytes", 1 if maxBytes is None else maxBytes),
        ]:
            if value < 1:
                raise ValueError(f"{name} must be at least 1, not {value!r}")
        for name, seconds in [
            ("batchInterval", batchInterval),
            ("busyTimeout", busyTimeout),
            ("stopTimeout", stopTimeout),
            ("logInterval", logInterval),
        ]:
            if seconds < 0:
                raise ValueError(f"{name} may not be negative, not {seconds!r}")
        for name, positive in [
            ("pruneInterval", pruneInterval),
            ("maxRetryDelay", maxRetryDelay),
            ("maxAge", 1.0 if maxAge is None else maxAge),
        ]:
            if not positive > 0:
                raise ValueError(f"{name} must be positive, not {positive!r}")

        self.path = path
        self.batchInterval = batchInterval
        self.maxBatch = maxBatch
        self.maxPending = maxPending
        self.keepPerRoom = keepPerRoom
        self.maxAge = maxAge
        self.pruneInterval = pruneInterval
        self.pruneChunk = pruneChunk
        self.maxBytes = maxBytes
        self.busyTimeout = busyTimeout
        self.maxRetryDelay = maxRetryDelay
        self.stopTimeout = stopTimeout

        self._pending: deque[StoredMessage] = deque()
        self._written = 0
        self._failed = 0
        self._dropped = 0
        self._pruned = 0
        self._batches = 0
        self._opened = False

        # Reactor side. _accepting: add() queues (until stop() is done). _idle: writing, not
        # stopping, and no flush scheduled, due or under way, so that add() must schedule one.
        self._clock: IReactorTime | None = None
        self._threads: IReactorFromThreads | None = None
        self._threadpool: ThreadPool | None = None
        self._shutdownTrigger: tuple[IReactorCore, object] | None = None
        self._accepting = True
        self._idle = False
        self._started = False
        self._stopping = False
        self._stopped = False
        self._stopWaiters: list[Deferred[None]] = []
        self._busy = False
        self._idleWaiters: list[Deferred[None]] = []
        self._flushCall: IDelayedCall | None = None
        self._flushDue = False
        self._failedAttempts = 0
        self._unloggedFailures = 0
        self._failureThrottle = Throttle(logInterval)
        self._unreportedDrops = 0
        self._dropThrottle = Throttle(logInterval)
        self._pruneCall: IDelayedCall | None = None
        self._pruneCutoff: float | None = None
        self._pruneRooms: deque[str] = deque()
        self._dirtyRooms: set[str] = set()
        self._prunedThisPass = 0
        self._pruneThrottle = Throttle(logInterval)
        # _shrinkAbove: a size check is due, deleting if the database uses more bytes than this
        # (maxBytes to begin with, then its 90 % while shrinking). _overBound: the last
        # measurement found more than maxBytes. _shrunk: deleted since shrinking began.
        self._shrinkAbove: int | None = None
        self._overBound = False
        self._shrunk = 0

        # Database thread side: only ever touched by the operation under way.
        self._connection: sqlite3.Connection | None = None
        self._identity: tuple[int, int] | None = None

    @property
    def written(self) -> int:
        """Messages written so far."""
        return self._written

    @property
    def failed(self) -> int:
        """Write attempts that failed, in messages (a message retried twice counts twice)."""
        return self._failed

    @property
    def dropped(self) -> int:
        """Messages given up on: pushed out of a full queue, refused, or left at shutdown."""
        return self._dropped

    @property
    def pruned(self) -> int:
        """Messages deleted by retention."""
        return self._pruned

    @property
    def batches(self) -> int:
        """Write transactions committed."""
        return self._batches

    @property
    def pending(self) -> int:
        """Messages waiting to be written (not counting a batch being written)."""
        return len(self._pending)

    def _openNow(self) -> sqlite3.Connection:
        """
        Open the database synchronously, creating and migrating it, and log C{history_opened}.

        @raise StoreError: if it cannot be used.
        """
        try:
            opened = _openDatabase(self.path, self.busyTimeout)
            connection, found, version = opened.connection, opened.found, opened.version
            try:
                (count,) = connection.execute("SELECT count(*) FROM messages").fetchone()
            except BaseException:
                connection.close()
                raise
        except StoreError:
            raise
        except sqlite3.Error as error:
            raise StoreError(f"cannot use {self.path} for history: {error}") from error
        if found != version:
            _log.info("history_migrated", path=self.path, from_version=found, to_version=version)
        rooms, moved = opened.rekeyed
        if rooms:
            _log.info(
                "history_rooms_rekeyed",
                path=self.path,
                rooms=rooms,
                messages=moved,
                rules=ROOM_KEY_RULES,
            )
        _log.info("history_opened", path=self.path, schema_version=version, messages=count)
        self._opened = True
        return connection

    def recent(self, perRoom: int) -> dict[str, list[StoredMessage]]:
        """
        Open the database (creating or migrating it), read up to C{perRoom} most recent
        messages of every room, oldest first, keyed by C{roomKey}, and close it again.

        Rooms with no messages are left out, and so are messages older than C{maxAge}, which
        are only waiting for the next retention pass. The rooms found are cut down to
        C{keepPerRoom} by the first retention pass. A message whose time cannot be shown (see
        L{_isShowable}) is left out too, rather than break every join to its room; how many
        were, and in which rooms, is logged once, as C{history_rows_skipped}.

        @raise StoreError: if the database cannot be used; the message says why.
        """
        if perRoom < 0:
            raise ValueError(f"perRoom may not be negative, not {perRoom!r}")
        cutoff = -math.inf if self.maxAge is None else time.time() - self.maxAge
        history: dict[str, list[StoredMessage]] = {}
        skipped: dict[str, int] = {}
        connection = self._openNow()
        try:
            connection.execute("BEGIN")  # one snapshot for every room
            rooms = [key for (key,) in connection.execute(_ROOM_KEYS)]
            for key in rooms if perRoom else []:
                messages: list[StoredMessage] = []
                cursor = connection.execute(_LATEST, (key, cutoff))
                try:
                    for rowid, room, when, nick, text, action in cursor:
                        if not _isShowable(when):
                            skipped[key] = skipped.get(key, 0) + 1
                            continue
                        messages.append(
                            StoredMessage(key, room, when, nick, text, bool(action), id=rowid)
                        )
                        if len(messages) == perRoom:
                            break
                finally:
                    cursor.close()
                if messages:
                    messages.reverse()
                    history[key] = messages
            connection.execute("COMMIT")
        except sqlite3.Error as error:
            raise StoreError(f"cannot read history from {self.path}: {error}") from error
        finally:
            connection.close()
        if skipped:
            _log.warning(
                "history_rows_skipped",
                path=self.path,
                messages=sum(skipped.values()),
                rooms=skipped,
                reason="a time that is not a number from 1970 to the end of 9999",
            )
        self._dirtyRooms.update(rooms)
        return history

    def start(self, reactor: IReactorCore) -> None:
        """
        Start writing in the background: what was added so far first, and a first retention
        pass. Opens the database first (synchronously, see L{recent}) if L{recent} did not.

        The database thread itself is started when there is a first thing to do, and results
        come back through C{reactor.callFromThread}. A reactor that cannot do that (a test's
        L{MemoryReactorClock}) gets a store that only queues, and drops the queue on L{stop}.

        @param reactor: an L{IReactorTime} too; and an L{IReactorFromThreads} to write.
        @raise StoreError: if the database cannot be used.
        @raise RuntimeError: if called twice, or after L{stop}.
        """
        if self._started or self._stopping:
            raise RuntimeError("this history store was already started or stopped")
        if not self._opened:
            self._openNow().close()
        self._started = True
        self._clock = IReactorTime(reactor)
        self._threads = IReactorFromThreads(reactor, None)
        if self._threads is None:
            _log.warning("history_not_written", reason="the reactor cannot run threads")
            return
        # No thread at all until there is work for one.
        threadpool = self._threadpool = ThreadPool(0, 1, "chatsvc.store")
        threadpool.start()
        self._shutdownTrigger = (
            reactor,
            reactor.addSystemEventTrigger("during", "shutdown", threadpool.stop),
        )
        self._idle = True
        self._reportDrops()
        if self._pending:
            self._armFlush(self.batchInterval)
        self._pruneCall = self._clock.callLater(0, self._pruneTimer)

    def page(
        self, roomKey: str, after: int | None, before: int | None, limit: int, newest: bool
    ) -> Deferred[list[StoredMessage]]:
        """
        Up to C{limit} messages of the room C{roomKey} with ids between C{after} and
        C{before}, oldest first (the newest such if C{newest}), read on the database thread
        between writes. Before L{start} or once stopping: none. Messages older than C{maxAge}
        and messages whose time cannot be shown are left out, as by L{recent}.
        """
        if self._threadpool is None or self._stopping or limit < 1:
            return succeed([])
        low = -1 if after is None else after
        high = _MAX_ID if before is None else before
        cutoff = -math.inf if self.maxAge is None else time.time() - self.maxAge
        order = "DESC" if newest else "ASC"
        query = (
            "SELECT id, room, time, nick, text, action FROM messages "
            f"WHERE room_key = ? AND id > ? AND id < ? AND time >= ? ORDER BY id {order} LIMIT ?"
        )

        def read(connection: sqlite3.Connection) -> list[StoredMessage]:
            rows = connection.execute(query, (roomKey, low, high, cutoff, limit)).fetchall()
            found = [
                StoredMessage(roomKey, room, when, nick, text, bool(action), id=rowid)
                for rowid, room, when, nick, text, action in rows
                if _isShowable(when)
            ]
            if newest:
                found.reverse()
            return found

        return self._inThread(read)

    def remove(self, roomKey: str, id: int) -> Deferred[None]:
        """
        Forget the message C{id} of the room C{roomKey}: from the queue if it is not written
        yet, and from the database (on its thread) if it is.
        """
        before = len(self._pending)
        self._pending = deque(m for m in self._pending if not (m.id == id and m.roomKey == roomKey))
        if len(self._pending) != before or self._threadpool is None or self._stopping:
            return succeed(None)

        def delete(connection: sqlite3.Connection) -> None:
            connection.execute("DELETE FROM messages WHERE id = ? AND room_key = ?", (id, roomKey))

        return self._inThread(delete)

    def runNow(self, operation: Callable[[sqlite3.Connection], _T]) -> _T:
        """
        Run C{operation} now, on a connection of its own to the database (created and migrated
        first if need be), then close it: for what must be read before anything is served, as
        the history is by L{recent}.

        @raise StoreError: if the database cannot be used.
        """
        try:
            opened = _openDatabase(self.path, self.busyTimeout)
        except sqlite3.Error as error:
            raise StoreError(f"cannot use {self.path}: {error}") from error
        try:
            return operation(opened.connection)
        except sqlite3.Error as error:
            raise StoreError(f"cannot read {self.path}: {error}") from error
        finally:
            opened.connection.close()

    def run(self, operation: Callable[[sqlite3.Connection], _T]) -> Deferred[_T]:
        """
        Run C{operation} on the database thread, between the history's writes, with the
        store's connection (in autocommit: an operation that writes more than one row takes
        a transaction of its own). Fails with L{StoreError} before L{start} and once stopping.
        """
        if self._threadpool is None or self._stopping:
            return fail(StoreError(f"the database {self.path} is not open just now"))
        return self._inThread(operation)

    def add(self, message: StoredMessage) -> None:
        """Queue C{message} for writing (see L{IHistoryStore.add})."""
        if not self._accepting:
            self._dropped += 1
            return
        pending = self._pending
        pending.append(message)
        if len(pending) > self.maxPending:
            self._dropOldest()
        if self._idle:
            self._armFlush(self.batchInterval)

    def stop(self) -> Deferred[None]:
        """
        Stop scheduling, write what is queued (trying for C{stopTimeout} seconds, then counting
        the rest as dropped), wait for the operation under way, and stop the thread. Messages
        added meanwhile are written too; after that, L{add} drops them.
        """
        if self._stopped:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._stopWaiters.append(waiter)
        if not self._stopping:
            self._stopping = True
            self._idle = False
            self._flushDue = False
            for call in (self._flushCall, self._pruneCall):
                if call is not None and call.active():
                    call.cancel()
            self._flushCall = self._pruneCall = None
            if self._shutdownTrigger is not None:
                core, trigger = self._shutdownTrigger
                core.removeSystemEventTrigger(trigger)
                self._shutdownTrigger = None
            Deferred.fromCoroutine(self._drain()).addErrback(self._bug).addBoth(self._closed)
        return waiter

    # Reactor side: scheduling.

    def _armFlush(self, delay: float) -> None:
        assert self._clock is not None
        self._idle = False
        self._flushCall = self._clock.callLater(delay, self._flushTimer)

    def _flushTimer(self) -> None:
        self._flushCall = None
        self._flushDue = True
        self._wake()

    def _pruneTimer(self) -> None:
        assert self._clock is not None
        self._pruneCall = self._clock.callLater(self.pruneInterval, self._pruneTimer)
        if self._pruneCutoff is not None or self._pruneRooms:
            return  # the previous pass is not finished yet
        if self.maxAge is not None:
            self._pruneCutoff = self._clock.seconds() - self.maxAge
        self._pruneRooms.extend(sorted(self._dirtyRooms))
        self._dirtyRooms.clear()
        self._prunedThisPass = 0
        self._checkSize()
        self._wake()

    def _checkSize(self) -> None:
        """Have the next retention step check the database's size, unless one is due already."""
        if self.maxBytes is not None and self._shrinkAbove is None:
            self._shrinkAbove = self.maxBytes

    def _wake(self) -> None:
        """
        Start the next operation, if one is due and none is under way: writes first, unless the
        database is over its size bound, when making room comes first.
        """
        if self._busy or self._stopping or self._threadpool is None:
            return
        if self._overBound and self._shrinkAbove is not None:
            self._startOperation(self._pruneStep())
            return
        if self._flushDue:
            self._flushDue = False
            if self._pending:
                self._startOperation(self._flush())
                return
            self._idle = True
        if self._pruneCutoff is not None or self._pruneRooms or self._shrinkAbove is not None:
            self._startOperation(self._pruneStep())

    def _startOperation(self, operation: Coroutine[Any, Any, None]) -> None:
        self._busy = True
        Deferred.fromCoroutine(operation).addErrback(self._bug).addBoth(self._operationDone)

    def _operationDone(self, ignored: object) -> None:
        self._busy = False
        waiters, self._idleWaiters = self._idleWaiters, []
        for waiter in waiters:
            waiter.callback(None)
        self._wake()

    async def _whenIdle(self) -> None:
        if self._busy:
            waiter: Deferred[None] = Deferred()
            self._idleWaiters.append(waiter)
            await waiter

    def _bug(self, failure: Failure) -> None:
        # Only a mistake in this module gets here: every expected failure is handled where it
        # happens. Log it with its traceback and keep going.
        _log.error("history_store_error", exc_info=failure.value)

    # Reactor side: writing.

    def _inThread(self, operation: Callable[[sqlite3.Connection], _T]) -> Deferred[_T]:
        assert self._threads is not None and self._threadpool is not None
        return deferToThreadPool(
            self._threads, self._threadpool, self._withConnection, operation
        )

    async def _flush(self) -> None:
        """Write one batch, then schedule what comes next."""
        succeeded = await self._write()
        if self._stopping:
            return
        if not succeeded:
            delay = max(self.batchInterval, _MIN_RETRY_DELAY) * 2.0 ** min(
                self._failedAttempts - 1, 30
            )
            self._armFlush(min(delay, self.maxRetryDelay))
        elif len(self._pending) >= self.maxBatch:
            self._flushDue = True  # a backlog: no reason to wait
        elif self._pending:
            self._armFlush(self.batchInterval)
        else:
            self._idle = True

    async def _write(self) -> bool:
        """Write the oldest C{maxBatch} pending messages; put them back if that fails."""
        pending = self._pending
        if len(pending) <= self.maxBatch:
            batch = list(pending)
            pending.clear()
        else:
            batch = [pending.popleft() for _ in range(self.maxBatch)]
        measure = self.maxBytes is not None

        def insert(connection: sqlite3.Connection) -> tuple[_Inserted, int | None]:
            inserted = _insertMessages(connection, batch)
            return inserted, _usedBytes(connection) if measure else None

        try:
            inserted, used = await self._inThread(insert)
        except Exception as error:
            self._writeFailed(batch, error)
            return False
        self._batches += 1
        self._written += len(batch) - inserted.refused
        self._dirtyRooms.update(inserted.rooms)
        if used is not None and self.maxBytes is not None and used > self.maxBytes:
            self._overBound = True
            self._checkSize()
        if self._failedAttempts:
            _log.info(
                "history_write_recovered",
                failed_attempts=self._failedAttempts,
                pending=len(pending),
            )
            self._failedAttempts = 0
            self._unloggedFailures = 0
        if inserted.refused:
            self._dropped += inserted.refused
            _log.error(
                "history_dropped",
                messages=inserted.refused,
                total=self._dropped,
                reason=f"refused by the database ({inserted.reason})",
            )
        self._reportDrops()
        return True

    def _writeFailed(self, batch: list[StoredMessage], error: Exception) -> None:
        self._failed += len(batch)
        self._failedAttempts += 1
        pending = self._pending
        pending.extendleft(reversed(batch))
        if len(pending) > self.maxPending:
            self._dropOldest()
        assert self._clock is not None
        if self._failureThrottle.ready(self._clock.seconds()):
            _log.error(
                "history_write_failed",
                messages=len(batch),
                reason=_describe(error),
                attempt=self._failedAttempts,
                pending=len(pending),
                unlogged_failures=self._unloggedFailures,
            )
            self._unloggedFailures = 0
        else:
            self._unloggedFailures += 1

    def _dropOldest(self) -> None:
        pending = self._pending
        excess = len(pending) - self.maxPending
        for _ in range(excess):
            pending.popleft()
        self._dropped += excess
        self._unreportedDrops += excess
        if self._clock is not None:
            self._reportDrops()

    def _reportDrops(self, force: bool = False) -> None:
        if not self._unreportedDrops or self._clock is None:
            return
        if force or self._dropThrottle.ready(self._clock.seconds()):
            _log.error(
                "history_dropped",
                messages=self._unreportedDrops,
                total=self._dropped,
                reason=f"more than {self.maxPending} messages waiting to be written",
            )
            self._unreportedDrops = 0

    # Reactor side: retention.

    async def _pruneStep(self) -> None:
        """One transaction's worth of retention: the size bound first, then age, then rooms."""
        chunk = self.pruneChunk
        try:
            if self._shrinkAbove is not None:
                await self._shrinkStep(self._shrinkAbove)
                return
            if self._pruneCutoff is not None:
                cutoff = self._pruneCutoff
                deleted = await self._inThread(
                    lambda connection: _deleteOlderThan(connection, cutoff, chunk)
                )
                if deleted < chunk:
                    self._pruneCutoff = None
            else:
                roomKey, keep = self._pruneRooms[0], self.keepPerRoom
                deleted = await self._inThread(
                    lambda connection: _capRoom(connection, roomKey, keep, chunk)
                )
                if deleted < chunk:
                    self._pruneRooms.popleft()
        except Exception as error:
            # Give this pass up; its rooms wait for the next one, and the size is measured
            # again after the next write.
            self._dirtyRooms.update(self._pruneRooms)
            self._pruneRooms.clear()
            self._pruneCutoff = None
            self._shrinkAbove = None
            self._overBound = False
            assert self._clock is not None
            if self._pruneThrottle.ready(self._clock.seconds()):
                _log.error("history_prune_failed", reason=_describe(error))
            return
        self._pruned += deleted
        self._prunedThisPass += deleted
        if self._pruneCutoff is None and not self._pruneRooms and self._prunedThisPass:
            _log.info("history_pruned", messages=self._prunedThisPass)
            self._prunedThisPass = 0

    async def _shrinkStep(self, above: int) -> None:
        """
        Measure the database and, if it uses more than C{above} bytes, delete a chunk of the
        oldest messages; go on (down to 90 % of C{maxBytes}) or log what went.
        """
        assert self.maxBytes is not None
        chunk, limit = self.pruneChunk, self.maxBytes
        target = int(limit * _SHRINK_TO)
        deleted, used = await self._inThread(
            lambda connection: _deleteOldest(connection, above, chunk)
        )
        self._pruned += deleted
        self._shrunk += deleted
        self._overBound = used > limit
        if deleted == chunk and used > target:
            self._shrinkAbove = target
            return
        # Under the target, or nothing left to delete.
        self._shrinkAbove = None
        if self._shrunk:
            _log.info(
                "history_pruned", messages=self._shrunk, used_bytes=used, max_bytes=limit
            )
            self._shrunk = 0

    # Reactor side: stopping.

    async def _drain(self) -> None:
        threadpool = self._threadpool
        if threadpool is None or self._threads is None or self._clock is None:
            self._giveUp("the history store was not writing")
            return
        clock = self._clock
        deadline = clock.seconds() + self.stopTimeout
        await self._whenIdle()
        delay = max(self.batchInterval, _MIN_RETRY_DELAY)
        while self._pending and clock.seconds() < deadline:
            self._busy = True
            try:
                succeeded = await self._write()
            finally:
                self._busy = False
            if not succeeded:
                wait = min(delay, deadline - clock.seconds())
                if wait > 0:
                    await deferLater(clock, wait, lambda: None)
                delay = min(delay * 2, self.maxRetryDelay)
        self._giveUp(f"not written within {self.stopTimeout} s of stopping")
        try:
            if threadpool.threads:  # else nothing was ever opened
                await deferToThreadPool(self._threads, threadpool, self._closeConnection)
        finally:
            threadpool.stop()

    def _giveUp(self, reason: str) -> None:
        """Count what is still pending as dropped, and stop accepting more."""
        self._accepting = False
        self._reportDrops(force=True)
        left = len(self._pending)
        if left:
            self._pending.clear()
            self._dropped += left
            _log.error("history_dropped", messages=left, total=self._dropped, reason=reason)

    def _closed(self, ignored: object) -> None:
        self._accepting = False
        self._stopped = True
        if self._clock is not None:
            _log.info(
                "history_closed",
                path=self.path,
                written=self._written,
                failed=self._failed,
                dropped=self._dropped,
            )
        waiters, self._stopWaiters = self._stopWaiters, []
        for waiter in waiters:
            waiter.callback(None)

    # Database thread side.

    def _withConnection(self, operation: Callable[[sqlite3.Connection], _T]) -> _T:
        """
        In the database thread: run C{operation} on the store's connection, opening it (and
        creating and migrating the file) first if needed. After a failure other than a busy
        database, the connection is closed, so that the next operation starts afresh.
        """
        connection = self._connection
        if connection is not None and _fileIdentity(self.path) != self._identity:
            self._closeConnection()
            raise OSError(f"the database file {self.path} was deleted or replaced")
        if connection is None:
            connection = _openDatabase(self.path, self.busyTimeout).connection
            self._connection = connection
            self._identity = _fileIdentity(self.path)
        try:
            return operation(connection)
        except BaseException as error:
            if connection.in_transaction:
                with suppress(sqlite3.Error):
                    connection.execute("ROLLBACK")
            if not _isBusy(error):
                self._closeConnection()
            raise

    def _closeConnection(self) -> None:
        """In the database thread: close the connection, if open."""
        connection, self._connection = self._connection, None
        self._identity = None
        if connection is not None:
            with suppress(sqlite3.Error):
                connection.close()
