"""
Passwords hashed with argon2id (argon2-cffi), on threads of their own: the core's
L{IPasswordHasher}.

A hash takes tens of milliseconds of a core on purpose, so it never runs on the reactor's
thread: a pool of as many threads as the machine has cores (at most 4) does it, and argon2-cffi
lets go of the GIL while it hashes, so the reactor goes on serving everyone else meanwhile.
"""

from __future__ import annotations

import os

import structlog
from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from argon2.profiles import CHEAPEST
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from chatsvc.chat import IPasswordHasher

__all__ = ["Argon2Hasher", "cheapHasher", "defaultHasher"]

_log = structlog.get_logger("chatsvc.accounts")


def defaultHasher() -> PasswordHasher:
    """The server's argon2id parameters (see below)."""
    # OWASP's recommendation for argon2id (19 MiB, 2 passes, 1 lane): about 26 ms a hash on
    # the machines this was measured on, so 500 members logging in at once wait seconds, not
    # minutes. The parameters are kept in each hash, so older hashes still verify after a
    # change.
    return PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1, type=Type.ID)


def cheapHasher() -> PasswordHasher:
    """argon2id at its cheapest: for tests only, where thousands of hashes must take no time."""
    return PasswordHasher.from_parameters(CHEAPEST)


@implementer(IPasswordHasher)
class Argon2Hasher:
    """
    Hashes and verifies passwords on a pool of threads (started by L{start}, stopped by
    L{stop}).
    """

    def __init__(self, hasher: PasswordHasher | None = None, threads: int | None = None) -> None:
        self._hasher = hasher if hasher is not None else defaultHasher()
        self._threads = threads if threads is not None else max(1, min(4, os.cpu_count() or 1))
        self._pool: ThreadPool | None = None
        self._reactor: IReactorFromThreads | None = None

    def start(self, reactor: IReactorFromThreads) -> None:
        """Start the threads (made when first needed)."""
        self._reactor = reactor
        self._pool = ThreadPool(0, self._threads, "chatsvc.passwords")
        self._pool.start()

    def stop(self) -> None:
        """Stop the threads, once what they are hashing is done."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.stop()

    def _inThread(self, function: object, *args: str) -> Deferred:  # type: ignore[type-arg]
        if self._pool is None or self._reactor is None:
            raise RuntimeError("the password hasher is not started")
        return deferToThreadPool(self._reactor, self._pool, function, *args)  # type: ignore[arg-type]

    def hash(self, password: str) -> Deferred[str]:
        return self._inThread(self._hasher.hash, password)

    def verify(self, passwordHash: str, password: str) -> Deferred[bool]:
        checked: Deferred[tuple[bool, str | None]] = self._inThread(
            self._verify, passwordHash, password
        )
        return checked.addCallback(_logUnreadable)

    def _verify(self, passwordHash: str, password: str) -> tuple[bool, str | None]:
        # In a thread: whether the password is right, and why the hash could not be read if
        # it could not (logged back on the reactor's thread). A hash that is not one of
        # argon2's is wrong for every password.
        try:
            return bool(self._hasher.verify(passwordHash, password)), None
        except VerifyMismatchError:
            return False, None
        except (InvalidHashError, VerificationError) as error:
            return False, str(error) or error.__class__.__name__


def _logUnreadable(result: tuple[bool, str | None]) -> bool:
    right, unreadable = result
    if unreadable is not None:
        _log.error("password_hash_unreadable", reason=unreadable)
    return right
