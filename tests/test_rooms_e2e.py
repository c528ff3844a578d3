"""
End to end: rooms and history with a real C{twistd -n chatroom --db FILE}, stopped and started
again, reached over real sockets.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from tests.processes import TIMEOUT, Server

STAMP = re.compile(r"^\*\*\* \[\d{4}-\d\d-\d\d \d\d:\d\d UTC\] ")


class Member:
    """A raw connection that has joined as C{nick}, read line by line."""

    def __init__(self, port: int, nick: str) -> None:
        self.connection = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.stream = self.connection.makefile("rwb")
        self.expect("GET_NAME")
        self.send(nick)
        self.arrival = self.until(r"^\*\*\* Type /help")

    def send(self, line: str) -> None:
        self.stream.write(line.encode("utf-8") + b"\n")
        self.stream.flush()

    def readline(self) -> str:
        line = self.stream.readline()
        if not line:
            raise AssertionError("the server closed the connection")
        return line.decode("utf-8").removesuffix("\r\n")

    def expect(self, line: str) -> None:
        self.assertLine(self.readline(), line)

    @staticmethod
    def assertLine(got: str, wanted: str) -> None:
        if got != wanted:
            raise AssertionError(f"expected {wanted!r}, got {got!r}")

    def until(self, pattern: str) -> list[str]:
        """Every line up to and including the first that matches C{pattern}."""
        lines = []
        while True:
            lines.append(self.readline())
            if re.search(pattern, lines[-1]):
                return lines

    def close(self) -> None:
        self.stream.close()
        self.connection.close()


def history(lines: list[str]) -> list[str]:
    """The history lines among C{lines}, without their time stamps."""
    return [STAMP.sub("", line) for line in lines if STAMP.match(line)]


class PersistentHistoryTests(SynchronousTestCase):
    """History survives a restart of the server, room by room."""

    def setUp(self) -> None:
        self.directory = Path(self.mktemp()).resolve()
        self.directory.mkdir()
        self.db = str(self.directory / "chat.db")

    def start(self) -> int:
        server = Server(self.directory, "--db", self.db)
        self.addCleanup(server.stop)
        self.server = server
        return server.waitListening()

    def member(self, port: int, nick: str) -> Member:
        member = Member(port, nick)
        self.addCleanup(member.close)
        return member

    def test_restart(self) -> None:
        """
        Two members chat in the lobby and in games; after a restart, a newcomer sees each
        room's own history, time-stamped, and nothing of the other room or of private messages;
        and the topic set before.
        """
        port = self.start()
        alice = self.member(port, "Alice")
        bob = self.member(port, "Bob")
        alice.until("^Bob joined!$")
        alice.send("hello lobby")
        bob.expect("Alice: hello lobby")
        alice.send("/join games")
        alice.until("^\\*\\*\\* Members")
        bob.send("/join games")
        bob.until("^\\*\\*\\* Members")
        alice.expect("Bob joined!")
        bob.send("/me deals the cards")
        alice.expect("* Bob deals the cards")
        bob.send("/msg alice my hand is weak")
        alice.expect("*Bob* my hand is weak")
        bob.expect("-> *Alice* my hand is weak")
        alice.send("/topic poker night")
        bob.expect("*** Alice set the topic of games: poker night")
        alice.send("q")
        alice.until("^\\*\\*\\* Goodbye")
        bob.until("^Alice left!$")
        self.assertEqual(self.server.terminate(), 0)

        port = self.start()
        carol = self.member(port, "Carol")
        self.assertEqual(history(carol.arrival), ["Alice: hello lobby"])
        carol.send("/join games")
        joined = carol.until("^\\*\\*\\* End of history")
        self.assertEqual(history(joined), ["* Bob deals the cards"])
        self.assertIn("*** Topic of games: poker night", joined)
        self.assertNotIn("weak", "\n".join(carol.arrival + joined))
        carol.send("/history 100")
        self.assertEqual(history(carol.until("^\\*\\*\\* End of history")), ["* Bob deals the cards"])

    def test_memoryOnly(self) -> None:
        """With C{--db :memory:} nothing is written, and nothing survives a restart."""
        self.db = ":memory:"
        port = self.start()
        alice = self.member(port, "Alice")
        alice.send("/join games")
        alice.until("^\\*\\*\\* Members")
        alice.send("fleeting")
        alice.send("/history")
        self.assertEqual(history(alice.until("^\\*\\*\\* End of history")), ["Alice: fleeting"])
        alice.close()
        self.assertEqual(self.server.terminate(), 0)
        self.assertEqual(list(self.directory.iterdir()), [])
        port = self.start()
        bob = self.member(port, "Bob")
        bob.send("/join games")
        self.assertNotIn("fleeting", "\n".join(bob.until("^\\*\\*\\* Members")))
