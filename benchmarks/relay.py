#!/usr/bin/env python3
"""
The thinnest Twisted chat relay that speaks chatsvc's handshake: the reference ceiling that
benchmarks/fanout.py measures chatsvc against, in the same run and on the same machine.

    python benchmarks/relay.py --port 0          # prints the port it listens on, then serves

It does what a chat server cannot do without, and nothing else:

    S: GET_NAME                        C: <nick>            (the first line is the nickname)
    S: <nick> connected to server!     everyone else sees   <nick> joined!
    C: hello                           everyone else sees   <nick>: hello

There are no rooms, no limits, no validation, no history and no logging per connection or per
line; a line is written to every other connection as it is parsed (Twisted's C{LineReceiver}, the
writes coalesced by each transport until the reactor flushes it), with C{TCP_NODELAY}. Lines end
in C{\\r\\n}, as chatsvc's do, so that a delivered chat line has the same bytes from both servers.

It listens on 127.0.0.1 only, uses the epoll reactor, and stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, cast

from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import (
    IAddress,
    IReactorCore,
    IReactorTCP,
    ITCPTransport,
)
from twisted.internet.protocol import ServerFactory, connectionDone
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure

GET_NAME = b"GET_NAME\r\n"
CONNECTED = b" connected to server!\r\n"
JOINED = b" joined!\r\n"


class RelayProtocol(LineReceiver):
    """One connection: the first line names it, every later line goes to all the others."""

    delimiter = b"\n"
    MAX_LENGTH = 1 << 20
    factory: RelayFactory

    def __init__(self) -> None:
        self.nick: bytes | None = None
        self.prefix = b""
        self.write: Callable[[bytes], object] | None = None

    def connectionMade(self) -> None:
        """No Nagle (chat is small writes that should go now), then ask for a nickname."""
        transport = cast(ITCPTransport, self.transport)
        transport.setTcpNoDelay(True)
        self.write = transport.write
        transport.write(GET_NAME)

    def lineReceived(self, line: bytes) -> None:
        """The nickname first; after it, relay the line to every other member."""
        if line[-1:] == b"\r":
            line = line[:-1]
        if self.nick is not None:
            data = self.prefix + line + b"\r\n"
            mine = self.write
            for write in self.factory.writers:
                if write is not mine:
                    write(data)
            return
        if not line:
            return
        assert self.write is not None
        self.nick = line
        self.prefix = line + b": "
        self.write(line + CONNECTED)
        joined = line + JOINED
        for write in self.factory.writers:
            write(joined)
        self.factory.join(self.write)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Forget this member (nobody is told: the relay has no leave notices)."""
        if self.nick is not None and self.write is not None:
            self.factory.leave(self.write)


class RelayFactory(ServerFactory):
    """The members, kept as the write methods of their transports (the hot loop calls them)."""

    noisy = False

    def __init__(self) -> None:
        self.writers: tuple[Callable[[bytes], object], ...] = ()

    def join(self, write: Callable[[bytes], object]) -> None:
        """Add a member; the tuple is rebuilt, so a broadcast in progress is never disturbed."""
        self.writers = (*self.writers, write)

    def leave(self, write: Callable[[bytes], object]) -> None:
        """Remove a member."""
        self.writers = tuple(other for other in self.writers if other is not write)

    def buildProtocol(self, addr: IAddress | None) -> RelayProtocol:  # type: ignore[override]
        """A new connection."""
        protocol = RelayProtocol()
        protocol.factory = self
        return protocol


def installEpoll() -> None:
    """Use the epoll reactor (the benchmark compares servers on the same reactor)."""
    from twisted.internet import epollreactor

    epollreactor.install()


def main(
    argv: list[str] | None = None,
    makeFactory: Callable[[], ServerFactory[Any]] | None = None,
    description: str = "The reference chat relay for benchmarks.",
) -> int:
    """
    Listen, print the port, serve until SIGTERM or SIGINT.

    @param makeFactory: what serves the connections (L{RelayFactory} by default; the WebSocket
        relay gives its own).
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, default=0, help="TCP port (default 0: a free one)")
    parser.add_argument(
        "--interface", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    parser.add_argument(
        "--backlog", type=int, default=50, help="listen backlog (default 50, as Twisted's)"
    )
    settings = parser.parse_args(sys.argv[1:] if argv is None else argv)
    installEpoll()
    from twisted.internet import reactor as globalReactor

    reactor = cast("_Reactor", globalReactor)
    factory = RelayFactory() if makeFactory is None else makeFactory()
    port = reactor.listenTCP(
        settings.port, factory, backlog=settings.backlog, interface=settings.interface
    )
    print(cast(IPv4Address, port.getHost()).port, flush=True)
    reactor.run()
    return 0


class _Reactor(IReactorCore, IReactorTCP):
    """What the relay needs of the reactor."""


if __name__ == "__main__":
    sys.exit(main())
