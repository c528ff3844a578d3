"""
Tests for L{chatsvc.service}: the server as a tree of services, started in order and stopped in
the reverse order, one after the other.
"""

from __future__ import annotations

import gc
import socket

from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import EventLoggingObserver, MemoryReactorClock, StringTransport
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase

from chatsvc.chat import Hub, NullStore
from chatsvc.line.protocol import ChatFactory, ChatProtocol
from chatsvc.service import (
    ChatService,
    Door,
    AccountsService,
    HistoryService,
    ListeningService,
    SessionsService,
    StartupFailed,
)
from chatsvc.sessions.admission import Admission
from chatsvc.sessions.limits import Limits


class RecordingStore(NullStore):
    """A store that keeps nothing, and records when it is started and stopped."""

    def __init__(self, journal: list[str]) -> None:
        self.journal = journal

    def recent(self, perRoom: int) -> dict[str, list[object]]:  # type: ignore[override]
        self.journal.append("history read")
        return {}

    def start(self, reactor: object) -> None:
        self.journal.append("history writing")

    def stop(self) -> Deferred[None]:
        self.journal.append("history stopped")
        return succeed(None)


def serviceWith(
    memory: MemoryReactorClock, journal: list[str], endpoints: tuple[str, ...] = ("tcp:5051",)
) -> tuple[ChatService, ChatFactory]:
    """A service with one line door on C{endpoints}, its store recording into C{journal}."""
    limits = Limits(shutdownGrace=10)
    hub = Hub(memory, RecordingStore(journal))
    admission = Admission(memory, limits)
    factory = ChatFactory(hub, limits, admission=admission)
    service = ChatService(
        memory,
        hub,
        admission,
        [Door("line", factory, endpoints)],
        prepare=[lambda: journal.append("prepared")],
    )
    return service, factory


def connect(factory: ChatFactory, nick: str) -> tuple[ChatProtocol, StringTransport]:
    protocol = factory.buildProtocol(None)
    assert isinstance(protocol, ChatProtocol)
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(nick.encode() + b"\n")
    factory.clock.advance(0)  # type: ignore[attr-defined]
    transport.clear()
    return protocol, transport


class TreeTests(SynchronousTestCase):
    """What the tree is made of, and the order it starts in."""

    def test_children(self) -> None:
        """The history, the accounts, the sessions, then a listening service per door and endpoint."""
        service, _ = serviceWith(MemoryReactorClock(), [], ("tcp:5051", "unix:/tmp/chat.sock"))
        children = list(service)
        self.assertIsInstance(children[0], HistoryService)
        self.assertIsInstance(children[1], AccountsService)
        self.assertIsInstance(children[2], SessionsService)
        self.assertEqual(
            [(child.door, child.description) for child in children[3:]],
            [("line", "tcp:5051"), ("line", "unix:/tmp/chat.sock")],
        )
        self.assertTrue(all(isinstance(child, ListeningService) for child in children[3:]))
        self.assertIs(service.getServiceNamed("history"), children[0])
        self.assertIs(service.getServiceNamed("line tcp:5051"), children[3])

    def test_startOrder(self) -> None:
        """Prepared, history read, listening on each endpoint, then history written."""
        memory = MemoryReactorClock()
        journal: list[str] = []
        service, factory = serviceWith(memory, journal, ("tcp:5051", "tcp:6000"))
        original = memory.listenTCP

        def listenTCP(port: int, *args: object, **kwargs: object) -> object:
            journal.append(f"listening on {port}")
            return original(port, *args, **kwargs)

        memory.listenTCP = listenTCP  # type: ignore[method-assign]
        service.privilegedStartService()
        service.startService()
        self.assertEqual(
            journal,
            ["prepared", "history read", "listening on 5051", "listening on 6000", "history writing"],
        )
        self.assertEqual(len(service.ports), 2)
        self.assertTrue(all(child.running for child in service))

    def test_listeningLogged(self) -> None:
        """Each endpoint listened on is logged with its door."""
        observer = EventLoggingObserver.createWithCleanup(
            self, globalLogPublisher  # type: ignore[arg-type]
        )
        service, _ = serviceWith(MemoryReactorClock(), [])
        service.startService()
        [listening] = [
            event["chatsvc_fields"]
            for event in observer
            if event.get("chatsvc_fields", {}).get("event") == "server_listening"
        ]
        self.assertEqual((listening["door"], listening["endpoint"]), ("line", "tcp:5051"))


class StopTests(SynchronousTestCase):
    """Stopping: listening first, then every session, then the history, each after the last."""

    def test_order(self) -> None:
        """
        Nobody can arrive once the goodbyes begin, and the history is written out only once
        the last connection has closed.
        """
        memory = MemoryReactorClock()
        journal: list[str] = []
        service, factory = serviceWith(memory, journal)
        service.startService()
        [port] = service.ports
        alice, transport = connect(factory, "Alice")

        def stopListening() -> None:
            journal.append(f"stopped listening; Alice told {transport.value()!r}")

        port.stopListening = stopListening  # type: ignore[method-assign]
        journal.clear()
        stopped = service.stopService()
        self.assertEqual(transport.value(), b"*** Disconnected: server shutting down\r\n")
        self.assertNoResult(stopped)
        # The history waits for the connection to close.
        self.assertEqual(journal, ["stopped listening; Alice told b''"])
        alice.connectionLost()
        self.successResultOf(stopped)
        self.assertEqual(journal, ["stopped listening; Alice told b''", "history stopped"])
        self.assertFalse(any(child.running for child in service))

    def test_stragglersCut(self) -> None:
        """A connection that does not close within the grace is cut, and the stop goes on."""
        memory = MemoryReactorClock()
        journal: list[str] = []
        service, factory = serviceWith(memory, journal)
        service.startService()
        alice, transport = connect(factory, "Alice")
        journal.clear()
        stopped = service.stopService()
        memory.advance(9.9)
        self.assertFalse(transport.disconnected)
        self.assertEqual(journal, [])
        memory.advance(0.1)
        self.assertTrue(transport.disconnected)
        self.assertNoResult(stopped)
        alice.connectionLost()  # as the reactor reports a connection it aborted
        self.successResultOf(stopped)
        self.assertEqual(journal, ["history stopped"])

    def test_failedStopLogged(self) -> None:
        """A service whose stop fails is logged, and the services after it still stop."""
        observer = EventLoggingObserver.createWithCleanup(
            self, globalLogPublisher  # type: ignore[arg-type]
        )
        memory = MemoryReactorClock()
        journal: list[str] = []
        service, _ = serviceWith(memory, journal)
        service.startService()
        sessions = service.getServiceNamed("sessions")

        def broken() -> Deferred[None]:
            raise RuntimeError("no")

        sessions.stopService = broken
        journal.clear()
        self.successResultOf(service.stopService())
        self.assertEqual(journal, ["history stopped"])
        failed = [
            event["chatsvc_fields"]
            for event in observer
            if event.get("chatsvc_fields", {}).get("event") == "service_stop_failed"
        ]
        self.assertEqual([event["service"] for event in failed], ["sessions"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class StartupFailureTests(TestCase):
    """Endpoints that cannot be listened on, on the real reactor."""

    def busyPort(self) -> int:
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        return int(taken.getsockname()[1])

    def test_everyFailureNamedNothingLeftListening(self) -> Deferred[None]:
        """
        Every endpoint that cannot be listened on is named in one error, and the endpoints
        that could be are not left listening: a server starts whole or not at all.
        """
        first, second = self.busyPort(), self.busyPort()
        free = socket.socket()
        free.bind(("127.0.0.1", 0))
        freePort = free.getsockname()[1]
        free.close()
        hub = Hub(Clock())
        limits = Limits()
        admission = Admission(reactor, limits)
        factory = ChatFactory(hub, limits, admission=admission)
        endpoints = (
            f"tcp:{freePort}:interface=127.0.0.1",
            f"tcp:{first}:interface=127.0.0.1",
            f"tcp:{second}:interface=127.0.0.1",
        )
        service = ChatService(reactor, hub, admission, [Door("line", factory, endpoints)])
        self.addCleanup(gc.unfreeze)
        error = self.assertRaises(StartupFailed, service.startService)
        self.assertIsInstance(error.__cause__, CannotListenError)
        self.assertIn(f"cannot listen on tcp:{first}:interface=127.0.0.1", str(error))
        self.assertIn(f"cannot listen on tcp:{second}:interface=127.0.0.1", str(error))
        self.assertNotIn(str(freePort), str(error))
        self.assertEqual(service.ports, [])

        def probe() -> None:
            # The port closes in the reactor's next turn, as every port Twisted stops does.
            with socket.socket() as client:
                self.assertNotEqual(client.connect_ex(("127.0.0.1", freePort)), 0)

        return deferLater(reactor, 0, probe)
