#!/usr/bin/env python3
"""
The thinnest WebSocket relay on the library chatsvc's browser door is built on (autobahn, on
Twisted's epoll reactor): the reference ceiling that benchmarks/fanout.py measures the web door
against (C{--door web}), in the same run and on the same machine, as relay.py is for the line
door.

    python benchmarks/wsrelay.py --port 0        # prints the port it listens on, then serves

It accepts WebSocket connections (at any path: C{/ws} as well as any other), and writes every
text message it receives to every other open connection, as it came; nothing else. There is no
hello, no nickname, no join notice, no rooms, no limits, no validation of the JSON, no logging
per connection or per message. autobahn does what every WebSocket server must: the opening
handshake, reading frames (unmasking them, checking their UTF-8, answering pings and the close),
as it does for chatsvc, with the same frame and message bounds (64 KB) and the same C{Origin}
policy (any: the benchmark's clients come from no page). Each message is framed once, with
autobahn's C{prepareMessage} (server frames are not masked, so one frame's bytes serve every
connection), and those bytes are written to each other connection's transport as the message is
handled (the writes coalesced by each transport until the reactor flushes it), with
C{TCP_NODELAY} (set here: autobahn's own attempt fails, see L{RelayProtocol.connectionMade}):
what relay.py does with a line.

It listens on 127.0.0.1 only, uses the epoll reactor, and stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import cast

import relay
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet.interfaces import ITCPTransport

MAX_FRAME_BYTES = 64 * 1024
"""The longest frame and message read, as chatsvc's web door (chatsvc.web.protocol)."""


class RelayProtocol(WebSocketServerProtocol):
    """One connection: every text message it sends goes to all the others."""

    factory: RelayFactory

    def __init__(self) -> None:
        super().__init__()
        self.write: Callable[[bytes], object] | None = None

    def connectionMade(self) -> None:
        """
        No Nagle (chat is small writes that should go now). autobahn means to set it from its
        C{tcpNoDelay} option, but tries before it has copied its options from the factory, and
        the AttributeError is swallowed: without this, every write waits for the peer's ACK.
        """
        super().connectionMade()
        cast(ITCPTransport, self.transport).setTcpNoDelay(True)

    def onOpen(self) -> None:
        """The handshake is done: a member from now on."""
        self.write = cast(ITCPTransport, self.transport).write
        self.factory.join(self.write)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        """Relay a text message to every other member, framed once."""
        if isBinary:
            return
        data = self.factory.prepareMessage(payload, doNotCompress=True).payloadHybi
        mine = self.write
        for write in self.factory.writers:
            if write is not mine:
                write(data)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        """Forget this member (nobody is told)."""
        if self.write is not None:
            self.factory.leave(self.write)
            self.write = None


class RelayFactory(WebSocketServerFactory):
    """The members, kept as the write methods of their transports (the hot loop calls them)."""

    protocol = RelayProtocol  # type: ignore[assignment]
    noisy = False

    def __init__(self) -> None:
        super().__init__()
        self.writers: tuple[Callable[[bytes], object], ...] = ()
        self.setProtocolOptions(
            maxFramePayloadSize=MAX_FRAME_BYTES,
            maxMessagePayloadSize=MAX_FRAME_BYTES,
            # Thousands of clients connect at once; none is cut for being slow to finish.
            openHandshakeTimeout=0,
            perMessageCompressionAccept=lambda offers: None,
        )

    def join(self, write: Callable[[bytes], object]) -> None:
        """Add a member; the tuple is rebuilt, so a broadcast in progress is never disturbed."""
        self.writers = (*self.writers, write)

    def leave(self, write: Callable[[bytes], object]) -> None:
        """Remove a member."""
        self.writers = tuple(other for other in self.writers if other is not write)


def main(argv: list[str] | None = None) -> int:
    """Listen, print the port, serve until SIGTERM or SIGINT (as the line relay does)."""
    return relay.main(argv, RelayFactory, "The reference WebSocket relay for benchmarks.")


if __name__ == "__main__":
    sys.exit(main())
