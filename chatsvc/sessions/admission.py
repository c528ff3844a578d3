"""
Which connections the server takes, counted across every door together: the global cap, the
per-address cap and the flood bucket an address's connections share; and closing them all on
shutdown.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime

from chatsvc.chat import Buckets, TokenBucket
from chatsvc.sessions.addresses import addressOf
from chatsvc.sessions.interfaces import ISession
from chatsvc.sessions.limits import Limits

__all__ = ["Admission"]

# The namespace these events have always been logged under.
_log = structlog.get_logger("chatsvc.protocol")


class Admission:
    """
    The open connections of every door, and the limits that count them together.
    """

    def __init__(self, clock: IReactorTime, limits: Limits) -> None:
        """
        @param clock: the source of time for the address buckets and the shutdown grace.
        @param limits: the caps, the address's flood limit and the shutdown grace.
        """
        self.clock = clock
        self.limits = limits
        self.connections: set[ISession] = set()
        """The open connections, named or not."""
        self.floodDelays = 0
        """How many times a connection's lines were delayed by the flood limit (a metric)."""
        self.cuts = 0
        """How many connections were cut for a send queue past its bound (a metric)."""
        self._perAddress: dict[str, int] = {}
        # An address's bucket is kept while it has connections, which hold it.
        self._addressBuckets: Buckets[str] = Buckets(
            limits.addressFloodRate,
            limits.addressFloodBurst,
            most=limits.maxConnections,
            inUse=self._perAddress.__contains__,
        )
        self._waitingForClose: list[Deferred[None]] = []

    @property
    def connectionCount(self) -> int:
        """The number of open connections, named or not."""
        return len(self.connections)

    def refusal(self, address: IAddress | None) -> str | None:
        """
        Why a new connection from C{address} is refused (the words to tell it), or L{None} if
        it is welcome.
        """
        host = addressOf(address) if address is not None else None
        if len(self.connections) >= self.limits.maxConnections:
            return "the server is full, try again later"
        if host is not None and self._perAddress.get(host, 0) >= self.limits.maxConnectionsPerAddress:
            return "too many connections from your address"
        return None

    def addressBucket(self, host: str | None) -> TokenBucket | None:
        """
        The flood bucket that every connection from C{host} shares (none for a connection
        without an IP address, a UNIX socket's say). An address's bucket outlives its
        connections until it has filled up again, so that reconnecting does not refill it.
        """
        if host is None:
            return None
        return self._addressBuckets.get(host, self.clock.seconds())

    def connectionOpened(self, connection: ISession) -> None:
        """Count a new connection and log it."""
        self.connections.add(connection)
        if connection.host is not None:
            self._perAddress[connection.host] = self._perAddress.get(connection.host, 0) + 1
        _log.info("connection_opened", peer=connection.peer, connections=self.connectionCount)

    def connectionClosed(self, connection: ISession) -> None:
        """Forget a closed connection and log it."""
        if connection not in self.connections:
            return
        self.connections.remove(connection)
        if connection.host is not None:
            remaining = self._perAddress.pop(connection.host) - 1
            if remaining:
                self._perAddress[connection.host] = remaining
            else:
                self._addressBuckets.forget(connection.host, self.clock.seconds())
        _log.info(
            "connection_closed",
            peer=connection.peer,
            nick=connection.nick,
            connections=self.connectionCount,
        )
        if not self.connections:
            waiting, self._waitingForClose = self._waitingForClose, []
            for deferred in waiting:
                deferred.callback(None)

    def closeAll(self, reason: str) -> Deferred[None]:
        """
        Tell every connection C{reason} and close it; connections still open after the
        shutdown grace period are cut.

        @return: fires once every connection is closed.
        """
        for connection in list(self.connections):
            connection.disconnect(reason)
        if not self.connections:
            return succeed(None)
        closed: Deferred[None] = Deferred()
        self._waitingForClose.append(closed)
        timer = self.clock.callLater(self.limits.shutdownGrace, self._cutRemaining)
        closed.addBoth(_cancelling(timer))
        return closed

    def _cutRemaining(self) -> None:
        remaining = list(self.connections)
        if remaining:
            _log.warning("connections_cut", connections=len(remaining))
        for connection in remaining:
            connection.abort()


def _cancelling(timer: IDelayedCall) -> Callable[[object], object]:
    def cancel(result: object) -> object:
        if timer.active():
            timer.cancel()
        return result

    return cancel
