#!/usr/bin/env python3
"""
The thinnest WebSocket relay on what chatsvc's browser door is built on (twisted.web's site for
the opening handshake, chatsvc.web.websocket and wsproto for the frames, Twisted's epoll
reactor): the reference ceiling that benchmarks/fanout.py measures the web door against
(C{--door web}), in the same run and on the same machine, as relay.py is for the line door.

    python benchmarks/wsrelay.py --port 0        # prints the port it listens on, then serves

It accepts WebSocket connections at C{/ws}, and writes every text message it receives to every
other open connection, as it came; nothing else. There is no hello, no nickname, no join notice,
no rooms, no limits, no validation of the JSON, no pings, no logging per connection or per
message. What every WebSocket server must do is done as it is for chatsvc: the opening
handshake, reading frames (unmasking them, checking their UTF-8, answering pings and the close),
with the same message bound (64 KB), and any C{Origin} (the benchmark's clients come from no
page). Each message is framed once (server frames are not masked, so one frame's bytes serve
every connection), and those bytes are written to each other connection's transport as the
message is handled (the writes coalesced by each transport until the reactor flushes it), with
C{TCP_NODELAY}: what relay.py does with a line.

It listens on 127.0.0.1 only, uses the epoll reactor, and stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import cast

import relay
from twisted.internet.interfaces import ITCPTransport
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from chatsvc.web.websocket import WebSocketProtocol, WebSocketResource, frame


class RelayProtocol(WebSocketProtocol):
    """One connection: every text message it sends goes to all the others."""

    def __init__(self, members: Members) -> None:
        self.members = members
        self.write: Callable[[bytes], object] | None = None

    def connectionMade(self) -> None:
        """The handshake is done: a member from now on, written to with no Nagle."""
        super().connectionMade()
        transport = cast(ITCPTransport, self.transport)
        transport.setTcpNoDelay(True)
        self.write = transport.write
        self.members.join(self.write)

    def textReceived(self, text: str) -> None:
        """Relay a text message to every other member, framed once."""
        data = frame(text.encode("utf-8"))
        mine = self.write
        for write in self.members.writers:
            if write is not mine:
                write(data)

    def connectionLost(self, reason: object = None) -> None:
        """Forget this member (nobody is told)."""
        if self.write is not None:
            self.members.leave(self.write)
            self.write = None


class Members:
    """
    The members, kept as the write methods of their transports (the hot loop calls them), and
    the acceptor of every WebSocket opened.
    """

    def __init__(self) -> None:
        self.writers: tuple[Callable[[bytes], object], ...] = ()

    def acceptWebSocket(self, request: Request) -> RelayProtocol:
        """Any handshake: a new member."""
        return RelayProtocol(self)

    def join(self, write: Callable[[bytes], object]) -> None:
        """Add a member; the tuple is rebuilt, so a broadcast in progress is never disturbed."""
        self.writers = (*self.writers, write)

    def leave(self, write: Callable[[bytes], object]) -> None:
        """Remove a member."""
        self.writers = tuple(other for other in self.writers if other is not write)


def makeSite() -> Site:
    """The relay's site: its WebSocket at C{/ws}, and nothing else."""
    root = Resource()
    root.putChild(b"ws", WebSocketResource(Members()))
    site = Site(root)
    site.noisy = False
    return site


def main(argv: list[str] | None = None) -> int:
    """Listen, print the port, serve until SIGTERM or SIGINT (as the line relay does)."""
    return relay.main(argv, makeSite, "The reference WebSocket relay for benchmarks.")


if __name__ == "__main__":
    sys.exit(main())
