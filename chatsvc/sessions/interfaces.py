"""
What the sessions layer asks of a connection, whatever its door: to be counted and closed by the
L{chatsvc.sessions.admission.Admission}, and written to by the L{chatsvc.sessions.outbox.Outbox}.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface

__all__ = ["ISession"]


class ISession(Interface):
    """One connection of any door."""

    peer = Attribute("A short, readable form of the peer's address, for logs.")
    host = Attribute(
        "The address the per-address limits count the connection under (see addressOf), or "
        "None for a peer without an IP address."
    )
    nick = Attribute("The member's nickname once it has one, else None; for logs.")

    def flush() -> None:
        """Write, in one write, what has been gathered for this connection."""

    def disconnect(reason: str) -> None:
        """Tell the peer C{reason}, in the door's own words, and close the connection."""

    def abort() -> None:
        """Cut the connection at once, whatever is still unsent."""
