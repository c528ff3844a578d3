"""
Tests for the twistd plugin and L{chatsvc.tap}: options, and the service they make.
"""

from __future__ import annotations

import gc
import resource
import socket

from twisted.application.service import Application, IService, IServiceMaker
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import ServerFactory
from twisted.internet.testing import EventLoggingObserver, MemoryReactorClock, StringTransport
from twisted.logger import ILogObserver, globalLogPublisher
from twisted.plugin import getPlugins
from twisted.python.filepath import FilePath
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase, TestCase

from chatsvc import tap
from chatsvc.irc.protocol import IrcFactory
from chatsvc.sessions.limits import Limits
from chatsvc.line.protocol import ChatFactory, ChatProtocol
from chatsvc.chat import NullStore, StoreError
from chatsvc.storage.sqlite import SQLiteStore


def parse(*arguments: str) -> tap.Options:
    """Parse C{arguments} as twistd would after C{chatroom}."""
    options = tap.Options()
    options.parseOptions(list(arguments))
    return options


def lineDoor(service: tap.ChatService) -> ChatFactory:
    """The line door's factory of C{service}."""
    factory = service.doors["line"].factory
    assert isinstance(factory, ChatFactory)
    return factory


class PluginTests(SynchronousTestCase):
    """The plugin is found the way twistd finds it."""

    def test_found(self) -> None:
        """twistd's plugin lookup finds C{chatroom}, pointing at chatsvc.tap."""
        makers = {maker.tapname: maker for maker in getPlugins(IServiceMaker)}
        self.assertIn("chatroom", makers)
        maker = makers["chatroom"]
        self.assertIsInstance(maker.options(), tap.Options)
        self.assertTrue(maker.description)


class OptionsTests(SynchronousTestCase):
    """One test per option, plus the defaults."""

    def test_defaults(self) -> None:
        """With no options the server listens on TCP 5051, console logs, 4 KiB lines."""
        options = parse()
        self.assertEqual(options["endpoints"], ["tcp:5051:backlog=4096"])
        self.assertEqual(options["log-format"], "console")
        self.assertEqual(options["max-line-length"], 4096)

    def test_port(self) -> None:
        """--port N listens on TCP port N."""
        self.assertEqual(parse("--port", "6000")["endpoints"], ["tcp:6000:backlog=4096"])
        self.assertEqual(parse("-p", "0")["endpoints"], ["tcp:0:backlog=4096"])

    def test_badPort(self) -> None:
        """A port that is not a number from 0 to 65535 is a usage error."""
        for bad in ["65536", "-1", "five"]:
            self.assertRaises(UsageError, parse, "--port", bad)

    def test_listen(self) -> None:
        """--listen takes endpoint descriptions, repeatedly, and replaces the default port."""
        options = parse(
            "--listen", "tcp:5051:interface=127.0.0.1", "--listen", "unix:/tmp/chat.sock"
        )
        self.assertEqual(
            options["endpoints"],
            ["tcp:5051:interface=127.0.0.1:backlog=4096", "unix:/tmp/chat.sock:backlog=4096"],
        )

    def test_backlog(self) -> None:
        """
        --backlog is given to every TCP, TLS and UNIX endpoint that does not give its own, and
        Twisted listens with it.
        """
        options = parse(
            "--backlog", "77",
            "--listen", "tcp:0:interface=127.0.0.1",
            "--listen", "tcp:0:backlog=5",
            "--listen", "stdio:",
        )
        self.assertEqual(
            options["endpoints"],
            ["tcp:0:interface=127.0.0.1:backlog=77", "tcp:0:backlog=5", "stdio:"],
        )
        memory = MemoryReactorClock()
        serverFromString(memory, options["endpoints"][0]).listen(ServerFactory())
        port, _, backlog, interface = memory.tcpServers[0]
        self.assertEqual((port, backlog, interface), (0, 77, "127.0.0.1"))
        self.assertRaises(UsageError, parse, "--backlog", "0")

    def test_listenAndPort(self) -> None:
        """--port given with --listen is listened on too."""
        options = parse("--listen", "tcp6:5052", "--port", "5053")
        self.assertEqual(options["endpoints"], ["tcp:5053:backlog=4096", "tcp6:5052:backlog=4096"])

    def test_badListen(self) -> None:
        """An endpoint description Twisted cannot parse is a usage error that names it."""
        error = self.assertRaises(UsageError, parse, "--listen", "carrier-pigeon:5051")
        self.assertIn("carrier-pigeon:5051", str(error))

    def test_logFormat(self) -> None:
        """--log-format accepts console and json only."""
        self.assertEqual(parse("--log-format", "json")["log-format"], "json")
        self.assertRaises(UsageError, parse, "--log-format", "xml")

    def test_maxLineLength(self) -> None:
        """--max-line-length sets the limit; absurdly small limits are refused."""
        self.assertEqual(parse("--max-line-length", "8192")["max-line-length"], 8192)
        self.assertRaises(UsageError, parse, "--max-line-length", "100")

    def test_limits(self) -> None:
        """Each limit option sets its limit; nonsense values are usage errors."""
        cases = [
            ("--flood-rate", "2.5", "floodRate", 2.5),
            ("--flood-burst", "50", "floodBurst", 50),
            ("--address-flood-rate", "7.5", "addressFloodRate", 7.5),
            ("--address-flood-burst", "30", "addressFloodBurst", 30),
            ("--max-send-queue", "65536", "maxSendQueue", 65536),
            ("--name-timeout", "10", "nameTimeout", 10.0),
            ("--max-connections", "5000", "maxConnections", 5000),
            ("--max-connections-per-address", "3", "maxConnectionsPerAddress", 3),
            ("--keepalive", "30", "keepAliveIdle", 30),
            ("--shutdown-grace", "1.5", "shutdownGrace", 1.5),
        ]
        for option, value, attribute, expected in cases:
            with self.subTest(option=option):
                service = tap.makeService(parse(option, value), MemoryReactorClock())
                self.assertEqual(getattr(lineDoor(service).limits, attribute), expected)
                self.assertRaises(UsageError, parse, option, "0")
                self.assertRaises(UsageError, parse, option, "lots")

    def test_roomAndHistoryOptions(self) -> None:
        """Each room and history option reaches the hub, the factory or the store."""
        service = tap.makeService(
            parse(
                "--room", "#Main", "--max-rooms", "7", "--history-lines", "5",
                "--history-max", "50", "--history-keep", "900", "--history-days", "2",
                "--db", "here.db",
            ),
            MemoryReactorClock(),
        )
        hub = lineDoor(service).hub
        self.assertEqual(
            (hub.defaultRoom.name, hub.maxRooms, hub.historyKept, lineDoor(service).historyLines),
            ("Main", 7, 50, 5),
        )
        store = hub.store
        assert isinstance(store, SQLiteStore)
        self.assertEqual((store.path, store.keepPerRoom, store.maxAge), ("here.db", 900, 2 * 86400))

    def test_roomBudgetOptions(self) -> None:
        """
        --rooms-per-member and --rooms-per-address reach the hub; the longest line sent is
        also the longest shown.
        """
        service = tap.makeService(
            parse("--rooms-per-member", "2", "--rooms-per-address", "9", "--max-line-length", "8192"),
            MemoryReactorClock(),
        )
        hub = lineDoor(service).hub
        self.assertEqual((hub.roomsPerMember, hub.roomsPerAddress, hub.maxTextBytes), (2, 9, 8192))
        defaults = lineDoor(tap.makeService(parse(), MemoryReactorClock())).hub
        self.assertEqual((defaults.roomsPerMember, defaults.roomsPerAddress), (5, 20))
        for option in ("--rooms-per-member", "--rooms-per-address"):
            self.assertRaises(UsageError, parse, option, "0")

    def test_historyDefaults(self) -> None:
        """By default: the lobby, 20 lines on joining, 100 at most, a file kept 30 days."""
        service = tap.makeService(parse(), MemoryReactorClock())
        store = lineDoor(service).hub.store
        assert isinstance(store, SQLiteStore)
        self.assertEqual((store.path, store.keepPerRoom, store.maxAge), ("chatsvc.db", 10_000, 30 * 86400))
        self.assertEqual(lineDoor(service).hub.defaultRoom.name, "lobby")
        self.assertEqual(lineDoor(service).historyLines, 20)
        forever = tap.makeService(parse("--history-days", "0"), MemoryReactorClock())
        foreverStore = lineDoor(forever).hub.store
        assert isinstance(foreverStore, SQLiteStore)
        self.assertIsNone(foreverStore.maxAge)

    def test_memoryOnly(self) -> None:
        """--db :memory: stores nothing."""
        service = tap.makeService(parse("--db", ":memory:"), MemoryReactorClock())
        self.assertIsInstance(lineDoor(service).hub.store, NullStore)

    def test_badRoomAndHistoryValues(self) -> None:
        """An invalid default room, or more lines on joining than the most kept, is refused."""
        error = self.assertRaises(UsageError, parse, "--room", "two words")
        self.assertIn("--room", str(error))
        self.assertRaises(UsageError, parse, "--history-lines", "200")
        for option in ("--history-max", "--history-keep", "--max-rooms"):
            self.assertRaises(UsageError, parse, option, "0")
        self.assertRaises(UsageError, parse, "--history-days", "-1")

    def test_unusableDatabase(self) -> None:
        """
        A --db that is not a database stops the server at start, saying why: twistd is to exit
        with status 1, the reason logged, and no traceback.
        """
        path = self.mktemp()
        with open(path, "wb") as garbage:
            garbage.write(b"not a database " * 200)
        service = tap.makeService(parse("--db", path), MemoryReactorClock())
        error = self.assertRaises(tap.ChatService.StartupFailed, service.privilegedStartService)
        self.assertIsInstance(error.__cause__, StoreError)
        self.assertIsInstance(error, SystemExit)
        self.assertEqual(error.code, 1)
        self.assertIn(path, str(error))
        self.assertEqual(service.ports, [])

    def test_defaultLimits(self) -> None:
        """Without options, the service runs with the documented default limits."""
        service = tap.makeService(parse(), MemoryReactorClock())
        self.assertEqual(lineDoor(service).limits, Limits())

    def test_helpDocumentsEveryOption(self) -> None:
        """C{twistd chatroom --help} describes each option."""
        text = str(tap.Options())
        for option in [
            "--port",
            "--listen",
            "--log-format",
            "--max-line-length",
            "--flood-rate",
            "--flood-burst",
            "--address-flood-rate",
            "--address-flood-burst",
            "--max-send-queue",
            "--name-timeout",
            "--max-connections",
            "--max-connections-per-address",
            "--keepalive",
            "--shutdown-grace",
            "--room",
            "--max-rooms",
            "--rooms-per-member",
            "--rooms-per-address",
            "--db",
            "--history-lines",
            "--history-max",
            "--history-keep",
            "--history-days",
        ]:
            self.assertIn(option, text)


class IrcOptionsTests(SynchronousTestCase):
    """The IRC door's options: where it listens, the server's name, the MOTD."""

    def test_defaults(self) -> None:
        options = parse()
        self.assertEqual(options["irc-endpoints"], ["tcp:6667:backlog=4096"])
        self.assertTrue(options["server-name"])
        self.assertIsNone(options["motd-lines"])

    def test_listen(self) -> None:
        options = parse("--irc-port", "6668", "--irc-listen", "tcp:7000:interface=127.0.0.1")
        self.assertEqual(
            options["irc-endpoints"],
            ["tcp:6668:backlog=4096", "tcp:7000:interface=127.0.0.1:backlog=4096"],
        )

    def test_noIrc(self) -> None:
        service = tap.makeService(parse("--no-irc"), MemoryReactorClock())
        self.assertNotIn("irc", service.doors)
        with self.assertRaises(UsageError):
            parse("--no-irc", "--irc-port", "6667")

    def test_serverNameAndMotd(self) -> None:
        motd = FilePath(self.mktemp())
        motd.setContent("Welcome!\nBe kind.\n".encode())
        options = parse("--server-name", "irc.example.org", "--motd", motd.path)
        self.assertEqual((options["server-name"], options["motd-lines"]), ("irc.example.org", ["Welcome!", "Be kind."]))
        factory = tap.makeService(options, MemoryReactorClock()).doors["irc"].factory
        assert isinstance(factory, IrcFactory)
        self.assertEqual((factory.serverName, factory.motd), ("irc.example.org", ["Welcome!", "Be kind."]))
        with self.assertRaises(UsageError):
            parse("--server-name", "bad name")
        with self.assertRaises(UsageError):
            parse("--motd", self.mktemp())


class ServiceTests(SynchronousTestCase):
    """makeService builds a service that listens where it was told."""

    def test_listensOnEveryEndpoint(self) -> None:
        """Starting the service listens on each endpoint with one shared factory."""
        memory = MemoryReactorClock()
        service = tap.makeService(parse("--port", "5051", "--listen", "tcp:6000"), memory)
        self.assertTrue(IService.providedBy(service))
        service.startService()
        self.assertEqual([port for port, *_ in memory.tcpServers], [5051, 6000, 8080, 6667])
        factories = {id(factory) for _, factory, *_ in memory.tcpServers[:2]}
        self.assertEqual(len(factories), 1)
        self.assertIs(memory.tcpServers[2][1], service.doors["web"].factory)
        self.assertIs(memory.tcpServers[3][1], service.doors["irc"].factory)
        self.assertEqual(lineDoor(service).limits.maxLineLength, 4096)
        service.stopService()

    def test_stopSaysGoodbye(self) -> None:
        """Stopping the service tells every member that the server is going down."""
        clock = MemoryReactorClock()
        service = tap.makeService(parse(), clock)
        service.startService()
        protocol = lineDoor(service).buildProtocol(None)
        assert isinstance(protocol, ChatProtocol)
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(b"Alice\n")
        clock.advance(0)
        transport.clear()
        service.stopService()
        self.assertEqual(transport.value(), b"*** Disconnected: server shutting down\r\n")
        self.assertTrue(transport.disconnecting)

    def test_stopBySignalIsSuccess(self) -> None:
        """
        Once every connection is closed, the service clears the signal the reactor was stopped
        by, so that twistd exits 0 rather than killing itself with that signal again.
        """
        memory = MemoryReactorClock()
        memory._exitSignal = 15  # type: ignore[attr-defined]
        service = tap.makeService(parse(), memory)
        service.startService()
        protocol = lineDoor(service).buildProtocol(None)
        assert isinstance(protocol, ChatProtocol)
        transport = StringTransport()
        protocol.makeConnection(transport)
        stopped = service.stopService()
        self.assertNoResult(stopped)
        self.assertEqual(memory._exitSignal, 15)  # type: ignore[attr-defined]
        protocol.connectionLost()
        self.successResultOf(stopped)
        self.assertIsNone(memory._exitSignal)  # type: ignore[attr-defined]

    def test_freezesOnceRunning(self) -> None:
        """
        Once the reactor runs (not before: the service may be started before it does), the
        objects made while starting are set aside from later garbage collections.
        """
        memory = MemoryReactorClock()
        service = tap.makeService(parse(), memory)
        service.startService()
        self.assertIn(
            tap.freezeStartupObjects, [hook for hook, *_ in memory.whenRunningHooks]
        )
        service.stopService()

    def test_freezeStartupObjects(self) -> None:
        """
        L{tap.freezeStartupObjects} collects what is garbage already, then moves the objects
        still alive into the permanent generation, and logs how many there are.
        """
        self.addCleanup(gc.unfreeze)
        observer = EventLoggingObserver.createWithCleanup(
            self, globalLogPublisher  # type: ignore[arg-type]  # any trial test case works
        )

        class Cycle:
            def __init__(self) -> None:
                self.me = self

        gc.collect()
        Cycle()  # garbage, in a cycle only a collection frees
        kept = Cycle()
        tap.freezeStartupObjects()
        frozen = gc.get_freeze_count()
        self.assertGreater(frozen, 1000)
        self.assertEqual(sum(isinstance(o, Cycle) for o in gc.get_objects()), 0)
        gc.unfreeze()
        self.assertEqual(sum(isinstance(o, Cycle) for o in gc.get_objects()), 1)
        self.assertIs(kept.me, kept)
        (logged,) = [e["chatsvc_fields"] for e in observer]
        self.assertEqual(logged["event"], "startup_objects_frozen")
        self.assertGreaterEqual(logged["objects"], frozen)  # some frozen were freed since

    def test_jsonLogObserver(self) -> None:
        """With --log-format json the application gets a JSON log observer for twistd."""
        options = parse("--log-format", "json")
        application = Application("chatroom")
        service = tap.makeService(options, MemoryReactorClock())
        service.setServiceParent(application)
        observer = application.getComponent(ILogObserver, None)
        self.assertIsNotNone(observer)

        console = Application("chatroom")
        tap.makeService(parse(), MemoryReactorClock()).setServiceParent(console)
        self.assertIsNone(console.getComponent(ILogObserver, None))


class RealListeningTests(TestCase):
    """The service on the real reactor."""

    def test_listenAndStop(self) -> Deferred[None]:
        """The service listens on a real loopback port and stops listening when stopped."""
        service = tap.makeService(
            parse("--listen", "tcp:0:interface=127.0.0.1", "--no-web", "--no-irc"), reactor
        )
        self.addCleanup(gc.unfreeze)  # the reactor runs: starting freezes the test's objects
        service.startService()
        (port,) = service.ports
        address = port.getHost()
        self.assertEqual(address.host, "127.0.0.1")  # type: ignore[attr-defined]
        with socket.create_connection(("127.0.0.1", address.port), timeout=5):  # type: ignore[attr-defined]
            pass
        return service.stopService()

    def test_portInUse(self) -> None:
        """
        A port that cannot be listened on is an error at start, not a silent deaf server: twistd
        is to exit with status 1, the endpoint and the reason logged, and no traceback.
        """
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        service = tap.makeService(
            parse("--listen", f"tcp:{busy}:interface=127.0.0.1", "--no-web", "--no-irc"), reactor
        )
        error = self.assertRaises(tap.ChatService.StartupFailed, service.startService)
        self.assertIsInstance(error.__cause__, CannotListenError)
        self.assertEqual(error.code, 1)
        self.assertIn(f"cannot listen on tcp:{busy}:interface=127.0.0.1", str(error))



class FileLimitTests(SynchronousTestCase):
    """The server raises its own open-files limit to fit its connection cap."""

    def setUp(self) -> None:
        self.limits = {"soft": 1024, "hard": 4096}
        self.patch(
            resource, "getrlimit", lambda which: (self.limits["soft"], self.limits["hard"])
        )
        self.patch(resource, "setrlimit", self.setrlimit)

    def setrlimit(self, which: int, values: tuple[int, int]) -> None:
        self.limits["soft"], self.limits["hard"] = values

    def test_raised(self) -> None:
        """A soft limit below what the cap needs is raised."""
        tap.ensureFileLimit(2000)
        self.assertEqual(self.limits, {"soft": 2000, "hard": 4096})

    def test_untouchedWhenEnough(self) -> None:
        """A soft limit that is high enough is left alone."""
        tap.ensureFileLimit(500)
        self.assertEqual(self.limits["soft"], 1024)

    def test_cappedAtHardLimit(self) -> None:
        """The soft limit never goes past the hard one; the shortfall is logged as a warning."""
        observer = EventLoggingObserver.createWithCleanup(
            self, globalLogPublisher  # type: ignore[arg-type]  # any trial test case works
        )
        tap.ensureFileLimit(10_000)
        self.assertEqual(self.limits["soft"], 4096)
        self.assertEqual(
            [e["chatsvc_fields"]["event"] for e in observer],
            ["file_limit_raised", "file_limit_too_low"],
        )


class HistorySizeOptionTests(SynchronousTestCase):
    """C{--history-max-bytes} bounds the history database's size."""

    def test_passedToStore(self) -> None:
        """The number of bytes given reaches the store as its C{maxBytes}."""
        service = tap.makeService(parse("--history-max-bytes", "1048576"), MemoryReactorClock())
        store = lineDoor(service).hub.store
        assert isinstance(store, SQLiteStore)
        self.assertEqual(store.maxBytes, 1048576)

    def test_default(self) -> None:
        """By default the database may use 256 MiB, and the help says what the option does."""
        self.assertEqual(parse()["history-max-bytes"], 268435456)
        store = lineDoor(tap.makeService(parse(), MemoryReactorClock())).hub.store
        assert isinstance(store, SQLiteStore)
        self.assertEqual(store.maxBytes, 268435456)
        self.assertIn("--history-max-bytes", str(tap.Options()))

    def test_zeroIsUnbounded(self) -> None:
        """0 means no bound, as --history-days 0 means no age limit."""
        store = lineDoor(tap.makeService(parse("--history-max-bytes", "0"), MemoryReactorClock())).hub.store
        assert isinstance(store, SQLiteStore)
        self.assertIsNone(store.maxBytes)

    def test_badValues(self) -> None:
        """A negative number, a fraction or a word is a usage error."""
        for bad in ["-1", "1.5", "lots"]:
            self.assertRaises(UsageError, parse, "--history-max-bytes", bad)
