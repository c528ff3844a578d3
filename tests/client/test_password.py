"""
Tests for the client's answer to C{GET_PASSWORD}: in memory, and where the password comes from
(a file, the environment, a prompt, or nowhere).
"""

from __future__ import annotations

from pathlib import Path

from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import SynchronousTestCase

from chatsvc.client import PASSWORD_VARIABLE, NoPassword, passwordSource
from tests.client.test_client import MemoryClient


class AnsweringTests(SynchronousTestCase):
    def test_passwordSent(self) -> None:
        """GET_PASSWORD after the nickname: the password given, then the welcome as usual."""
        memory = MemoryClient("Alice")
        asked: list[str] = []

        def ask(nick: str) -> Deferred[str]:
            asked.append(nick)
            return succeed("sesame-open")

        memory.client.askPassword = ask
        memory.fromServer("GET_NAME")
        self.assertEqual(memory.sent(), b"Alice\r\n")
        memory.fromServer("GET_PASSWORD")
        self.assertEqual((asked, memory.sent()), (["Alice"], b"sesame-open\r\n"))
        memory.fromServer("Alice connected to server!")
        self.assertEqual(memory.shown(), ["Alice connected to server!"])

    def test_noAnswerTimerWhileTyping(self) -> None:
        """While the password is being typed, the client does not give up on the server."""
        memory = MemoryClient("Alice")
        typed: Deferred[str] = Deferred()
        memory.client.askPassword = lambda nick: typed
        memory.fromServer("GET_NAME", "GET_PASSWORD")
        self.assertEqual(memory.clock.getDelayedCalls(), [])
        typed.callback("sesame-open")
        self.assertEqual(len(memory.clock.getDelayedCalls()), 1)

    def test_noPassword(self) -> None:
        """No way to give a password: status 1, and what to do about it."""
        memory = MemoryClient("Alice")
        memory.fromServer("GET_NAME", "GET_PASSWORD")
        self.assertTrue(memory.transport.disconnecting)
        memory.closeFromServer()
        self.assertEqual(memory.status, [1])
        self.assertEqual(memory.client.error, "Alice is registered, and no password was given")

    def test_wrongPassword(self) -> None:
        """The server's refusal ends the client with its reason."""
        memory = MemoryClient("Alice")
        memory.client.askPassword = lambda nick: succeed("open-sesame")
        memory.fromServer(
            "GET_NAME", "GET_PASSWORD", "*** Error: wrong password for Alice", "GET_NAME"
        )
        memory.closeFromServer()
        self.assertEqual(memory.client.error, "nickname refused: wrong password for Alice")


class SourceTests(SynchronousTestCase):
    def test_file(self) -> None:
        """The first line of the file, without its line ending; the environment is not read."""
        path = Path(self.mktemp())
        path.write_text("sesame-open\nsecond line\n", encoding="utf-8")
        source = passwordSource(str(path), {PASSWORD_VARIABLE: "other"}, interactive=False)
        self.assertEqual(self.successResultOf(source("Alice")), "sesame-open")

    def test_missingFile(self) -> None:
        source = passwordSource("/nonexistent/password", {}, interactive=False)
        failure = self.failureResultOf(source("Alice"), NoPassword)
        self.assertIn("cannot read /nonexistent/password", str(failure.value))

    def test_environment(self) -> None:
        source = passwordSource(None, {PASSWORD_VARIABLE: "sesame-open"}, interactive=True)
        self.assertEqual(self.successResultOf(source("Alice")), "sesame-open")

    def test_nowhere(self) -> None:
        """Not a terminal, no file, no variable: a failure that says how to give one."""
        source = passwordSource(None, {}, interactive=False)
        failure = self.failureResultOf(source("Alice"), NoPassword)
        self.assertEqual(
            str(failure.value),
            f"Alice is registered: give its password with --password-file FILE or ${PASSWORD_VARIABLE}",
        )
