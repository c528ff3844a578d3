"""
Tests that the client and the server agree on what ends a session: whatever the member types,
the client stops sending exactly when the real server (L{chatsvc.line.protocol.ChatProtocol}, in
memory) says goodbye, and never when the server relays the line as chat.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

import chatsvc.client
from chatsvc.line import protocol, wire
from chatsvc.chat import Hub
from chatsvc.line.protocol import ChatFactory
from chatsvc.line.wire import QUIT_WORDS, endsSession
from tests.client.test_client import MemoryClient
from tests.test_layers import importsOf


class ServerReading:
    """
    The real server with two members, Alice and Bob, joined: what it makes of one line from
    Alice.

    @ivar goodbye: whether the server said goodbye to Alice and closed her connection.
    @ivar relayed: the lines Bob was sent.
    """

    def __init__(self, sent: bytes) -> None:
        """
        @param sent: the bytes Alice's client sent for the line, its line ending included.
        """
        clock = Clock()
        factory = ChatFactory(Hub(clock))
        alice, aliceTransport = self._join(factory, "Alice", 40001)
        _, bobTransport = self._join(factory, "Bob", 40002)
        clock.advance(0)
        aliceTransport.clear()
        bobTransport.clear()
        alice.dataReceived(sent)
        clock.advance(0)
        said = aliceTransport.value().decode("utf-8").split("\r\n")
        self.goodbye = "*** Goodbye, Alice!" in said
        assert self.goodbye == bool(aliceTransport.disconnecting), said
        self.relayed = bobTransport.value().decode("utf-8").split("\r\n")[:-1]

    @staticmethod
    def _join(factory: ChatFactory, nick: str, port: int) -> tuple[Protocol, StringTransport]:
        address = IPv4Address("TCP", "127.0.0.1", port)
        transport = StringTransport(peerAddress=address)
        protocol = factory.buildProtocol(address)
        assert protocol is not None
        protocol.makeConnection(transport)
        protocol.dataReceived(nick.encode("utf-8") + b"\r\n")
        return protocol, transport


def clientReading(typed: bytes) -> tuple[bool, bytes]:
    """
    What a joined client makes of C{typed} (one line, without its newline): whether it took the
    line as the end of the session, and the bytes it sent for it.
    """
    memory = MemoryClient("Alice")
    memory.join()
    memory.type(typed + b"\n")
    sent = memory.sent()
    memory.type(b"after\n")
    return memory.sent() == b"", sent


_FRAGMENTS = st.sampled_from(
    [
        "/", "//", "quit", "QUIT", "Quit", "quits", "/quit", "/QUIT", "/quit ", "q", "Q", "exit",
        "close", "disconnect", " ", "  ", "\t", "\r", "\x0b", "\x0c", "\x1c", "\x85", "\u00a0",
        "\u2028", "\u3000", "bye", "x", "\u0130", "\u212a",
    ]
)

_LINES = st.one_of(
    st.lists(st.one_of(_FRAGMENTS, st.text(max_size=3)), max_size=6)
    .map("".join)
    .map(lambda text: text.replace("\n", "").encode("utf-8")),
    st.binary(max_size=30).map(lambda data: data.replace(b"\n", b"")),
)


class AgreementTests(SynchronousTestCase):
    """The client's rule for the end of a session is the server's."""

    @settings(max_examples=400, deadline=None)
    @given(typed=_LINES)
    def test_sameDecision(self, typed: bytes) -> None:
        """
        For any line typed, the client stops sending after it exactly when the real server,
        given the bytes the client sent, says goodbye.
        """
        clientEnds, sent = clientReading(typed)
        self.assertEqual(clientEnds, ServerReading(sent).goodbye, (typed, sent))

    def test_leadingSpaceSlashQuitIsChat(self) -> None:
        """
        C{" /quit"} is not a command: the server relays it as chat and the client goes on
        sending.
        """
        clientEnds, sent = clientReading(b" /quit")
        self.assertFalse(clientEnds)
        reading = ServerReading(sent)
        self.assertFalse(reading.goodbye)
        self.assertEqual(reading.relayed, ["Alice:  /quit"])

    def test_quits(self) -> None:
        """The command in any case, with a reason, and quit words with spaces around, all quit."""
        for typed in [b"/QUIT bye", b"/quit", b"q ", b" q", b"\texit\t", b"close\r\r"]:
            clientEnds, sent = clientReading(typed)
            self.assertTrue(clientEnds, typed)
            self.assertTrue(ServerReading(sent).goodbye, typed)

    def test_notQuits(self) -> None:
        """Lines that only look like a quit are chat (or another command) on both ends."""
        for typed in [b"quit", b"q q", b"/quitter", b"//quit", b"/quit\tnow", b"/quit\r\r", b"Q"]:
            clientEnds, sent = clientReading(typed)
            self.assertFalse(clientEnds, typed)
            self.assertFalse(ServerReading(sent).goodbye, typed)

    def test_notUTF8(self) -> None:
        """The server refuses a line that is not UTF-8, so it is no quit for the client either."""
        clientEnds, sent = clientReading(b"/quit \xff")
        self.assertFalse(clientEnds)
        self.assertFalse(ServerReading(sent).goodbye)


class WireTests(SynchronousTestCase):
    """L{chatsvc.line.wire} on its own."""

    def test_endsSession(self) -> None:
        """L{endsSession} reads lines as the server does, on text already decoded."""
        self.assertTrue(endsSession("/Quit going home"))
        self.assertTrue(endsSession("\u3000disconnect "))
        self.assertFalse(endsSession(" /quit"))
        self.assertFalse(endsSession("/quit\r"))
        self.assertFalse(endsSession(""))

    def test_oneSetOfQuitWords(self) -> None:
        """The line door and the wire share one set of quit words."""
        self.assertIs(getattr(protocol, "QUIT_WORDS"), QUIT_WORDS)
        self.assertEqual(QUIT_WORDS, {"q", "exit", "close", "disconnect"})

    def test_importsNothingOfTheServer(self) -> None:
        """
        L{chatsvc.line.wire} and the client's modules import nothing of chatsvc but
        L{chatsvc.text}, L{chatsvc.line.wire} and one another, so the client does not need the
        server.
        """
        client = Path(chatsvc.client.__file__ or "").parent
        allowed = {"chatsvc.text", "chatsvc.line.wire"} | {
            f"chatsvc.client.{path.stem}" for path in client.glob("*.py") if path.stem != "__init__"
        }
        for path in [Path(wire.__file__ or ""), *sorted(client.glob("*.py"))]:
            imported = importsOf(path)
            ours = {name for name in imported if name and name.split(".")[0] == "chatsvc"}
            self.assertLessEqual(ours, allowed | {"chatsvc.client"}, str(path))
