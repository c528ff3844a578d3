"""
One timer that keeps every connection of a door honest: a peer silent for a whole interval is
pinged, one still silent after another is cut. A peer whose network went away is noticed within
two to three intervals, and a proxy between never sees a connection idle for longer than two.
"""

from __future__ import annotations

from typing import Protocol as TypingProtocol

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall

__all__ = ["KeepAlive", "Pingable"]


class Pingable(TypingProtocol):
    """
    What L{KeepAlive} needs of a connection: whether its peer was heard from since the last
    look (set by the connection on every read), whether it has been pinged since, how to ping
    it, and what to do when it did not answer.
    """

    _heard: bool
    _pinged: bool

    def ping(self) -> None: ...

    def pingTimedOut(self) -> None: ...


class KeepAlive:
    """
    Pings the open connections that have been silent for a whole C{interval}, and cuts those
    still silent after another (C{pingTimedOut}). One timer serves every connection, running
    only while there are some.
    """

    def __init__(self, clock: IReactorTime, interval: float) -> None:
        self._clock = clock
        self.interval = interval
        self._open: set[Pingable] = set()
        self._call: LoopingCall | None = None

    def opened(self, protocol: Pingable) -> None:
        """Watch C{protocol}, from now until L{closed}."""
        self._open.add(protocol)
        if self._call is None and self.interval > 0:
            call = self._call = LoopingCall(self._sweep)
            call.clock = self._clock
            call.start(self.interval, now=False)

    def closed(self, protocol: Pingable) -> None:
        """Stop watching C{protocol}."""
        self._open.discard(protocol)
        if not self._open and self._call is not None:
            self._call.stop()
            self._call = None

    def __len__(self) -> int:
        return len(self._open)

    def _sweep(self) -> None:
        for protocol in list(self._open):
            if protocol._heard:
                protocol._heard = protocol._pinged = False
            elif not protocol._pinged:
                protocol._pinged = True
                protocol.ping()
            else:
                self._open.discard(protocol)
                protocol.pingTimedOut()
        if not self._open and self._call is not None:
            self._call.stop()
            self._call = None
