"""
What a door whose connections are L{Session}s and Twisted C{LineReceiver}s at once (the line
door, the IRC door) does the same way: reading is stopped and started by C{LineReceiver}'s
pause, which stops parsing what it has buffered as well as reading the socket; a line the flood
gate held back is handled as it would have been; and an over-long line is refused without losing
the connection or the lines after it.
"""

from __future__ import annotations

from twisted.protocols.basic import LineReceiver

from chatsvc.sessions.session import Session, State

__all__ = ["LineSession"]


class LineSession(Session, LineReceiver):
    """
    A L{Session} that reads lines: the base of a line door's connections, whose class gives
    C{_handleLine(line: bytes | None)}, C{None} being a line too long to keep.
    """

    __slots__ = ("_discarding", "_leftover")

    def __init__(self) -> None:
        Session.__init__(self)
        # True while the rest of an over-long line is still arriving and must be skipped;
        # what followed an over-long line in the same read, still to be parsed.
        self._discarding = False
        self._leftover = b""

    def _handleLine(self, line: bytes | None) -> None:
        """Handle one line (L{None}: one too long, refused), when the flood limit allows."""
        raise NotImplementedError

    def dataReceived(self, data: bytes) -> None:
        """
        Feed C{data} to the line parser, skipping the rest of any over-long line and going on
        with the lines after it (L{LineReceiver} alone would stop there), gathering what is
        written meanwhile (the sessions' outbox).
        """
        if self._discarding:
            end = data.find(self.delimiter)
            if end == -1:
                return
            self._discarding = False
            data = data[end + len(self.delimiter) :]
        gatherer = self._gatherer
        if not gatherer.gathering:
            gatherer.gather()
        super().dataReceived(data)
        while self._leftover and self._state is not State.CLOSING:
            data, self._leftover = self._leftover, b""
            super().dataReceived(data)

    def lineLengthExceeded(self, line: bytes) -> None:
        """
        Refuse an over-long line but keep the connection: skip to the end of that line, keep
        what follows it for L{dataReceived}, and refuse it as a line of its own (a flood token
        spent, and C{_handleLine(None)} when it is due).
        """
        _, delimiter, rest = line.partition(self.delimiter)
        if delimiter:
            self._leftover = rest
        else:
            self._discarding = True
        if self._state is State.CLOSING:
            return
        delay = self._takeToken()
        if delay:
            self._hold(None, delay)
        else:
            self._handleLine(None)

    def _stopReading(self) -> None:
        self.pauseProducing()

    def _startReading(self) -> None:
        self.resumeProducing()

    def _reading(self) -> bool:
        return not self.paused

    def _handleHeld(self, held: object) -> None:
        assert held is None or isinstance(held, bytes)
        self._handleLine(held)
