"""
Accounts in the same SQLite file as the history (the core's L{IAccountStore}): read at startup,
before anything is served, and written on the history store's database thread, between its
writes, so that one connection writes the file.
"""

from __future__ import annotations

import sqlite3

from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from chatsvc.chat import Account, IAccountStore
from chatsvc.storage.sqlite import SQLiteStore

__all__ = ["SQLiteAccountStore", "addInvites", "readAccounts"]


def _readAccounts(connection: sqlite3.Connection) -> list[Account]:
    rows = connection.execute(
        "SELECT key, nick, password_hash, created, suspended, suspended_until, suspend_reason "
        "FROM accounts"
    )
    return [
        Account(key, nick, passwordHash, created, bool(suspended), until, reason)
        for key, nick, passwordHash, created, suspended, until, reason in rows
    ]


def readAccounts(path: str) -> list[Account]:
    """Every account in the database at C{path} (created and migrated if need be), by key."""
    return sorted(SQLiteStore(path).runNow(_readAccounts), key=lambda account: account.key)


def addInvites(path: str, digests: list[str], created: float) -> None:
    """Keep invite codes (by their digests) in the database at C{path}, which may be in use."""

    def add(connection: sqlite3.Connection) -> None:
        connection.executemany(
            "INSERT INTO invites (digest, created) VALUES (?, ?)",
            [(digest, created) for digest in digests],
        )

    SQLiteStore(path).runNow(add)


@implementer(IAccountStore)
class SQLiteAccountStore:
    """The accounts, tokens and invite codes of an L{SQLiteStore}'s database."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store

    def loadAccounts(self) -> Deferred[list[Account]]:
        """Every account, read now (at startup: the database thread is not running yet)."""
        return succeed(self.store.runNow(_readAccounts))

    def addAccount(self, account: Account) -> Deferred[None]:
        def add(connection: sqlite3.Connection) -> None:
            connection.execute(
                "INSERT INTO accounts (key, nick, password_hash, created) VALUES (?, ?, ?, ?)",
                (account.key, account.nick, account.passwordHash, account.created),
            )

        return self.store.run(add)

    def updateAccount(self, account: Account) -> Deferred[None]:
        def update(connection: sqlite3.Connection) -> None:
            connection.execute(
                "UPDATE accounts SET nick = ?, password_hash = ?, suspended = ?, "
                "suspended_until = ?, suspend_reason = ? WHERE key = ?",
                (
                    account.nick,
                    account.passwordHash,
                    int(account.suspended),
                    account.suspendedUntil,
                    account.suspendReason,
                    account.key,
                ),
            )

        return self.store.run(update)

    def addToken(self, digest: str, key: str, created: float) -> Deferred[None]:
        def add(connection: sqlite3.Connection) -> None:
            connection.execute(
                "INSERT INTO tokens (digest, account_key, created) VALUES (?, ?, ?)",
                (digest, key, created),
            )

        return self.store.run(add)

    def tokenAccount(self, digest: str) -> Deferred[str | None]:
        def find(connection: sqlite3.Connection) -> str | None:
            row = connection.execute(
                "SELECT account_key FROM tokens WHERE digest = ?", (digest,)
            ).fetchone()
            return None if row is None else str(row[0])

        return self.store.run(find)

    def removeToken(self, digest: str) -> Deferred[None]:
        def remove(connection: sqlite3.Connection) -> None:
            connection.execute("DELETE FROM tokens WHERE digest = ?", (digest,))

        return self.store.run(remove)

    def removeTokens(self, key: str) -> Deferred[None]:
        def remove(connection: sqlite3.Connection) -> None:
            connection.execute("DELETE FROM tokens WHERE account_key = ?", (key,))

        return self.store.run(remove)

    def addInvite(self, digest: str, created: float) -> Deferred[None]:
        def add(connection: sqlite3.Connection) -> None:
            connection.execute(
                "INSERT INTO invites (digest, created) VALUES (?, ?)", (digest, created)
            )

        return self.store.run(add)

    def useInvite(self, digest: str) -> Deferred[bool]:
        def use(connection: sqlite3.Connection) -> bool:
            # One statement: a code two members use at once is used by one of them.
            cursor = connection.execute("DELETE FROM invites WHERE digest = ?", (digest,))
            return cursor.rowcount == 1

        return self.store.run(use)
