"""
WebSocket (RFC 6455) in a twisted.web L{Site}: the server's side, as the browser door needs it.

The opening handshake is an ordinary request to a resource of the site: L{WebSocketResource}
checks it, asks its acceptor for a protocol (which may refuse with an HTTP status, such as 403
for a page of a foreign origin), answers C{101} and hands the connection over from the HTTP
channel to that protocol. From then on the connection is a L{WebSocketProtocol}'s: wsproto reads
its frames (unmasking them, checking their UTF-8, the control frames and the close codes),
messages are bounded in size as they arrive (closed with 1009 past the bound, never gathered
first), a peer's ping is answered, and a keepalive (L{chatsvc.sessions.keepalive}) pings a
peer that falls silent and cuts one that stays so.

What the server sends, it frames itself (L{frame}): server frames are not masked, so one frame's
bytes serve every peer a message goes to. No extension and no subprotocol is ever negotiated, so
those bytes are the whole of it.

Twisted's own C{twisted.web.websocket} runs in the site too, but gathers each message in memory
without bound, can refuse a handshake only by failing an assertion, and has no ping timeout;
and the HTTP channel stays alive beneath each of its connections. This module keeps wsproto,
the frame reader beneath Twisted's, and nothing more per connection than it needs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from collections.abc import Iterable
from typing import Any, cast
from typing import Protocol as TypingProtocol

from twisted.internet.interfaces import ITCPTransport
from twisted.internet.protocol import Protocol
from twisted.protocols.policies import ProtocolWrapper
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage

__all__ = [
    "CLOSE_NORMAL",
    "CLOSE_TOO_BIG",
    "CLOSE_TRY_AGAIN_LATER",
    "HandshakeRefused",
    "OP_BINARY",
    "OP_CLOSE",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "WebSocketProtocol",
    "WebSocketResource",
    "acceptKey",
    "closeFrame",
    "frame",
]

OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

CLOSE_NORMAL = 1000
CLOSE_TOO_BIG = 1009
CLOSE_TRY_AGAIN_LATER = 1013

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
"""RFC 6455, 1.3: what the key of an opening handshake is hashed with."""


def frame(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    """One unmasked, final frame (RFC 6455, 5.2) carrying C{payload}: what a server sends."""
    length = len(payload)
    head = 0x80 | opcode
    if length < 126:
        return struct.pack("!BB", head, length) + payload
    if length < 65536:
        return struct.pack("!BBH", head, 126, length) + payload
    return struct.pack("!BBQ", head, 127, length) + payload


def closeFrame(code: int, reason: str = "") -> bytes:
    """A close frame with its status C{code} and C{reason} (cut to fit a control frame)."""
    encoded = reason.encode("utf-8")[:123].decode("utf-8", "ignore").encode("utf-8")
    return frame(struct.pack("!H", code) + encoded, OP_CLOSE)


def acceptKey(key: bytes) -> bytes:
    """The C{Sec-WebSocket-Accept} that answers a handshake's C{Sec-WebSocket-Key}."""
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())


class HandshakeRefused(Exception):
    """
    An opening handshake the server will not complete, answered with an HTTP C{status}, the
    C{message} as plain text, and any C{headers} it needs (426 names the version to speak).
    """

    def __init__(
        self, status: int, message: str, headers: Iterable[tuple[bytes, bytes]] = ()
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = tuple(headers)


class WebSocketAcceptor(TypingProtocol):
    """What L{WebSocketResource} asks for the protocol of each handshake it accepts."""

    def acceptWebSocket(self, request: Request) -> WebSocketProtocol:
        """
        The protocol that takes the connection over once the handshake of C{request} is
        answered; or L{HandshakeRefused} to answer it with an HTTP error instead.
        """


def _tokens(request: Request, name: bytes) -> set[bytes]:
    # The comma-separated tokens of every value of a header, lowercased.
    values = request.requestHeaders.getRawHeaders(name, [])
    return {token.strip().lower() for value in values for token in value.split(b",")}


def _checkHandshake(request: Request) -> bytes:
    """The key of a valid opening handshake (RFC 6455, 4.2.1), or L{HandshakeRefused}."""
    if b"websocket" not in _tokens(request, b"upgrade"):
        raise HandshakeRefused(
            426,
            "This address is the chat's WebSocket, for the chat page: open / instead.",
            [(b"Upgrade", b"websocket"), (b"Connection", b"Upgrade")],
        )
    if request.clientproto != b"HTTP/1.1" or request.channel.transport is None:
        raise HandshakeRefused(400, "A WebSocket opens over HTTP/1.1.")
    if b"upgrade" not in _tokens(request, b"connection"):
        raise HandshakeRefused(400, "A WebSocket handshake says 'Connection: Upgrade'.")
    if request.requestHeaders.getRawHeaders(b"sec-websocket-version") != [b"13"]:
        raise HandshakeRefused(
            426, "This server speaks WebSocket version 13.", [(b"Sec-WebSocket-Version", b"13")]
        )
    keys = request.requestHeaders.getRawHeaders(b"sec-websocket-key", [])
    try:
        valid = len(keys) == 1 and len(base64.b64decode(keys[0], validate=True)) == 16
    except (binascii.Error, ValueError):
        valid = False
    if not valid:
        raise HandshakeRefused(400, "A WebSocket handshake needs one Sec-WebSocket-Key of 16 bytes.")
    return keys[0].strip()


class WebSocketResource(Resource):
    """
    A resource (C{/ws}) where WebSockets open: a valid handshake that the acceptor takes is
    answered C{101}, and the connection becomes the acceptor's protocol's; anything else gets
    an HTTP error saying what is wrong, and the connection stays HTTP.
    """

    isLeaf = True

    def __init__(self, acceptor: WebSocketAcceptor) -> None:
        super().__init__()
        self._acceptor = acceptor

    def render_GET(self, request: Request) -> bytes | int:
        try:
            key = _checkHandshake(request)
            protocol = self._acceptor.acceptWebSocket(request)
        except HandshakeRefused as refused:
            request.setResponseCode(refused.status)
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            for name, value in refused.headers:
                request.setHeader(name, value)
            return refused.message.encode("utf-8") + b"\n"
        _takeOver(request, protocol, acceptKey(key))
        return NOT_DONE_YET


def _takeOver(request: Request, protocol: Protocol, accept: bytes) -> None:
    """
    Answer the handshake, and give the connection beneath C{request} to C{protocol}: the HTTP
    channel stops being its producer and its protocol (over TLS, the TLS layer's protocol), so
    that nothing of the channel is kept for the life of the WebSocket. The channel had stopped
    its idle timeout when the request arrived; it is not asked to do anything again.
    """
    channel = request.channel
    transport: Any = channel.transport
    transport.write(
        b"HTTP/1.1 101 Switching Protocols\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )
    transport.unregisterProducer()
    if isinstance(transport, ProtocolWrapper):
        transport.wrappedProtocol = protocol
    else:
        transport.protocol = protocol
    channel.transport = None
    protocol.makeConnection(transport)


class WebSocketProtocol(Protocol):
    """
    The server's end of an open WebSocket. A subclass handles whole messages
    (L{textReceived}, L{binaryReceived}); what it sends it frames with L{frame} and writes
    itself. Writing goes through L{_enqueue}, and the last bytes before closing through
    L{_closeWith}, so that a subclass that gathers its writes keeps frames in order (the chat
    sessions give their own).
    """

    maxMessageBytes = 64 * 1024
    """The longest message (and so frame) read; a longer one closes the connection (1009)."""

    def connectionMade(self) -> None:
        self._ws = Connection(ConnectionType.SERVER)
        # A message arriving in several frames, and its size so far in bytes.
        self._parts: list[str | bytes] | None = None
        self._partsSize = 0
        self._closeSent = False
        # Whether the peer was heard from since the keepalive last looked, and whether the
        # keepalive has pinged it since (see chatsvc.sessions.keepalive).
        self._heard = True
        self._pinged = False

    # What a subclass gives

    def textReceived(self, text: str) -> None:
        """A whole text message."""

    def binaryReceived(self, data: bytes) -> None:
        """A whole binary message."""

    def _enqueue(self, data: bytes) -> None:
        """Write frames."""
        assert self.transport is not None
        self.transport.write(data)

    def _closeWith(self, last: bytes) -> None:
        """Write C{last} (ending with a close frame), then close the connection."""
        assert self.transport is not None
        self.transport.write(last)
        self.transport.loseConnection()

    def pingTimedOut(self) -> None:
        """The peer stayed silent through a ping (see L{chatsvc.sessions.keepalive.KeepAlive}): it is gone."""
        cast(ITCPTransport, self.transport).abortConnection()

    # Closing

    def closing(self, code: int, reason: str = "") -> bytes:
        """
        The close frame to end with (see L{_closeWith}): from now on the peer's messages are
        not read, and its answering close frame is not answered again.
        """
        self._closeSent = True
        return closeFrame(code, reason)

    def ping(self) -> None:
        """Ask the peer for a pong (any frame it sends shows that it is there)."""
        self._enqueue(frame(b"", OP_PING))

    # Reading

    def dataReceived(self, data: bytes) -> None:
        self._heard = True
        ws = self._ws
        if ws.state is not ConnectionState.OPEN and ws.state is not ConnectionState.LOCAL_CLOSING:
            return
        ws.receive_data(data)
        for event in ws.events():
            if self._closeSent:
                # Only the peer's close frame matters now, and it needs no answer.
                if isinstance(event, CloseConnection):
                    assert self.transport is not None
                    self.transport.loseConnection()
                    return
                continue
            if isinstance(event, (TextMessage, BytesMessage)):
                part = event.data
                self._messagePart(
                    part if isinstance(part, (str, bytes)) else bytes(part), event.message_finished
                )
            elif isinstance(event, Ping):
                self._enqueue(frame(bytes(event.payload), OP_PONG))
            elif isinstance(event, CloseConnection):
                if self._ws.state is ConnectionState.REMOTE_CLOSING:
                    # The peer closes: answered with its own code, as RFC 6455 (5.5.1) has it.
                    code = event.code if event.code not in (1005, 1006) else CLOSE_NORMAL
                    self._closeWith(self.closing(code))
                else:
                    # What the peer sent broke the protocol (wsproto says how and with
                    # what code: 1002, 1007, ...).
                    self._closeWith(self.closing(event.code, event.reason or ""))
                return
            # Pongs need nothing: the peer was heard.

    def _messagePart(self, part: str | bytes, finished: bool) -> None:
        # A message's data as it arrives (a frame, or part of one): bounded as it comes, and
        # handed on once whole.
        size = len(part) if isinstance(part, bytes) or part.isascii() else len(part.encode())
        parts = self._parts
        if parts is None and finished and size <= self.maxMessageBytes:
            self._deliver(part)  # one frame, read whole: the usual case
            return
        self._partsSize += size
        if self._partsSize > self.maxMessageBytes:
            self._parts = None
            self._closeWith(
                self.closing(CLOSE_TOO_BIG, f"a message may be at most {self.maxMessageBytes} bytes")
            )
            return
        if parts is None:
            parts = self._parts = []
        parts.append(part)
        if finished:
            self._parts, self._partsSize = None, 0
            if isinstance(part, str):
                self._deliver("".join(parts))  # type: ignore[arg-type]
            else:
                self._deliver(b"".join(parts))  # type: ignore[arg-type]

    def _deliver(self, message: str | bytes) -> None:
        if isinstance(message, str):
            self.textReceived(message)
        else:
            self.binaryReceived(bytes(message))
