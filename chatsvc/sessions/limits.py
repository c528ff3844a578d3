"""
The limits that keep one client from hurting the others: every per-connection and per-server
limit a door's connections are held to (the token bucket behind the rate limits is the core's,
L{chatsvc.chat.rate}).
"""

from __future__ import annotations

from attrs import field, frozen

__all__ = ["Limits"]


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
