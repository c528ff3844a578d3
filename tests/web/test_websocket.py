"""
Tests for L{chatsvc.web.websocket}: the opening handshake through a real twisted.web site, and
the frames read afterwards, on in-memory transports and a L{Clock}.
"""

from __future__ import annotations

import base64
import gc
import struct
import weakref

from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IProtocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from chatsvc.sessions.keepalive import KeepAlive
from chatsvc.web.websocket import (
    WebSocketProtocol,
    WebSocketResource,
    acceptKey,
    closeFrame,
    frame,
)
from tests.web.test_protocol import clientFrame, serverFrames


class Echo(WebSocketProtocol):
    """Sends every message back; remembers what it was given."""

    maxMessageBytes = 1000

    def __init__(self, keepAlive: KeepAlive | None = None) -> None:
        self.received: list[str | bytes] = []
        self.lost = False
        self.keepAlive = keepAlive

    def connectionMade(self) -> None:
        super().connectionMade()
        if self.keepAlive is not None:
            self.keepAlive.opened(self)

    def textReceived(self, text: str) -> None:
        self.received.append(text)
        self._enqueue(frame(text.encode("utf-8")))

    def binaryReceived(self, data: bytes) -> None:
        self.received.append(data)

    def connectionLost(self, reason: object = None) -> None:
        self.lost = True
        if self.keepAlive is not None:
            self.keepAlive.closed(self)


class Acceptor:
    """Accepts every handshake with a new L{Echo}, and keeps them."""

    def __init__(self, keepAlive: KeepAlive | None = None) -> None:
        self.protocols: list[Echo] = []
        self.keepAlive = keepAlive

    def acceptWebSocket(self, request: Request) -> Echo:
        protocol = Echo(self.keepAlive)
        self.protocols.append(protocol)
        return protocol


HANDSHAKE = [
    "GET /ws HTTP/1.1",
    "Host: chat.example",
    "Upgrade: websocket",
    "Connection: keep-alive, Upgrade",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version: 13",
]


class WebSocketTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.keepAlive = KeepAlive(self.clock, 20)
        self.acceptor = Acceptor(self.keepAlive)
        root = Resource()
        root.putChild(b"ws", WebSocketResource(self.acceptor))
        self.site = Site(root, reactor=self.clock)

    def send(self, lines: list[str]) -> tuple[StringTransport, IProtocol]:
        """A connection to the site, sent C{lines}: its transport, and the HTTP channel."""
        address = IPv4Address("TCP", "127.0.0.1", 40000)
        transport = StringTransport(peerAddress=address)
        channel = self.site.buildProtocol(address)
        assert channel is not None
        channel.makeConnection(transport)
        channel.dataReceived(("\r\n".join(lines) + "\r\n\r\n").encode("ascii"))
        return transport, channel

    def open(self, lines: list[str] = HANDSHAKE) -> tuple[StringTransport, bytes, bytes]:
        """A connection to the site, sent C{lines}: its transport, the response's head and the rest."""
        transport, _ = self.send(lines)
        head, _, rest = transport.value().partition(b"\r\n\r\n")
        transport.clear()
        return transport, head, rest

    def connect(self) -> tuple[StringTransport, Echo]:
        transport, head, _ = self.open()
        self.assertTrue(head.startswith(b"HTTP/1.1 101 "), head)
        return transport, self.acceptor.protocols[-1]

    def closeCode(self, transport: StringTransport) -> int:
        [(opcode, payload)] = [f for f in serverFrames(transport.value()) if f[0] == 0x8]
        code: int = struct.unpack("!H", payload[:2])[0]
        return code


class HandshakeTests(WebSocketTestCase):
    def test_acceptKey(self) -> None:
        """The answer to a key is RFC 6455's own example's (section 1.3)."""
        self.assertEqual(acceptKey(b"dGhlIHNhbXBsZSBub25jZQ=="), b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")

    def test_accepted(self) -> None:
        """A valid handshake: 101 with the accept key, and the connection is the protocol's."""
        transport, head, rest = self.open()
        lines = head.split(b"\r\n")
        self.assertEqual(lines[0], b"HTTP/1.1 101 Switching Protocols")
        self.assertIn(b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", lines)
        self.assertEqual(rest, b"")
        [protocol] = self.acceptor.protocols
        self.assertIs(transport.protocol, protocol)  # type: ignore[attr-defined]
        self.assertIs(protocol.transport, transport)
        # Nothing is left registered as the connection's producer by the HTTP channel.
        self.assertIsNone(transport.producer)

    def test_channelLetGo(self) -> None:
        """Nothing keeps the HTTP channel (or its request) alive once the WebSocket is open."""
        transport, channel = self.send(HANDSHAKE)
        gone = weakref.ref(channel)
        del channel
        gc.collect()
        self.assertIsNone(gone())
        self.assertIsInstance(transport.protocol, Echo)  # type: ignore[attr-defined]

    def test_notAnUpgrade(self) -> None:
        """Opening /ws as a page is told what the address is for (426), and stays HTTP."""
        _, head, body = self.open(["GET /ws HTTP/1.1", "Host: chat.example"])
        self.assertTrue(head.startswith(b"HTTP/1.1 426 "), head)
        self.assertIn(b"open / instead", body)
        self.assertEqual(self.acceptor.protocols, [])

    def test_wrongVersion(self) -> None:
        """Another WebSocket version: 426, naming the one spoken."""
        lines = [line for line in HANDSHAKE if "Version" not in line] + ["Sec-WebSocket-Version: 8"]
        _, head, _ = self.open(lines)
        self.assertTrue(head.startswith(b"HTTP/1.1 426 "), head)
        self.assertIn(b"Sec-Websocket-Version: 13", head)
        self.assertEqual(self.acceptor.protocols, [])

    def test_badRequests(self) -> None:
        """A key that is not 16 bytes, no key, no Connection: Upgrade, HTTP/1.0: 400 each."""
        cases = {
            "short key": [line for line in HANDSHAKE if "Key" not in line]
            + ["Sec-WebSocket-Key: " + base64.b64encode(b"short").decode()],
            "not base64": [line for line in HANDSHAKE if "Key" not in line]
            + ["Sec-WebSocket-Key: !!!!"],
            "no key": [line for line in HANDSHAKE if "Key" not in line],
            "no connection": [line for line in HANDSHAKE if "Connection" not in line],
            "HTTP/1.0": ["GET /ws HTTP/1.0"] + HANDSHAKE[1:],
        }
        for name, lines in cases.items():
            _, head, _ = self.open(lines)
            self.assertIn(b" 400 ", head.split(b"\r\n")[0], name)
        self.assertEqual(self.acceptor.protocols, [])


class FrameTests(WebSocketTestCase):
    def test_message(self) -> None:
        """A masked text frame is unmasked and handed over whole."""
        transport, echo = self.connect()
        echo.dataReceived(clientFrame("héllo".encode()))
        self.assertEqual(echo.received, ["héllo"])
        self.assertEqual(serverFrames(transport.value()), [(0x1, "héllo".encode())])

    def test_byteByByte(self) -> None:
        """Frames that arrive a byte at a time are read all the same."""
        transport, echo = self.connect()
        for byte in clientFrame(b"one") + clientFrame(b"two"):
            echo.dataReceived(bytes([byte]))
        self.assertEqual(echo.received, ["one", "two"])

    def test_fragmentsWithPingBetween(self) -> None:
        """A message in three frames, with a ping between two of them: pong, then the message."""
        transport, echo = self.connect()
        echo.dataReceived(clientFrame(b"ab", fin=False))
        echo.dataReceived(clientFrame(b"here?", opcode=0x9))
        echo.dataReceived(clientFrame(b"cd", opcode=0x0, fin=False))
        self.assertEqual(echo.received, [])
        echo.dataReceived(clientFrame(b"ef", opcode=0x0))
        self.assertEqual(echo.received, ["abcdef"])
        self.assertEqual(serverFrames(transport.value()), [(0xA, b"here?"), (0x1, b"abcdef")])

    def test_utf8SplitAcrossFragments(self) -> None:
        """A character split between two frames is one character."""
        _, echo = self.connect()
        data = "é".encode()
        echo.dataReceived(clientFrame(data[:1], fin=False) + clientFrame(data[1:], opcode=0x0))
        self.assertEqual(echo.received, ["é"])

    def test_binary(self) -> None:
        _, echo = self.connect()
        echo.dataReceived(clientFrame(b"\x00\xff", opcode=0x2))
        self.assertEqual(echo.received, [b"\x00\xff"])

    def test_tooBigInFragments(self) -> None:
        """Fragments past the bound close the connection (1009) as soon as they pass it."""
        transport, echo = self.connect()
        echo.dataReceived(clientFrame(b"x" * 600, fin=False))
        echo.dataReceived(clientFrame(b"x" * 600, opcode=0x0, fin=False))
        self.assertEqual(self.closeCode(transport), 1009)
        self.assertTrue(transport.disconnecting)
        transport.clear()
        echo.dataReceived(clientFrame(b"x", opcode=0x0))
        self.assertEqual((echo.received, transport.value()), ([], b""))

    def test_tooBigFrameNotWaitedFor(self) -> None:
        """A frame declaring more than the bound is closed on as soon as the bound is passed."""
        transport, echo = self.connect()
        whole = clientFrame(b"y" * 5000)
        echo.dataReceived(whole[:1100])  # the header, and a little past the bound
        self.assertEqual(self.closeCode(transport), 1009)

    def test_protocolErrors(self) -> None:
        """Unmasked frames, unknown opcodes, long control frames: 1002; bad UTF-8: 1007."""
        unmasked = frame(b"hi")
        cases = {
            "unmasked": (unmasked, 1002),
            "opcode 3": (clientFrame(b"", opcode=0x3), 1002),
            "long ping": (clientFrame(b"p" * 126, opcode=0x9), 1002),
            "continuation first": (clientFrame(b"x", opcode=0x0), 1002),
            "bad UTF-8": (clientFrame(b"\xff\xfe"), 1007),
        }
        for name, (data, code) in cases.items():
            transport, echo = self.connect()
            echo.dataReceived(data)
            self.assertEqual(self.closeCode(transport), code, name)
            self.assertTrue(transport.disconnecting, name)
            self.assertEqual(echo.received, [], name)

    def test_peerCloses(self) -> None:
        """The peer's close is answered with its own code, and the connection closed."""
        transport, echo = self.connect()
        echo.dataReceived(clientFrame(struct.pack("!H", 1001) + b"bye", opcode=0x8))
        self.assertEqual(self.closeCode(transport), 1001)
        self.assertTrue(transport.disconnecting)

    def test_peerClosesWithoutCode(self) -> None:
        """A close without a code is answered with 1000."""
        transport, echo = self.connect()
        echo.dataReceived(clientFrame(b"", opcode=0x8))
        self.assertEqual(self.closeCode(transport), 1000)

    def test_serverClosesFirst(self) -> None:
        """After the server's close, messages are not read and the answering close is not answered."""
        transport, echo = self.connect()
        echo._closeWith(echo.closing(1000))
        transport.clear()
        echo.dataReceived(clientFrame(b"late") + clientFrame(struct.pack("!H", 1000), opcode=0x8))
        self.assertEqual((echo.received, transport.value()), ([], b""))

    def test_closeReasonCut(self) -> None:
        """A close frame's reason is cut to fit a control frame, on a character's boundary."""
        data = closeFrame(1000, "é" * 100)
        [(opcode, payload)] = serverFrames(data)
        self.assertLessEqual(len(payload), 125)
        payload[2:].decode("utf-8")


class KeepAliveTests(WebSocketTestCase):
    def test_silentPeerPingedThenCut(self) -> None:
        """Silent for an interval: pinged; silent for another: cut."""
        transport, echo = self.connect()
        self.clock.advance(20)  # heard from at the handshake
        self.assertEqual(transport.value(), b"")
        self.clock.advance(20)
        self.assertEqual(serverFrames(transport.value()), [(0x9, b"")])
        self.clock.advance(20)
        self.assertTrue(transport.disconnected)
        self.assertEqual(len(self.keepAlive), 0)

    def test_pongKeepsAlive(self) -> None:
        """A peer that answers its pings stays, however long it says nothing else."""
        transport, echo = self.connect()
        for _ in range(10):
            self.clock.advance(20)
            if transport.value():
                transport.clear()
                echo.dataReceived(clientFrame(b"", opcode=0xA))
        self.assertFalse(transport.disconnected)

    def test_timerOnlyWhileOpen(self) -> None:
        """The one timer runs while connections are open, and stops with the last."""
        self.assertEqual(self.clock.getDelayedCalls(), [])
        transport, echo = self.connect()
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        echo.connectionLost()
        self.assertEqual(self.clock.getDelayedCalls(), [])
