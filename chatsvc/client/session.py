"""
The terminal client on a terminal: one console for the whole run, and connections that come and
go under it.

When the connection drops (the server restarts, the network goes), the client says so, keeps the
input line, and connects again after a pause that doubles with each failure (from
L{RETRY_FIRST} to L{RETRY_MOST} seconds, give or take a quarter so that a room full of clients
does not come back in step). On the new connection it takes back its nickname, logs in again
with the password it was given (it keeps it in memory for this), and puts itself back in its
rooms, the room talked in last (L{Whereabouts.rejoin}). It does not come back by itself after a
goodbye, a moderator's disconnect, a nickname refused for good, or a certificate that does not
verify; nor at all with C{--no-reconnect}.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

from chatsvc.client.whereabouts import Whereabouts
from chatsvc.line.wire import endsSession

__all__ = ["RETRY_FIRST", "RETRY_MOST", "TerminalSession"]

RETRY_FIRST = 1.0
"""Seconds before the first attempt to connect again."""
RETRY_MOST = 30.0
"""The longest pause between attempts."""


class TerminalSession:
    """
    The member's side of the chat for as long as the client runs (see the module's
    description): it owns the console and the L{Whereabouts}, and makes a L{ChatClient} for
    each connection.

    To each L{ChatClient}, it is the console: lines from the server come to L{show}.

    @ivar done: fires with the exit status once the session is over and the terminal given back.
    @ivar error: the one-line reason for a non-zero exit status, or L{None}.
    """

    def __init__(
        self,
        clock: IReactorTime,
        makeConsole: Callable[[TerminalSession], Any],
        openConsole: Callable[[Any], object],
        makeClient: Callable[..., Any],
        connect: Callable[[Any], Deferred[object]],
        nick: str,
        serverName: str = "the server",
        scriptedPassword: Callable[[str], Deferred[str]] | None = None,
        reconnect: bool = True,
        describe: Callable[[BaseException], str] = str,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        """
        @param makeConsole: makes the console (a L{chatsvc.client.terminal.TerminalConsole}),
            given this session for the lines typed and for leaving.
        @param openConsole: connects the console to the terminal (C{StandardIO}).
        @param makeClient: makes the L{ChatClient} for one connection, given its keyword
            arguments (the nickname, where the password comes from, this session as console).
        @param connect: connects a L{ChatClient}; fires once connected.
        @param scriptedPassword: where a password comes from without asking (a file, the
            environment); L{None}: it is asked for on the terminal, unseen.
        @param reconnect: whether to connect again after the connection drops.
        @param describe: why an attempt to connect failed, in a few words.
        @param jitter: a number in [0, 1), to vary each pause by.
        """
        self.clock = clock
        self._makeConsole = makeConsole
        self._openConsole = openConsole
        self._makeClient = makeClient
        self._connect = connect
        self.serverName = serverName
        self.scriptedPassword = scriptedPassword
        self.reconnect = reconnect
        self._describe = describe
        self._jitter = jitter
        self.whereabouts = Whereabouts(nick)
        self.console: Any = None
        self.client: Any = None
        self.done: Deferred[int] = Deferred()
        self.error: str | None = None
        self._saved: Whereabouts | None = None
        self._everJoined = False
        self._joinedHere = False
        self._failures = 0
        self._retry: IDelayedCall | None = None
        self._leaving = False
        self._finished = False
        self._asking: Deferred[str] | None = None
        self._given: str | None = None
        self._connecting: Deferred[object] = succeed(None)
        self._passwordsAsked = 0

    def start(self) -> None:
        """Draw the console, and connect."""
        self.console = self._makeConsole(self)
        self._openConsole(self.console)
        self.console.offline()
        self._attempt()

    @property
    def transport(self) -> Any:
        """The console's transport (each connection pairs its flow control with it)."""
        return self.console.transport if self.console is not None else None

    # Connecting

    def _attempt(self) -> None:
        self._retry = None
        self._joinedHere = False
        self._given = None
        self._passwordsAsked = 0
        self.console.show(f"*** Connecting to {self.serverName} as {self.whereabouts.nick}...")
        client = self._makeClient(
            nick=self.whereabouts.nick,
            askPassword=self._password,
            makeConsole=lambda client: self,
            keepConsole=True,
            askAgain=True,
        )
        self.client = client
        client.done.addCallback(self._ended, client)
        self._connecting = self._connect(client)
        self._connecting.addErrback(self._notConnected, client)

    def _notConnected(self, failure: Failure, client: Any) -> None:
        if client is not self.client:
            return
        self.client = None
        reason = f"cannot connect to {self.serverName}: {self._describe(failure.value or Exception())}"
        if self._leaving or not self._everJoined or not self.reconnect:
            self._finish(1, reason)
        else:
            self._again(reason)

    def _password(self, nick: str) -> Deferred[str]:
        # The password kept from before, else the script's, else typed unseen; after a
        # refusal (this connection asks again), typed.
        self._passwordsAsked += 1
        if self._passwordsAsked == 1 and self.whereabouts.password is not None:
            self._given = self.whereabouts.password
            return succeed(self._given)
        if self._passwordsAsked == 1 and self.scriptedPassword is not None:
            given = self.scriptedPassword(nick)
        else:
            given = self.console.askSecret(f"Password for {nick}: ")
            self._asking = given

        def remember(password: str) -> str:
            self._asking = None
            self._given = password
            return password

        def forget(failure: Failure) -> Failure:
            self._asking = None
            return failure

        return given.addCallbacks(remember, forget)

    def _again(self, reason: str) -> None:
        # Connect again, after a pause that doubles with each failure.
        pause = min(RETRY_MOST, RETRY_FIRST * 2**self._failures)
        pause *= 0.75 + self._jitter() / 2
        self._failures += 1
        self.console.offline()
        self.console.show(f"*** Error: {reason}; connecting again in {pause:.0f} s (Ctrl-C to quit)")
        self._lastReason = reason
        self._retry = self.clock.callLater(pause, self._attempt)

    # The server's lines

    def show(self, text: str) -> None:
        """A line from the server: learnt from, then shown."""
        client = self.client
        if client is not None and client.joined and not self._joinedHere:
            self._joined()
        if self.whereabouts.learn(text):
            self.console.named(self.whereabouts.nick)
            self.console.inRoom(self.whereabouts.current)
        self.console.show(text)
        if self.whereabouts.welcomed and self._saved is not None and client is not None:
            saved, self._saved = self._saved, None
            lines = saved.rejoin(self.whereabouts)
            if lines:
                self.console.show(f"*** Back in {', '.join(saved.rooms) or 'no room'}")
            for line in lines:
                client.sendLine(line.encode("utf-8"))

    def _joined(self) -> None:
        self._joinedHere = True
        self._everJoined = True
        self._failures = 0
        if self._given is not None:
            self.whereabouts.password = self._given

    # Lines typed

    def sendLine(self, line: bytes) -> None:
        """A line typed: sent while connected; otherwise, a quit word leaves and C{/nick} is kept."""
        client = self.client
        text = line.decode("utf-8", "replace")
        if client is not None and client.joined:
            if endsSession(text):
                self._leaving = True
            self.whereabouts.typed(text)
            client.sendLine(line)
            return
        if endsSession(text):
            self.leave()
            return
        command, _, nick = text.partition(" ")
        if command.lower() == "/nick" and nick.strip() and " " not in nick.strip():
            self.whereabouts.nick = nick.strip()
            self.console.named(self.whereabouts.nick)
            self.console.show(f"*** You will be {self.whereabouts.nick} once connected")
            if self._retry is not None and self._retry.active():
                self._retry.cancel()
                self._attempt()
            return
        self.console.show("*** Error: not connected, so that line was not sent (Up brings it back)")

    def leave(self) -> None:
        """The member asks to leave (Ctrl-C, Ctrl-D, the end of input, a quit word offline)."""
        self._leaving = True
        if self._finished:
            return
        if self.client is not None:
            client = self.client
            client.leave()
            if self._asking is not None:
                self._asking.cancel()
            if not client.joined and client.transport is None:
                # Not connected yet: nothing to wait for.
                self.client = None
                self._connecting.cancel()
                self._finish(1, "left before connecting")
            return
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._finish(1, f"not connected ({self._lastReason})")

    _lastReason = "the connection was lost"

    # The end of a connection, and of the session

    def _ended(self, status: int, client: Any) -> None:
        if client is not self.client:
            return
        self.client = None
        if client.joined and self.whereabouts.welcomed:
            self._saved = self.whereabouts
            self.whereabouts = Whereabouts(self._saved.nick, self._saved.password)
        if self._leaving or not self.reconnect or not self._everJoined or not client.worthRetrying():
            self._finish(status, client.error)
        else:
            self._again(client.error or "the connection was lost")

    def _finish(self, status: int, error: str | None) -> None:
        if self._finished:
            return
        self._finished = True
        self.error = error
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        console = self.console
        if console is not None:
            console.finish()
        if console is None or console.transport is None:
            self.done.callback(status)
            return
        console.transport.loseConnection()
        console.closed.addCallback(lambda _: status).chainDeferred(self.done)
