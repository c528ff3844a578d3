"""
The one exception for "a member asked for something that cannot be done".

A module of its own, importing nothing, so that every part of chatsvc (the core, the name rules,
storage) can raise it without importing the others; L{chatsvc.chat} re-exports it.
"""

from __future__ import annotations

__all__ = ["ChatError"]


class ChatError(Exception):
    """
    A member asked for something that cannot be done.

    The message (C{str(error)}) is written for that member and is safe to show them; front-ends
    send it back as one error line and carry on.
    """
