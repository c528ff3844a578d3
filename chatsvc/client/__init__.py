"""
The terminal client: C{python -m chatsvc.client NICK [--host HOST] [--port PORT] [--timeout S]}.

It answers C{GET_NAME} with the nickname (and C{GET_PASSWORD}, for a registered nickname, with its
password: typed at a prompt that does not echo it, or, for scripts, read from the file named by
C{--password-file} or from the environment variable C{CHATSVC_PASSWORD}, never from an argument),
then sends each line read from standard input and prints
each line the server sends, made safe for the terminal first (a hostile server or member cannot
move the cursor, recolour the terminal or reorder what is shown). Standard input may be a terminal,
a pipe or a file.

On a terminal (standard input and output both, without C{--plain}), the input line stays at the
bottom while lines arrive above it (L{chatsvc.client.terminal}), and a dropped connection is made
again, back in the same rooms with the same nickname (L{chatsvc.client.session}; not with
C{--no-reconnect}). Each line is wrapped to the terminal's width by the client itself, every row
after the first indented (L{chatsvc.client.layout}): a row that starts in the first column is
always the start of a line, so text padded to the end of a row cannot pass for another member's
line. Printed to a pipe or a file, lines are left as they are.

Exit status:
    - 0 once the server has said goodbye: after a quit word or C{/quit} typed, or after the end
      of input (the client sends C{/quit} itself then);
    - 1, with one line on standard error, when the server cannot be reached, does not answer
      while joining (within L{CONNECT_TIMEOUT} seconds, or C{--timeout}), refuses the nickname,
      disconnects the member, or the connection drops.
"""

from __future__ import annotations

import argparse
import atexit
import getpass
import math
import os
import signal
import termios
import tty
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from enum import Enum, auto

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.threads import deferToThread
from OpenSSL import SSL
from twisted.internet.endpoints import HostnameEndpoint, connectProtocol, wrapClientTLS
from twisted.internet.ssl import Certificate, CertificateOptions, optionsForClientTLS, platformTrust
from twisted.internet import defer
from twisted.internet.error import (
    ConnectionDone,
    ConnectionRefusedError,
    DNSLookupError,
    TimeoutError,
)
from twisted.internet.interfaces import (
    IDelayedCall,
    IHalfCloseableProtocol,
    IPushProducer,
    IReactorTCP,
    IReactorTime,
    ITransport,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from chatsvc.client.layout import CONTINUATION, displayWidth, wrapLine
from chatsvc.client.session import TerminalSession
from chatsvc.client.terminal import TerminalConsole
from chatsvc.text import neutralize
from chatsvc.line.wire import GET_NAME, GET_PASSWORD, endsSession, nicknameInUse, removedBy

__all__ = [
    "CONTINUATION",
    "ChatClient",
    "Console",
    "displayWidth",
    "main",
    "terminalColumns",
    "wrapLine",
]

QUIT_TIMEOUT = 10.0
"""Seconds to wait for the server to close the connection after this client asked to leave."""
CONNECT_TIMEOUT = 10.0
"""
Seconds to wait, unless told otherwise, for the server to accept the connection, then for each of
its answers while joining: its C{GET_NAME}, then its answer to the nickname.
"""

_DEFAULT_COLUMNS = 80
"""The width assumed for a terminal that does not tell its own."""

PASSWORD_VARIABLE = "CHATSVC_PASSWORD"
"""The environment variable a script may give the password in."""


class NoPassword(Exception):
    """The nickname is registered, and there is no way to ask for its password."""
def terminalColumns() -> int:
    """The width of the terminal on standard output, read anew at each call (it may change)."""
    try:
        columns = os.get_terminal_size(1).columns
    except OSError:
        return _DEFAULT_COLUMNS
    return columns if columns > 0 else _DEFAULT_COLUMNS


@implementer(IHalfCloseableProtocol)
class Console(Protocol):
    """
    The terminal side of the client: standard input in, standard output out.

    Its transport is a L{twisted.internet.stdio.StandardIO}. Lines read go to the L{ChatClient};
    the end of input is a request to leave, not the end of output, so this is a half-closeable
    protocol and replies still get printed afterwards.
    """

    MAX_LENGTH = 65536
    """Longest line read; longer ones are skipped, with a notice, never sent."""

    def __init__(self, client: ChatClient, columns: Callable[[], int] | None = None) -> None:
        """
        @param client: where the lines read go.
        @param columns: the width of the terminal printed to, asked before each line; L{None}
            when the output is not a terminal, and lines are printed as they are.
        """
        self.client = client
        self.columns = columns
        self.closed: Deferred[None] = Deferred()
        self._buffer = b""
        self._skipping = False

    def show(self, text: str) -> None:
        """
        Print one line, with every control character made visible, and on a terminal wrapped
        to its width (see L{wrapLine}).
        """
        if self.transport is None:
            return
        safe = neutralize(text)
        if self.columns is not None:
            safe = "\n".join(wrapLine(safe, self.columns()))
        self.transport.write(safe.encode("utf-8", "replace") + b"\n")

    def dataReceived(self, data: bytes) -> None:
        """Split input into lines and pass each to the client."""
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            if self._skipping:
                self._skipping = False
            else:
                self.client.sendLine(line.removesuffix(b"\r"))
        if len(self._buffer) > self.MAX_LENGTH:
            self._buffer = b""
            if not self._skipping:
                self._skipping = True
                self.show(f"*** Error: line too long (over {self.MAX_LENGTH} bytes); it was not sent")

    def readConnectionLost(self) -> None:
        """End of input: send what is left of the last line, then leave."""
        rest, self._buffer = self._buffer, b""
        if rest and not self._skipping:
            self.client.sendLine(rest.removesuffix(b"\r"))
        self.client.leave()

    def writeConnectionLost(self) -> None:
        """Nobody reads what is printed any more: leave."""
        self.client.leave()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Everything printed has been flushed (or cannot be)."""
        self.closed.callback(None)


def _endsSession(line: bytes) -> bool:
    # The server reads a line as it arrives, less the "\r\n" this client adds, and refuses one
    # that is not UTF-8 (as chat, never as a quit).
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return endsSession(text)


class _State(Enum):
    NAMING = auto()
    CHATTING = auto()
    LEAVING = auto()
    CLOSED = auto()


class ChatClient(LineReceiver):
    """
    The connection to the server.

    @ivar done: fires with the exit status once the connection is closed and everything has been
        printed.
    @ivar error: the one-line reason for a non-zero exit status, or L{None}.
    """

    delimiter = b"\n"
    MAX_LENGTH = 65536
    """Longest line accepted from the server; the server's own lines are far shorter."""

    def __init__(
        self,
        nick: str,
        clock: IReactorTime,
        openConsole: Callable[[Any], object],
        timeout: float = CONNECT_TIMEOUT,
        serverName: str = "the server",
        columns: Callable[[], int] | None = None,
        askPassword: Callable[[str], Deferred[str]] | None = None,
        makeConsole: Callable[[ChatClient], Any] | None = None,
        keepConsole: bool = False,
        askAgain: bool = False,
    ) -> None:
        """
        @param nick: the nickname to answer C{GET_NAME} with.
        @param clock: for the time allowed to join and to leave.
        @param openConsole: connects a L{Console} to the terminal; called once the member has
            joined, so nothing is read from standard input before the nickname is accepted.
        @param timeout: seconds to wait for each of the server's answers while joining.
        @param serverName: how the server is named in the message when it does not answer.
        @param columns: the width of the terminal printed to, or L{None} when the output is not a
            terminal (see L{Console}).
        @param askPassword: gives the password of the nickname it is called with, when the
            server asks for it (C{GET_PASSWORD}); by default, there is none to give.
        @param makeConsole: makes the console (a L{Console} by default: lines in, lines out;
            on a terminal, a L{chatsvc.client.session.TerminalSession}).
        @param keepConsole: whether the console outlives this connection (it is then neither
            finished nor closed when the connection ends: the next connection uses it).
        @param askAgain: whether a password the server refused is asked for again (when a
            person types it), rather than ending the connection.
        """
        self.nick = nick
        self.clock = clock
        self.openConsole = openConsole
        self.timeout = timeout
        self.serverName = serverName
        self.columns = columns
        self.askPassword = askPassword if askPassword is not None else _noPassword
        self.makeConsole = makeConsole
        self.keepConsole = keepConsole
        self.askAgain = askAgain
        self._askedForPassword = False
        self.console: Any = None
        self.done: Deferred[int] = Deferred()
        self.error: str | None = None
        self._state = _State.NAMING
        self.joined = False
        """Whether the server accepted the nickname (the member joined) on this connection."""
        self._askedForName = False
        self._lastError: str | None = None
        self._disconnectedBecause: str | None = None
        self._refused: str | None = None
        self._lostTLS = False
        self._broken = False
        self._left = False
        self._saidGoodbye = False
        self._quitTimer: IDelayedCall | None = None
        self._answerTimer: IDelayedCall | None = None

    def connectionMade(self) -> None:
        """Wait for the server's C{GET_NAME}, for a while."""
        if self.keepConsole and self.makeConsole is not None:
            # A console that is there already shows what happens while joining.
            self.console = self.makeConsole(self)
        self._awaitAnswer()

    # The server's lines

    def lineReceived(self, line: bytes) -> None:
        """Act on one line from the server."""
        text = line.removesuffix(b"\r").decode("utf-8", "replace")
        if text.startswith("*** Disconnected: "):
            self._disconnectedBecause = text.removeprefix("*** Disconnected: ")
        if self._state is _State.NAMING:
            self._namingLine(text)
            return
        if text.startswith("*** Goodbye"):
            self._saidGoodbye = True
        if self.console is not None:
            self.console.show(text)

    def _namingLine(self, text: str) -> None:
        if text == GET_NAME:
            if self._askedForName and self._askedForPassword and self.askAgain:
                # A mistyped password: shown why, and asked again.
                if self.console is not None and self._lastError is not None:
                    self.console.show(f"*** Error: {self._lastError}")
                self._askedForPassword = False
                self._lastError = None
                self._send(self.nick.encode("utf-8"))
                self._awaitAnswer()
                return
            if self._askedForName:
                reason = self._lastError or "the server asked for another one"
                self._refused = reason
                self._fail(f"nickname refused: {reason}")
                return
            self._askedForName = True
            self._send(self.nick.encode("utf-8"))
            self._awaitAnswer()
        elif text == GET_PASSWORD and self._askedForName and not self._askedForPassword:
            self._askedForPassword = True
            # The server waits for the password as long as its name timeout allows; this side
            # does not hurry whoever types it.
            self._stopAwaitingAnswer()
            asked = self.askPassword(self.nick)
            asked.addCallbacks(self._passwordGiven, self._passwordMissing)
        elif text.startswith("*** Error: "):
            self._lastError = text.removeprefix("*** Error: ")
        elif text.endswith(" connected to server!") and self._askedForName:
            self._state = _State.CHATTING
            self.joined = True
            self._stopAwaitingAnswer()
            self._startConsole()
            assert self.console is not None
            self.console.show(text)

    def _passwordGiven(self, password: str) -> None:
        if self._state is _State.NAMING and self.transport is not None:
            self._send(password.encode("utf-8"))
            self._awaitAnswer()

    def _passwordMissing(self, failure: Failure) -> None:
        reason = failure.getErrorMessage() if failure.check(NoPassword) else (
            f"cannot read the password: {failure.getErrorMessage()}"
        )
        self._fail(reason)

    def _awaitAnswer(self) -> None:
        # A server that accepts the connection and then says nothing would otherwise keep the
        # member waiting for ever, with no prompt and no error.
        self._stopAwaitingAnswer()
        self._answerTimer = self.clock.callLater(self.timeout, self._answerTimedOut)

    def _stopAwaitingAnswer(self) -> None:
        if self._answerTimer is not None and self._answerTimer.active():
            self._answerTimer.cancel()
        self._answerTimer = None

    def _answerTimedOut(self) -> None:
        self._answerTimer = None
        self._fail(f"{self.serverName} did not answer within {self.timeout:g} seconds", abort=True)

    def _startConsole(self) -> None:
        console: Any = self.console
        if console is None:
            console = Console(self, self.columns) if self.makeConsole is None else self.makeConsole(self)
            self.console = console
        self.openConsole(console)
        transport = self.transport
        if console.transport is not None and transport is not None:
            # Each side stops reading while the other cannot keep up. A console kept for the
            # next connection is not stopped with this one: only paused and resumed.
            console.transport.registerProducer(transport, True)
            reader = _PausedOnly(console.transport) if self.keepConsole else console.transport
            transport.registerProducer(reader, True)  # type: ignore[attr-defined]

    def lineLengthExceeded(self, line: bytes) -> None:
        """No chatsvc server sends such a line: whatever this is, stop talking to it."""
        self._broken = True
        self._fail("the server sent a line over 64 KiB")

    # Lines typed

    def sendLine(self, line: bytes) -> None:
        """Send a line typed by the member (nothing, once the member has asked to leave)."""
        if self._state is not _State.CHATTING:
            return
        if _endsSession(line):
            self._leaving()
        self._send(line)

    def _send(self, line: bytes) -> None:
        assert self.transport is not None
        self.transport.write(line + b"\r\n")

    def leave(self) -> None:
        """Ask the server to end the session (at the end of input, or when asked to stop)."""
        self._left = True
        if self._state is _State.CHATTING:
            self._leaving()
            self._send(b"/quit")
        elif self._state is _State.NAMING and self.transport is not None:
            self.error = self.error or "left before joining"
            self.transport.loseConnection()

    def _leaving(self) -> None:
        self._state = _State.LEAVING
        self._quitTimer = self.clock.callLater(QUIT_TIMEOUT, self._quitTimedOut)

    def _quitTimedOut(self) -> None:
        self._quitTimer = None
        self._fail(f"the server did not end the session within {QUIT_TIMEOUT:g} seconds")

    # The end

    def worthRetrying(self) -> bool:
        """
        Whether a new connection may go where this one could not: not after a goodbye, the
        member's own leaving, a moderator's disconnect, a nickname refused for a reason that
        waiting does not change, or a certificate that does not verify.
        """
        if self._saidGoodbye or self._left or self._lostTLS:
            return False
        if self._disconnectedBecause is not None:
            return not removedBy(self._disconnectedBecause)
        if self._refused is not None:
            # Still held by the connection that dropped, until the server notices it.
            return nicknameInUse(self._refused)
        return not self._broken

    def _fail(self, error: str, abort: bool = False) -> None:
        if self.error is None:
            self.error = error
        transport = self.transport
        if transport is None:
            return
        if abort or self._state is _State.LEAVING:
            # The server has stopped answering: do not wait for it to take what is unsent.
            transport.abortConnection()  # type: ignore[attr-defined]
        else:
            transport.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Work out the exit status, let the console flush, and report."""
        wasNaming = self._state is _State.NAMING
        self._state = _State.CLOSED
        if self._quitTimer is not None and self._quitTimer.active():
            self._quitTimer.cancel()
        self._stopAwaitingAnswer()
        if self.error is None and not self._saidGoodbye:
            if self._disconnectedBecause is not None:
                self.error = f"disconnected by the server: {self._disconnectedBecause}"
            elif reason.check(SSL.Error) is not None:
                self._lostTLS = True
                self.error = (
                    "TLS failed: the server's certificate could not be verified "
                    f"({_sslReason(reason)}); give --ca FILE to trust a private authority, or "
                    "--insecure to skip the check"
                )
            elif wasNaming and not reason.check(ConnectionDone):
                self.error = f"connection lost before joining: {reason.getErrorMessage()}"
            elif wasNaming:
                self.error = "the server closed the connection before the nickname was accepted"
            else:
                self.error = f"connection lost: {reason.getErrorMessage()}"
        status = 0 if self.error is None else 1
        console = self.console
        if console is None or console.transport is None:
            self.done.callback(status)
            return
        consoleTransport: ITransport = console.transport
        if self.keepConsole:
            # The console stays for the next connection (reading again: see _PausedOnly).
            consoleTransport.unregisterProducer()  # type: ignore[attr-defined]
            self.done.callback(status)
            return
        finish = getattr(console, "finish", None)
        if finish is not None:
            finish()
        consoleTransport.unregisterProducer()  # type: ignore[attr-defined]
        consoleTransport.loseConnection()
        console.closed.addCallback(lambda _: status).chainDeferred(self.done)


@implementer(IPushProducer)
class _PausedOnly:
    """
    The console's reading as a connection's producer, when the console outlives the
    connection: paused while the connection cannot keep up, resumed when it can, and resumed
    (not closed) when the connection ends.
    """

    def __init__(self, reader: Any) -> None:
        self._reader = reader

    def pauseProducing(self) -> None:
        self._reader.pauseProducing()

    def resumeProducing(self) -> None:
        self._reader.resumeProducing()

    def stopProducing(self) -> None:
        self._reader.resumeProducing()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m chatsvc.client",
        description="Join a chatsvc chat room from the terminal.",
    )
    parser.add_argument("nick", help="your nickname")
    parser.add_argument("--host", default="localhost", help="server name or address (default: localhost)")
    parser.add_argument(
        "--port", type=_port, default=5051, help="server port (default: 5051)"
    )
    parser.add_argument(
        "--password-file",
        metavar="FILE",
        help="read the password of a registered nickname from the first line of FILE "
        f"(else from ${PASSWORD_VARIABLE}, else it is asked for on the terminal)",
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        help="speak TLS to the server (one listening on an ssl: endpoint), verifying its "
        "certificate against the system's trusted authorities",
    )
    parser.add_argument(
        "--ca", metavar="FILE", help="with --tls: trust the authority in FILE (PEM) instead"
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="with --tls: do not verify the server's certificate (the connection is still "
        "encrypted, but anyone on the way may be the server)",
    )
    parser.add_argument(
        "--no-timestamps", action="store_true", help="on a terminal, no time stamps before lines"
    )
    parser.add_argument(
        "--no-reconnect",
        action="store_true",
        help="on a terminal, exit when the connection drops (by default the client connects "
        "again, takes back its nickname and rejoins its rooms)",
    )
    parser.add_argument(
        "--plain",
        action="store_true",
        help="on a terminal too, read and print plain lines (as on a pipe)",
    )
    parser.add_argument(
        "--timeout",
        type=_seconds,
        default=CONNECT_TIMEOUT,
        metavar="SECONDS",
        help="how long to wait for the server to answer while connecting and joining "
        f"(default: {CONNECT_TIMEOUT:g})",
    )
    return parser


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}")
    return port


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds < math.inf:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}")
    return seconds


def _sslReason(reason: Failure) -> str:
    # OpenSSL's errors are lists of (library, function, reason): the reasons say enough.
    errors = getattr(reason.value, "args", [[]])[0]
    reasons = [entry[-1] for entry in errors if isinstance(entry, tuple) and entry[-1]]
    return ", ".join(reasons) or reason.getErrorMessage()


def _noPassword(nick: str) -> Deferred[str]:
    return fail(NoPassword(f"{nick} is registered, and no password was given"))


def passwordSource(
    passwordFile: str | None,
    environ: dict[str, str] | os._Environ[str] = os.environ,
    interactive: bool | None = None,
) -> Callable[[str], Deferred[str]]:
    """
    Where the password of a registered nickname comes from: the first line of
    C{passwordFile}, else the environment's L{PASSWORD_VARIABLE}, else a prompt on the
    terminal that does not echo what is typed (C{getpass}, in a thread, since it blocks until
    the line is typed), else nowhere.
    """
    scripted = scriptedPassword(passwordFile, environ)
    if scripted is not None:
        return scripted
    if interactive is None:
        interactive = os.isatty(0)
    if interactive:
        return lambda nick: deferToThread(getpass.getpass, f"Password for {nick}: ")
    return lambda nick: fail(
        NoPassword(
            f"{nick} is registered: give its password with --password-file FILE or "
            f"${PASSWORD_VARIABLE}"
        )
    )


def scriptedPassword(
    passwordFile: str | None, environ: dict[str, str] | os._Environ[str] = os.environ
) -> Callable[[str], Deferred[str]] | None:
    """
    Where a script gives the password of a registered nickname: the first line of
    C{passwordFile}, else the environment's L{PASSWORD_VARIABLE}; L{None} if neither.
    """
    if passwordFile is not None:

        def fromFile(nick: str) -> Deferred[str]:
            try:
                with open(passwordFile, encoding="utf-8") as file:
                    return succeed(file.readline().rstrip("\r\n"))
            except OSError as error:
                return fail(NoPassword(f"cannot read {passwordFile}: {error.strerror}"))

        return fromFile
    given = environ.get(PASSWORD_VARIABLE)
    if given is not None:
        return lambda nick: succeed(given)
    return None


async def run(
    reactor: IReactorTCP,
    nick: str,
    host: str,
    port: int,
    timeout: float = CONNECT_TIMEOUT,
    passwordFile: str | None = None,
    interface: bool = False,
    colour: bool = True,
    timestamps: bool = True,
    tls: bool = False,
    ca: str | None = None,
    insecure: bool = False,
    reconnect: bool = True,
) -> int:
    """
    Connect, chat until the session ends, and return the exit status. With C{interface}
    (standard input and output are a terminal), the input line stays at the bottom (see
    L{chatsvc.client.terminal}) and a dropped connection is made again (unless not
    C{reconnect}; see L{chatsvc.client.session}); else lines are read and printed as they come.
    """
    from twisted.internet.stdio import StandardIO

    clock: IReactorTime = reactor  # type: ignore[assignment]
    serverName = f"the server at {host}:{port}"
    endpoint: Any = HostnameEndpoint(reactor, host, port, timeout=timeout)
    if tls:
        try:
            endpoint = wrapClientTLS(_tlsOptions(host, ca, insecure), endpoint)
        except (OSError, SSL.Error, ValueError) as error:
            _report(f"cannot use {ca} as a certificate authority: {_describe(error, timeout)}")
            return 1
    if interface:

        def makeClient(**arguments: Any) -> ChatClient:
            return ChatClient(clock=clock, openConsole=lambda console: None, timeout=timeout,
                              serverName=serverName, **arguments)

        terminal = TerminalSession(
            clock,
            lambda session: _terminalConsole(session, reactor, colour, timestamps),
            StandardIO,
            makeClient,
            lambda client: connectProtocol(endpoint, client),
            nick,
            serverName=serverName,
            scriptedPassword=scriptedPassword(passwordFile),
            reconnect=reconnect,
            describe=lambda error: _describe(error, timeout),
        )
        terminal.start()
        session: ChatClient | TerminalSession = terminal
    else:
        session = ChatClient(
            nick,
            clock,
            StandardIO,
            timeout=timeout,
            serverName=serverName,
            columns=terminalColumns if os.isatty(1) else None,
            askPassword=passwordSource(passwordFile),
        )
        try:
            await connectProtocol(endpoint, session)
        except Exception as error:
            _report(f"cannot connect to {host}:{port}: {_describe(error, timeout)}")
            return 1
    # Ctrl-C (or SIGTERM) leaves politely: say /quit, and give the server a moment to answer.
    reactor.addSystemEventTrigger(  # type: ignore[attr-defined]
        "before", "shutdown", _leaveBeforeShutdown, session, clock
    )
    status = await session.done
    if session.error is not None:
        _report(session.error)
    return status


def _terminalConsole(
    session: TerminalSession, reactor: Any, colour: bool, timestamps: bool
) -> TerminalConsole:
    # The console on a terminal, drawn again to fit when the terminal is resized: SIGWINCH,
    # handed to the reactor's thread (a signal handler may not draw itself).
    console = TerminalConsole(
        session.whereabouts.nick, session.sendLine, session.leave, terminalColumns, colour, timestamps
    )
    signal.signal(signal.SIGWINCH, lambda number, frame: reactor.callFromThread(console.resized))
    return console


def _tlsOptions(host: str, ca: str | None, insecure: bool) -> Any:
    # How to speak TLS to host: verifying its certificate (for that name) against the system's
    # authorities, or the one in ca; or, insecure, not verifying it.
    if insecure:
        return CertificateOptions(verify=False)
    if ca is not None:
        with open(ca, "rb") as file:
            trust: Any = Certificate.loadPEM(file.read())
    else:
        trust = platformTrust()
    return optionsForClientTLS(host, trustRoot=trust)


def _leaveBeforeShutdown(
    client: ChatClient | TerminalSession, clock: IReactorTime
) -> Deferred[None] | None:
    if client.done.called:
        return None
    client.leave()
    left: Deferred[None] = Deferred()
    timer = clock.callLater(2, left.callback, None)

    def finished(status: int) -> int:
        if timer.active():
            timer.cancel()
            left.callback(None)
        return status

    client.done.addCallback(finished)
    return left


def _describe(error: BaseException, timeout: float) -> str:
    """Why a connection attempt failed, in a few words."""
    if isinstance(error, ConnectionRefusedError):
        return "connection refused (is the server running?)"
    if isinstance(error, (TimeoutError, defer.CancelledError)):
        return f"no answer within {timeout:g} seconds"
    if isinstance(error, DNSLookupError):
        return "no such host"
    text = str(error).strip() or type(error).__name__
    return text.rstrip(".")


def _report(message: str) -> None:
    sys.stderr.write(f"chatsvc: {neutralize(message)}\n")
    sys.stderr.flush()


def main(argv: Sequence[str] | None = None) -> None:
    """Run the client; exits the process with its status."""
    options = _parser().parse_args(argv)
    if not options.nick.strip() or any(c in options.nick for c in "\r\n"):
        _parser().error("a nickname must be one line of text")
    if (options.ca or options.insecure) and not options.tls:
        _parser().error("--ca and --insecure go with --tls")
    if options.ca and options.insecure:
        _parser().error("give --ca or --insecure, not both")
    _ensureStandardInput()
    interface = os.isatty(0) and os.isatty(1) and not options.plain
    colour = interface and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"
    from twisted.internet import task

    async def start(reactor: IReactorTCP) -> None:
        status = await run(
            reactor,
            options.nick,
            options.host,
            options.port,
            options.timeout,
            options.password_file,
            interface=interface,
            colour=colour,
            timestamps=not options.no_timestamps,
            tls=options.tls,
            ca=options.ca,
            insecure=options.insecure,
            reconnect=not options.no_reconnect,
        )
        if status:
            raise SystemExit(status)

    with _terminalMode(interface):
        task.react(lambda reactor: Deferred.fromCoroutine(start(reactor)))


@contextmanager
def _terminalMode(interface: bool) -> Iterator[None]:
    # On a terminal, keys come one at a time and are not echoed (the client draws the input
    # line itself), but Ctrl-C still interrupts (and leaves politely). However the client
    # ends (an exit, an exception, SIGTERM), the terminal is given back as it was found.
    if not interface:
        yield
        return
    saved = termios.tcgetattr(0)
    restore = lambda: termios.tcsetattr(0, termios.TCSADRAIN, saved)  # noqa: E731
    atexit.register(restore)
    try:
        tty.setcbreak(0)
        yield
    finally:
        restore()
        atexit.unregister(restore)


def _ensureStandardInput() -> None:
    # With standard input closed, the next file opened (the reactor's own wake-up pipe) would
    # become descriptor 0 and be read as the member's input; give it an empty input instead.
    try:
        os.fstat(0)
    except OSError:
        os.open(os.devnull, os.O_RDONLY)
