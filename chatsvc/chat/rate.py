"""
The token bucket behind every rate limit: the flood limits of connections and addresses, and the
budgets for creating rooms. Plain Python: time is passed in, never read here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["Buckets", "MAX_DEBT", "Throttle", "TokenBucket"]

_Owner = TypeVar("_Owner")

MAX_DEBT = 60.0
"""The most a bucket can be in debt, in seconds of its rate: what one costly reply can cost."""


class TokenBucket:
    """
    A token bucket: up to C{burst} lines at once, then C{rate} lines per second.

    Chosen over a fixed window because it lets a person paste a few lines at once, yet holds a
    client that keeps sending to the rate exactly, with no window edges to game.
    """

    __slots__ = ("rate", "burst", "_tokens", "_updated")  # one per connection

    def __init__(self, rate: float, burst: int, now: float) -> None:
        """
        @param rate: tokens added per second.
        @param burst: the most tokens the bucket holds; it starts full.
        @param now: the current time, in seconds.
        """
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._updated = now

    def wait(self, now: float) -> float:
        """
        How long until a token can be spent: C{0.0} if one can be now. Spends nothing.
        """
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now
        # The tolerance keeps float rounding from refusing a token exactly when it is due.
        if self._tokens >= 1 - 1e-9:
            return 0.0
        return (1 - self._tokens) / self.rate

    def spend(self, tokens: float = 1.0) -> None:
        """
        Spend C{tokens}, as of the last L{wait} or L{take}. The bucket may go into debt (a
        reply that cost more than one line), by at most L{MAX_DEBT} seconds of its rate: later
        lines then wait until it is paid off.
        """
        self._tokens = max(self._tokens - tokens, -MAX_DEBT * self.rate)

    def take(self, now: float) -> float:
        """
        Spend a token if there is one.

        @return: C{0.0} if a token was spent, else how many seconds until there is one (and
            nothing was spent).
        """
        delay = self.wait(now)
        if not delay:
            self.spend()
        return delay

    def full(self, now: float) -> bool:
        """Whether the bucket would be full at C{now}: nothing remembered of its past use."""
        return self._tokens + (now - self._updated) * self.rate >= self.burst


class Buckets(Generic[_Owner]):
    """
    A token bucket for each owner (a member, an address), made full on first use and forgotten
    once it has filled up again: a full bucket is just what a new one would be, so forgetting it
    changes nothing but the memory it took. Owners that are C{inUse} keep theirs even when full,
    for those who hold a reference to it (a connection holds its address's).
    """

    __slots__ = ("rate", "burst", "most", "_inUse", "_buckets")

    def __init__(
        self,
        rate: float,
        burst: int,
        most: int,
        inUse: Callable[[_Owner], bool] = lambda owner: False,
    ) -> None:
        """
        @param rate: tokens added per second to each bucket.
        @param burst: the most tokens each holds; each starts full.
        @param most: how many buckets may be kept before those full again are forgotten.
        @param inUse: whether an owner's bucket must be kept, full or not.
        """
        self.rate = rate
        self.burst = burst
        self.most = most
        self._inUse = inUse
        self._buckets: dict[_Owner, TokenBucket] = {}

    def __contains__(self, owner: object) -> bool:
        """Whether C{owner} has a bucket kept."""
        return owner in self._buckets

    def __len__(self) -> int:
        """How many buckets are kept."""
        return len(self._buckets)

    def get(self, owner: _Owner, now: float) -> TokenBucket:
        """C{owner}'s bucket: the one kept, or a new, full one."""
        bucket = self._buckets.get(owner)
        if bucket is None:
            if len(self._buckets) >= self.most:
                for known, old in list(self._buckets.items()):
                    if old.full(now) and not self._inUse(known):
                        del self._buckets[known]
            bucket = self._buckets[owner] = TokenBucket(self.rate, self.burst, now)
        return bucket

    def forget(self, owner: _Owner, now: float) -> None:
        """Forget C{owner}'s bucket if it has filled up again (and is not in use)."""
        bucket = self._buckets.get(owner)
        if bucket is not None and bucket.full(now) and not self._inUse(owner):
            del self._buckets[owner]

    def discard(self, owner: _Owner) -> None:
        """Forget C{owner}'s bucket, full or not (its owner is gone for good)."""
        self._buckets.pop(owner, None)


class Throttle:
    """Says yes at most once every C{interval} seconds: for log events that could repeat."""

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._next = -math.inf

    def ready(self, now: float) -> bool:
        """Whether to say it at C{now}: yes, unless it was said less than C{interval} ago."""
        if now < self._next:
            return False
        self._next = now + self._interval
        return True
