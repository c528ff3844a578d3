"""
Tests for L{chatsvc.sessions.session.Session} on its own: a door of the simplest kind (each
read a message, no framing), on in-memory transports and a L{Clock}.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from chatsvc.chat import ChatError
from chatsvc.sessions.admission import Admission
from chatsvc.sessions.limits import Limits
from chatsvc.sessions.outbox import Outbox
from chatsvc.sessions.session import Session, State


class TinyDoor(Session, Protocol):
    """A door whose every read is one message, recorded; it says C{bye} when it closes."""

    def __init__(self) -> None:
        Session.__init__(self)
        self.handled: list[bytes] = []
        self.left: list[str | None] = []
        self.paused = False
        self.delayedTold = 0

    def start(self, transport: StringTransport, clock: Clock, limits: Limits) -> None:
        self.makeConnection(transport)
        self._startSession(transport, limits, clock, Admission(clock, limits), Outbox(clock))

    def dataReceived(self, data: bytes) -> None:
        delay = self._takeToken()
        if delay:
            self._hold(data, delay)
        else:
            self._handleHeld(data)

    def connectionLost(self, reason: object = None) -> None:
        self._endSession()

    def _stopReading(self) -> None:
        self.paused = True

    def _startReading(self) -> None:
        self.paused = False

    def _reading(self) -> bool:
        return not self.paused

    def _handleHeld(self, held: object) -> None:
        assert isinstance(held, bytes)
        self.handled.append(held)

    def _tellDelayed(self) -> None:
        self.delayedTold += 1

    def _nameTimedOut(self) -> None:
        self._nameTimer = None
        self.disconnect("too slow")

    def _leave(self, reason: str | None, quitting: bool = False) -> None:
        self.left.append(reason)

    def disconnect(self, reason: str) -> None:
        if self._state is not State.CLOSING:
            self._closeWith(f"bye: {reason}\r\n".encode())
            self._leave(reason)


class SessionTests(SynchronousTestCase):
    """The session machinery, without the line door."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "10.0.0.1", 1))
        self.door = TinyDoor()

    def start(self, **limits: object) -> None:
        self.door.start(self.transport, self.clock, Limits(**limits))  # type: ignore[arg-type]

    def test_nameTimeout(self) -> None:
        """Without being named in time, the session is told why and closed, then cut if it lingers."""
        self.start(nameTimeout=2, shutdownGrace=3)
        self.clock.advance(2)
        self.assertEqual(self.transport.value(), b"bye: too slow\r\n")
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.door.left, ["too slow"])
        self.clock.advance(3)
        self.assertTrue(self.transport.disconnected)  # cut: the peer never closed

    def test_namedInTime(self) -> None:
        """Once named, no timeout."""
        self.start(nameTimeout=2)
        self.door._named()
        self.clock.advance(100)
        self.assertFalse(self.transport.disconnecting)

    def test_floodGate(self) -> None:
        """
        Past the burst, what arrives is held and reading stops, the peer told once; it is
        handled when due, in order, and reading starts again.
        """
        self.start(floodBurst=2, floodRate=1, addressFloodBurst=100)
        self.door._named()
        for data in (b"one", b"two", b"three"):
            self.door.dataReceived(data)
        self.assertEqual(self.door.handled, [b"one", b"two"])
        self.assertTrue(self.door.paused)
        self.assertEqual(self.door.delayedTold, 1)
        self.clock.advance(1)
        self.assertEqual(self.door.handled, [b"one", b"two", b"three"])
        self.assertFalse(self.door.paused)

    def test_pacedReply(self) -> None:
        """A reply is written whole to a peer whose transport never says it is full."""
        self.start()
        self.door.reply(iter([b"a\r\n", b"b\r\n"]))
        self.assertEqual(self.transport.value(), b"a\r\nb\r\n")
        self.assertFalse(self.door.paused)

    def test_endOnce(self) -> None:
        """A lost connection leaves once and is counted out; no timer is left."""
        self.start()
        self.door.connectionLost()
        self.assertEqual(self.door.left, ["connection lost"])
        self.assertEqual(self.clock.getDelayedCalls(), [])


class AnswerTests(SynchronousTestCase):
    """Waiting for an answer that may come later (L{Session._whenAnswered})."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "10.0.0.1", 1))
        self.door = TinyDoor()
        self.door.start(self.transport, self.clock, Limits())
        self.results: list[object] = []
        self.refusals: list[str] = []
        self.failures: list[BaseException] = []

    def wait(self, answer: Deferred[str]) -> None:
        self.door._whenAnswered(answer, self.results.append, self.refusals.append, self.failures.append)

    def test_answeredAtOnce(self) -> None:
        """An answer given at once is handled at once, and reading never stops."""
        self.wait(succeed("yes"))
        self.assertEqual(self.results, ["yes"])
        self.assertFalse(self.door.paused)

    def test_answeredLater(self) -> None:
        """
        Until the answer comes, the session is not read; once handled (within a gathered turn,
        so what it causes is written once per connection), reading starts again.
        """
        answer: Deferred[str] = Deferred()
        self.wait(answer)
        self.assertTrue(self.door.paused)
        self.assertEqual(self.results, [])
        answer.callback("later")
        self.assertEqual(self.results, ["later"])
        self.assertTrue(self.door._gatherer.gathering)
        self.assertFalse(self.door.paused)

    def test_refusal(self) -> None:
        """The core's refusal (a L{ChatError}) is handed over as its reason."""
        answer: Deferred[str] = Deferred()
        self.wait(answer)
        answer.errback(ChatError("nickname 'x' is already in use"))
        self.assertEqual(self.refusals, ["nickname 'x' is already in use"])
        self.assertEqual((self.results, self.failures), ([], []))
        self.assertFalse(self.door.paused)

    def test_otherFailure(self) -> None:
        """Any other failure goes to the failure callback; reading goes on."""
        answer: Deferred[str] = Deferred()
        self.wait(answer)
        answer.errback(ValueError("no"))
        [error] = self.failures
        self.assertIsInstance(error, ValueError)
        self.assertEqual((self.results, self.refusals), ([], []))
        self.assertFalse(self.door.paused)

    def test_handlerRaises(self) -> None:
        """What the handler raises goes to the failure callback; reading goes on."""

        def broken(result: object) -> None:
            raise ZeroDivisionError()

        self.door._whenAnswered(succeed("x"), broken, self.refusals.append, self.failures.append)
        [error] = self.failures
        self.assertIsInstance(error, ZeroDivisionError)
        answer: Deferred[str] = Deferred()
        self.door._whenAnswered(answer, broken, self.refusals.append, self.failures.append)
        answer.callback("y")
        self.assertEqual(len(self.failures), 2)
        self.assertFalse(self.door.paused)

    def test_floodHoldOutlastsAnswer(self) -> None:
        """An answer does not start reading a session the flood gate is holding."""
        answer: Deferred[str] = Deferred()
        self.wait(answer)
        self.door._hold(b"held", 5)
        answer.callback("done")
        self.assertTrue(self.door.paused)
        self.clock.advance(5)
        self.assertFalse(self.door.paused)
        self.assertEqual(self.door.handled, [b"held"])

    def test_closedMeanwhile(self) -> None:
        """Nothing is handled for a session that closed while it waited."""
        answer: Deferred[str] = Deferred()
        self.wait(answer)
        self.door.connectionLost()
        answer.callback("too late")
        self.assertEqual(self.results, [])
