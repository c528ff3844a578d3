"""
The line protocol's wire vocabulary, shared by the server (L{chatsvc.line.protocol}) and the bundled
client (L{chatsvc.client}): the words both ends must read the same way.

This module imports nothing else from chatsvc, so that the client can use it without the server.
"""

from __future__ import annotations

__all__ = [
    "AWAY_MARK",
    "GET_NAME",
    "GET_PASSWORD",
    "QUIT_WORDS",
    "endsSession",
    "nicknameInUse",
    "removalReason",
    "removedBy",
]

GET_NAME = "GET_NAME"
"""The server's first line, and its question again after a refused nickname."""

GET_PASSWORD = "GET_PASSWORD"
"""The server's question after a registered nickname: the next line is its password."""

QUIT_WORDS = frozenset({"q", "exit", "close", "disconnect"})
"""Lines that end a session, kept from the original chat room; never valid as nicknames."""

AWAY_MARK = " (away)"
"""What follows the name of a member who is away in member lists: C{*** Members (2): Alice,
Bob (away)}. A nickname has no spaces, so a name so marked is never a nickname itself."""


def endsSession(line: str) -> bool:
    """
    Whether the server takes C{line} as the member leaving.

    C{line} is the text the server decodes, after its line ending (C{"\\n"}, and one C{"\\r"}
    before it) is removed. It ends the session when, stripped of surrounding whitespace, it is
    one of L{QUIT_WORDS}, or when it is the C{/quit} command: C{/quit} alone or C{/quit } and a
    reason, the command's name in any case. A command is only a command from the line's very
    first character: C{" /quit"} is chat.
    """
    if line.strip() in QUIT_WORDS:
        return True
    return line.startswith("/") and line[1:].partition(" ")[0].lower() == "quit"


def removalReason(by: str, reason: str | None) -> str:
    """
    The reason in C{*** Disconnected: <reason>} when a moderator took the member off the
    server (C{/kill}, C{/suspend}): C{by NICK}, and the moderator's reason in brackets.
    """
    return f"by {by}" + (f" ({reason})" if reason else "")


def removedBy(reason: str) -> bool:
    """
    Whether a C{*** Disconnected: <reason>} is a moderator's (L{removalReason}): the bundled
    client does not connect again by itself after one.
    """
    return reason.startswith("by ")


_IN_USE = "is already in use"
"""The core's words for a nickname someone else holds (C{chatsvc.chat.hub})."""


def nicknameInUse(error: str) -> bool:
    """Whether the C{*** Error: <error>} refusing a nickname is that someone holds it."""
    return _IN_USE in error
