"""
The terminal client in a real terminal (tmux), against a real server: the input line stays
intact while lines arrive, Up recalls, Tab completes, colours come and go with the terminal and
C{NO_COLOR}, a password is never on the screen, and the terminal is given back on leaving.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from tests.processes import Server
from tests.test_accounts_e2e import Netcat
from tests.tmux import Tmux


class TerminalTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = Path(self.mktemp()).resolve()
        self.directory.mkdir()
        self.server = Server(self.directory, "--db", ":memory:")
        self.addCleanup(self.server.stop)
        self.port = self.server.waitListening()

    def client(self, nick: str = "Alice", *options: str, env: dict[str, str] | None = None) -> Tmux:
        command = [sys.executable, "-m", "chatsvc.client", nick, "--host", "127.0.0.1",
                   "--port", str(self.port), *options]
        terminal = Tmux(self, command, env=env)
        terminal.waitFor(f"{nick} connected to server!")
        return terminal

    def member(self, nick: str) -> Netcat:
        member = Netcat(self.port)
        self.addCleanup(member.close)
        member.line()  # GET_NAME
        member.send(nick)
        return member

    def test_halfALineSurvives(self) -> None:
        """Half a line typed stays at the bottom, intact, while three lines arrive above it."""
        alice = self.client("Alice", "--no-timestamps")
        alice.waitFor(r"^\[lobby\]\s*$")
        alice.type("hello wo")
        bob = self.member("Bob")
        for n in range(3):
            bob.send(f"line {n}")
        screen = alice.waitFor(r"Bob: line 2")
        rows = [row for row in screen.splitlines() if row.strip()]
        self.assertEqual(rows[-4:], ["Bob: line 0", "Bob: line 1", "Bob: line 2", "[lobby] hello wo"])
        alice.type("rld")
        alice.keys("Enter")
        alice.waitFor(r"^\[lobby\]\s*$")
        # Up brings the line back; Tab completes a nickname.
        alice.keys("Up")
        alice.waitFor(r"^\[lobby\] hello world$")
        alice.keys("C-u")
        alice.type("hi bo")
        alice.keys("Tab")
        alice.waitFor(r"^\[lobby\] hi Bob\s*$")

    def test_resized(self) -> None:
        """Made narrower, the terminal gets the input line drawn again to fit its new width."""
        alice = self.client("Alice", "--no-timestamps")
        alice.type("x" * 70)
        alice.waitFor(r"^\[lobby\] x{70}$")
        alice.run("resize-window", "-t", "test", "-x", "40", "-y", "24")
        screen = alice.waitFor(r"^\[lobby\] x{30}$")
        self.assertNotIn("x" * 31, screen)

    def test_colours(self) -> None:
        """Colours on a terminal; none with NO_COLOR; the time stamps on the left."""
        alice = self.client("Alice")
        bob = self.member("Bob")
        bob.send("hi there")
        screen = alice.waitFor(r"Bob.*hi there", escapes=True)
        self.assertRegex(screen, r"\x1b\[\d+mBob\x1b\[(0|39)m")
        self.assertRegex(alice.screen(), r"(?m)^\d\d:\d\d Bob: hi there$")
        plain = self.client("Carol", env={"NO_COLOR": "1"})
        bob.send("again")
        screen = plain.waitFor(r"Bob: again", escapes=True)
        line = next(row for row in screen.splitlines() if "again" in row)
        self.assertNotIn("\x1b[3", line)

    def test_passwordNeverOnTheScreen(self) -> None:
        """/register's password shows masked while typed, and nowhere once sent."""
        alice = self.client("Alice")
        alice.type("/register sesame-open")
        alice.waitFor(r"/register \*{11}")
        self.assertNotIn("sesame", alice.screen())
        alice.keys("Enter")
        alice.waitFor(r"Alice is registered")
        alice.keys("Up")
        self.assertNotIn("sesame", alice.screen())

    def test_backAfterTheServerRestarts(self) -> None:
        """
        The server restarts: the client says so, connects again, logs in again (unasked) and is
        back in its rooms, talking in the same one; a member who came in meanwhile sees it.
        """
        database = self.directory / "chat.sqlite"
        server = Server(self.directory, "--db", str(database))
        self.addCleanup(server.stop)
        port = server.waitListening()
        command = [sys.executable, "-m", "chatsvc.client", "Alice", "--host", "127.0.0.1",
                   "--port", str(port), "--no-timestamps"]
        alice = Tmux(self, command, height=50)
        alice.waitFor("Alice connected to server!")
        for line in ("/register sesame-open", "/join games", "/join dev", "/join games"):
            alice.type(line)
            alice.keys("Enter")
        alice.waitFor(r"^\*\*\* Now talking in games$")
        alice.type("half a li")
        self.assertEqual(server.terminate(), 0)
        alice.waitFor(r"connecting again in \d+ s")
        alice.waitFor(r"^\(offline\) half a li$")
        again = Server(self.directory, "--db", str(database), port=port)
        self.addCleanup(again.stop)
        again.waitListening()
        screen = alice.waitFor(r"^\*\*\* Now talking in games\n(.*\n)*\[games\] half a li$")
        self.assertNotIn("Password", screen)
        self.assertEqual(screen.count("Alice connected to server!"), 2)
        self.assertIn("*** Back in lobby, games, dev", screen)
        bob = Netcat(port)
        self.addCleanup(bob.close)
        bob.line()
        bob.send("Bob")
        bob.send("/who games")
        bob.expect(r"^\*\*\* Members \(1\): @Alice$")
        bob.send("/join games")
        bob.expect(r"^\*\*\* You joined games")
        alice.type("ne")
        alice.keys("Enter")
        bob.expect(r"^Alice: half a line$")

    def test_loginPasswordUnseen(self) -> None:
        """GET_PASSWORD is answered on the input line, unseen; a wrong one is asked again."""
        owner = self.member("Alice")
        owner.send("/register sesame-open")
        owner.expect(r"Alice is registered")
        owner.send("/quit")
        command = [sys.executable, "-m", "chatsvc.client", "Alice", "--host", "127.0.0.1",
                   "--port", str(self.port)]
        alice = Tmux(self, command)
        alice.waitFor(r"^Password for Alice:\s*$")
        alice.type("open-sesame")
        alice.waitFor(r"^Password for Alice:\s*$")
        alice.keys("Enter")
        alice.waitFor(r"wrong password for Alice")
        alice.type("sesame-open")
        self.assertNotIn("sesame", alice.screen())
        alice.keys("Enter")
        screen = alice.waitFor(r"Alice connected to server!")
        self.assertNotIn("sesame", screen)

    def leaveWith(self, *keys: str) -> None:
        """Leaving with C{keys}: exit status 0, and the terminal given back: it echoes again."""
        alice = self.client("Alice")
        alice.keys(*keys)
        alice.waitFor(r"^EXITED 0$")
        # The pane's shell runs "sleep" now; what is typed is echoed by the terminal again.
        alice.type("typed after")
        alice.waitFor(r"typed after")

    def test_serverGoneGivesTheTerminalBack(self) -> None:
        """With --no-reconnect, the server stopping ends the client: status 1, terminal back."""
        alice = self.client("Alice", "--no-reconnect")
        alice.type("half")
        self.assertEqual(self.server.terminate(), 0)
        alice.waitFor(r"^EXITED 1$")
        alice.waitFor(r"chatsvc: disconnected by the server: server shutting down")
        alice.type("typed after")
        alice.waitFor(r"typed after")

    def test_sigtermGivesTheTerminalBack(self) -> None:
        """Killed with SIGTERM (as a closing session's manager does), it leaves and restores."""
        alice = self.client("Alice")
        shell = alice.run("display-message", "-p", "-t", "test", "#{pane_pid}").strip()
        found = subprocess.run(["pgrep", "-P", shell], capture_output=True, text=True, timeout=10)
        os.kill(int(found.stdout.split()[0]), signal.SIGTERM)
        alice.waitFor(r"^EXITED \d+$")
        alice.type("typed after")
        alice.waitFor(r"typed after")

    def test_quitGivesTheTerminalBack(self) -> None:
        self.leaveWith("/quit", "Enter")

    def test_ctrlCGivesTheTerminalBack(self) -> None:
        self.leaveWith("C-c")

    def test_ctrlDGivesTheTerminalBack(self) -> None:
        self.leaveWith("C-d")
