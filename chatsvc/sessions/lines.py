"""
What a door whose connections are L{Session}s and Twisted C{LineReceiver}s at once (the line
door, the IRC door) gives the session the same way: reading is stopped and started by
C{LineReceiver}'s pause, which stops parsing what it has buffered as well as reading the
socket, and a line the flood gate held back is handled as it would have been.
"""

from __future__ import annotations

__all__ = ["LineReading"]


class LineReading:
    """
    The reading half of a line door's connection, for a class that is a L{Session} and a
    C{LineReceiver} (listed before both) with a C{_handleLine(line: bytes | None)} of its own,
    C{None} being a line too long to keep.
    """

    __slots__ = ()

    def _stopReading(self) -> None:
        self.pauseProducing()  # type: ignore[attr-defined]

    def _startReading(self) -> None:
        self.resumeProducing()  # type: ignore[attr-defined]

    def _reading(self) -> bool:
        return not self.paused  # type: ignore[attr-defined]

    def _handleHeld(self, held: object) -> None:
        assert held is None or isinstance(held, bytes)
        self._handleLine(held)  # type: ignore[attr-defined]
