"""
Tests for L{chatsvc.client}: the client protocol and its console in memory, a client and the real
server connected through L{twisted.test.iosim}, and the real C{python -m chatsvc.client} process
against servers that misbehave.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable
from pathlib import Path

from twisted.internet.error import ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.test.iosim import IOPump, connectedServerAndClient
from twisted.trial.unittest import SynchronousTestCase

from chatsvc.client import (
    CONNECT_TIMEOUT,
    CONTINUATION,
    QUIT_TIMEOUT,
    ChatClient,
    Console,
    displayWidth,
    wrapLine,
)
from chatsvc.chat import Hub
from chatsvc.line.protocol import ChatFactory
from chatsvc.line.wire import endsSession
from tests.processes import TIMEOUT, environment


class MemoryClient:
    """A L{ChatClient} on a L{StringTransport}, its console on another."""

    def __init__(self, nick: str = "Alice") -> None:
        self.clock = Clock()
        self.consoleOutput = StringTransport()
        self.client = ChatClient(nick, self.clock, self.openConsole)
        self.transport = StringTransport()
        self.client.makeConnection(self.transport)
        self.status: list[int] = []
        self.client.done.addCallback(self.status.append)

    def openConsole(self, console: Console) -> None:
        console.makeConnection(self.consoleOutput)

    def fromServer(self, *lines: str | bytes) -> None:
        for line in lines:
            data = line if isinstance(line, bytes) else line.encode("utf-8") + b"\r\n"
            self.client.dataReceived(data)

    def sent(self) -> bytes:
        value: bytes = self.transport.value()
        self.transport.clear()
        return value

    def shown(self) -> list[str]:
        output: bytes = self.consoleOutput.value()
        return output.decode("utf-8").splitlines()

    def join(self) -> None:
        self.fromServer("GET_NAME", f"{self.client.nick} connected to server!")
        self.transport.clear()

    def type(self, data: bytes) -> None:
        console = self.client.console
        assert console is not None
        console.dataReceived(data)

    def closeFromServer(self, reason: Failure | None = None) -> None:
        """The server closes the connection; the console then finishes flushing."""
        if reason is None:
            self.client.connectionLost()
        else:
            self.client.connectionLost(reason)
        console = self.client.console
        if console is not None:
            self.assertConsoleClosing()
            console.connectionLost()

    def assertConsoleClosing(self) -> None:
        assert self.consoleOutput.disconnecting, "the console was not closed"


class HandshakeTests(SynchronousTestCase):
    """Answering C{GET_NAME}."""

    def test_answersGetName(self) -> None:
        """The nickname answers C{GET_NAME}; nothing is read from the terminal before joining."""
        memory = MemoryClient("Alice")
        self.assertEqual(memory.sent(), b"")
        memory.fromServer("GET_NAME")
        self.assertEqual(memory.sent(), b"Alice\r\n")
        self.assertIsNone(memory.client.console)

    def test_joined(self) -> None:
        """Once joined, the console opens and shows the welcome and what follows."""
        memory = MemoryClient("Alice")
        memory.fromServer("GET_NAME", "Alice connected to server!", "*** Members (1): Alice")
        self.assertIsNotNone(memory.client.console)
        self.assertEqual(memory.shown(), ["Alice connected to server!", "*** Members (1): Alice"])

    def test_refused(self) -> None:
        """
        A second C{GET_NAME} means the nickname was refused: the client closes the connection
        and ends with status 1 and the server's reason.
        """
        memory = MemoryClient("alice")
        memory.fromServer(
            "GET_NAME", "*** Error: nickname 'alice' is already in use", "GET_NAME"
        )
        self.assertTrue(memory.transport.disconnecting)
        memory.closeFromServer()
        self.assertEqual(memory.status, [1])
        self.assertEqual(memory.client.error, "nickname refused: nickname 'alice' is already in use")

    def test_refusedBeforeNaming(self) -> None:
        """A server that is full says so and closes: status 1 with its reason."""
        memory = MemoryClient()
        memory.fromServer("*** Disconnected: the server is full, try again later")
        memory.closeFromServer()
        self.assertEqual(memory.status, [1])
        self.assertEqual(
            memory.client.error, "disconnected by the server: the server is full, try again later"
        )

    def test_closedWhileNaming(self) -> None:
        """A server that closes before accepting the nickname is a failure."""
        memory = MemoryClient()
        memory.fromServer("GET_NAME")
        memory.closeFromServer()
        self.assertEqual(memory.status, [1])
        self.assertIn("before the nickname was accepted", str(memory.client.error))


class SilentServerTests(SynchronousTestCase):
    """A server that accepts the connection but does not answer while the member joins."""

    def assertTimedOut(self, memory: MemoryClient) -> None:
        """The client has given up on the server: status 1, and the reason."""
        self.assertTrue(memory.transport.disconnected)
        memory.closeFromServer()
        self.assertEqual(memory.status, [1])
        self.assertEqual(
            memory.client.error, f"the server did not answer within {CONNECT_TIMEOUT:g} seconds"
        )

    def test_noGetName(self) -> None:
        """Without a C{GET_NAME} within L{CONNECT_TIMEOUT} seconds, the client gives up."""
        memory = MemoryClient()
        memory.clock.advance(CONNECT_TIMEOUT - 0.1)
        self.assertFalse(memory.transport.disconnecting)
        memory.clock.advance(0.1)
        self.assertTimedOut(memory)

    def test_noAnswerToNickname(self) -> None:
        """
        After C{GET_NAME}, the server has L{CONNECT_TIMEOUT} seconds again to accept or refuse
        the nickname; lines that are neither do not buy it more time.
        """
        memory = MemoryClient()
        memory.clock.advance(CONNECT_TIMEOUT - 1)
        memory.fromServer("GET_NAME")
        memory.clock.advance(CONNECT_TIMEOUT - 1)
        memory.fromServer("*** Error: something odd", "hello?")
        self.assertFalse(memory.transport.disconnecting)
        memory.clock.advance(1)
        self.assertTimedOut(memory)

    def test_joinedInTime(self) -> None:
        """Once the nickname is accepted, the server may stay quiet as long as it likes."""
        memory = MemoryClient()
        memory.clock.advance(CONNECT_TIMEOUT - 1)
        memory.join()
        memory.clock.advance(CONNECT_TIMEOUT * 10)
        self.assertFalse(memory.transport.disconnecting)
        self.assertEqual(memory.clock.getDelayedCalls(), [])

    def test_closedBeforeTimeout(self) -> None:
        """A connection that ends while joining leaves no timer behind."""
        memory = MemoryClient()
        memory.closeFromServer()
        self.assertEqual(memory.clock.getDelayedCalls(), [])
        self.assertEqual(memory.status, [1])

    def test_timeoutAndName(self) -> None:
        """The time allowed and the server's name in the message can be chosen."""
        clock = Clock()
        client = ChatClient(
            "Alice", clock, lambda console: None, timeout=0.5, serverName="the server at h:1"
        )
        transport = StringTransport()
        client.makeConnection(transport)
        clock.advance(0.5)
        self.assertTrue(transport.disconnected)
        client.connectionLost()
        self.assertEqual(client.error, "the server at h:1 did not answer within 0.5 seconds")
        self.assertEqual(self.successResultOf(client.done), 1)


class WrapLineTests(SynchronousTestCase):
    """L{wrapLine}: lines cut to a terminal's width, continuation rows indented."""

    def test_fits(self) -> None:
        """A line as wide as the terminal, or narrower, is one row, unchanged."""
        self.assertEqual(wrapLine("x" * 80, 80), ["x" * 80])
        self.assertEqual(wrapLine("  two leading spaces", 80), ["  two leading spaces"])
        self.assertEqual(wrapLine("", 80), [""])

    def test_oneColumnOver(self) -> None:
        """One column more than the terminal holds goes to an indented second row."""
        self.assertEqual(wrapLine("x" * 81, 80), ["x" * 80, CONTINUATION + "x"])

    def test_paddedImpersonation(self) -> None:
        """
        75 spaces then C{Bob: hi}, at 80 columns: C{hi} goes on an indented row, and no row
        starts with C{Bob} in the first column.
        """
        self.assertEqual(wrapLine(" " * 75 + "Bob: hi", 80), [" " * 75 + "Bob:", "    hi"])
        self.assertEqual(wrapLine(" " * 78 + "Bob: hi", 80), ["", "    Bob: hi"])

    def test_words(self) -> None:
        """Rows break after a space, and the spaces at a break are dropped."""
        self.assertEqual(
            wrapLine("the quick brown fox jumps", 14),
            ["the quick", "    brown fox", "    jumps"],
        )
        self.assertEqual(wrapLine("ab" + " " * 30 + "cd", 10), ["ab", "    cd"])

    def test_longWord(self) -> None:
        """A word longer than a row is cut where the row ends."""
        self.assertEqual(
            wrapLine("a " + "x" * 30, 12),
            ["a xxxxxxxxxx", "    xxxxxxxx", "    xxxxxxxx", "    xxxx"],
        )

    def test_wideCharacters(self) -> None:
        """East Asian wide characters take two columns; one that does not fit moves on whole."""
        self.assertEqual(wrapLine("中" * 40, 80), ["中" * 40])
        self.assertEqual(wrapLine("中" * 41, 80), ["中" * 40, CONTINUATION + "中"])
        self.assertEqual(wrapLine("x" * 79 + "中", 80), ["x" * 79, CONTINUATION + "中"])
        self.assertEqual(wrapLine("ＡＢＣ", 6), ["ＡＢＣ"])

    def test_combiningMarks(self) -> None:
        """A combining mark takes no column of its own and stays with its letter."""
        accented = "e\u0301" * 80
        self.assertEqual(wrapLine(accented, 80), [accented])
        self.assertEqual(
            wrapLine("e\u0301" * 81, 80), ["e\u0301" * 80, CONTINUATION + "e\u0301"]
        )

    def test_tabs(self) -> None:
        """Tabs are expanded to the next multiple of 8 columns, counted from the row's start."""
        self.assertEqual(wrapLine("a\tb", 80), ["a       b"])
        self.assertEqual(wrapLine("x" * 15 + "\t" * 8 + "y", 20), ["x" * 15, "    y"])

    def test_widths(self) -> None:
        """L{displayWidth}, and the wider count where terminals differ."""
        self.assertEqual(
            [displayWidth(c) for c in "a中Ａ\u0301\u20dd\ufe0f\U0001f600\U0001f1eb\u00e9"],
            [1, 2, 2, 0, 0, 1, 2, 2, 1],
        )
        self.assertEqual(displayWidth("\U0003fffd"), 2)

    def test_narrowestWidth(self) -> None:
        """Below six columns, lines are wrapped as if the terminal had six."""
        self.assertEqual(wrapLine("abcdefgh", 1), ["abcdef", "    gh"])


class ConsoleWrapTests(SynchronousTestCase):
    """What the console prints, to a terminal and to anything else."""

    def console(self, columns: Callable[[], int] | None) -> tuple[Console, StringTransport]:
        """A console, its output on a L{StringTransport}."""
        output = StringTransport()
        console = Console(ChatClient("Alice", Clock(), lambda console: None), columns)
        console.makeConnection(output)
        return console, output

    def test_terminal(self) -> None:
        """On a terminal each line is wrapped to the width read just before it is printed."""
        widths = iter([20, 10])
        console, output = self.console(lambda: next(widths))
        console.show("Alice: hello there, Bob")
        console.show("Bob: hi")
        self.assertEqual(
            output.value().decode(), "Alice: hello there,\n    Bob\nBob: hi\n"
        )

    def test_wrappedAfterNeutralizing(self) -> None:
        """Control characters are made visible first, and their stand-ins counted."""
        console, output = self.console(lambda: 10)
        console.show("\x1b\x1b\x1b\x1b\x1bX")
        self.assertEqual(output.value().decode(), "^[^[^[^[^[\n    X\n")

    def test_notATerminal(self) -> None:
        """Printed to a pipe or a file, a line of any length is left as it is."""
        console, output = self.console(None)
        line = " " * 75 + "Bob: hi" + " x" * 100
        console.show(line)
        self.assertEqual(output.value().decode(), line + "\n")

    def test_clientPassesWidth(self) -> None:
        """The client gives its console the terminal's width."""
        memory = MemoryClient()
        memory.client.columns = lambda: 16
        memory.fromServer("GET_NAME", "Alice connected to server!")
        self.assertEqual(memory.shown(), ["Alice connected", "    to server!"])


class ChattingTests(SynchronousTestCase):
    """Lines both ways once joined."""

    def setUp(self) -> None:
        self.memory = MemoryClient("Alice")
        self.memory.join()

    def test_linesSent(self) -> None:
        """Each input line is sent, ending in CRLF, whatever ending it had."""
        self.memory.type(b"hello\nthere\r\nhalf")
        self.assertEqual(self.memory.sent(), b"hello\r\nthere\r\n")
        self.memory.type(b" a line\n")
        self.assertEqual(self.memory.sent(), b"half a line\r\n")

    def test_unsafeTextShownSafely(self) -> None:
        """
        Whatever the server sends, control characters and bidi overrides reach the terminal
        only as visible text; bytes that are not UTF-8 are shown as replacement characters.
        """
        self.memory.fromServer(
            "Mallory: \x1b[2J\x1b]0;pwned\x07 \x08\x08 \u202egnp.exe",
            b"Mallory: \xff\xfe\r\n",
            "Mallory: carriage\rreturn",
        )
        shown = self.memory.shown()
        self.assertEqual(
            shown[1:],
            [
                "Mallory: ^[[2J^[]0;pwned^G ^H^H <U+202E>gnp.exe",
                "Mallory: \ufffd\ufffd",
                "Mallory: carriage^Mreturn",
            ],
        )

    def test_endOfInput(self) -> None:
        """
        At the end of input the last, unfinished line is sent, then C{/quit}; the session ends
        with status 0 once the server has said goodbye and closed.
        """
        self.memory.type(b"bye")
        console = self.memory.client.console
        assert console is not None
        console.readConnectionLost()
        self.assertEqual(self.memory.sent(), b"bye\r\n/quit\r\n")
        self.memory.fromServer("*** Goodbye, Alice!")
        self.assertEqual(self.memory.status, [])
        self.memory.closeFromServer()
        self.assertEqual(self.memory.status, [0])
        self.assertIsNone(self.memory.client.error)
        self.assertEqual(self.memory.shown()[-1], "*** Goodbye, Alice!")

    def test_quitWord(self) -> None:
        """After a quit word nothing more is sent, and the end of input sends no C{/quit}."""
        self.memory.type(b"exit\nstill typing\n")
        console = self.memory.client.console
        assert console is not None
        console.readConnectionLost()
        self.assertEqual(self.memory.sent(), b"exit\r\n")

    def test_statusWaitsForConsole(self) -> None:
        """The exit status is only given once everything printed has been flushed."""
        self.memory.fromServer("*** Goodbye, Alice!")
        self.memory.client.connectionLost()
        self.assertEqual(self.memory.status, [])
        console = self.memory.client.console
        assert console is not None
        console.connectionLost()
        self.assertEqual(self.memory.status, [0])

    def test_droppedConnection(self) -> None:
        """A connection lost without a goodbye is status 1, with the reason."""
        self.memory.closeFromServer(Failure(ConnectionLost("Connection reset by peer")))
        self.assertEqual(self.memory.status, [1])
        self.assertIn("connection lost", str(self.memory.client.error))
        self.assertIn("reset by peer", str(self.memory.client.error))

    def test_disconnectedByServer(self) -> None:
        """The server's own reason for a disconnection is the error."""
        self.memory.fromServer("*** Disconnected: server shutting down")
        self.memory.closeFromServer()
        self.assertEqual(self.memory.status, [1])
        self.assertEqual(self.memory.client.error, "disconnected by the server: server shutting down")
        self.assertEqual(self.memory.shown()[-1], "*** Disconnected: server shutting down")

    def test_serverIgnoresQuit(self) -> None:
        """A server that does not end the session after C{/quit} is cut off in the end."""
        console = self.memory.client.console
        assert console is not None
        console.readConnectionLost()
        self.memory.clock.advance(QUIT_TIMEOUT - 0.1)
        self.assertFalse(self.memory.transport.disconnected)
        self.memory.clock.advance(0.1)
        self.assertTrue(self.memory.transport.disconnected)
        self.memory.closeFromServer()
        self.assertEqual(self.memory.status, [1])
        self.assertIn("did not end the session", str(self.memory.client.error))

    def test_overlongInputLine(self) -> None:
        """A line too long to be sane is not sent; the member is told; later lines go."""
        self.memory.type(b"x" * (Console.MAX_LENGTH + 1))
        self.memory.type(b"x" * 100 + b"\nnext\n")
        self.assertEqual(self.memory.sent(), b"next\r\n")
        self.assertIn("line too long", self.memory.shown()[-1])

    def test_outputGone(self) -> None:
        """When nobody reads the output any more, the client leaves."""
        console = self.memory.client.console
        assert console is not None
        console.writeConnectionLost()
        self.assertEqual(self.memory.sent(), b"/quit\r\n")

    def test_overlongServerLine(self) -> None:
        """A server sending an absurdly long line is not one to keep talking to."""
        self.memory.fromServer(b"x" * (ChatClient.MAX_LENGTH + 1))
        self.assertTrue(self.memory.transport.disconnecting)
        self.memory.closeFromServer()
        self.assertEqual(self.memory.status, [1])


class WithServerTests(SynchronousTestCase):
    """Clients and the real server protocol, connected in memory."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.factory = ChatFactory(Hub(self.clock))
        self.pumps: list[IOPump] = []

    def connect(self, nick: str) -> tuple[ChatClient, StringTransport]:
        output = StringTransport()
        client, _, pump = connectedServerAndClient(
            lambda: self.factory.buildProtocol(None),
            lambda: ChatClient(nick, self.clock, lambda console: console.makeConnection(output)),
            clock=self.clock,
        )
        self.pumps.append(pump)
        self.flush()
        return client, output

    def flush(self) -> None:
        for _ in range(3):
            for pump in self.pumps:
                pump.flush()

    def test_conversation(self) -> None:
        """Two clients join through the real protocol, talk, and one leaves at end of input."""
        alice, aliceOutput = self.connect("Alice")
        bob, bobOutput = self.connect("Bob")
        assert alice.console is not None and bob.console is not None
        alice.console.dataReceived(b"hi bob\n/me waves\n")
        self.flush()
        bob.console.readConnectionLost()
        self.flush()
        self.assertEqual(
            aliceOutput.value().decode().splitlines(),
            [
                "Alice connected to server!",
                "*** Members (1): Alice",
                "*** Type /help for commands, /quit to leave; you are talking in lobby.",
                "Bob joined!",
                "Bob left!",
            ],
        )
        self.assertEqual(
            bobOutput.value().decode().splitlines(),
            [
                "Bob connected to server!",
                "*** Members (2): Alice, Bob",
                "*** Type /help for commands, /quit to leave; you are talking in lobby.",
                "Alice: hi bob",
                "* Alice waves",
                "*** Goodbye, Bob!",
            ],
        )
        bob.console.connectionLost()
        self.assertEqual(self.successResultOf(bob.done), 0)
        self.assertEqual(self.factory.hub.nicks(), ["Alice"])

    def test_nicknameTaken(self) -> None:
        """A taken nickname, in another case, ends the second client with status 1."""
        self.connect("Alice")
        impostor, _ = self.connect("ALICE")
        self.assertEqual(self.successResultOf(impostor.done), 1)
        self.assertIn("already in use", str(impostor.error))
        self.assertEqual(self.factory.hub.nicks(), ["Alice"])


class HostileServer:
    """
    A server on a free loopback port that plays a script to one connection: it sends
    C{GET_NAME}, reads the nickname, sends C{lines}, then closes or, with C{hold}, goes on
    reading until the client asks to leave, and says goodbye.
    """

    def __init__(self, lines: list[bytes], hold: bool = False) -> None:
        self.lines = lines
        self.hold = hold
        self.received = b""
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(TIMEOUT)
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        connection, _ = self.listener.accept()
        with connection:
            connection.settimeout(TIMEOUT)
            connection.sendall(b"GET_NAME\r\n")
            while b"\n" not in self.received:
                self.received += connection.recv(4096)
            connection.sendall(b"".join(self.lines))
            while self.hold and not any(endsSession(line.decode()) for line in self.received.splitlines()):
                chunk = connection.recv(4096)
                if not chunk:
                    return
                self.received += chunk
            if self.hold:
                connection.sendall(b"*** Goodbye, Bob!\r\n")

    def close(self) -> None:
        self.thread.join(TIMEOUT)
        self.listener.close()


PADDED = b"Alice:" + b" " * 33 + b"Bob: hi"
"""A line from Alice padded so that, unwrapped, C{Bob: hi} starts a row of a 40-column terminal."""


def runOnTerminal(test: SynchronousTestCase, port: int, columns: int) -> tuple[int, str]:
    """
    Run C{python -m chatsvc.client Bob} with its output on a pseudo-terminal C{columns} wide and
    its input at its end; its exit status and what it printed.
    """
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "chatsvc.client", "Bob", "--host", "127.0.0.1", "--port", str(port)],
        env=environment(), stdin=subprocess.PIPE, stdout=slave, stderr=subprocess.PIPE,
    )
    os.close(slave)
    assert process.stdin is not None and process.stderr is not None
    process.stdin.close()
    output = b""
    deadline = time.monotonic() + TIMEOUT
    try:
        while select.select([master], [], [], max(0.0, deadline - time.monotonic()))[0]:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the client has exited and closed the terminal.
                break
            if not chunk:
                break
            output += chunk
        status = process.wait(timeout=max(0.1, deadline - time.monotonic()))
        test.assertEqual(process.stderr.read(), b"")
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()
    return status, output.decode("utf-8").replace("\r\n", "\n")


class ProcessTests(SynchronousTestCase):
    """C{python -m chatsvc.client} as a person runs it."""

    def run_client(
        self, port: int, stdin: bytes = b"", closedStdin: bool = False, nick: str = "Bob"
    ) -> subprocess.CompletedProcess[bytes]:
        directory = Path(self.mktemp()).resolve()
        directory.mkdir()
        command = [sys.executable, "-m", "chatsvc.client", nick, "--host", "127.0.0.1", "--port", str(port)]
        if closedStdin:
            return subprocess.run(
                command, cwd=directory, env=environment(), stdin=subprocess.DEVNULL,
                capture_output=True, timeout=TIMEOUT, preexec_fn=lambda: os.close(0),
            )
        return subprocess.run(
            command, cwd=directory, env=environment(), input=stdin,
            capture_output=True, timeout=TIMEOUT,
        )

    def test_unreachable(self) -> None:
        """Nobody listening: status 1 and one line saying so, no traceback."""
        unused = socket.create_server(("127.0.0.1", 0))
        port = unused.getsockname()[1]
        unused.close()
        finished = self.run_client(port, b"hello\n")
        self.assertEqual(finished.returncode, 1)
        self.assertEqual(
            finished.stderr.decode(),
            f"chatsvc: cannot connect to 127.0.0.1:{port}: connection refused "
            "(is the server running?)\n",
        )
        self.assertEqual(finished.stdout, b"")

    def test_dropped(self) -> None:
        """A connection that drops mid-chat: status 1, one line, what came before printed."""
        server = HostileServer([b"Bob connected to server!\r\nAlice: hi\r\n"])
        self.addCleanup(server.close)
        finished = self.run_client(server.port, b"")
        self.assertEqual(finished.returncode, 1)
        self.assertEqual(finished.stdout.decode().splitlines(), ["Bob connected to server!", "Alice: hi"])
        (message,) = finished.stderr.decode().splitlines()
        self.assertTrue(message.startswith("chatsvc: connection lost"), message)

    def test_hostileServer(self) -> None:
        """Escape sequences from the server never reach the terminal as such."""
        server = HostileServer(
            [
                b"Bob connected to server!\r\n",
                b"\x1b]0;owned\x07\x1b[2J\xc2\x9b31m\xe2\x80\xae evil\r\n",
            ],
            hold=True,
        )
        self.addCleanup(server.close)
        finished = self.run_client(server.port, b"")
        self.assertEqual(finished.returncode, 0, finished.stderr)
        self.assertEqual(
            finished.stdout.decode().splitlines(),
            ["Bob connected to server!", "^[]0;owned^G^[[2J<U+009B>31m<U+202E> evil", "*** Goodbye, Bob!"],
        )
        for byte in b"\x1b\x07\x9b":
            self.assertNotIn(bytes([byte]), finished.stdout)

    def test_wrappedOnTerminal(self) -> None:
        """
        On a terminal 40 columns wide, a line padded so that C{Bob: hi} would start a row is
        wrapped by the client, its continuation row indented.
        """
        server = HostileServer([b"Bob connected to server!\r\n", PADDED + b"\r\n"], hold=True)
        self.addCleanup(server.close)
        status, printed = runOnTerminal(self, server.port, columns=40)
        self.assertEqual(status, 0)
        self.assertEqual(
            printed.splitlines(),
            ["Bob connected to server!", "Alice:", "    Bob: hi", "*** Goodbye, Bob!"],
        )

    def test_pipedNotWrapped(self) -> None:
        """Printed to a pipe, the same line comes out as the server sent it."""
        server = HostileServer([b"Bob connected to server!\r\n", PADDED + b"\r\n"], hold=True)
        self.addCleanup(server.close)
        finished = self.run_client(server.port, b"")
        self.assertEqual(finished.returncode, 0, finished.stderr)
        self.assertEqual(
            finished.stdout.decode().splitlines(),
            ["Bob connected to server!", PADDED.decode(), "*** Goodbye, Bob!"],
        )

    def test_closedStdin(self) -> None:
        """
        With standard input closed altogether, the client still works: it joins, finds no
        input, and leaves.
        """
        server = HostileServer([b"Bob connected to server!\r\n"], hold=True)
        self.addCleanup(server.close)
        finished = self.run_client(server.port, closedStdin=True)
        server.close()
        self.assertEqual(server.received, b"Bob\r\n/quit\r\n")
        self.assertEqual(finished.returncode, 0, finished.stderr)
        self.assertEqual(
            finished.stdout.decode().splitlines(), ["Bob connected to server!", "*** Goodbye, Bob!"]
        )

    def test_fileAsInput(self) -> None:
        """Standard input may be a regular file, which cannot be polled."""
        server = HostileServer([b"Bob connected to server!\r\n"], hold=True)
        self.addCleanup(server.close)
        script = Path(self.mktemp())
        script.write_bytes(b"first\nsecond\nq\n")
        directory = Path(self.mktemp()).resolve()
        directory.mkdir()
        with script.open("rb") as stdin:
            finished = subprocess.run(
                [sys.executable, "-m", "chatsvc.client", "Bob", "--host", "127.0.0.1",
                 "--port", str(server.port)],
                cwd=directory, env=environment(), stdin=stdin, capture_output=True,
                timeout=TIMEOUT,
            )
        server.close()
        self.assertEqual(server.received, b"Bob\r\nfirst\r\nsecond\r\nq\r\n")
        self.assertEqual(finished.returncode, 0, finished.stderr)

    def test_silentServer(self) -> None:
        """
        A server that accepts the connection and says nothing: after C{--timeout} seconds the
        client exits with status 1 and one line saying so.
        """
        # The kernel completes the connection for a listening socket: nobody needs to accept it.
        silent = socket.create_server(("127.0.0.1", 0))
        self.addCleanup(silent.close)
        port = silent.getsockname()[1]
        started = time.monotonic()
        finished = subprocess.run(
            [sys.executable, "-m", "chatsvc.client", "Bob", "--host", "127.0.0.1",
             "--port", str(port), "--timeout", "0.5"],
            env=environment(), stdin=subprocess.DEVNULL, capture_output=True, timeout=TIMEOUT,
        )
        self.assertGreaterEqual(time.monotonic() - started, 0.5)
        self.assertEqual(finished.returncode, 1)
        self.assertEqual(
            finished.stderr.decode(),
            f"chatsvc: the server at 127.0.0.1:{port} did not answer within 0.5 seconds\n",
        )
        self.assertEqual(finished.stdout, b"")

    def test_badArguments(self) -> None:
        """
        A nickname with a line break, a bad port or a bad timeout is a usage error before
        connecting.
        """
        for arguments in (
            ["a\nb"],
            ["Bob", "--port", "70000"],
            ["Bob", "--port", "x"],
            ["Bob", "--timeout", "0"],
            ["Bob", "--timeout", "nan"],
        ):
            finished = subprocess.run(
                [sys.executable, "-m", "chatsvc.client", *arguments],
                env=environment(), stdin=subprocess.DEVNULL, capture_output=True, timeout=TIMEOUT,
            )
            self.assertEqual(finished.returncode, 2, arguments)
            self.assertIn(b"usage:", finished.stderr)
            self.assertNotIn(b"Traceback", finished.stderr)
