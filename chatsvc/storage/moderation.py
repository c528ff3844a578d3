"""
Moderation in the same SQLite file as the history (the core's L{IModerationStore}): the
admins, each room's owner, settings and roles, the bans and mutes, and the audit; read at
startup, written on the history store's database thread. The admin tool writes the admins
table directly, while the server runs or not.
"""

from __future__ import annotations

import sqlite3
import time

from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from chatsvc.chat.moderation import AuditEntry, IModerationStore, RoomSettings, Sanction
from chatsvc.storage.sqlite import SQLiteStore

__all__ = ["SQLiteModerationStore", "readAudit", "setAdmin"]

_SETTINGS = ("private", "moderated", "topiclock", "registered")


def _admins(connection: sqlite3.Connection) -> set[str]:
    return {key for (key,) in connection.execute("SELECT account_key FROM admins")}


def _load(connection: sqlite3.Connection) -> tuple[set[str], list[RoomSettings], list[Sanction]]:
    rooms: dict[str, RoomSettings] = {}
    rows = connection.execute(
        "SELECT room_key, room, owner_key, private, moderated, topiclock, registered, topic "
        "FROM room_settings"
    )
    for key, name, owner, private, moderated, topiclock, registered, topic in rows:
        rooms[key] = RoomSettings(
            key, name, owner, bool(private), bool(moderated), bool(topiclock), bool(registered),
            topic=topic,
        )
    for roomKey, account, role in connection.execute("SELECT room_key, account_key, role FROM room_roles"):
        if roomKey in rooms:
            rooms[roomKey].roles[account] = role
    sanctions = [
        Sanction(kind, roomKey, target, account, nick, host, until, reason, by, created)
        for kind, roomKey, target, account, nick, host, until, reason, by, created in connection.execute(
            "SELECT kind, room_key, target, account_key, nick_key, host, until, reason, by, created "
            "FROM sanctions WHERE until IS NULL OR until > ? ORDER BY created",
            (time.time(),),
        )
    ]
    return _admins(connection), list(rooms.values()), sanctions


def _deleteSanction(
    connection: sqlite3.Connection, kind: str, roomKey: str, account: str | None, nick: str | None
) -> None:
    if account is not None:
        connection.execute(
            "DELETE FROM sanctions WHERE kind = ? AND room_key = ? AND account_key = ?",
            (kind, roomKey, account),
        )
    else:
        connection.execute(
            "DELETE FROM sanctions WHERE kind = ? AND room_key = ? AND account_key IS NULL "
            "AND nick_key = ?",
            (kind, roomKey, nick),
        )


@implementer(IModerationStore)
class SQLiteModerationStore:
    """The moderation tables of an L{SQLiteStore}'s database."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store

    def loadModeration(self) -> Deferred[tuple[set[str], list[RoomSettings], list[Sanction]]]:
        """Everything, read now (at startup: the database thread is not running yet)."""
        return succeed(self.store.runNow(_load))

    def admins(self) -> Deferred[set[str]]:
        return self.store.run(_admins)

    def saveRoom(self, settings: RoomSettings) -> Deferred[None]:
        def save(connection: sqlite3.Connection) -> None:
            connection.execute("BEGIN IMMEDIATE")
            try:
                connection.execute(
                    "INSERT OR REPLACE INTO room_settings (room_key, room, owner_key, private, "
                    "moderated, topiclock, registered, topic) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        settings.key,
                        settings.name,
                        settings.owner,
                        *(int(getattr(settings, name)) for name in _SETTINGS),
                        settings.topic,
                    ),
                )
                connection.execute("DELETE FROM room_roles WHERE room_key = ?", (settings.key,))
                connection.executemany(
                    "INSERT INTO room_roles (room_key, account_key, role) VALUES (?, ?, ?)",
                    [(settings.key, account, role) for account, role in settings.roles.items()],
                )
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise

        return self.store.run(save)

    def addSanction(self, sanction: Sanction) -> Deferred[None]:
        def add(connection: sqlite3.Connection) -> None:
            connection.execute("BEGIN IMMEDIATE")
            try:
                _deleteSanction(connection, sanction.kind, sanction.roomKey, sanction.account, sanction.nick)
                connection.execute(
                    "INSERT INTO sanctions (kind, room_key, target, account_key, nick_key, host, "
                    "until, reason, by, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        sanction.kind,
                        sanction.roomKey,
                        sanction.target,
                        sanction.account,
                        sanction.nick,
                        sanction.host,
                        sanction.until,
                        sanction.reason,
                        sanction.by,
                        sanction.created,
                    ),
                )
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise

        return self.store.run(add)

    def removeSanction(
        self, kind: str, roomKey: str, account: str | None, nick: str | None
    ) -> Deferred[None]:
        return self.store.run(lambda connection: _deleteSanction(connection, kind, roomKey, account, nick))

    def audit(self, entry: AuditEntry) -> Deferred[None]:
        def add(connection: sqlite3.Connection) -> None:
            connection.execute(
                "INSERT INTO audit (time, actor, action, room, target, detail) VALUES (?, ?, ?, ?, ?, ?)",
                (entry.time, entry.actor, entry.action, entry.room, entry.target, entry.detail),
            )

        return self.store.run(add)


def setAdmin(path: str, accountKey: str, admin: bool) -> None:
    """Make the account C{accountKey} a server admin (or no longer) in the database at C{path}."""

    def change(connection: sqlite3.Connection) -> None:
        if admin:
            connection.execute("INSERT OR IGNORE INTO admins (account_key) VALUES (?)", (accountKey,))
        else:
            connection.execute("DELETE FROM admins WHERE account_key = ?", (accountKey,))

    SQLiteStore(path).runNow(change)


def readAudit(path: str, limit: int) -> list[AuditEntry]:
    """The last C{limit} entries of the audit in the database at C{path}, oldest first."""

    def read(connection: sqlite3.Connection) -> list[AuditEntry]:
        rows = connection.execute(
            "SELECT time, actor, action, room, target, detail FROM audit ORDER BY id DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [AuditEntry(*row) for row in reversed(rows)]

    return SQLiteStore(path).runNow(read)
