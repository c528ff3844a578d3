"""
Tests for L{chatsvc.client.terminal}: the input line and the chat above it, on conch's in-memory
terminal (C{insults}' parser in front, its C{TerminalBuffer} as the screen).
"""

from __future__ import annotations

from twisted.conch.insults import helper, insults
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from chatsvc.client.terminal import ChatTerminal, TerminalConsole, nickColour, styled


class Screen:
    """A L{ChatTerminal} behind insults' parser, drawing on an in-memory terminal."""

    def __init__(self, colour: bool = False, timestamps: bool = False) -> None:
        self.typed: list[str] = []
        self.left = 0
        self.output = StringTransport()
        self.chat = ChatTerminal(
            self.typed.append, self.leave, self.complete, colour=colour, timestamps=timestamps,
            clock=lambda: 0.0,
        )
        self.server = insults.ServerProtocol(lambda: self.chat)
        self.server.makeConnection(self.output)
        self.buffer = helper.TerminalBuffer()
        self.buffer.connectionMade()
        self.parser = insults.ClientProtocol(lambda: self.buffer)
        self.parser.makeConnection(StringTransport())

    def leave(self) -> None:
        self.left += 1

    def complete(self, word: str, atStart: bool) -> list[str]:
        return [n for n in ("Alice", "Bob") if n.lower().startswith(word.lower())]

    def keys(self, data: bytes) -> None:
        self.server.dataReceived(data)

    def rows(self) -> list[str]:
        self.parser.dataReceived(self.output.value())
        self.output.clear()
        return [row.rstrip() for row in bytes(self.buffer).decode("utf-8", "replace").split("\n")]

    def visible(self) -> list[str]:
        return [row for row in self.rows() if row]


class LayoutTests(SynchronousTestCase):
    def test_halfALineSurvivesArrivals(self) -> None:
        """Three lines arriving while half a line is typed go above it; the half line stays."""
        screen = Screen()
        screen.keys(b"hello wo")
        for n in range(3):
            screen.chat.show(f"Bob: line {n}")
        self.assertEqual(
            screen.visible(), ["Bob: line 0", "Bob: line 1", "Bob: line 2", "> hello wo"]
        )
        screen.keys(b"rld\r")
        self.assertEqual(screen.typed, ["hello world"])
        self.assertEqual(screen.visible()[-1], ">")

    def test_editingKeys(self) -> None:
        screen = Screen()
        screen.keys(b"one two")
        screen.keys(b"\x1b[D\x1b[D\x1b[D")  # Left three times
        screen.keys(b"\x0b")  # Ctrl-K
        screen.keys(b"\x01X")  # Ctrl-A, then X at the start
        screen.keys(b"\r")
        self.assertEqual(screen.typed, ["Xone "])
        screen.keys(b"\x1b[A")  # Up recalls it
        self.assertEqual(screen.visible()[-1], "> Xone")

    def test_utf8TypedByteByByte(self) -> None:
        """A character typed as several bytes arrives as one."""
        screen = Screen()
        for byte in "Zoë 李".encode("utf-8"):
            screen.keys(bytes([byte]))
        screen.keys(b"\r")
        self.assertEqual(screen.typed, ["Zoë 李"])

    def test_tabCompletes(self) -> None:
        screen = Screen()
        screen.keys(b"hi bo\t")
        self.assertEqual(screen.visible()[-1], "> hi Bob")

    def test_leaving(self) -> None:
        """Ctrl-D on an empty line, or Ctrl-C, asks to leave; Ctrl-D on text deletes."""
        screen = Screen()
        screen.keys(b"ab\x1b[D\x04")
        self.assertEqual((screen.chat.editor.text, screen.left), ("a", 0))
        screen.keys(b"\x15\x04")
        self.assertEqual(screen.left, 1)
        screen.keys(b"\x03")
        self.assertEqual(screen.left, 2)

    def test_passwordNotShown(self) -> None:
        screen = Screen()
        screen.chat.password(True)
        screen.keys(b"sesame-open")
        self.assertEqual(screen.visible(), ["Password:"])
        screen.keys(b"\r")
        self.assertEqual(screen.typed, ["sesame-open"])
        screen.chat.password(False)
        self.assertNotIn("sesame", "\n".join(screen.rows()))

    def test_hostileTextNeutralized(self) -> None:
        """A server's escape sequences are drawn as text, never obeyed."""
        screen = Screen()
        screen.chat.show("\x1b[2J\x1b]0;owned\x07 evil")
        raw = screen.output.value()
        self.assertNotIn(b"\x1b]0", raw)
        self.assertNotIn(b"\x1b[2J", raw)
        self.assertIn("^[[2J^[]0;owned^G evil", screen.visible()[0])

    def test_longLinesWrapIndented(self) -> None:
        screen = Screen()
        screen.chat.terminalSize(20, 24)
        screen.chat.show("Alice: " + "x" * 30)
        rows = screen.visible()
        self.assertEqual(rows[:3], ["Alice:", "    " + "x" * 16, "    " + "x" * 14])
        # With time stamps, continuation rows are indented past the stamp.
        stamped = Screen(timestamps=True)
        stamped.chat.terminalSize(20, 24)
        stamped.chat.show("Alice: hello there all")
        self.assertRegex("\n".join(stamped.visible()[:2]), r"^\d\d:\d\d Alice: hello\n {6}there all$")

    def test_timestamps(self) -> None:
        screen = Screen(timestamps=True)
        screen.chat.show("Bob: hi")
        self.assertRegex(screen.visible()[0], r"^\d\d:\d\d Bob: hi$")


class ColourTests(SynchronousTestCase):
    def test_stableNickColour(self) -> None:
        self.assertEqual(nickColour("Alice"), nickColour("alice"))
        line = styled("Alice: hi Bob", "bob", True)
        self.assertIn(f"\x1b[{nickColour('Alice')}mAlice\x1b[0m", line)
        self.assertIn("\x1b[1;7mBob\x1b[0m", line)

    def test_noticesAndErrors(self) -> None:
        self.assertEqual(styled("*** Error: no", None, True), "\x1b[31m*** Error: no\x1b[0m")
        self.assertEqual(styled("*** Joined: Bob", None, True), "\x1b[2m*** Joined: Bob\x1b[0m")
        self.assertTrue(styled("[games] Bob: x", None, True).startswith("\x1b[2m[games]\x1b[0m "))

    def test_noColour(self) -> None:
        """Without colour, the line is as the server sent it (neutralized)."""
        self.assertEqual(styled("Alice: hi Bob", "Bob", False), "Alice: hi Bob")
        screen = Screen(colour=False)
        screen.chat.show("Alice: hi")
        self.assertNotIn(b"\x1b[3", screen.output.value())


class ConsoleTests(SynchronousTestCase):
    """L{TerminalConsole}: the prompt it is told, and a password asked for on the input line."""

    def setUp(self) -> None:
        self.sent: list[bytes] = []
        self.console = TerminalConsole(
            "Alice", self.sent.append, lambda: None, lambda: 40, colour=False, timestamps=False
        )
        self.output = StringTransport()
        self.console.makeConnection(self.output)
        self.buffer = helper.TerminalBuffer()
        self.buffer.connectionMade()
        self.parser = insults.ClientProtocol(lambda: self.buffer)
        self.parser.makeConnection(StringTransport())

    def visible(self) -> list[str]:
        self.parser.dataReceived(self.output.value())
        self.output.clear()
        rows = bytes(self.buffer).decode("utf-8", "replace").split("\n")
        return [row.rstrip() for row in rows if row.strip()]

    def test_prompt(self) -> None:
        self.console.offline()
        self.assertEqual(self.visible()[-1], "(offline)")
        self.console.inRoom("games")
        self.assertEqual(self.visible()[-1], "[games]")
        self.console.inRoom(None)
        self.assertEqual(self.visible()[-1], ">")

    def test_askSecret(self) -> None:
        """The password is typed unseen, goes to the one who asked (not the server), not to Up."""
        self.console.dataReceived(b"half")
        asked = self.console.askSecret("Password for Alice: ")
        self.console.dataReceived(b"sesame-open")
        self.assertEqual(self.visible()[-1], "Password for Alice:")
        self.console.dataReceived(b"\r")
        self.assertEqual(self.successResultOf(asked), "sesame-open")
        self.assertEqual(self.sent, [])
        self.assertEqual(self.visible()[-1], "> half")  # the half line, back
        self.console.dataReceived(b"\x15\x1b[A")  # Ctrl-U, Up
        self.assertNotIn("sesame", "\n".join(self.visible()))
        self.console.dataReceived(b"\x15hi\r")
        self.assertEqual(self.sent, [b"hi"])

    def test_askSecretCancelled(self) -> None:
        self.console.dataReceived(b"hi")
        asked = self.console.askSecret("Password for Alice: ")
        self.console.dataReceived(b"ses")
        asked.cancel()
        self.failureResultOf(asked)
        self.console.dataReceived(b"!\r")
        self.assertEqual(self.sent, [b"hi!"])

    def test_nicknamesFromMemberLists(self) -> None:
        """
        Tab completes the nicknames of member lists, without their roles' prefixes or the mark
        of a member who is away; a /whois line of an away message teaches no names.
        """
        self.console.show("*** Members (4): @Alice, Bob (away), +Carol (away), @Dave")
        self.console.show("***   Erin (away), Frank")
        self.console.show("***   away: lunch, Mallory")
        self.assertEqual(
            sorted(self.console.nicks.values()), ["Alice", "Bob", "Carol", "Dave", "Erin", "Frank"]
        )
        for typed, completed in [(b"hi b", "> hi Bob"), (b"hi +ca", "> hi Carol"), (b"hi e", "> hi Erin")]:
            self.console.dataReceived(b"\x15" + typed + b"\t")
            self.assertEqual(self.visible()[-1], completed)
        self.console.dataReceived(b"\x15hi ma\t")
        self.assertEqual(self.visible()[-1], "> hi ma")
