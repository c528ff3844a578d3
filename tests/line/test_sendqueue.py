"""
Tests for what the server holds for a member, and what one member (or one address) can make it
hold or send: the send queue counted from the first byte, long replies written at the pace the
member reads, their cost to the asker's flood budget, the flood limit an address's connections
share, and connections that will not finish closing.
"""

from __future__ import annotations

import socket

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from chatsvc.chat import Hub
from chatsvc.sessions.limits import Limits
from chatsvc.line.protocol import ROOMS_PER_PAGE, ChatFactory, ChatProtocol
from chatsvc.sessions.session import REPLY_CHUNK, unsentBytes
from tests.line.test_protocol import BufferedTransport, Client, LoopbackConnection, ProtocolTestCase

LONG = "p" * 3993
"""A chat line that goes out as 4002 bytes: C{Alice: } + 3993 + CRLF."""

TWISTED_BUFFER = 64 * 1024
"""The size of Twisted's write buffer for a connection, past which it pauses the producer."""


class Member:
    """A member on a L{BufferedTransport}: its peer reads only when the test says so."""

    def __init__(self, test: ProtocolTestCase, nick: str, host: str = "127.0.0.1") -> None:
        address = IPv4Address("TCP", host, 45000)
        self.transport = BufferedTransport(address)
        protocol = test.factory.buildProtocol(address)
        assert isinstance(protocol, ChatProtocol)
        self.protocol = protocol
        self.clock = test.clock
        protocol.makeConnection(self.transport)
        self.send(f"{nick}\n")
        self.readAll()
        lines = self.transport.lines()
        test.assertEqual(lines[:2], ["GET_NAME", f"{nick} connected to server!"])
        for other in test.factory.connections:
            if isinstance(other.transport, StringTransport):
                other.transport.clear()

    def send(self, text: str) -> None:
        """Send C{text} in one read, and let the reactor turn."""
        self.protocol.dataReceived(text.encode("utf-8"))
        self.clock.advance(0)

    def readAll(self) -> None:
        """The peer reads until nothing more comes (the reactor turning in between)."""
        while True:
            unsent = unsentBytes(self.transport)
            self.transport.read()
            self.clock.advance(0)
            if not unsent and not unsentBytes(self.transport):
                return


class SendQueueFromTheFirstByteTests(ProtocolTestCase):
    """Every byte waiting for a member counts against the bound, the first write's too."""

    limits = Limits(maxSendQueue=150_000, floodBurst=1000, addressFloodBurst=10_000)

    def test_oneBigWriteCuts(self) -> None:
        """
        A member that never reads is cut by a single write larger than the bound, though
        nothing was waiting before it (Twisted's buffer had never filled).
        """
        alice, carol = self.join("Alice"), self.join("Carol")
        slow = Member(self, "Slow")
        burst = "".join(f"{LONG}\n" for _ in range(40))  # 160 KB for Slow, in one write
        alice.send(burst)
        self.assertTrue(slow.transport.aborted)
        self.assertEqual(self.room.nicks(), ["Alice", "Carol"])
        self.assertEqual(carol.lines()[-1], "Slow left! (send queue exceeded)")
        self.assertEqual(len(slow.transport.dataBuffer), 0)

    def test_tcpOneBigWriteCuts(self) -> None:
        """
        On a real TCP connection whose peer reads nothing, what the kernel does not take of one
        big write counts at once.
        """
        alice = self.join("Alice")
        listener = socket.create_server(("127.0.0.1", 0))
        self.addCleanup(listener.close)
        peer = socket.socket()
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        peer.connect(listener.getsockname())
        self.addCleanup(peer.close)
        server, _ = listener.accept()
        self.addCleanup(server.close)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        protocol = self.factory.buildProtocol(None)
        assert isinstance(protocol, ChatProtocol)
        reactor = MemoryReactorClock()
        connection = LoopbackConnection(server, protocol, reactor)
        protocol.makeConnection(connection)
        protocol.dataReceived(b"Slow\n")
        self.clock.advance(0)
        alice.send("".join(f"{LONG}\n" for _ in range(60)))  # 240 KB, in one write
        self.assertEqual(self.room.nicks(), ["Alice"])
        reactor.advance(0)  # Twisted ends an aborted connection in the next turn
        self.assertTrue(connection.disconnected)

    def test_underTheBoundStays(self) -> None:
        """A write that leaves less than the bound waiting cuts nobody."""
        alice = self.join("Alice")
        slow = Member(self, "Slow")
        alice.send("".join(f"{LONG}\n" for _ in range(30)))  # 120 KB
        self.assertFalse(slow.transport.aborted)
        self.assertEqual(unsentBytes(slow.transport), 30 * 4002)
        slow.readAll()
        self.assertEqual(slow.transport.lines(), [f"Alice: {LONG}"] * 30)


class PacedReplyTests(ProtocolTestCase):
    """
    Long replies a member asks for (history, member and room lists) go out as the member reads
    them, so that a member who asks for many and reads none costs the server no more than
    Twisted's buffer and one chunk.
    """

    limits = Limits(maxSendQueue=150_000)

    def setUp(self) -> None:
        super().setUp()
        self.room = Hub(self.clock, historyKept=100)
        self.factory = ChatFactory(self.room, self.limits)
        alice = self.join("Alice")
        for number in range(100):
            self.room.say(alice.protocol, self.room.defaultRoom, f"{number:03d} {LONG[4:]}")
        self.alice = alice

    def test_historySpamByANonReader(self) -> None:
        """
        Twenty C{/history 100} in one read (8 MB of replies) from a member that reads none of
        it: what waits stays under Twisted's buffer plus a chunk, the member is not cut, and
        its further lines wait unread; once it reads, every reply arrives whole and in order.
        """
        slow = Member(self, "Slow")
        slow.transport.lines()
        slow.send("/history 100\n" * 20 + "/who\n")
        waiting = unsentBytes(slow.transport)
        assert waiting is not None
        self.assertLessEqual(waiting, TWISTED_BUFFER + REPLY_CHUNK + 4100)
        self.assertFalse(slow.transport.aborted)
        self.assertTrue(slow.protocol.paused)
        # Others' lines still reach it meanwhile (behind what waits), and they count.
        self.alice.send("/msg Slow meanwhile\n")
        most = 0
        while slow.protocol.paused or unsentBytes(slow.transport):
            most = max(most, unsentBytes(slow.transport) or 0)
            slow.transport.read(50_000)
            self.clock.advance(0)
            self.clock.advance(60)  # the replies' cost to the flood budget is paid off
        self.assertLessEqual(most, TWISTED_BUFFER + REPLY_CHUNK + 4100)
        lines = slow.transport.lines()
        history = [line for line in lines if "UTC] Alice: " in line]
        self.assertEqual(len(history), 20 * 100)
        self.assertEqual(
            [line.split("Alice: ")[1][:3] for line in history],
            [f"{number:03d}" for number in range(100)] * 20,
        )
        self.assertEqual(lines.count("*** End of history of lobby"), 20)
        self.assertIn("*Alice* meanwhile", lines)
        self.assertEqual(lines[-1], "*** Members (2): Alice, Slow")

    def test_repliesCostTheAsker(self) -> None:
        """
        A long reply costs its asker a line of its flood budget per 8 KiB: after C{/history
        100} (400 KB), the asker's next line waits, while others talk on undelayed.
        """
        bob = self.join("Bob")
        bob.send("/history 100\n")
        self.assertEqual(len(bob.lines()), 102)
        bob.send("hello\n")
        self.assertEqual(
            bob.lines(), ["*** You are sending too fast; your lines are being delayed."]
        )
        self.assertEqual(self.alice.lines(), [])
        carol = self.join("Carol")
        carol.send("not delayed\n")
        self.assertEqual(self.alice.lines()[-1], "Carol: not delayed")
        self.clock.advance(60)
        self.assertEqual(self.alice.lines(), ["Bob: hello"])

    def test_shortRepliesCostNothing(self) -> None:
        """A reply shorter than 8 KiB costs nothing beyond the line that asked for it."""
        bob = self.join("Bob")
        bob.send("/who\n" * 5 + "hi\n")
        self.assertEqual(self.alice.lines(), ["Bob: hi"])

    def test_goodbyeCutsAReplyShort(self) -> None:
        """
        A member disconnected while a reply to it is still being written gets the goodbye
        next, not the rest of the reply.
        """
        slow = Member(self, "Slow")
        slow.transport.lines()
        slow.send("/history 100\n")
        slow.protocol.disconnect("server shutting down")
        slow.transport.read()
        lines = slow.transport.lines()
        self.assertEqual(lines[-1], "*** Disconnected: server shutting down")
        self.assertLess(len(lines), 100)


class RoomListTests(ProtocolTestCase):
    """C{/rooms} lists the rooms a page at a time."""

    limits = Limits(floodBurst=1000, addressFloodBurst=10_000)

    def test_pages(self) -> None:
        """
        With more rooms than fit a page, C{/rooms} shows the first page and says how to see
        the next; C{/rooms N} shows page N; a page past the last, or no number, is refused.
        """
        self.room = Hub(self.clock, maxRooms=1000, roomsPerMember=1000, roomsPerAddress=1000)
        self.factory = ChatFactory(self.room, self.limits)
        alice = self.join("Alice")
        total = 2 * ROOMS_PER_PAGE + 20
        for number in range(total - 1):  # and the lobby
            self.room.join(alice.protocol, f"r{number:03d}")
        alice.lines()
        alice.send("/rooms\n")
        lines = alice.lines()
        self.assertEqual(lines[0], f"*** Rooms ({total}), page 1 of 3:")
        self.assertEqual(len(lines), 1 + ROOMS_PER_PAGE + 1)
        self.assertEqual(lines[-1], "*** More: /rooms 2")
        alice.send("/rooms 3\n")
        lines = alice.lines()
        self.assertEqual(lines[0], f"*** Rooms ({total}), page 3 of 3:")
        self.assertEqual(len(lines), 1 + 20)
        self.assertEqual(lines[-1], "***   r118 (1 member)")
        alice.send("/rooms 4\n/rooms ²\n/rooms 0\n")
        self.assertEqual(
            alice.lines(),
            [
                "*** Error: there are only 3 pages of rooms",
                "*** Error: usage: /rooms [PAGE]",
                "*** Error: usage: /rooms [PAGE]",
            ],
        )

    def test_onePage(self) -> None:
        """A server with few rooms lists them as before: no page numbers."""
        alice = self.join("Alice")
        alice.send("/rooms\n")
        self.assertEqual(alice.lines(), ["*** Rooms (1):", "***   lobby (1 member)"])


class AddressFloodTests(SynchronousTestCase):
    """The connections from one address share a flood budget; other addresses have their own."""

    def setUp(self) -> None:
        from twisted.internet.task import Clock

        self.clock = Clock()
        self.hub = Hub(self.clock)
        limits = Limits(floodBurst=20, addressFloodBurst=30, addressFloodRate=10)
        self.factory = ChatFactory(self.hub, limits)

    def member(self, nick: str, host: str) -> Client:
        transport = StringTransport(peerAddress=IPv4Address("TCP", host, 1234))
        client = Client(self.factory, transport)
        client.send(f"{nick}\n")
        client.lines()
        return client

    def test_sharedBurst(self) -> None:
        """
        Two connections from one address, pasting 20 lines each, get 30 through at once between
        them (counting their nicknames); the rest follow at the address's rate, in order. A
        member from another address pastes undelayed meanwhile.
        """
        reader = self.member("Reader", "10.0.0.9")
        one, two = self.member("One", "10.0.0.1"), self.member("Two", "10.0.0.1")
        one.send("".join(f"one {n}\n" for n in range(20)))
        two.send("".join(f"two {n}\n" for n in range(20)))
        other = self.member("Other", "10.0.0.2")
        other.send("".join(f"other {n}\n" for n in range(20)))
        got = reader.lines()
        fromAddress = [line for line in got if line.startswith(("One: ", "Two: "))]
        self.assertEqual(len(fromAddress), 30 - 2)  # the two nicknames took a token each
        self.assertEqual(len([line for line in got if line.startswith("Other: ")]), 20)
        for _ in range(100):
            self.clock.advance(0.1)
        got = reader.lines()
        fromAddress += [line for line in got if line.startswith(("One: ", "Two: "))]
        self.assertEqual(
            [line for line in fromAddress if line.startswith("One: ")],
            [f"One: one {n}" for n in range(20)],
        )
        self.assertEqual(
            [line for line in fromAddress if line.startswith("Two: ")],
            [f"Two: two {n}" for n in range(20)],
        )

    def test_reconnectingDoesNotRefill(self) -> None:
        """An address's budget outlives its connections until it has filled up again."""
        reader = self.member("Reader", "10.0.0.9")
        one = self.member("One", "10.0.0.1")
        one.send("".join(f"{n}\n" for n in range(20)))
        one.drop()
        again = self.member("Again", "10.0.0.1")
        again.send("".join(f"{n}\n" for n in range(20)))
        got = [line for line in reader.lines() if line.startswith(("One: ", "Again: "))]
        self.assertEqual(len(got), 30 - 2)
        self.clock.advance(10)  # the lines held are let through
        self.clock.advance(10)  # full again, and no connection from the address: forgotten
        again.drop()
        self.assertNotIn("10.0.0.1", self.factory.admission._addressBuckets)


class ClosingTests(ProtocolTestCase):
    """A connection the server closes is gone within the grace period, whatever the peer does."""

    limits = Limits(shutdownGrace=5)

    def test_peerThatNeverCloses(self) -> None:
        """
        After a quit, a peer that neither reads what is left nor closes its end is cut once
        the grace period is over, and its connection counted as closed then.
        """
        alice = self.join("Alice")
        alice.send("q\n")
        self.assertTrue(alice.closing)
        self.assertFalse(alice.transport.disconnected)
        self.clock.advance(5)
        self.assertTrue(alice.transport.disconnected)  # aborted
        alice.drop()
        self.assertEqual(self.factory.connectionCount, 0)

    def test_closedInTime(self) -> None:
        """A connection that closes in time leaves no timer behind."""
        alice = self.join("Alice")
        alice.send("q\n")
        alice.drop()
        self.assertEqual(self.clock.getDelayedCalls(), [])


class AddressGroupingTests(SynchronousTestCase):
    """What counts as one address for the limits that count an address's connections together."""

    def test_addressOf(self) -> None:
        """IPv4 as it is; IPv4-mapped IPv6 as IPv4; other IPv6 by its /64; no IP, none."""
        from twisted.internet.address import IPv6Address, UNIXAddress

        from chatsvc.sessions.addresses import addressOf

        self.assertEqual(addressOf(IPv4Address("TCP", "10.1.2.3", 5)), "10.1.2.3")
        self.assertEqual(addressOf(IPv6Address("TCP", "::ffff:10.1.2.3", 5)), "10.1.2.3")
        self.assertEqual(addressOf(IPv6Address("TCP", "2001:db8:1:2:aaaa::1", 5)), "2001:db8:1:2::/64")
        self.assertEqual(addressOf(IPv6Address("TCP", "2001:db8:1:2:ffff::9%eth0", 5)), "2001:db8:1:2::/64")
        self.assertEqual(addressOf(IPv6Address("TCP", "::1", 5)), "::/64")
        self.assertIsNone(addressOf(UNIXAddress(b"/run/chat.sock")))

    def test_oneNetworkOneAddress(self) -> None:
        """
        Connections from many addresses of one IPv6 /64 count together against the
        per-address cap; another /64 has its own.
        """
        from twisted.internet.address import IPv6Address
        from twisted.internet.task import Clock

        from chatsvc.line.protocol import Refusal

        factory = ChatFactory(Hub(Clock()), Limits(maxConnectionsPerAddress=2))
        for n in range(2):
            address = IPv6Address("TCP", f"2001:db8:0:1::{n + 1}", 1000 + n)
            protocol = factory.buildProtocol(address)
            assert isinstance(protocol, ChatProtocol)
            protocol.makeConnection(StringTransport(peerAddress=address))
        refused = factory.buildProtocol(IPv6Address("TCP", "2001:db8:0:1:ffff::7", 2000))
        self.assertIsInstance(refused, Refusal)
        other = factory.buildProtocol(IPv6Address("TCP", "2001:db8:0:2::1", 2001))
        self.assertIsInstance(other, ChatProtocol)
