"""
Tests for L{chatsvc.cluster.migrate}, and for the Redis URLs and connections of
L{chatsvc.cluster.url} it is given.

The SQLite files copied are made by chatsvc's own SQLite stores, on the real reactor, as a
single node would have written them; what the Redis stores read back after the copy is
compared with what the SQLite stores read. Each test has a real redis-server of its own
(L{tests.redis.RedisServer}); the command line is run as a real process.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from pathlib import Path

from attrs import evolve
from twisted.internet import reactor
from twisted.internet.endpoints import serverFromString
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IListeningPort
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.internet.utils import getProcessOutputAndValue
from twisted.protocols.portforward import ProxyFactory
from twisted.trial.unittest import SynchronousTestCase, TestCase

from chatsvc.chat import Account, StoredMessage
from chatsvc.chat.moderation import AuditEntry, RoomSettings, Sanction
from chatsvc.cluster import migrate
from chatsvc.cluster.migrate import Refused, SQLiteSource, copyToRedis
from chatsvc.cluster.stores import RedisAccountStore, RedisHistoryStore, RedisModerationStore
from chatsvc.cluster.url import RedisAddress, connectRedis, parseRedisUrl
from chatsvc.storage import sqlite as storage
from chatsvc.storage.accounts import SQLiteAccountStore
from chatsvc.storage.moderation import SQLiteModerationStore, readAudit, setAdmin
from chatsvc.storage.sqlite import MIGRATIONS, SQLiteStore
from tests.certificates import serverCertificate
from tests.cluster.test_stores import connect, withIds
from tests.processes import ROOT, TIMEOUT, environment
from tests.redis import RedisServer, freePort
from tests.storage.test_sqlite import FAST, DatabaseFiles, waitUntil

NOW = time.time()

ALICE = Account("alice", "Alice", "hash-a", NOW - 100)
BOND = Account("007", "Bond", "hash-b", NOW - 50, True, NOW + 3600, "spam")
BAN = Sanction("ban", "games", "Bob", None, "bob", "203.0.113.5", NOW + 3600, "spam", "Alice", NOW - 3)
MUTE = Sanction("mute", "games", "Eve", "eve", None, None, None, None, "Alice", NOW - 2)
EXPIRED = Sanction("mute", "games", "Old", "old", None, None, NOW - 1, None, "Alice", NOW - 10)
AUDIT = [AuditEntry(NOW - 10 + n, "Alice", "ban", "games", f"Bob{n}", f"entry {n}") for n in range(3)]
ROOMS = {"Lobby": 30, "Games": 5, "#123": 2}


def history() -> list[StoredMessage]:
    """The messages of every room, each under an id of its own, the rooms interleaved."""
    said: list[StoredMessage] = []
    for number in range(max(ROOMS.values())):
        for room, count in ROOMS.items():
            if number < count:
                key = room.removeprefix("#").casefold()
                id = (int((NOW - 60) * 1000) << 10) + len(said) * 7
                said.append(StoredMessage(key, room, NOW - 60 + number, f"nick{number % 3}", f"{room} {number}", number % 4 == 3, id=id))
    return said


class NodeFiles(DatabaseFiles):
    """Makes the SQLite file of a node that ran for a while."""

    async def makeNodeFile(self) -> str:
        """
        A database written by chatsvc's own SQLite stores: two accounts (one suspended, one
        with a key that looks like a number), tokens, invites, an admin, room settings and
        roles, sanctions (one expired), the audit, and the history of three rooms.
        """
        path = self.newPath()
        store = SQLiteStore(path, **FAST)
        store.recent(10)
        store.start(reactor)
        accounts = SQLiteAccountStore(store)
        moderation = SQLiteModerationStore(store)
        await accounts.addAccount(ALICE)
        await accounts.addAccount(evolve(BOND, suspended=False, suspendedUntil=None, suspendReason=None))
        await accounts.updateAccount(BOND)
        await accounts.addToken("digest-1", "alice", NOW - 5)
        await accounts.addToken("digest-2", "007", NOW - 4)
        await accounts.addInvite("invite-1", NOW - 3)
        await accounts.addInvite("invite-2", NOW - 2)
        await moderation.saveRoom(RoomSettings("games", "Games", "alice", private=True, roles={"carol": "op", "dave": "voice"}))
        await moderation.saveRoom(RoomSettings("lobby", "Lobby", None, moderated=True, topic="welcome, all"))
        for sanction in (BAN, MUTE, EXPIRED):
            await moderation.addSanction(sanction)
        for entry in AUDIT:
            await moderation.audit(entry)
        said = history()
        for each in said:
            store.add(each)
        await waitUntil(lambda: store.written == len(said), "the history written")
        await store.stop()
        setAdmin(path, "alice", True)
        return path


class MigrateTests(NodeFiles, TestCase):
    """L{copyToRedis}: everything a node kept, read back the same through the Redis stores."""

    def setUp(self) -> None:
        self.server = RedisServer(self)

    async def test_copiesEverything(self) -> None:
        """What the Redis stores read after the copy is what the SQLite stores read."""
        path = await self.makeNodeFile()
        redis = await connect(self, self.server)
        source = SQLiteSource(path)
        self.addCleanup(source.close)
        copied = await copyToRedis(redis, source)
        self.assertEqual(
            (copied.accounts, copied.tokens, copied.invites, copied.admins, copied.rooms),
            (2, 2, 2, 1, 2),
        )
        self.assertEqual((copied.sanctions, copied.expiredSanctions, copied.auditEntries), (2, 1, 3))
        self.assertEqual((copied.messages, copied.historyRooms, copied.skippedMessages), (37, 3, 0))

        # Read back through the SQLite stores, as the node would.
        node = SQLiteStore(path, **FAST, maxAge=None)
        nodeRecent = node.recent(1000)
        node.start(reactor)
        self.addCleanup(node.stop)
        nodeAccounts, nodeModeration = SQLiteAccountStore(node), SQLiteModerationStore(node)

        accounts = RedisAccountStore(redis)
        moderation = RedisModerationStore(redis)
        cluster = RedisHistoryStore(redis)

        self.assertEqual(await accounts.loadAccounts(), sorted(await nodeAccounts.loadAccounts(), key=lambda a: a.key))
        self.assertEqual(await accounts.loadAccounts(), [BOND, ALICE])
        for digest in ("digest-1", "digest-2", "digest-3"):
            self.assertEqual(await accounts.tokenAccount(digest), await nodeAccounts.tokenAccount(digest))
        await accounts.removeTokens("alice")  # the token is in its account's set too
        self.assertIsNone(await accounts.tokenAccount("digest-1"))

        admins, rooms, sanctions = await moderation.loadModeration()
        nodeAdmins, nodeRooms, nodeSanctions = await nodeModeration.loadModeration()
        self.assertEqual(admins, nodeAdmins)
        self.assertEqual(rooms, sorted(nodeRooms, key=lambda room: room.key))
        self.assertEqual(sanctions, nodeSanctions)
        self.assertEqual(sanctions, [BAN, MUTE])
        self.assertEqual(await moderation.readAudit(100), readAudit(path, 100))

        await cluster.preload(1000)
        recent = cluster.recent(1000)
        self.assertEqual(sorted(recent), sorted(nodeRecent))
        for room in nodeRecent:
            self.assertEqual(withIds(recent[room]), withIds(nodeRecent[room]))
        lobby = [each.id for each in nodeRecent["lobby"]]
        for after, before, limit, newest in [
            (None, None, 10, True), (None, None, 10, False), (lobby[3], lobby[20], 5, True),
            (lobby[3], lobby[20], 5, False), (lobby[28], None, 10, False), (None, lobby[0], 10, True),
        ]:
            self.assertEqual(
                withIds(await cluster.page("lobby", after, before, limit, newest)),
                withIds(await node.page("lobby", after, before, limit, newest)),
            )

        self.assertTrue(await accounts.useInvite("invite-1"))
        self.assertTrue(await accounts.useInvite("invite-2"))
        self.assertFalse(await accounts.useInvite("invite-1"))

    async def test_refusesUnlessForced(self) -> None:
        """
        Into a Redis that holds accounts or history already, the copy is refused; with
        C{force} it is made, and making it again changes nothing.
        """
        path = await self.makeNodeFile()
        redis = await connect(self, self.server)
        source = SQLiteSource(path)
        self.addCleanup(source.close)
        await copyToRedis(redis, source)
        before = self.snapshot()
        with self.assertRaises(Refused) as refused:
            await copyToRedis(redis, source)
        self.assertIn("Redis holds 2 accounts and the history of 3 rooms under 'chatsvc:' already", str(refused.exception))
        self.assertIn("--force", str(refused.exception))
        again = await copyToRedis(redis, source, force=True)
        self.assertEqual((again.accounts, again.messages, again.auditEntries, again.auditKept), (2, 37, 0, 3))
        self.assertEqual(self.snapshot(), before)

        # History alone is enough to refuse; another prefix is another chat.
        self.server.command("FLUSHDB")
        self.server.command("ZADD", "chatsvc:history:lobby", 1, '{"id":1}')
        with self.assertRaises(Refused):
            await copyToRedis(redis, source)
        await copyToRedis(redis, source, "other:")

    def snapshot(self) -> dict[bytes, object]:
        """Every key's type and contents, as the harness's own client reads them."""
        contents: dict[bytes, object] = {}
        for key in self.server.command("KEYS", "*"):  # type: ignore[union-attr]
            assert isinstance(key, bytes)
            kind = self.server.command("TYPE", key)
            read = {
                "zset": ("ZRANGE", key, 0, -1, "WITHSCORES"),
                "hash": ("HGETALL", key),
                "set": ("SMEMBERS", key),
                "list": ("LRANGE", key, 0, -1),
                "string": ("GET", key),
            }[str(kind)]
            reply = self.server.command(*read)
            contents[key] = sorted(reply) if kind in ("hash", "set") else reply  # type: ignore[type-var, arg-type]
        return contents

    async def test_dryRun(self) -> None:
        """A dry run counts what it would copy, and writes nothing."""
        path = await self.makeNodeFile()
        redis = await connect(self, self.server)
        source = SQLiteSource(path)
        self.addCleanup(source.close)
        copied = await copyToRedis(redis, source, dryRun=True)
        self.assertEqual((copied.accounts, copied.sanctions, copied.messages, copied.historyRooms), (2, 2, 37, 3))
        self.assertEqual(self.server.command("DBSIZE"), 0)
        self.assertIn("dry run: nothing was written", copied.report(path, "redis://x", "chatsvc:"))

    async def test_unshowableTimes(self) -> None:
        """A message whose time the node would not show is left out, and counted."""
        path = await self.makeNodeFile()
        connection = sqlite3.connect(path)
        with connection:
            connection.execute(
                "INSERT INTO messages (room_key, room, time, nick, text, action) VALUES "
                "('lobby', 'Lobby', 1e300, 'x', 'far future', 0), ('lobby', 'Lobby', 'soon', 'x', 'text', 0)"
            )
        connection.close()
        source = SQLiteSource(path)
        self.addCleanup(source.close)
        copied = await copyToRedis(await connect(self, self.server), source)
        self.assertEqual((copied.messages, copied.skippedMessages), (37, 2))


class SourceTests(DatabaseFiles, SynchronousTestCase):
    """L{SQLiteSource} reads only the files this version of chatsvc writes."""

    def test_schemaVersion(self) -> None:
        """The schema version its queries are written for is the storage layer's."""
        self.assertEqual(migrate.SCHEMA_VERSION, storage.SCHEMA_VERSION)

    def test_missing(self) -> None:
        """A missing file is refused, and not created."""
        path = self.newPath()
        self.assertIn("no such file", str(self.assertRaises(Refused, SQLiteSource, path)))
        self.assertFalse(os.path.exists(path))

    def test_notADatabase(self) -> None:
        """A file that is not SQLite is refused."""
        path = self.newPath()
        Path(path).write_text("not SQLite at all, but long enough to be read as a header" * 20)
        self.assertIn("cannot read", str(self.assertRaises(Refused, SQLiteSource, path)))

    def test_older(self) -> None:
        """An older schema: start a node on it first."""
        path = self.newPath()
        connection = sqlite3.connect(path, isolation_level=None)
        storage.migrate(connection, MIGRATIONS[:5])
        connection.close()
        refused = str(self.assertRaises(Refused, SQLiteSource, path))
        self.assertIn("schema version 5, written by an earlier version", refused)
        self.assertIn("start a node on it once", refused)

    def test_newer(self) -> None:
        """A schema newer than this chatsvc knows is refused."""
        path = self.newPath()
        SQLiteStore(path).recent(1)
        connection = sqlite3.connect(path)
        connection.execute(f"PRAGMA user_version = {storage.SCHEMA_VERSION + 1}")
        connection.close()
        self.assertIn("a later version", str(self.assertRaises(Refused, SQLiteSource, path)))

    def test_readOnly(self) -> None:
        """The file is opened read-only: nothing is written to it."""
        path = self.newPath()
        SQLiteStore(path).recent(1)
        source = SQLiteSource(path)
        self.addCleanup(source.close)
        self.assertRaises(sqlite3.OperationalError, source.connection.execute, "DELETE FROM accounts")


class CommandLineTests(NodeFiles, TestCase):
    """C{python -m chatsvc.cluster.migrate}, run as a process."""

    async def runTool(self, *arguments: str) -> tuple[int, str, str]:
        output, errors, code = await getProcessOutputAndValue(
            sys.executable, ["-m", "chatsvc.cluster.migrate", *arguments], env=environment(), path=str(ROOT),
        ).addTimeout(TIMEOUT, reactor)
        return code, output.decode(), errors.decode()

    async def test_copyThenRefuse(self) -> None:
        """It copies and says what; run again, it refuses (status 1) unless forced."""
        server = RedisServer(self)
        path = await self.makeNodeFile()
        code, output, errors = await self.runTool("--db", path, "--redis", server.url)
        self.assertEqual((code, errors), (0, ""))
        self.assertIn(f"copied {path} to redis://127.0.0.1:{server.port}/0 (keys starting with 'chatsvc:'):", output)
        self.assertIn("  accounts: 2\n", output)
        self.assertIn("  sanctions in force: 2 (1 expired, left out)\n", output)
        self.assertIn("  messages: 37 in 3 rooms\n", output)
        self.assertEqual(server.command("HLEN", "chatsvc:accounts"), 2)

        code, output, errors = await self.runTool("--db", path, "--redis", server.url)
        self.assertEqual((code, output), (1, ""))
        self.assertIn("refused: Redis holds 2 accounts", errors)

        code, output, errors = await self.runTool("--db", path, "--redis", server.url, "--force")
        self.assertEqual(code, 0, errors)
        self.assertIn("  audit entries: 0 (3 there already, not added again)\n", output)

    async def test_dryRunAndPrefix(self) -> None:
        """A dry run under another prefix, with a password: the report, no password, no writes."""
        server = RedisServer(self, password="secret")
        path = await self.makeNodeFile()
        code, output, errors = await self.runTool("--db", path, "--redis", server.url, "--prefix", "b:", "--dry-run")
        self.assertEqual(code, 0, errors)
        self.assertIn("would copy", output)
        self.assertIn("(keys starting with 'b:')", output)
        self.assertIn(f"redis://:***@127.0.0.1:{server.port}/0", output)
        self.assertNotIn("secret", output)
        self.assertEqual(server.command("DBSIZE"), 0)

    async def test_errors(self) -> None:
        """A bad URL (status 2), a missing file or an unreachable Redis (status 1), each said plainly."""
        server = RedisServer(self, password="secret")
        path = await self.makeNodeFile()
        code, _, errors = await self.runTool("--db", path, "--redis", "http://:secret@127.0.0.1/0")
        self.assertEqual(code, 2)
        self.assertIn("is not a Redis URL", errors)
        self.assertNotIn("secret", errors)
        code, _, errors = await self.runTool("--db", path + ".missing", "--redis", server.url)
        self.assertEqual(code, 1)
        self.assertIn("no such file", errors)
        code, _, errors = await self.runTool("--db", path, "--redis", f"redis://:wrong@127.0.0.1:{server.port}/0")
        self.assertEqual(code, 1)
        self.assertIn("error: cannot connect to redis://:***@127.0.0.1", errors)
        code, _, errors = await self.runTool("--db", path, "--redis", f"redis://127.0.0.1:{freePort()}/0")
        self.assertEqual(code, 1)
        self.assertIn("error: cannot connect", errors)


class ParseRedisUrlTests(SynchronousTestCase):
    """L{parseRedisUrl}: the URLs Redis clients share, and clear refusals."""

    def test_valid(self) -> None:
        """Host, port, database, credentials (percent-decoded) and TLS, with their defaults."""
        for url, address in [
            ("redis://127.0.0.1:6379/0", RedisAddress("127.0.0.1", 6379, 0)),
            ("redis://localhost", RedisAddress("localhost", 6379, 0)),
            ("redis://Redis.Example:6380/", RedisAddress("redis.example", 6380, 0)),
            ("REDIS://h:1/15", RedisAddress("h", 1, 15)),
            ("redis://:p%40ss%2Fword@h:7000/2", RedisAddress("h", 7000, 2, "p@ss/word")),
            ("redis://chat:pw@h/3", RedisAddress("h", 6379, 3, "pw", "chat")),
            ("redis://:@h", RedisAddress("h", 6379, 0, "")),
            ("rediss://:pw@cache.example:6390/1", RedisAddress("cache.example", 6390, 1, "pw", None, True)),
            ("redis://[::1]:6379/0", RedisAddress("::1", 6379, 0)),
        ]:
            self.assertEqual(parseRedisUrl(url), address, url)

    def test_invalid(self) -> None:
        """Each kind of mistake is refused with a message that names it."""
        for url, reason in [
            ("http://h:6379/0", "must start with redis://"),
            ("127.0.0.1:6379", "must start with redis://"),
            ("unix:///tmp/redis.sock", "must start with redis://"),
            ("redis://", "names no host"),
            ("redis://:pw@:6379/0", "names no host"),
            ("redis://h:port/0", "port must be a number"),
            ("redis://h:0/0", "port must be a number"),
            ("redis://h:70000/0", "port must be a number"),
            ("redis://h:/0", "no port after it"),
            ("redis://h:6379/zero", "database's number"),
            ("redis://h:6379/-1", "database's number"),
            ("redis://h:6379/0/1", "database's number"),
            ("redis://h:6379/0?ssl=true", "no query string"),
            ("redis://h:6379/0#x", "no query string"),
            ("redis://user@h:6379/0", "a user name without a password"),
            ("redis://[::1:6379/0", "not a Redis URL"),
        ]:
            with self.assertRaises(ValueError, msg=url) as raised:
                parseRedisUrl(url)
            self.assertIn(reason, str(raised.exception), url)

    def test_passwordNeverShown(self) -> None:
        """Neither a refusal, nor an address's C{repr} or C{str}, shows the password."""
        for url in ("redis://:hunter2@h:port/0", "redis://u:hunter2@h/x", "rediss://:hunter2@/0"):
            with self.assertRaises(ValueError) as raised:
                parseRedisUrl(url)
            self.assertNotIn("hunter2", str(raised.exception))
        address = parseRedisUrl("rediss://chat:hunter2@h:1/2")
        self.assertEqual(str(address), "rediss://chat:***@h:1/2")
        self.assertNotIn("hunter2", repr(address))
        self.assertEqual(str(parseRedisUrl("redis://[::1]")), "redis://[::1]:6379/0")


class ConnectRedisTests(TestCase):
    """L{connectRedis}: a password, a database, refusals, a timeout, TLS."""

    async def test_passwordAndDatabase(self) -> None:
        """It authenticates and selects the URL's database on its connection."""
        server = RedisServer(self, password="pass word")
        redis = await connect(self, server, server.url.replace("/0", "/5"))
        self.assertEqual(await redis.execute_command("SET", "where", "007"), "OK")
        self.assertEqual(await redis.execute_command("GET", "where"), "007")  # text, not 7
        harness = server.connect()
        harness.command("SELECT", 5)
        self.assertEqual(harness.command("GET", "where"), b"007")

    async def test_wrongPassword(self) -> None:
        """A wrong password fails the connection, saying so."""
        server = RedisServer(self, password="right")
        address = parseRedisUrl(f"redis://:wrong@127.0.0.1:{server.port}/0")
        with self.assertRaises(ConnectionError) as raised:
            await connectRedis(reactor, address)
        self.assertIn("could not auth", str(raised.exception))
        self.assertNotIn("wrong", str(raised.exception).replace("WRONGPASS", ""))

    async def test_refused(self) -> None:
        """Nothing listening, without reconnecting: it fails at once."""
        address = RedisAddress("127.0.0.1", freePort())
        with self.assertRaises(ConnectionError) as raised:
            await connectRedis(reactor, address, reconnect=False)
        self.assertIn(f"cannot connect to redis://127.0.0.1:{address.port}/0", str(raised.exception))

    async def test_timeout(self) -> None:
        """Reconnecting, it stops trying after C{timeout} seconds."""
        address = RedisAddress("127.0.0.1", freePort())
        with self.assertRaises(ConnectionError) as raised:
            await connectRedis(reactor, address, timeout=0.3)
        self.assertIn("no connection to redis://127.0.0.1", str(raised.exception))
        self.assertIn("within 0.3 s", str(raised.exception))

    def tlsProxy(self, server: RedisServer) -> tuple[int, Certificate]:
        """A TLS port in front of C{server}, with a certificate for localhost; its port and CA."""
        directory = Path(self.mktemp())
        directory.mkdir()
        key, chain, _ = serverCertificate(directory)
        endpoint = serverFromString(
            reactor, f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={chain}"
        )
        listening: list[IListeningPort] = []
        endpoint.listen(ProxyFactory("127.0.0.1", server.port)).addCallback(listening.append)
        [port] = listening  # a TCP endpoint listens at once
        self.addCleanup(port.stopListening)
        host = port.getHost()
        assert isinstance(host, IPv4Address)
        return host.port, Certificate.loadPEM((directory / "ca.pem").read_bytes())

    async def test_tls(self) -> None:
        """C{rediss://}: TLS, the server's certificate checked against the authority given."""
        server = RedisServer(self, password="secret")
        port, authority = self.tlsProxy(server)
        address = parseRedisUrl(f"rediss://:secret@localhost:{port}/0")
        redis = await connectRedis(
            reactor, address, tlsOptions=optionsForClientTLS("localhost", trustRoot=authority)
        )
        self.addCleanup(redis.disconnect)
        self.assertEqual(await redis.execute_command("SET", "over", "tls"), "OK")
        self.assertEqual(server.command("GET", "over"), b"tls")

    async def test_tlsUntrusted(self) -> None:
        """A certificate the system does not trust is refused."""
        server = RedisServer(self)
        port, _ = self.tlsProxy(server)
        with self.assertRaises(ConnectionError):
            await connectRedis(reactor, parseRedisUrl(f"rediss://localhost:{port}/0"), reconnect=False)
