"""
The twistd plugin's options and service: C{twistd -n chatroom --port 5051}.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog
from twisted.application import service
from twisted.internet import defer
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort, IReactorCore
from twisted.logger import ILogObserver
from twisted.python import usage
from twisted.python.components import Componentized
from twisted.python.failure import Failure

from chatsvc.core import Room
from chatsvc.logs import LOG_FORMATS, configureLogging, jsonObserverFactory
from chatsvc.protocol import DEFAULT_MAX_LINE_LENGTH, ChatFactory, describeAddress

__all__ = ["ChatService", "DEFAULT_PORT", "Options", "makeService"]

DEFAULT_PORT = 5051
MIN_LINE_LENGTH = 256

_log = structlog.get_logger("chatsvc.service")


def _port(value: str) -> int:
    port = int(value)
    if not 0 <= port <= 65535:
        raise ValueError(f"{value} is not a TCP port number")
    return port


def _lineLength(value: str) -> int:
    length = int(value)
    if length < MIN_LINE_LENGTH:
        raise ValueError(f"the line length limit must be at least {MIN_LINE_LENGTH} bytes")
    return length


class Options(usage.Options):
    """Command-line options of C{twistd chatroom}."""

    synopsis = "[--port N | --listen ENDPOINT ...] [options]"
    longdesc = (
        "A line-based chat room. Connect with `python -m chatsvc.client NICK` or `nc HOST PORT`. "
        "With neither --port nor --listen it listens on TCP port 5051 on all interfaces."
    )

    optParameters = [
        [
            "port",
            "p",
            None,
            f"TCP port to listen on, on all interfaces (default {DEFAULT_PORT}).",
            _port,
        ],
        [
            "log-format",
            None,
            "console",
            "Log format: console (twistd's text lines) or json (one JSON object per line, "
            "written where twistd writes its log: -l FILE, or stdout with -n).",
        ],
        [
            "max-line-length",
            None,
            DEFAULT_MAX_LINE_LENGTH,
            "Longest line accepted from a client, in bytes; longer lines are refused with an "
            "error and discarded.",
            _lineLength,
        ],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []

    def opt_listen(self, description: str) -> None:
        """Listen on a Twisted endpoint description, e.g. tcp:5051:interface=127.0.0.1, tcp6:5051:interface=\\:\\:1, unix:/run/chat.sock or ssl:6697:privateKey=key.pem (repeatable; --port N adds tcp:N)."""
        from twisted.internet import reactor

        try:
            serverFromString(reactor, description)
        except (ValueError, KeyError, TypeError) as error:
            raise usage.UsageError(f"invalid endpoint {description!r}: {error}")
        self["listen"].append(description)

    def postOptions(self) -> None:
        """Check the log format and work out the endpoints to listen on."""
        if self["log-format"] not in LOG_FORMATS:
            raise usage.UsageError(
                f"--log-format must be one of {', '.join(LOG_FORMATS)}, "
                f"not {self['log-format']!r}"
            )
        endpoints = list(self["listen"])
        if self["port"] is not None or not endpoints:
            port = DEFAULT_PORT if self["port"] is None else self["port"]
            endpoints.insert(0, f"tcp:{port}")
        self["endpoints"] = endpoints


class ChatService(service.Service):
    """
    Listens on every configured endpoint with one L{ChatFactory}; on stop, closes the listening
    ports and tells every member that the server is going down.
    """

    def __init__(
        self,
        reactor: IReactorCore,
        descriptions: Sequence[str],
        factory: ChatFactory,
        logObserver: ILogObserver | None = None,
    ) -> None:
        """
        @param descriptions: endpoint descriptions to listen on.
        @param logObserver: a log observer to give the twistd application, if any.
        """
        self._reactor = reactor
        self.descriptions = list(descriptions)
        self.factory = factory
        self.ports: list[IListeningPort] = []
        self._logObserver = logObserver

    def setServiceParent(self, parent: Any) -> None:
        """
        Join the application; twistd uses an L{ILogObserver} component of the application, when
        there is one, as its log observer, which is how C{--log-format json} takes effect.
        """
        if self._logObserver is not None and isinstance(parent, Componentized):
            parent.setComponent(ILogObserver, self._logObserver)
        super().setServiceParent(parent)

    def privilegedStartService(self) -> None:
        """
        Listen on every endpoint (before twistd drops privileges, so low ports work). A failure
        to listen is raised here, so that twistd stops with the error instead of running deaf.
        """
        super().privilegedStartService()
        failures: list[Failure] = []
        for description in self.descriptions:
            endpoint = serverFromString(self._reactor, description)
            listening = endpoint.listen(self.factory)
            listening.addCallback(self._listening, description)
            listening.addErrback(self._cannotListen, description, failures)
        if failures:
            failures[0].raiseException()

    def startService(self) -> None:
        """Start the service (listening happens in L{privilegedStartService})."""
        if not self.ports:
            self.privilegedStartService()
        super().startService()

    def _listening(self, port: IListeningPort, description: str) -> None:
        self.ports.append(port)
        _log.info("server_listening", endpoint=description, address=describeAddress(port.getHost()))

    def _cannotListen(self, failure: Failure, description: str, failures: list[Failure]) -> None:
        _log.error("listen_failed", endpoint=description, reason=failure.getErrorMessage())
        failures.append(failure)

    def stopService(self) -> defer.Deferred[None]:
        """Stop listening and say goodbye to every connection."""
        super().stopService()
        stopping = [defer.maybeDeferred(port.stopListening) for port in self.ports]
        self.ports = []
        for protocol in list(self.factory.connections):
            protocol.disconnect("server shutting down")
        _log.info("server_stopping", connections=self.factory.connectionCount)
        return defer.gatherResults(stopping).addCallback(lambda _: None)


def makeService(options: Options, reactor: IReactorCore | None = None) -> ChatService:
    """Build the chat service from parsed L{Options}."""
    if reactor is None:
        from twisted.internet import reactor as globalReactor

        reactor = globalReactor
    assert reactor is not None
    configureLogging()
    observer = None
    if options["log-format"] == "json":
        twistdOptions = getattr(options, "parent", None) or {}
        observer = jsonObserverFactory(
            twistdOptions.get("logfile"), bool(twistdOptions.get("nodaemon", True))
        )()
    factory = ChatFactory(Room(), maxLineLength=options["max-line-length"])
    return ChatService(reactor, options["endpoints"], factory, observer)
