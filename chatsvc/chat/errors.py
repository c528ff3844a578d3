"""
The one exception for "a member asked for something that cannot be done".

A module of its own, importing nothing, so that every part of chatsvc (the core, the name rules,
storage) can raise it without importing the others; L{chatsvc.chat} re-exports it.
"""

from __future__ import annotations

__all__ = ["ChatError", "LoginRefused", "NameInUse"]


class ChatError(Exception):
    """
    A member asked for something that cannot be done.

    The message (C{str(error)}) is written for that member and is safe to show them; front-ends
    send it back as one error line and carry on.
    """


class NameInUse(ChatError):
    """The nickname asked for is another member's (or being claimed by one)."""


class LoginRefused(ChatError):
    """
    A login was refused: the nickname is not registered, the password is wrong, the account is
    suspended, or too many logins have failed lately. A door with its own words for a failed
    login (IRC's 464 and 904) tells these from other refusals by this class.
    """
