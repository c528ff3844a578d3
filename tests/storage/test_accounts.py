"""
Tests for L{chatsvc.storage.accounts} and L{chatsvc.storage.passwords}: accounts in a real SQLite
file, written on the history store's database thread, and argon2id hashes computed on threads of
their own, while the real reactor runs.
"""

from __future__ import annotations

import os
import sqlite3

from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from chatsvc.chat import Account, Accounts, ChatError, IAccountStore, IPasswordHasher, StoreError
from chatsvc.storage.accounts import SQLiteAccountStore
from chatsvc.storage.passwords import Argon2Hasher, cheapHasher
from chatsvc.storage.sqlite import SQLiteStore
from tests.storage.test_sqlite import FAST, DatabaseFiles, tables


class SQLiteAccountStoreTests(DatabaseFiles, TestCase):
    def started(self, path: str) -> SQLiteAccountStore:
        store = SQLiteStore(path, **FAST)
        store.recent(10)
        store.start(reactor)
        self.addCleanup(store.stop)
        return SQLiteAccountStore(store)

    def test_interface(self) -> None:
        verifyObject(IAccountStore, SQLiteAccountStore(SQLiteStore(self.newPath())))

    def test_schema(self) -> None:
        """A new file has the account tables, beside the history's."""
        path = self.newPath()
        SQLiteStore(path).recent(1)
        self.assertTrue({"messages", "accounts", "tokens", "invites"} <= tables(path))

    async def test_roundTripAcrossRestart(self) -> None:
        """Accounts and tokens written while one server runs are the next one's."""
        path = self.newPath()
        first = self.started(path)
        alice = Account("alice", "Alice", "hash-a", 1_800_000_000.5)
        await first.addAccount(alice)
        await first.addAccount(Account("bob", "Bob", "hash-b", 1_800_000_001.0))
        await first.updateAccount(
            Account("bob", "Bob", "hash-b2", 1_800_000_001.0, True, 1_900_000_000.0, "spam")
        )
        await first.addToken("digest-1", "alice", 1_800_000_002.0)
        await first.addToken("digest-2", "alice", 1_800_000_003.0)
        await first.store.stop()

        second = self.started(path)
        loaded = sorted(await second.loadAccounts(), key=lambda a: a.key)
        self.assertEqual(
            [(a.key, a.nick, a.passwordHash, a.created) for a in loaded],
            [("alice", "Alice", "hash-a", 1_800_000_000.5), ("bob", "Bob", "hash-b2", 1_800_000_001.0)],
        )
        self.assertEqual(
            [(a.suspended, a.suspendedUntil, a.suspendReason) for a in loaded],
            [(False, None, None), (True, 1_900_000_000.0, "spam")],
        )
        self.assertEqual(await second.tokenAccount("digest-1"), "alice")
        self.assertIsNone(await second.tokenAccount("digest-3"))
        await second.removeToken("digest-1")
        self.assertIsNone(await second.tokenAccount("digest-1"))
        await second.removeTokens("alice")
        self.assertIsNone(await second.tokenAccount("digest-2"))

    async def test_duplicateRefused(self) -> None:
        """The same key twice is refused by the database itself."""
        accounts = self.started(self.newPath())
        await accounts.addAccount(Account("alice", "Alice", "h", 1.0))
        with self.assertRaises(sqlite3.IntegrityError):
            await accounts.addAccount(Account("alice", "ALICE", "h", 2.0))

    async def test_invitesOnce(self) -> None:
        accounts = self.started(self.newPath())
        await accounts.addInvite("code-digest", 1.0)
        self.assertTrue(await accounts.useInvite("code-digest"))
        self.assertFalse(await accounts.useInvite("code-digest"))

    def test_notStarted(self) -> None:
        """Before the store runs, writing fails with a clear error."""
        accounts = SQLiteAccountStore(SQLiteStore(self.newPath()))
        failure = self.failureResultOf(accounts.addAccount(Account("a", "a", "h", 1.0)), StoreError)
        self.assertIn("is not open just now", str(failure.value))


class Argon2HasherTests(TestCase):
    def setUp(self) -> None:
        self.hasher = Argon2Hasher(cheapHasher(), threads=2)
        self.hasher.start(reactor)  # type: ignore[arg-type]
        self.addCleanup(self.hasher.stop)

    def test_interface(self) -> None:
        verifyObject(IPasswordHasher, self.hasher)

    async def test_roundTrip(self) -> None:
        """An argon2id hash, salted: two hashes of one password differ, and both verify."""
        first = await self.hasher.hash("sesame-open")
        second = await self.hasher.hash("sesame-open")
        self.assertTrue(first.startswith("$argon2id$"))
        self.assertNotEqual(first, second)
        self.assertNotIn("sesame-open", first)
        self.assertTrue(await self.hasher.verify(first, "sesame-open"))
        self.assertFalse(await self.hasher.verify(first, "sesame-shut"))

    async def test_unreadableHash(self) -> None:
        """A hash that is not argon2's verifies no password."""
        self.assertFalse(await self.hasher.verify("not a hash", "sesame-open"))
        self.flushLoggedErrors()

    async def test_defaultParameters(self) -> None:
        """The server's own parameters: argon2id, 19 MiB, two passes."""
        hasher = Argon2Hasher(threads=1)
        hasher.start(reactor)  # type: ignore[arg-type]
        self.addCleanup(hasher.stop)
        hashed = await hasher.hash("sesame-open")
        self.assertTrue(hashed.startswith("$argon2id$v=19$m=19456,t=2,p=1$"), hashed)

    async def test_accountsOnRealParts(self) -> None:
        """Registering and logging in through a real database and real hashes."""
        directory = self.mktemp()
        os.makedirs(directory)
        store = SQLiteStore(os.path.join(directory, "chat.db"), **FAST)
        store.recent(1)
        store.start(reactor)
        self.addCleanup(store.stop)
        accounts = Accounts(Clock(), self.hasher, SQLiteAccountStore(store))
        await accounts.load()
        account = await accounts.register("Alice", "sesame-open", "192.0.2.1")
        self.assertEqual((await accounts.login("alice", "sesame-open", "192.0.2.1")).key, "alice")
        with self.assertRaises(ChatError):
            await accounts.login("alice", "sesame-shut", "192.0.2.1")
        token = await accounts.issueToken(account)
        self.assertEqual((await accounts.tokenLogin(token)).key, "alice")
        reloaded = Accounts(Clock(), self.hasher, SQLiteAccountStore(store))
        await reloaded.load()
        self.assertIsNotNone(reloaded.registered("ALICE"))
