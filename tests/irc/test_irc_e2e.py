"""
End to end: a real C{twistd -n chatroom} with its IRC door on a free loopback port (plain and
TLS), IRC connections over real sockets, and line-door members in the same rooms.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from chatsvc.irc.message import parse
from tests.certificates import serverCertificate
from tests.irc.ircsocket import IrcSocket
from tests.processes import TIMEOUT, Server
from tests.test_accounts_e2e import Netcat, member


class IrcEndToEndTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = Path(self.mktemp()).resolve()
        self.directory.mkdir()
        key, chain, self.context = serverCertificate(self.directory)
        motd = self.directory / "motd.txt"
        motd.write_text("Welcome to the test network.\n", encoding="utf-8")
        self.server = Server(
            self.directory,
            "--db", str(self.directory / "chat.db"),
            "--irc-listen", "tcp:0:interface=127.0.0.1",
            "--irc-listen", f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={chain}",
            "--server-name", "irc.test",
            "--motd", str(motd),
        )
        self.addCleanup(self.server.stop)
        self.port = self.server.waitListening()
        self.ircPort = self.server.waitIrcListening()
        match = self.server.stdout.expect(r"server_listening.*ssl:.*127\.0\.0\.1:(\d+).*door='irc'")
        self.tlsPort = int(match.group(1))

    def irc(self, tls: bool = False) -> IrcSocket:
        client = IrcSocket(self.tlsPort if tls else self.ircPort, self.context if tls else None)
        self.addCleanup(client.close)
        return client

    def netcat(self, nick: str, register: str | None = None) -> Netcat:
        return member(self, self.port, nick, register)

    def test_talkWithTheLineDoor(self) -> None:
        """An IRC client registers, sees the MOTD, joins #games and talks with a netcat member."""
        alice = self.irc()
        welcome = alice.register("Alice", "server-time", "message-tags", "echo-message")
        self.assertEqual(welcome.params[0], "Alice")
        self.assertEqual(alice.expect("372").params[-1], "- Welcome to the test network.")
        alice.expect("JOIN", "#lobby")
        alice.send("JOIN #games")
        alice.expect("366", "Alice", "#games")
        bob = self.netcat("Bob")
        bob.send("/join games")
        joined = alice.expect("JOIN", "#games")
        self.assertEqual(joined.source, "Bob!chat@chatsvc")
        bob.send("hello from netcat")
        said = alice.expect("PRIVMSG", "#games")
        self.assertEqual(said.params[1], "hello from netcat")
        self.assertIn("time", said.tags)
        alice.send("PRIVMSG #games :hello from IRC")
        bob.expect(r"^Alice: hello from IRC$")
        echo = alice.expect("PRIVMSG", "#games")
        self.assertEqual(echo.source, "Alice!chat@chatsvc")
        alice.send("QUIT :bye")
        bob.expect(r"^Alice left! \(Quit: bye\)$")

    def test_saslOverTls(self) -> None:
        """Registered on the line door, the account logs in with SASL over TLS."""
        owner = self.netcat("Alice", register="sesame-open")
        owner.send("/quit")
        alice = self.irc(tls=True)
        welcome = alice.register("alice_", sasl=("Alice", "sesame-open"))
        self.assertEqual(welcome.params[0], "Alice")
        alice.expect("221", "Alice", "+r")

    def test_nickCollisionAcrossDoors(self) -> None:
        """The nickname a line-door member holds is refused to an IRC client (433)."""
        self.netcat("Carol")
        carol = self.irc()
        carol.send("NICK carol", "USER c 0 * :C")
        refused = carol.expect("433")
        self.assertEqual(refused.params[1], "carol")
        carol.send("NICK carol_")
        self.assertEqual(carol.expect("001").params[0], "carol_")

    def test_longLineArrivesSplitAndWhole(self) -> None:
        """A 3,000-byte line from the line door reaches the IRC client in messages of 512 bytes at most."""
        alice = self.irc()
        alice.register("Alice")
        alice.expect("366", "Alice", "#lobby")
        bob = self.netcat("Bob")
        alice.expect("JOIN", "#lobby")
        text = ("Grüße aus Köln, 你好, 👋🏽 " * 150)[:1900]
        self.assertGreater(len(text.encode("utf-8")), 2900)
        bob.send(text)
        pieces: list[str] = []
        while "".join(pieces) != text:
            raw = alice.raw()
            self.assertTrue(raw, "the server closed the connection")
            self.assertLessEqual(len(raw), 512)
            message = parse(raw.decode("utf-8").rstrip("\r\n"))
            if message.command == "PRIVMSG":
                pieces.append(message.params[1])
            self.assertLessEqual(len("".join(pieces)), len(text))
        self.assertGreater(len(pieces), 5)

    def test_serverStopsCleanly(self) -> None:
        """SIGTERM: the IRC client is told (ERROR) and the server exits 0."""
        alice = self.irc()
        alice.register("Alice")
        alice.expect("366", "Alice", "#lobby")
        self.assertEqual(self.server.terminate(), 0)
        error = alice.expect("ERROR", timeout=TIMEOUT)
        self.assertIn("server shutting down", error.params[-1])

    def test_openssl(self) -> None:
        """openssl s_client speaks IRC over the ssl: endpoint, as a TLS-only client would."""
        done = subprocess.run(
            ["openssl", "s_client", "-quiet", "-connect", f"127.0.0.1:{self.tlsPort}",
             "-CAfile", str(self.directory / "ca.pem"), "-verify_return_error"],
            input=b"NICK Zed\r\nUSER z 0 * :Z\r\nQUIT\r\n",
            capture_output=True,
            timeout=TIMEOUT,
        )
        self.assertIn(b" 001 Zed ", done.stdout)
        self.assertIn(b"ERROR :Closing link: Quit", done.stdout)
