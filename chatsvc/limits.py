"""
The limits that keep one client from hurting the others, and the token bucket behind the flood
limit. Plain Python, like the core: time is passed in, never read here.
"""

from __future__ import annotations

from attrs import field, frozen

__all__ = ["Limits", "MAX_DEBT", "TokenBucket"]

MAX_DEBT = 60.0
"""The most a bucket can be in debt, in seconds of its rate: what one costly reply can cost."""


def _positive(instance: object, attribute: object, value: float) -> None:
    if value <= 0:
        raise ValueError(f"{getattr(attribute, 'name', 'value')} must be positive, not {value}")


@frozen
class Limits:
    """
    Every per-connection and per-server limit, with the defaults a public server should run with.
    Each one is a twistd option (see L{chatsvc.tap}) and a row in docs/security.md.
    """

    maxLineLength: int = field(default=4096, validator=_positive)
    """Longest line accepted from a client, in bytes (without its line ending)."""

    floodRate: float = field(default=5.0, validator=_positive)
    """Lines per second a connection may send, sustained."""

    floodBurst: int = field(default=20, validator=_positive)
    """Lines a connection may send at once (a paste) before the rate applies."""

    addressFloodRate: float = field(default=20.0, validator=_positive)
    """Lines per second all the connections from one IP address may send together, sustained."""

    addressFloodBurst: int = field(default=80, validator=_positive)
    """Lines all the connections from one IP address may send at once."""

    maxSendQueue: int = field(default=1024 * 1024, validator=_positive)
    """Bytes of output that may wait in the server for one member (what the kernel's socket
    buffer already holds aside) before the member is disconnected as not reading: every byte
    written and not yet taken by the kernel counts. The default, 1 MiB, holds at once the
    bursts of three addresses sending at their joint flood limit, each line as long as it can
    be once made safe to show (docs/security.md has the arithmetic), so a member who reads is
    never cut by a busy room."""

    nameTimeout: float = field(default=60.0, validator=_positive)
    """Seconds a new connection has to choose a nickname."""

    maxConnections: int = field(default=1000, validator=_positive)
    """Open connections the server accepts in all."""

    maxConnectionsPerAddress: int = field(default=50, validator=_positive)
    """Open connections the server accepts from one IP address."""

    keepAliveIdle: int = field(default=60, validator=_positive)
    """Seconds of silence before TCP keepalive probes a peer; a dead peer is dropped about a
    minute after that."""

    shutdownGrace: float = field(default=5.0, validator=_positive)
    """Seconds a stopping server waits for connections to close before cutting them."""


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
