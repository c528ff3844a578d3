"""
Accounts end to end: C{twistd -n chatroom} with a real SQLite file and real argon2id hashes;
plain sockets as netcat users, and the bundled client on a real pseudo-terminal, where the
password it is given must not appear.
"""

from __future__ import annotations

import os
import pty
import re
import select
import socket
import subprocess
import sys
import termios
import time
import fcntl
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from tests.processes import TIMEOUT, Server, environment


class Netcat:
    """A plain TCP connection to the line door, read a line at a time."""

    def __init__(self, port: int) -> None:
        self.socket = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.file = self.socket.makefile("rb")

    def send(self, line: str) -> None:
        self.socket.sendall(line.encode("utf-8") + b"\n")

    def line(self) -> str:
        return self.file.readline().decode("utf-8").rstrip("\r\n")

    def expect(self, pattern: str) -> str:
        """Read lines until one matches C{pattern}; that line."""
        while True:
            line = self.line()
            if not line and self.file.peek(1) == b"":
                raise AssertionError(f"connection closed before a line matching {pattern!r}")
            if re.search(pattern, line):
                return line

    def close(self) -> None:
        self.file.close()
        self.socket.close()


def member(test: SynchronousTestCase, port: int, nick: str, register: str | None = None) -> Netcat:
    """
    A guest on netcat, named C{nick} and in (its first line said), closed after C{test}; with
    C{register}, the nickname registered with that password (the server said so).
    """
    connection = Netcat(port)
    test.addCleanup(connection.close)
    connection.line()  # GET_NAME
    connection.send(nick)
    connection.expect("connected to server!")
    if register is not None:
        connection.send(f"/register {register}")
        connection.expect("is registered")
    return connection


class AccountsTestCase(SynchronousTestCase):
    """A server with a database file of its own, and members who connect as netcat does."""

    def setUp(self) -> None:
        self.directory = Path(self.mktemp()).resolve()
        self.directory.mkdir()

    def start(self, *options: str) -> Server:
        server = Server(self.directory, "--db", str(self.directory / "chat.db"), *options)
        self.addCleanup(server.stop)
        server.waitListening()
        return server

    def netcat(self, server: Server) -> Netcat:
        connection = Netcat(server.port)
        self.addCleanup(connection.close)
        self.assertEqual(connection.line(), "GET_NAME")
        return connection

    def register(self, server: Server, nick: str, password: str) -> None:
        member = self.netcat(server)
        member.send(nick)
        member.expect(f"^{nick} connected to server!$")
        member.send(f"/register {password}")
        member.expect(rf"^\*\*\* {nick} is registered")
        member.send("/quit")
        member.expect(r"^\*\*\* Goodbye")


class AccountsEndToEndTests(AccountsTestCase):
    def test_registeredAcrossRestart(self) -> None:
        """
        Registered on one run, the nickname is reserved on the next: a guest is asked for its
        password and refused, its owner logs in with it.
        """
        server = self.start()
        self.register(server, "Alice", "sesame-open")
        self.assertEqual(server.terminate(), 0)

        server = self.start()
        guest = self.netcat(server)
        guest.send("alice")
        self.assertEqual(guest.line(), "GET_PASSWORD")
        guest.send("open-sesame")
        self.assertEqual(guest.line(), "*** Error: wrong password for Alice")
        self.assertEqual(guest.line(), "GET_NAME")
        guest.send("Bob")
        guest.expect("^Bob connected to server!$")
        guest.send("/nick Alice")
        guest.expect(r"^\*\*\* Error: Alice is registered: only its owner may use it$")

        owner = self.netcat(server)
        owner.send("Alice")
        self.assertEqual(owner.line(), "GET_PASSWORD")
        owner.send("sesame-open")
        self.assertEqual(owner.line(), "Alice connected to server!")
        guest.expect("^Alice joined!$")

    def test_guessingThrottled(self) -> None:
        """
        Ten wrong passwords in a minute: refused as wrong three times, then held off without
        a hash; two members chatting meanwhile see every line at once.
        """
        server = self.start()
        self.register(server, "Alice", "sesame-open")
        bob, carol = self.netcat(server), self.netcat(server)
        bob.send("Bob")
        bob.expect("^Bob connected")
        carol.send("Carol")
        carol.expect("^Carol connected")
        guesser = self.netcat(server)
        answers = []
        for attempt in range(10):
            guesser.send("Alice")
            self.assertEqual(guesser.line(), "GET_PASSWORD")
            guesser.send(f"guess-{attempt:04d}")
            answers.append(guesser.line())
            self.assertEqual(guesser.line(), "GET_NAME")
            bob.send(f"line {attempt}")
            carol.expect(f"^Bob: line {attempt}$")
        self.assertEqual(answers[:3], ["*** Error: wrong password for Alice"] * 3)
        for answer in answers[3:]:
            self.assertRegex(answer, r"^\*\*\* Error: too many failed logins for Alice; try again in \d+ seconds?$")

    def test_bundledClientOnATerminal(self) -> None:
        """
        The bundled client asks for the password on the terminal without echoing it, and
        joins; the password is nowhere on the screen.
        """
        server = self.start()
        self.register(server, "Alice", "sesame-open")
        master, slave = pty.openpty()

        def controllingTerminal() -> None:
            # A session of its own, with the pseudo-terminal as its terminal: what getpass
            # opens as /dev/tty.
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        process = subprocess.Popen(
            [sys.executable, "-m", "chatsvc.client", "Alice", "--host", "127.0.0.1",
             "--port", str(server.port)],
            env={key: value for key, value in environment().items() if key != "CHATSVC_PASSWORD"},
            stdin=slave, stdout=slave, stderr=slave, cwd=self.directory,
            start_new_session=True, preexec_fn=controllingTerminal,
        )
        os.close(slave)
        self.addCleanup(os.close, master)

        def stop() -> None:
            if process.poll() is None:
                process.kill()
                process.wait()

        self.addCleanup(stop)
        screen = b""

        def readUntil(pattern: bytes) -> None:
            nonlocal screen
            deadline = time.monotonic() + TIMEOUT
            while pattern not in screen:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not select.select([master], [], [], remaining)[0]:
                    raise AssertionError(f"no {pattern!r} on the screen: {screen!r}")
                screen += os.read(master, 4096)

        readUntil(b"Password for Alice: ")
        os.write(master, b"sesame-open\n")
        readUntil(b"Alice connected to server!")
        os.write(master, b"/quit\n")
        readUntil(b"Goodbye")
        self.assertEqual(process.wait(timeout=TIMEOUT), 0)
        self.assertNotIn(b"sesame", screen)

    def test_scriptedPassword(self) -> None:
        """On a pipe, the password comes from --password-file, or the client says how to give one."""
        server = self.start()
        self.register(server, "Alice", "sesame-open")
        secret = self.directory / "password"
        secret.write_text("sesame-open\n", encoding="utf-8")
        command = [sys.executable, "-m", "chatsvc.client", "Alice", "--host", "127.0.0.1",
                   "--port", str(server.port)]
        env = {key: value for key, value in environment().items() if key != "CHATSVC_PASSWORD"}
        finished = subprocess.run(
            [*command, "--password-file", str(secret)], input=b"hello\n", env=env,
            capture_output=True, timeout=TIMEOUT, cwd=self.directory,
        )
        self.assertEqual(finished.returncode, 0, finished.stderr)
        self.assertIn(b"Alice connected to server!", finished.stdout)
        missing = subprocess.run(
            command, input=b"hello\n", env=env, capture_output=True, timeout=TIMEOUT,
            cwd=self.directory,
        )
        self.assertEqual(missing.returncode, 1)
        self.assertEqual(
            missing.stderr.decode(),
            "chatsvc: Alice is registered: give its password with --password-file FILE or "
            "$CHATSVC_PASSWORD\n",
        )


class AdminToolTests(AccountsTestCase):
    def admin(self, *arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "chatsvc.admin", "--db", str(self.directory / "chat.db"), *arguments],
            env=environment(), capture_output=True, text=True, timeout=TIMEOUT, cwd=self.directory,
        )

    def test_inviteWhileRunning(self) -> None:
        """
        On a server that registers by invitation, codes made by the admin tool while it runs
        work once each; the tool then lists the account.
        """
        server = self.start("--registration", "invite")
        made = self.admin("invite", "2")
        self.assertEqual(made.returncode, 0, made.stderr)
        first, second = made.stdout.split()
        alice = self.netcat(server)
        alice.send("Alice")
        alice.expect("^Alice connected")
        alice.send("/register sesame-open")
        alice.expect(r"^\*\*\* Error: this server registers by invitation")
        alice.send(f"/register sesame-open {first}")
        alice.expect(r"^\*\*\* Alice is registered")
        bob = self.netcat(server)
        bob.send("Bob")
        bob.expect("^Bob connected")
        bob.send(f"/register sesame-open {first}")
        bob.expect(r"^\*\*\* Error: that invite code is not valid \(each works once\)$")
        bob.send(f"/register sesame-open {second}")
        bob.expect(r"^\*\*\* Bob is registered")
        listed = self.admin("accounts")
        self.assertEqual(
            [line.split("\t")[0] for line in listed.stdout.splitlines()], ["Alice", "Bob"]
        )

    def test_refusals(self) -> None:
        """A bad count or an unusable file: status 1 and one line."""
        self.assertEqual(self.admin("invite", "0").stderr, "chatsvc-admin: make 1 to 1000 codes at a time\n")
        (self.directory / "not.db").write_text("this is not a database\n")
        broken = subprocess.run(
            [sys.executable, "-m", "chatsvc.admin", "--db", str(self.directory / "not.db"), "accounts"],
            env=environment(), capture_output=True, text=True, timeout=TIMEOUT,
        )
        self.assertEqual(broken.returncode, 1)
        self.assertTrue(broken.stderr.startswith("chatsvc-admin: "), broken.stderr)
        self.assertEqual(len(broken.stderr.splitlines()), 1)


class ModerationEndToEndTests(AccountsTestCase):
    def joined(
        self, server: Server, nick: str, password: str | None = None, room: str | None = None
    ) -> Netcat:
        """A member on netcat, logged in with C{password} if given, and joining C{room} (and
        the answer it expects to its /join) if given."""
        member = self.netcat(server)
        member.send(nick)
        if password is not None:
            self.assertEqual(member.line(), "GET_PASSWORD")
            member.send(password)
        member.expect(f"^{nick} connected to server!$")
        if room is not None:
            member.send(f"/join {room}")
            member.expect(rf"^\*\*\* You joined {room}")
        return member

    def test_sanctionsHoldAcrossRestart(self) -> None:
        """
        A ban on a guest and a mute on an account, given with durations, hold after a
        restart; the audit lists them; an admin made by the tool while the server runs
        announces to everyone.
        """
        server = self.start()
        self.register(server, "Alice", "sesame-open")
        self.register(server, "Carol", "sesame-carol")
        alice = self.joined(server, "Alice", "sesame-open", "games")
        bob = self.joined(server, "Bob", room="games")
        carol = self.joined(server, "Carol", "sesame-carol", "games")
        alice.send("/ban Bob 1h spam")
        bob.expect(r"^\*\*\* Bob was banned by Alice for 1 hour \(spam\)$")
        bob.expect(r"^\*\*\* You are out of games; now talking in lobby$")
        alice.send("/mute Carol 2h")
        carol.expect(r"^\*\*\* Carol was muted by Alice for 2 hours$")
        self.assertEqual(server.terminate(), 0)

        server = self.start()
        bob = self.joined(server, "Bob")
        bob.send("/join games")
        bob.expect(r"^\*\*\* Error: you are banned from games for 1 hour more \(spam\)$")
        carol = self.joined(server, "Carol", "sesame-carol", "games")
        carol.send("hello?")
        carol.expect(r"^\*\*\* Error: you are muted in games for 2 hours more$")

        made = subprocess.run(
            [sys.executable, "-m", "chatsvc.admin", "--db", str(self.directory / "chat.db"), "admin", "carol"],
            env=environment(), capture_output=True, text=True, timeout=TIMEOUT,
        )
        self.assertEqual(made.stdout, "Carol is now a server admin\n", made.stderr)
        carol.send("/announce the server restarts at noon")
        bob.expect(r"^\*\*\* Announcement from Carol: the server restarts at noon$")
        audit = subprocess.run(
            [sys.executable, "-m", "chatsvc.admin", "--db", str(self.directory / "chat.db"), "audit"],
            env=environment(), capture_output=True, text=True, timeout=TIMEOUT,
        )
        actions = [line.split("\t")[1] for line in audit.stdout.splitlines()]
        self.assertEqual(
            actions,
            [
                "Alice: ban Bob in games (for 1 hour; spam)",
                "Alice: mute Carol in games (for 2 hours)",
                "Carol: announce (the server restarts at noon)",
            ],
        )

    def test_suspensionHoldsAcrossRestart(self) -> None:
        """An account an admin suspended stays suspended after a restart, until lifted."""
        server = self.start()
        self.register(server, "Root", "sesame-root")
        self.register(server, "Carol", "sesame-carol")
        made = subprocess.run(
            [sys.executable, "-m", "chatsvc.admin", "--db", str(self.directory / "chat.db"), "admin", "Root"],
            env=environment(), capture_output=True, text=True, timeout=TIMEOUT,
        )
        self.assertEqual(made.returncode, 0, made.stderr)
        root = self.joined(server, "Root", "sesame-root")
        carol = self.joined(server, "Carol", "sesame-carol")
        root.send("/suspend Carol trolling")
        carol.expect(r"^\*\*\* Disconnected: by Root \(trolling\)$")
        self.assertEqual(server.terminate(), 0)

        server = self.start()
        again = self.netcat(server)
        again.send("Carol")
        self.assertEqual(again.line(), "GET_PASSWORD")
        again.send("sesame-carol")
        self.assertEqual(
            again.line(), "*** Error: the account Carol is suspended until an admin lifts it (trolling)"
        )
        root = self.joined(server, "Root", "sesame-root")
        root.send("/unsuspend Carol")
        root.expect(r"^\*\*\* Carol's account is no longer suspended \(by Root\)$")
        self.joined(server, "Carol", "sesame-carol")
