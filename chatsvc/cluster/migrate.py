"""
Copy a single node's SQLite data into the cluster's Redis stores (L{chatsvc.cluster.stores})::

    python -m chatsvc.cluster.migrate --db chat.sqlite3 --redis redis://127.0.0.1:6379/0 \\
        [--prefix chatsvc:] [--dry-run] [--force]

Everything the node kept is copied: the accounts, their tokens and the invite codes, the
admins, every room's settings and roles, the sanctions still in force, the audit (its newest
L{AUDIT_KEEP} entries) and every room's history, each message under the id it has in the file.

The file is opened read-only, with the C{sqlite3} module (this is a tool, run on its own: its
reads block, and nothing else waits for them); Redis is written through txredisapi, under
L{twisted.internet.task.react}. The file must have the schema and room keys of this version of
chatsvc: an older one is upgraded by starting the node once with it.

It refuses (exit status 1) to write into a Redis that already holds accounts or history under
the prefix, unless given C{--force}; then it writes over what is there, and running it again
with C{--force} changes nothing (the same ids, the same keys, the audit's entries not added
twice). C{--dry-run} reads the file and checks Redis, and writes nothing. Either way, it prints
what it copied (or would have), counted.
"""

from __future__ import annotations

import argparse
import math
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from typing import IO, Any, NoReturn, TypeVar
from urllib.parse import quote

from attrs import define
from twisted.internet.defer import Deferred, FirstError, gatherResults
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import react

from chatsvc.chat import KEY_RULES, Account, StoredMessage
from chatsvc.chat.moderation import AuditEntry, RoomSettings, Sanction
from chatsvc.cluster.stores import (
    AUDIT_KEEP,
    DEFAULT_PREFIX,
    AccountExists,
    RedisAccountStore,
    RedisHistoryStore,
    RedisModerationStore,
)
from chatsvc.cluster.url import RedisAddress, RedisCommands, connectRedis, parseRedisUrl

__all__ = ["CHUNK", "SCHEMA_VERSION", "Copied", "Refused", "SQLiteSource", "copyToRedis", "main"]

SCHEMA_VERSION = 7
"""
The version of the SQLite schema (C{chatsvc.storage.sqlite.SCHEMA_VERSION}) this tool's
queries are written for. Stated here, not imported: the cluster stands beside the storage
layer, not on it (the import contracts in pyproject.toml), and a new schema needs these
queries read again anyway (a test compares the two).
"""

CHUNK = 1000
"""Messages (or other rows) sent to Redis before waiting for its answers."""

_T = TypeVar("_T")

_END_OF_9999 = 253402300800.0
"""10000-01-01T00:00:00Z in POSIX seconds: a node shows the times before it (as its store reads them)."""


def _showable(when: object) -> bool:
    """Whether C{when}, a stored message's time, is one a node shows: a number from 1970 to 9999."""
    return (
        isinstance(when, (int, float)) and math.isfinite(when) and 0 <= when < _END_OF_9999
    )


class Refused(Exception):
    """The copy was not made (or not begun): the message says why, for the operator."""


class SQLiteSource:
    """A node's SQLite file, opened read-only, read row by row."""

    def __init__(self, path: str) -> None:
        """
        Open C{path} read-only and check that this version of chatsvc wrote it.

        @raise Refused: if it is missing, not an SQLite database, of another schema version,
            or keyed by other rules.
        """
        self.path = path
        if not os.path.isfile(path):
            raise Refused(f"{path}: no such file")
        uri = "file:" + quote(os.path.abspath(path)) + "?mode=ro"
        try:
            self.connection = sqlite3.connect(uri, uri=True)
        except sqlite3.Error as error:
            raise Refused(f"cannot open {path}: {error}") from None
        try:
            (version,) = self.connection.execute("PRAGMA user_version").fetchone()
            if version != SCHEMA_VERSION:
                newer = "a later" if version > SCHEMA_VERSION else "an earlier"
                raise Refused(
                    f"{path} has schema version {version}, written by {newer} version of "
                    f"chatsvc; this one reads version {SCHEMA_VERSION}"
                    + (
                        ": start a node on it once with this version (it upgrades the file), "
                        "then copy it"
                        if version < SCHEMA_VERSION
                        else ""
                    )
                )
            rules = self.connection.execute(
                "SELECT value FROM meta WHERE name = 'room_key_rules'"
            ).fetchone()
            messages = self.connection.execute("SELECT 1 FROM messages LIMIT 1").fetchone()
            if messages is not None and rules != (KEY_RULES,):
                raise Refused(
                    f"the room keys in {path} were made by other rules than this version of "
                    f"chatsvc's: start a node on it once with this version (it makes them "
                    f"again), then copy it"
                )
        except sqlite3.Error as error:
            self.connection.close()
            raise Refused(f"cannot read {path}: {error}") from None
        except Refused:
            self.connection.close()
            raise

    def close(self) -> None:
        """Close the file."""
        self.connection.close()

    def _rows(self, query: str, *parameters: Any) -> list[Any]:
        return self.connection.execute(query, parameters).fetchall()

    def accounts(self) -> list[Account]:
        """Every account, by key."""
        return [
            Account(key, nick, passwordHash, created, bool(suspended), until, reason)
            for key, nick, passwordHash, created, suspended, until, reason in self._rows(
                "SELECT key, nick, password_hash, created, suspended, suspended_until, "
                "suspend_reason FROM accounts ORDER BY key"
            )
        ]

    def tokens(self) -> list[tuple[str, str, float]]:
        """Every token: its digest, its account's key, when it was made."""
        return [
            (digest, key, created)
            for digest, key, created in self._rows(
                "SELECT digest, account_key, created FROM tokens ORDER BY created"
            )
        ]

    def invites(self) -> list[tuple[str, float]]:
        """Every invite code: its digest, when it was made."""
        return [(digest, created) for digest, created in self._rows("SELECT digest, created FROM invites")]

    def admins(self) -> list[str]:
        """The admins' account keys."""
        return [key for (key,) in self._rows("SELECT account_key FROM admins ORDER BY account_key")]

    def rooms(self) -> list[RoomSettings]:
        """Every room's settings and roles, by key."""
        rooms: dict[str, RoomSettings] = {}
        for key, name, owner, private, moderated, topiclock, registered, topic in self._rows(
            "SELECT room_key, room, owner_key, private, moderated, topiclock, registered, topic "
            "FROM room_settings ORDER BY room_key"
        ):
            rooms[key] = RoomSettings(
                key, name, owner, bool(private), bool(moderated), bool(topiclock), bool(registered),
                topic=topic,
            )
        for roomKey, account, role in self._rows("SELECT room_key, account_key, role FROM room_roles"):
            if roomKey in rooms:
                rooms[roomKey].roles[account] = role
        return list(rooms.values())

    def sanctions(self, now: float) -> tuple[list[Sanction], int]:
        """The sanctions in force at C{now}, oldest first, and how many have expired."""
        inForce, expired = [], 0
        for row in self._rows(
            "SELECT kind, room_key, target, account_key, nick_key, host, until, reason, by, "
            "created FROM sanctions ORDER BY created"
        ):
            sanction = Sanction(*row)
            if sanction.until is not None and sanction.until <= now:
                expired += 1
            else:
                inForce.append(sanction)
        return inForce, expired

    def audit(self, limit: int) -> list[AuditEntry]:
        """The last C{limit} entries of the audit, oldest first."""
        rows = self._rows(
            "SELECT time, actor, action, room, target, detail FROM audit ORDER BY id DESC LIMIT ?",
            limit,
        )
        return [AuditEntry(*row) for row in reversed(rows)]

    def countMessages(self) -> tuple[int, int]:
        """How many messages there are, and in how many rooms."""
        (messages, rooms), = self._rows("SELECT count(*), count(DISTINCT room_key) FROM messages")
        return messages, rooms

    def messages(self, size: int = CHUNK) -> Iterator[list[StoredMessage]]:
        """
        Every message, in chunks of C{size}, by id, with its id; those whose time is not a
        number from 1970 to the end of 9999 (which the node would not show either) are left
        out.
        """
        cursor = self.connection.execute(
            "SELECT id, room_key, room, time, nick, text, action FROM messages ORDER BY id"
        )
        with closing(cursor):
            while rows := cursor.fetchmany(size):
                yield [
                    StoredMessage(roomKey, room, when, nick, text, bool(action), id=id)
                    for id, roomKey, room, when, nick, text, action in rows
                    if _showable(when)
                ]


@define
class Copied:
    """What was copied (or, in a dry run, would be), counted."""

    accounts: int = 0
    tokens: int = 0
    invites: int = 0
    admins: int = 0
    rooms: int = 0
    sanctions: int = 0
    expiredSanctions: int = 0
    auditEntries: int = 0
    auditKept: int = 0
    """Entries of the audit that Redis held already, and were not added again."""
    messages: int = 0
    historyRooms: int = 0
    skippedMessages: int = 0
    """Messages left out: a time the node would not show."""
    dryRun: bool = False

    def report(self, source: str, target: str, prefix: str) -> str:
        """What was copied, in lines for the operator."""
        verb = "would copy" if self.dryRun else "copied"
        lines = [
            f"{verb} {source} to {target} (keys starting with {prefix!r}):",
            f"  accounts: {self.accounts}",
            f"  tokens: {self.tokens}",
            f"  invite codes: {self.invites}",
            f"  admins: {self.admins}",
            f"  rooms with settings or roles: {self.rooms}",
            f"  sanctions in force: {self.sanctions}"
            + (f" ({self.expiredSanctions} expired, left out)" if self.expiredSanctions else ""),
            f"  audit entries: {self.auditEntries}"
            + (f" ({self.auditKept} there already, not added again)" if self.auditKept else ""),
            f"  messages: {self.messages} in {self.historyRooms} rooms"
            + (f" ({self.skippedMessages} with a time that cannot be shown, left out)" if self.skippedMessages else ""),
        ]
        if self.dryRun:
            lines.append("dry run: nothing was written")
        return "\n".join(lines)


async def copyToRedis(
    redis: RedisCommands,
    source: SQLiteSource,
    prefix: str = DEFAULT_PREFIX,
    *,
    force: bool = False,
    dryRun: bool = False,
    now: float | None = None,
) -> Copied:
    """
    Copy everything of C{source} into the Redis stores on C{redis} (see the module's
    description).

    @param now: the time sanctions are judged expired at; by default the time now.
    @raise Refused: if Redis holds accounts or history under C{prefix} already, without
        C{force}.
    """
    when = time.time() if now is None else now
    history = RedisHistoryStore(redis, prefix)
    accounts = RedisAccountStore(redis, prefix)
    moderation = RedisModerationStore(redis, prefix, now=lambda: when)

    heldAccounts = await accounts.countAccounts()
    heldRooms = len(await history.roomKeys())
    if (heldAccounts or heldRooms) and not force:
        raise Refused(
            f"Redis holds {heldAccounts} accounts and the history of {heldRooms} rooms under "
            f"{prefix!r} already; copy into an empty one, choose another --prefix, or give "
            f"--force to write over them"
        )

    copied = Copied(dryRun=dryRun)
    accountList = source.accounts()
    tokens = source.tokens()
    invites = source.invites()
    admins = source.admins()
    rooms = source.rooms()
    sanctions, copied.expiredSanctions = source.sanctions(when)
    audit = source.audit(AUDIT_KEEP)
    held = set(await moderation.readAudit(AUDIT_KEEP))
    newEntries = [entry for entry in audit if entry not in held]
    copied.auditKept = len(audit) - len(newEntries)

    if dryRun:
        copied.accounts, copied.tokens, copied.invites = len(accountList), len(tokens), len(invites)
        copied.admins, copied.rooms, copied.sanctions = len(admins), len(rooms), len(sanctions)
        copied.auditEntries = len(newEntries)
        copied.messages, copied.historyRooms = source.countMessages()
        return copied

    def putAccount(account: Account) -> Deferred[None]:
        # Made if new, else written over (a run with --force).
        def exists(failure: Any) -> Deferred[None]:
            failure.trap(AccountExists)
            return accounts.updateAccount(account)

        return accounts.addAccount(account).addErrback(exists)

    copied.accounts = await _writeAll(accountList, putAccount)
    copied.tokens = await _writeAll(tokens, lambda token: accounts.addToken(*token))
    copied.invites = await _writeAll(invites, lambda invite: accounts.addInvite(*invite))
    copied.admins = await _writeAll(admins, lambda key: moderation.setAdmin(key, True))
    copied.rooms = await _writeAll(rooms, moderation.saveRoom)
    copied.sanctions = await _writeAll(sanctions, moderation.addSanction)
    # Sent in this order on the one connection, so the list keeps them in this order.
    copied.auditEntries = await _writeAll(newEntries, moderation.audit)

    total, _ = source.countMessages()
    historyRooms: set[str] = set()
    for chunk in source.messages(CHUNK):
        await gatherResults([history.write(message) for message in chunk], consumeErrors=True)
        copied.messages += len(chunk)
        historyRooms.update(message.roomKey for message in chunk)
    copied.historyRooms = len(historyRooms)
    copied.skippedMessages = total - copied.messages
    return copied


async def _writeAll(items: Sequence[_T], write: Callable[[_T], Deferred[None]]) -> int:
    """
    C{write} each of C{items}, C{CHUNK} at a time (sent at once, then their answers waited
    for), failing on the first error; how many were written.
    """
    for start in range(0, len(items), CHUNK):
        await gatherResults([write(item) for item in items[start : start + CHUNK]], consumeErrors=True)
    return len(items)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m chatsvc.cluster.migrate",
        description="Copy a chatsvc node's SQLite data (accounts, moderation, history) into the "
        "cluster's Redis.",
    )
    parser.add_argument("--db", required=True, metavar="PATH", help="the node's SQLite file")
    parser.add_argument(
        "--redis", required=True, metavar="URL",
        help="redis://[[USER]:PASSWORD@]HOST[:PORT][/DB], or rediss:// for TLS",
    )
    parser.add_argument(
        "--prefix", default=DEFAULT_PREFIX, help=f"what every key starts with (default {DEFAULT_PREFIX!r})"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="read and check, and write nothing"
    )
    parser.add_argument(
        "--force", action="store_true",
        help="write even if Redis holds accounts or history under the prefix already",
    )
    return parser


async def run(
    reactor: IReactorTime,
    address: RedisAddress,
    source: SQLiteSource,
    prefix: str,
    force: bool,
    dryRun: bool,
    out: IO[str],
) -> int:
    """Connect, copy, report on C{out}; the exit status (1: refused, or Redis failed)."""
    try:
        redis = await connectRedis(reactor, address, reconnect=False)
    except ConnectionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    try:
        copied = await copyToRedis(redis, source, prefix, force=force, dryRun=dryRun)
    except Refused as refused:
        print(f"refused: {refused}", file=sys.stderr)
        return 1
    except Exception as error:
        reason: BaseException | None = error
        if isinstance(error, FirstError):  # from gatherResults: the first write that failed
            reason = error.subFailure.value
        print(f"error: copying into {address} failed: {type(reason).__name__}: {reason}", file=sys.stderr)
        return 1
    finally:
        await redis.disconnect()
    print(copied.report(source.path, str(address), prefix), file=out)
    return 0


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """The command line (see the module's description)."""
    parser = _parser()
    options = parser.parse_args(argv)
    try:
        address = parseRedisUrl(options.redis)
    except ValueError as error:
        parser.error(str(error))
    try:
        source = SQLiteSource(options.db)
    except Refused as refused:
        print(f"refused: {refused}", file=sys.stderr)
        raise SystemExit(1) from None

    async def start(reactor: Any) -> None:
        try:
            code = await run(reactor, address, source, options.prefix, options.force, options.dry_run, sys.stdout)
        finally:
            source.close()
        if code:
            raise SystemExit(code)

    react(start)


if __name__ == "__main__":
    main()
