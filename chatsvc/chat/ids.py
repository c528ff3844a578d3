"""
Ids for events: what orders the events of a room, and what the history store keeps each message
under, so that a door can ask for what came before or after an event it has seen.
"""

from __future__ import annotations

__all__ = ["EventIds", "ID_SEQUENCE_BITS"]

ID_SEQUENCE_BITS = 10
"""An id is the time in milliseconds shifted left by this many bits, plus a count within it."""


class EventIds:
    """
    Increasing integers, one per event: the event's time in milliseconds times 1024, or one
    more than the last id given if that is not more. Made from the time, ids keep increasing
    across restarts of the server (unless its clock is set back by more than it was down), and
    they fit in SQLite's rowid and in a JavaScript number (below 2**53) until the year 2248.
    """

    __slots__ = ("last",)

    def __init__(self, last: int = 0) -> None:
        """
        @param last: the largest id given so far (say, the newest stored message's).
        """
        self.last = last
        """The largest id given or seen so far."""

    def next(self, now: float) -> int:
        """A new id, larger than every id before it, for an event at C{now} (POSIX seconds)."""
        last = max(self.last + 1, int(now * 1000) << ID_SEQUENCE_BITS)
        self.last = last
        return last

    def seen(self, used: int) -> None:
        """C{used} is taken (read back from the store): every later id is larger."""
        if used > self.last:
            self.last = used
