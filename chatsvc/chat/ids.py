"""
Ids for events: what orders the events of a room, and what the history store keeps each message
under, so that a door can ask for what came before or after an event it has seen.
"""

from __future__ import annotations

__all__ = ["EventIds", "ID_SEQUENCE_BITS", "MAX_SLOTS"]

ID_SEQUENCE_BITS = 10
"""An id is the time in milliseconds shifted left by this many bits, plus a count within it."""

MAX_SLOTS = 32
"""The most id slots (nodes of a cluster giving ids at once): each takes the ids of its own
remainder modulo this, 32 a millisecond each."""


class EventIds:
    """
    Increasing integers, one per event: the event's time in milliseconds times 1024, or one
    more than the last id given if that is not more. Made from the time, ids keep increasing
    across restarts of the server (unless its clock is set back by more than it was down), and
    they fit in SQLite's rowid and in a JavaScript number (below 2**53) until the year 2248.

    In a cluster, each node gives ids from its own C{slot} of C{slots} (the ids whose
    remainder modulo C{slots} is C{slot}), so that no two nodes ever give the same id, and
    every node L{seen}s the ids of the others: the ids of a room still increase in the order
    its events reach each node, give or take events said at the same moment on two nodes.
    """

    __slots__ = ("last", "slot", "slots")

    def __init__(self, last: int = 0, slot: int = 0, slots: int = 1) -> None:
        """
        @param last: the largest id given so far (say, the newest stored message's).
        @param slot: this giver's remainder, below C{slots}.
        @param slots: how many givers share the ids (1: this one alone).
        """
        if not 0 <= slot < slots <= MAX_SLOTS:
            raise ValueError(f"slot {slot} of {slots}")
        self.last = last
        """The largest id given or seen so far."""
        self.slot = slot
        self.slots = slots

    def next(self, now: float) -> int:
        """A new id, larger than every id before it, for an event at C{now} (POSIX seconds)."""
        least = max(self.last + 1, int(now * 1000) << ID_SEQUENCE_BITS)
        slots = self.slots
        last = least + (self.slot - least) % slots if slots > 1 else least
        self.last = last
        return last

    def seen(self, used: int) -> None:
        """C{used} is taken (read back from the store, or given by another node): every later
        id is larger."""
        if used > self.last:
            self.last = used
