"""
The running server as a tree of Twisted services: the history, the accounts, the sessions of
every door, and one listening service for each door and endpoint. L{ChatService} starts them in
that order and stops them in the reverse one, each stop done before the next begins:

    start: (cluster link) ─► history read ─► accounts read ─► sessions ─► every door listening
           ─► history written in the background
    stop:  every door stops listening ─► every session told and closed ─► password threads
           stopped ─► history written, closed ─► (cluster goodbye)

so that nobody arrives once the goodbyes have begun, and every message said before the last
connection closed is on disk before the process exits.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable
from typing import Any

import structlog
from attrs import frozen
from twisted.application import service
from twisted.internet import defer
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IReactorCore
from twisted.logger import ILogObserver
from twisted.python.components import Componentized
from twisted.python.failure import Failure

from chatsvc.chat import Hub, StoreError
from chatsvc.storage.passwords import Argon2Hasher
from chatsvc.sessions.addresses import describeAddress
from chatsvc.sessions.admission import Admission

__all__ = [
    "AccountsService",
    "ChatService",
    "Door",
    "HistoryService",
    "ListeningService",
    "SessionsService",
    "StartupFailed",
]

SHUTDOWN_REASON = "server shutting down"
"""What every member is told when the server stops."""

_log = structlog.get_logger("chatsvc.service")


class StartupFailed(SystemExit, Exception):
    """
    The server cannot start, for a reason already logged as one clear event
    (C{history_open_failed}, C{listen_failed}): twistd is to exit with status 1, and no
    traceback, since there is no bug to show.

    twistd catches no exception from starting the application (a L{usage.UsageError}
    raised there is printed with its traceback too), and Python prints a traceback for
    every exception left uncaught except L{SystemExit}. This one is both: as an
    L{Exception}, twistd's own handler sees it first, removes its PID file and, when
    daemonized, passes the message to the waiting parent, which prints it and exits 1;
    as a L{SystemExit} with code 1, it then ends the process quietly.
    """

    def __init__(self, message: str) -> None:
        """
        @param message: why the server cannot start, naming the file or endpoint.
        """
        super().__init__(message)
        self.code = 1


@frozen
class Door:
    """One way in: a door's name (C{line}), its protocol factory, and the endpoints it listens on."""

    name: str
    factory: IProtocolFactory
    endpoints: tuple[str, ...]


class HistoryService(service.Service):
    """
    The rooms' history: read into the hub before any door listens, written by the store in the
    background while the server runs, and written out and closed last of all.
    """

    name = "history"

    def __init__(self, reactor: IReactorCore, hub: Hub, readAtStart: bool = True) -> None:
        """
        @param readAtStart: whether to read the history before listening; not in a cluster,
            whose node reads it once it has joined (L{chatsvc.cluster}).
        """
        self._reactor = reactor
        self.hub = hub
        self._read = not readAtStart

    def privilegedStartService(self) -> None:
        """
        Read the rooms' recent history, once, while nothing is served yet.

        @raise StartupFailed: if the store cannot be read (logged as C{history_open_failed}).
        """
        super().privilegedStartService()
        if self._read:
            return
        hub = self.hub
        try:
            history = hub.store.recent(hub.historyKept)
        except StoreError as error:
            _log.error("history_open_failed", reason=str(error))
            raise StartupFailed(str(error)) from error
        except Exception as error:
            # Not a database this server cannot use, but a mistake: worth its traceback.
            _log.error("history_open_failed", reason=str(error))
            raise
        hub.restore(history)
        self._read = True

    def startService(self) -> None:
        """Start writing in the background: the store's own thread."""
        super().startService()
        self.hub.store.start(self._reactor)

    def stopService(self) -> defer.Deferred[None]:
        """Write what is still queued, then close the store."""
        super().stopService()
        return self.hub.store.stop()


class AccountsService(service.Service):
    """
    The accounts, and the roles, room settings and sanctions of moderation: read into the hub
    before any door listens (so that every registered nickname is reserved, and every ban in
    force, from the first connection on), and the threads that hash passwords,
    started with the server and stopped once every session has closed.
    """

    name = "accounts"

    def __init__(
        self, reactor: IReactorCore, hub: Hub, hasher: Argon2Hasher | None, readAtStart: bool = True
    ) -> None:
        """
        @param readAtStart: whether to read them before listening; not in a cluster, whose
            node reads them each time it joins (L{chatsvc.cluster}).
        """
        self._reactor = reactor
        self.hub = hub
        self.hasher = hasher
        self._read = not readAtStart

    def privilegedStartService(self) -> None:
        """
        Read the accounts, once, while nothing is served yet.

        @raise StartupFailed: if they cannot be read (logged as C{accounts_open_failed}).
        """
        super().privilegedStartService()
        accounts = self.hub.accounts
        if self._read or accounts is None:
            return
        for load in (accounts.load, self.hub.moderation.load, self._topics):
            results: list[object] = []
            load().addBoth(results.append)
            [result] = results  # the stores read at startup answer at once
            if isinstance(result, Failure):
                reason = result.getErrorMessage()
                _log.error("accounts_open_failed", reason=reason)
                if result.check(StoreError) is None:
                    result.raiseException()
                raise StartupFailed(reason)
        _log.info(
            "accounts_loaded",
            accounts=len(accounts),
            admins=len(self.hub.moderation.adminKeys),
            registration=accounts.registration,
            guests=accounts.guests,
        )
        self._read = True

    def _topics(self) -> defer.Deferred[None]:
        self.hub.restoreTopics()
        return defer.succeed(None)

    def startService(self) -> None:
        """Start the threads that hash passwords."""
        super().startService()
        if self.hasher is not None:
            self.hasher.start(self._reactor)  # type: ignore[arg-type]

    def stopService(self) -> defer.Deferred[None]:
        """Stop them: every session is closed by now, and nothing is asked of them any more."""
        super().stopService()
        if self.hasher is not None:
            self.hasher.stop()
        return defer.succeed(None)


class SessionsService(service.Service):
    """The connections of every door: on stop, each is told why and closed."""

    name = "sessions"

    def __init__(self, admission: Admission) -> None:
        self.admission = admission

    def stopService(self) -> defer.Deferred[None]:
        """
        Tell every connection that the server is going down and close it; those still open
        after the shutdown grace are cut (L{Admission.closeAll}).
        """
        super().stopService()
        return self.admission.closeAll(SHUTDOWN_REASON)


class CannotListen(Exception):
    """A door could not listen on an endpoint (logged as C{listen_failed})."""

    def __init__(self, description: str, failure: Failure) -> None:
        super().__init__(f"cannot listen on {description}: {failure.getErrorMessage()}")
        self.failure = failure


class ListeningService(service.Service):
    """One door listening on one endpoint."""

    def __init__(
        self, reactor: IReactorCore, door: str, description: str, factory: IProtocolFactory
    ) -> None:
        self._reactor = reactor
        self.door = door
        self.description = description
        self.factory = factory
        self.port: IListeningPort | None = None
        self.setName(f"{door} {description}")

    def privilegedStartService(self) -> None:
        """
        Listen (before twistd drops privileges, so that low ports work).

        @raise CannotListen: if the endpoint cannot be listened on.
        """
        super().privilegedStartService()
        if self.port is not None:
            return
        failures: list[Failure] = []
        listening = serverFromString(self._reactor, self.description).listen(self.factory)
        listening.addCallbacks(self._listening, failures.append)
        if failures:
            _log.error(
                "listen_failed",
                endpoint=self.description,
                reason=failures[0].getErrorMessage(),
                door=self.door,
            )
            raise CannotListen(self.description, failures[0])

    def _listening(self, port: IListeningPort) -> None:
        self.port = port
        _log.info(
            "server_listening",
            endpoint=self.description,
            address=describeAddress(port.getHost()),
            door=self.door,
        )

    def stopService(self) -> defer.Deferred[None]:
        """Stop listening."""
        super().stopService()
        port, self.port = self.port, None
        stopped = None if port is None else port.stopListening()
        return defer.succeed(None) if stopped is None else stopped


class ChatService(service.MultiService):
    """
    The whole server: a L{HistoryService}, a L{SessionsService} and a L{ListeningService} for
    each door and endpoint, started in that order and stopped in the reverse one, one after
    the other (see the module's description).
    """

    StartupFailed = StartupFailed

    def __init__(
        self,
        reactor: IReactorCore,
        hub: Hub,
        admission: Admission,
        doors: Iterable[Door],
        logObserver: ILogObserver | None = None,
        prepare: Iterable[Any] = (),
        hasher: Argon2Hasher | None = None,
        cluster: service.Service | None = None,
    ) -> None:
        """
        @param hub: the members and rooms every door's connections join.
        @param admission: the connections of every door, counted together.
        @param doors: the doors, each listening on its endpoints.
        @param logObserver: a log observer to give the twistd application, if any.
        @param prepare: callables run (with no arguments) before anything starts, such as
            raising the open-files limit.
        @param hasher: the password hasher of the hub's accounts, whose threads the server
            starts and stops.
        @param cluster: this node of a cluster (L{chatsvc.cluster.node.ClusterNode}), if the
            server is one: started first and stopped last, once every member has left; it
            reads the history and the accounts once it has joined, instead of their services
            before listening.
        """
        super().__init__()
        self._reactor = reactor
        self.hub = hub
        self.admission = admission
        self.doors = {door.name: door for door in doors}
        self._logObserver = logObserver
        self._prepare = list(prepare)
        self._privileged = False
        self.cluster = cluster
        if cluster is not None:
            cluster.setServiceParent(self)
        HistoryService(reactor, hub, readAtStart=cluster is None).setServiceParent(self)
        AccountsService(reactor, hub, hasher, readAtStart=cluster is None).setServiceParent(self)
        SessionsService(admission).setServiceParent(self)
        self.listeners: list[ListeningService] = []
        for door in self.doors.values():
            for description in door.endpoints:
                listener = ListeningService(reactor, door.name, description, door.factory)
                listener.setServiceParent(self)
                self.listeners.append(listener)

    @property
    def ports(self) -> list[IListeningPort]:
        """The ports listened on, of every door."""
        return [listener.port for listener in self.listeners if listener.port is not None]

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
        Read the history, then listen on every door's endpoints. A history that cannot be read,
        or any endpoint that cannot be listened on, is raised as L{StartupFailed} (naming every
        endpoint that failed), with nothing left listening: twistd then stops with the error
        instead of running deaf or forgetful.
        """
        service.Service.privilegedStartService(self)
        if self._privileged:
            return
        for prepare in self._prepare:
            prepare()
        failures: list[CannotListen] = []
        for child in self:  # the history first: it raises StartupFailed itself
            try:
                child.privilegedStartService()
            except CannotListen as failure:
                failures.append(failure)
        if failures:
            for listener in self.listeners:
                listener.stopService()
            raise StartupFailed("; ".join(map(str, failures))) from failures[0].failure.value
        self._privileged = True

    def startService(self) -> None:
        """
        Start every service (listening first, if twistd has not had it done with privileges);
        once the reactor runs, set aside what starting up made (L{freezeStartupObjects}).
        """
        if not self._privileged:
            self.privilegedStartService()
        super().startService()
        self._reactor.callWhenRunning(freezeStartupObjects)

    def stopService(self) -> defer.Deferred[None]:
        """Stop every service in the reverse order of starting, each once the one before is done."""
        service.Service.stopService(self)
        _log.info("server_stopping", connections=self.admission.connectionCount)
        return defer.Deferred.fromCoroutine(self._stopEach())

    async def _stopEach(self) -> None:
        # One at a time, last started first; one that fails is logged, and the rest still stop.
        for child in reversed(list(self)):
            try:
                await defer.maybeDeferred(child.stopService)
            except Exception as error:
                _log.error("service_stop_failed", service=child.name, exc_info=error)
        _log.info("server_stopped")
        # A reactor stopped by SIGTERM or SIGINT remembers the signal, and twistd then kills
        # itself with it once the reactor is done, so that the exit status reads "killed by
        # SIGTERM". This server has shut down in order by now, every member told and every
        # connection closed, so the stop was a success: let the process exit 0.
        if getattr(self._reactor, "_exitSignal", None) is not None:
            self._reactor._exitSignal = None  # type: ignore[attr-defined]


def freezeStartupObjects() -> None:
    """
    Collect what starting up left behind, then move every object the garbage collector tracks
    into its permanent generation (L{gc.freeze}), where no later collection walks them.

    Those objects (the modules of Twisted, structlog, sqlite3 and this package: some 47,000
    of them) live as long as the server does, yet every full collection would walk them all
    again: 30 to 50 ms with the reactor stopped, every line to every member waiting. Frozen,
    a full collection walks only what connections and rooms made since: about 4,000 objects
    with 500 members. Objects frozen are still freed as ever when nothing refers to them;
    only a reference cycle among them would be kept, and those made while starting were
    collected just before.
    """
    gc.collect()
    gc.freeze()
    _log.info("startup_objects_frozen", objects=gc.get_freeze_count())
