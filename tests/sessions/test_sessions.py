"""
Tests for L{chatsvc.sessions}: the outbox and admission every door shares, on fake sessions and
L{Clock}, with no door at all.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from chatsvc.sessions.admission import Admission
from chatsvc.sessions.interfaces import ISession
from chatsvc.sessions.limits import Limits
from chatsvc.sessions.outbox import FLUSH_CHUNK, Outbox


@implementer(ISession)
class FakeSession:
    """A session that counts its flushes, and remembers how it was closed."""

    def __init__(self, host: str | None = "10.0.0.1", outbox: Outbox | None = None) -> None:
        self.peer = f"{host}:1"
        self.host = host
        self.nick: str | None = None
        self.flushes = 0
        self.disconnected: str | None = None
        self.aborted = False
        self.gathered: list[bytes] = []
        self.outbox = outbox

    def send(self, data: bytes) -> None:
        """Gather C{data} as a door's connection does."""
        assert self.outbox is not None
        if not self.gathered:
            self.outbox.unflushed.append(self)
        self.gathered.append(data)

    def flush(self) -> None:
        self.flushes += 1
        self.gathered = []

    def disconnect(self, reason: str) -> None:
        self.disconnected = reason

    def abort(self) -> None:
        self.aborted = True


class OutboxTests(SynchronousTestCase):
    """The process's outbox writes what was gathered per turn, a hundred connections at a time."""

    def test_interface(self) -> None:
        """The fake is an L{ISession}."""
        verifyObject(ISession, FakeSession())

    def test_oneWritePerConnectionPerTurn(self) -> None:
        """
        Lines gathered for a connection during a turn are flushed once when the turn ends; the
        outbox then stops gathering.
        """
        clock = Clock()
        outbox = Outbox(clock)
        session = FakeSession(outbox=outbox)
        outbox.gather()
        self.assertTrue(outbox.gathering)
        for line in (b"a", b"b", b"c"):
            session.send(line)
        clock.advance(0)
        self.assertEqual(session.flushes, 1)
        self.assertFalse(outbox.gathering)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_chunks(self) -> None:
        """
        More connections than L{FLUSH_CHUNK} are flushed over several turns, the reactor free to
        read in between.
        """
        clock = Clock()
        outbox = Outbox(clock)
        sessions = [FakeSession(outbox=outbox) for _ in range(FLUSH_CHUNK * 2 + 1)]
        outbox.gathering = True
        for session in sessions:
            session.send(b"x")
        outbox.flush()  # the turn's flush: one chunk, the next in the reactor's next turn
        self.assertEqual(sum(s.flushes for s in sessions), FLUSH_CHUNK)
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        self.assertTrue(outbox.gathering)
        clock.advance(0)
        self.assertEqual([s.flushes for s in sessions], [1] * len(sessions))
        self.assertFalse(outbox.gathering)

    def test_oneFailureIsNotEveryones(self) -> None:
        """A session whose flush raises is logged; the others are still written to."""
        clock = Clock()
        outbox = Outbox(clock)
        broken, fine = FakeSession(outbox=outbox), FakeSession(outbox=outbox)

        def fail() -> None:
            raise RuntimeError("broken")

        broken.flush = fail  # type: ignore[method-assign]
        outbox.gather()
        broken.send(b"x")
        fine.send(b"y")
        clock.advance(0)
        self.assertEqual(fine.flushes, 1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class AdmissionTests(SynchronousTestCase):
    """The caps and shared budgets count every door's connections together."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.admission = Admission(
            self.clock, Limits(maxConnections=3, maxConnectionsPerAddress=2, shutdownGrace=5)
        )

    def test_caps(self) -> None:
        """
        Past the per-address cap, an address is refused; past the global cap, everyone; a
        closed connection makes room again.
        """
        first, second = FakeSession("10.0.0.1"), FakeSession("10.0.0.1")
        for session in (first, second):
            self.admission.connectionOpened(session)
        self.assertEqual(
            self.admission.refusal(IPv4Address("TCP", "10.0.0.1", 9)),
            "too many connections from your address",
        )
        self.assertIsNone(self.admission.refusal(IPv4Address("TCP", "10.0.0.2", 9)))
        self.admission.connectionOpened(FakeSession("10.0.0.2"))
        self.assertEqual(
            self.admission.refusal(IPv4Address("TCP", "10.0.0.3", 9)),
            "the server is full, try again later",
        )
        self.admission.connectionClosed(first)
        self.assertIsNone(self.admission.refusal(IPv4Address("TCP", "10.0.0.1", 9)))
        self.assertEqual(self.admission.connectionCount, 2)

    def test_ipv6ByNetwork(self) -> None:
        """Peers from one IPv6 /64 are one address to the caps."""
        for n in range(2):
            self.admission.connectionOpened(FakeSession("2001:db8::/64"))
        self.assertEqual(
            self.admission.refusal(IPv6Address("TCP", "2001:db8::ffff", 9)),
            "too many connections from your address",
        )

    def test_sharedBucket(self) -> None:
        """An address's connections share one flood bucket; a peer with no address has none."""
        bucket = self.admission.addressBucket("10.0.0.1")
        self.assertIs(self.admission.addressBucket("10.0.0.1"), bucket)
        self.assertIsNot(self.admission.addressBucket("10.0.0.2"), bucket)
        self.assertIsNone(self.admission.addressBucket(None))

    def test_closeAll(self) -> None:
        """
        Closing everyone tells each session why; the result fires when the last has closed,
        and any still open after the grace period are cut.
        """
        polite, stubborn = FakeSession("10.0.0.1"), FakeSession("10.0.0.2")
        for session in (polite, stubborn):
            self.admission.connectionOpened(session)
        closed = self.admission.closeAll("server shutting down")
        self.assertEqual((polite.disconnected, stubborn.disconnected), ("server shutting down",) * 2)
        self.admission.connectionClosed(polite)
        self.assertNoResult(closed)
        self.clock.advance(5)
        self.assertTrue(stubborn.aborted)
        self.assertFalse(polite.aborted)
        self.admission.connectionClosed(stubborn)
        self.successResultOf(closed)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_closeAllWhenEmpty(self) -> None:
        """With nobody connected, closing everyone is done at once."""
        self.successResultOf(self.admission.closeAll("server shutting down"))
