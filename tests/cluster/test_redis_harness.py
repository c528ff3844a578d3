"""
Tests for L{tests.redis}: a real C{redis-server} of the test's own, its tiny RESP client, a
crash and a restart, a password, servers side by side; and a Twisted Redis client library
(txredisapi, when it is installed) talking to it through the real reactor.
"""

from __future__ import annotations

import importlib
import shutil
import socket
from types import ModuleType
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from tests import redis
from tests.processes import TIMEOUT
from tests.redis import RedisError, RedisServer, encode
from tests.web.test_browser_setup import setEnvironment


def _txredisapi() -> ModuleType | None:
    # Not among the test dependencies (pyproject.toml): its test skips without it.
    try:
        return importlib.import_module("txredisapi")
    except ImportError:
        return None


txredisapi = _txredisapi()


class EncodeTests(SynchronousTestCase):
    """Commands go out as RESP arrays of bulk strings."""

    def test_encode(self) -> None:
        self.assertEqual(encode("PING"), b"*1\r\n$4\r\nPING\r\n")
        self.assertEqual(
            encode("SET", b"k\r\n", "\N{SNOWMAN}", 42, 1.5),
            b"*5\r\n$3\r\nSET\r\n$3\r\nk\r\n\r\n$3\r\n\xe2\x98\x83\r\n$2\r\n42\r\n$3\r\n1.5\r\n",
        )

    def test_notAnArgument(self) -> None:
        self.assertRaises(TypeError, encode, "SET", "k", None)
        self.assertRaises(TypeError, encode, "SET", "k", True)


class RedisServerTests(SynchronousTestCase):
    """One real redis-server per test, on a free loopback port."""

    def test_setGet(self) -> None:
        server = RedisServer(self)
        self.assertTrue(server.running)
        self.assertEqual(server.url, f"redis://127.0.0.1:{server.port}/0")
        self.assertEqual(server.command("SET", "greeting", "hello"), "OK")
        self.assertEqual(server.command("GET", "greeting"), b"hello")
        self.assertIsNone(server.command("GET", "missing"))

    def test_configuration(self) -> None:
        """Loopback only, protected, no snapshots, no append-only file unless asked."""
        server = RedisServer(self)
        connection = server.connect()
        self.assertEqual(connection.command("CONFIG", "GET", "bind"), [b"bind", b"127.0.0.1"])
        self.assertEqual(connection.command("CONFIG", "GET", "protected-mode"), [b"protected-mode", b"yes"])
        self.assertEqual(connection.command("CONFIG", "GET", "save"), [b"save", b""])
        self.assertEqual(connection.command("CONFIG", "GET", "appendonly"), [b"appendonly", b"no"])
        self.assertEqual(
            connection.command("CONFIG", "GET", "dir"), [b"dir", str(server.directory).encode()]
        )
        self.assertTrue(server.logFile.exists())

    def test_replies(self) -> None:
        """Integers, arrays, nulls and errors, at the top and inside arrays."""
        connection = RedisServer(self).connect()
        self.assertEqual(connection.command("INCR", "counter"), 1)
        self.assertEqual(connection.command("RPUSH", "list", "a", "", "c"), 3)
        self.assertEqual(connection.command("LRANGE", "list", 0, -1), [b"a", b"", b"c"])
        self.assertEqual(connection.command("LRANGE", "nothing", 0, -1), [])
        error = self.assertRaises(RedisError, connection.command, "INCR", "list")
        self.assertEqual(error.code, "WRONGTYPE")
        self.assertEqual(connection.command("MULTI"), "OK")
        self.assertEqual(connection.command("INCR", "list"), "QUEUED")
        self.assertEqual(connection.command("INCR", "counter"), "QUEUED")
        replies = connection.command("EXEC")
        assert isinstance(replies, list)
        wrong, counted = replies
        self.assertIsInstance(wrong, RedisError)
        self.assertEqual(counted, 2)
        self.assertEqual(connection.command("BLPOP", "empty", 0.01), None)

    def test_killAndRestartWithAppendonly(self) -> None:
        """SIGKILL, a crash: restarted on the same port, every acknowledged write is there."""
        server = RedisServer(self, appendonly=True)
        self.assertEqual(server.command("CONFIG", "GET", "appendfsync"), [b"appendfsync", b"always"])
        server.command("SET", "kept", "through a crash")
        server.command("RPUSH", "history", "one", "two")
        assert server.process is not None
        crashed, port = server.process, server.port
        server.kill()
        self.assertFalse(server.running)
        self.assertEqual(crashed.returncode, -9)
        self.assertRaises(OSError, server.command, "PING")
        server.restart()
        assert server.process is not None
        self.assertIsNot(server.process, crashed)
        self.assertEqual(server.port, port)
        self.assertEqual(server.command("GET", "kept"), b"through a crash")
        self.assertEqual(server.command("LRANGE", "history", 0, -1), [b"one", b"two"])

    def test_restartWithoutAppendonly(self) -> None:
        """Without appendonly (and with no snapshots), a restart starts empty."""
        server = RedisServer(self)
        server.command("SET", "lost", "yes")
        server.restart()
        self.assertIsNone(server.command("GET", "lost"))

    def test_stop(self) -> None:
        """SIGTERM: redis-server exits cleanly; stopping again does nothing."""
        server = RedisServer(self)
        assert server.process is not None
        server.stop()
        self.assertEqual(server.process.returncode, 0)
        server.stop()
        self.assertRaises(OSError, server.command, "PING")

    def test_password(self) -> None:
        """With a password, a command without AUTH is refused; with it, it works."""
        password = "s3cret pass/word"
        server = RedisServer(self, password=password)
        self.assertEqual(server.url, f"redis://:s3cret%20pass%2Fword@127.0.0.1:{server.port}/0")
        refused = self.assertRaises(RedisError, server.command, "SET", "k", "v", auth=False)
        self.assertEqual(refused.code, "NOAUTH")
        self.assertEqual(server.command("SET", "k", "v"), "OK")
        self.assertEqual(server.command("GET", "k"), b"v")

        connection = server.connect(auth=False)
        self.assertEqual(self.assertRaises(RedisError, connection.command, "GET", "k").code, "NOAUTH")
        wrong = self.assertRaises(RedisError, connection.command, "AUTH", "not it")
        self.assertEqual(wrong.code, "WRONGPASS")
        self.assertEqual(connection.command("AUTH", password), "OK")
        self.assertEqual(connection.command("GET", "k"), b"v")

    def test_sideBySide(self) -> None:
        """Two servers: different ports and directories, data of their own."""
        first, second = RedisServer(self), RedisServer(self)
        self.assertNotEqual(first.port, second.port)
        self.assertNotEqual(first.directory, second.directory)
        first.command("SET", "where", "first")
        self.assertIsNone(second.command("GET", "where"))
        second.command("SET", "where", "second")
        self.assertEqual(first.command("GET", "where"), b"first")

    def test_portTakenMeanwhile(self) -> None:
        """A port taken between its choice and redis-server's bind: started on another one."""
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        ports, free = [busy], redis.freePort
        self.patch(redis, "freePort", lambda: ports.pop() if ports else free())
        server = RedisServer(self)
        self.assertNotEqual(server.port, busy)
        self.assertIn(redis.IN_USE, server.outputFile.read_text() + server.logFile.read_text())
        self.assertEqual(server.command("PING"), "PONG")


class UnavailableTests(SynchronousTestCase):
    """No redis-server: a skip saying how to install it, a failure under C{CI=true}."""

    def setUp(self) -> None:
        self.patch(shutil, "which", lambda name, *args, **kwargs: None)

    def test_skips(self) -> None:
        setEnvironment(self, "CI", None)
        skipped = self.assertRaises(SkipTest, RedisServer, self)
        self.assertIn("scripts/setup-redis installs it", str(skipped))

    def test_failsUnderCI(self) -> None:
        setEnvironment(self, "CI", "true")
        failed = self.assertRaises(self.failureException, RedisServer, self)
        self.assertIn("redis-server is not installed", str(failed))


class TxRedisAPITests(TestCase):
    """txredisapi, Twisted's Redis client, against the harness's server, on the real reactor."""

    def test_setGet(self) -> Deferred[None]:
        if txredisapi is None:
            raise SkipTest("txredisapi is not installed (not a test dependency; pip install txredisapi)")
        server = RedisServer(self, password="twisted")
        return Deferred.fromCoroutine(self.setGet(txredisapi, server))

    async def setGet(self, library: Any, server: RedisServer) -> None:
        client = await library.Connection(
            "127.0.0.1", server.port, reconnect=False, password=server.password,
            connectTimeout=TIMEOUT, replyTimeout=TIMEOUT,
        )
        try:
            self.assertEqual(await client.set("from-twisted", "hello"), "OK")
            self.assertEqual(await client.get("from-twisted"), "hello")
        finally:
            await client.disconnect()
        # The harness's own client sees what txredisapi wrote.
        self.assertEqual(server.command("GET", "from-twisted"), b"hello")
