"""
Where the cluster's Redis is, written as a URL, and a connection to it.

L{parseRedisUrl} reads the URLs Redis clients share (those of redis-py, redis-cli's C{-u} and
the IANA's provisional C{redis} scheme)::

    redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]      plain TCP
    rediss://[[USER]:PASSWORD@]HOST[:PORT][/DB]     TLS

C{PORT} is 6379 unless given, C{DB} 0; the user name and password are percent-decoded
(C{%40} for an C{@}, C{%2F} for a C{/}); an IPv6 address is written in brackets
(C{redis://[::1]:6379/0}). Anything else (another scheme, a query string, a user name without
a password) is refused with a L{ValueError} that says what is wrong, never repeating the
password.

L{connectRedis} connects txredisapi through an endpoint (L{HostnameEndpoint}, wrapped in TLS
for C{rediss}) with C{factory.startConnecting(endpoint)}, the one way txredisapi 1.6 supports,
and hands back its connection handler: commands made on it while it is connected are written
at once, in the order they are made, on its one connection; while the connection is lost it
reconnects (unless told not to), backing off from 1 to 10 seconds. Its replies are never
converted to numbers (txredisapi's own C{Connection} turns C{"007"} into C{7}), and bulk
strings come back as L{str} when they are UTF-8, as L{bytes} otherwise.

txredisapi schedules some of its work on the global reactor whatever it is given: pass that
reactor (the server's and trial's are).
"""

from __future__ import annotations

from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import txredisapi  # type: ignore[import-untyped]
from attrs import field, frozen
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IDelayedCall, IOpenSSLClientConnectionCreator, IReactorTime
from twisted.internet.ssl import optionsForClientTLS
from twisted.python.failure import Failure

__all__ = [
    "DEFAULT_PORT",
    "RedisAddress",
    "RedisCommands",
    "RedisConnection",
    "connectRedis",
    "parseRedisUrl",
]

DEFAULT_PORT = 6379
"""Redis's port, when a URL names none."""

CONNECT_TIMEOUT = 10.0
"""Seconds L{connectRedis} waits for a first usable connection by default."""

_SCHEMES = {"redis": False, "rediss": True}
"""The schemes understood, and whether each means TLS."""


class RedisCommands(Protocol):
    """
    What the stores need of a txredisapi connection (its handler, or one of its protocols):
    L{execute_command}, which writes the command at once when connected and returns a
    L{Deferred} of its reply.
    """

    def execute_command(self, *args: Any, **kwargs: Any) -> Deferred[Any]:
        """Send one command (C{"GET", "key"}); its reply, or a failure for an error reply."""


class RedisConnection(RedisCommands, Protocol):
    """A connection handler, as L{connectRedis} gives: L{RedisCommands}, and closing."""

    def disconnect(self) -> Deferred[Any]:
        """Stop reconnecting and close the connection; fires once it is closed."""


@frozen
class RedisAddress:
    """A Redis server, as a URL names it (see L{parseRedisUrl})."""

    host: str
    """A host name, or an IP address (an IPv6 one without its brackets)."""
    port: int = DEFAULT_PORT
    db: int = 0
    """The database number, selected on every connection."""
    password: str | None = field(default=None, repr=False)
    """Sent with C{AUTH} on every connection; never shown (not in C{repr} nor L{__str__})."""
    username: str | None = None
    """The ACL user (Redis 6 and later) the password is for; L{None}: the C{default} user."""
    tls: bool = False
    """Whether to speak TLS (C{rediss://})."""

    def __str__(self) -> str:
        """The URL, with C{***} for the password: for logs and messages."""
        scheme = "rediss" if self.tls else "redis"
        credentials = ""
        if self.password is not None:
            credentials = f"{self.username or ''}:***@"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{credentials}{host}:{self.port}/{self.db}"


def _shown(url: str) -> str:
    """C{url} with whatever stands before an C{@} in its authority hidden: for error messages."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        return url
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = "***@" + authority.rpartition("@")[2]
    return f"{scheme}{separator}{authority}{slash}{path}"


def parseRedisUrl(url: str) -> RedisAddress:
    """
    The server a C{redis://} or C{rediss://} URL names (see the module's description).

    @raise ValueError: if C{url} is not such a URL; the message says why, with the password
        (if any) left out.
    """
    shown = _shown(url)
    try:
        parts = urlsplit(url)
    except ValueError as error:  # an unbalanced [ in the host, say
        raise ValueError(f"{shown!r} is not a Redis URL: {error}") from None
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise ValueError(
            f"{shown!r} is not a Redis URL: it must start with redis:// (or rediss:// for TLS), "
            f"as in redis://127.0.0.1:6379/0"
        )
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise ValueError(f"{shown!r}: a Redis URL here takes no query string or fragment")
    host = parts.hostname
    if not host:
        raise ValueError(f"{shown!r} names no host (write redis://HOST:PORT/DB)")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{shown!r}: the port must be a number from 1 to 65535") from None
    if port is None:
        if parts.netloc.endswith(":"):
            raise ValueError(f"{shown!r}: a ':' with no port after it")
        port = DEFAULT_PORT
    elif port == 0:
        raise ValueError(f"{shown!r}: the port must be a number from 1 to 65535")
    path = parts.path
    if path in ("", "/"):
        db = 0
    else:
        number = path[1:]
        if not (number.isascii() and number.isdigit()):
            raise ValueError(
                f"{shown!r}: the path must be the database's number (/0, /1, ...), not {path!r}"
            )
        db = int(number)
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if password is None and username is not None:
        raise ValueError(
            f"{shown!r}: a user name without a password; write redis://:PASSWORD@HOST for the "
            f"default user's password, or redis://USER:PASSWORD@HOST"
        )
    return RedisAddress(host, port, db, password, username, _SCHEMES[scheme])


def connectRedis(
    reactor: IReactorTime,
    address: RedisAddress,
    *,
    reconnect: bool = True,
    timeout: float | None = CONNECT_TIMEOUT,
    replyTimeout: float | None = None,
    tlsOptions: IOpenSSLClientConnectionCreator | None = None,
) -> Deferred[RedisConnection]:
    """
    Connect to the Redis at C{address} with txredisapi (one connection; see the module's
    description), authenticating and selecting its database on every connection.

    @param reactor: the reactor to connect with and time out on (the global one: see the
        module's description); an L{IReactorTCP} too.
    @param reconnect: reconnect whenever the connection is lost (a server); L{False}: a lost
        connection stays lost, and a first attempt that fails fails the result (a tool).
    @param timeout: seconds to wait for the first usable connection (each attempt's TCP
        connect is bounded by it too); then the attempts stop and the result fails with
        L{ConnectionError}. L{None}: wait as long as it takes (with C{reconnect}, for ever).
    @param replyTimeout: seconds a command may wait for its reply before it fails and the
        connection is dropped (and remade, with C{reconnect}); L{None}: no limit.
    @param tlsOptions: for C{rediss}, how to check the server's certificate; by default
        against the system's trusted authorities, for C{address.host}.
    @return: a L{Deferred} that fires with txredisapi's connection handler once connected,
        or fails with L{ConnectionError} (refused, unreachable, a wrong password or database,
        timed out).
    """
    factory = txredisapi.RedisFactory(
        f"{address.host}:{address.port}",
        address.db,
        1,
        isLazy=False,
        handler=txredisapi.ConnectionHandler,
        charset="utf-8",
        password=address.password,
        replyTimeout=replyTimeout,
        convertNumbers=False,
        username=address.username,
    )
    factory.reconnect = reconnect
    endpoint: Any = HostnameEndpoint(reactor, address.host, address.port, timeout=timeout or 30)
    if address.tls:
        endpoint = wrapClientTLS(
            tlsOptions if tlsOptions is not None else optionsForClientTLS(address.host),
            endpoint,
        )
    timer: IDelayedCall | None = None
    stopped = False

    def stop(error: Exception | None) -> None:
        # Give up, once: no more attempts, and a connection that turns up after all is closed
        # (txredisapi closes one that completes after disconnect()).
        nonlocal timer, stopped
        if timer is not None and timer.active():
            timer.cancel()
        timer = None
        if not stopped:
            stopped = True
            factory.disconnect().addErrback(lambda failure: None)
        if error is not None and not result.called:
            result.errback(error)

    # Cancelled: the attempts stop, and the result fails with CancelledError.
    result: Deferred[RedisConnection] = Deferred(lambda cancelled: stop(None))

    def connected(handler: RedisConnection) -> None:
        nonlocal timer
        if timer is not None and timer.active():
            timer.cancel()
        timer = None
        if result.called:
            handler.disconnect()
        else:
            result.callback(handler)

    def failed(failure: Failure) -> None:
        # txredisapi reports every failure as a ValueError("Redis error: could not ...").
        stop(ConnectionError(f"cannot connect to {address}: {failure.getErrorMessage()}"))

    factory.deferred.addCallbacks(connected, failed)
    if timeout is not None:
        timer = reactor.callLater(
            timeout,
            lambda: stop(ConnectionError(f"no connection to {address} within {timeout:g} s")),
        )
    factory.startConnecting(endpoint)
    return result
