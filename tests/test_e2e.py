"""
End to end: a real C{twistd -n chatroom} process on a free loopback port, real
C{python -m chatsvc.client} processes with piped stdin, and raw sockets as C{nc} would use them.

Each step waits for the lines it causes before the next begins, so every client's whole output
is known exactly and is asserted exactly.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import time
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from tests.processes import TIMEOUT, Client, Server

WELCOME = "*** Type /help for commands, /quit to leave; you are talking in lobby."


def unstamped(lines: list[str]) -> list[str]:
    """C{lines} with the time stamps of history lines replaced by C{[T]}."""
    return [re.sub(r"^\*\*\* \[\d{4}-\d\d-\d\d \d\d:\d\d UTC\]", "*** [T]", line) for line in lines]


class EndToEndTestCase(SynchronousTestCase):
    """Starts a server for each test and stops everything afterwards."""

    serverOptions: tuple[str, ...] = ()

    def setUp(self) -> None:
        self.directory = Path(self.mktemp()).resolve()
        self.directory.mkdir()
        self.server = self.startServer(*self.serverOptions)

    def startServer(self, *options: str, twistdOptions: tuple[str, ...] = ()) -> Server:
        server = Server(self.directory, *options, twistdOptions=twistdOptions)
        self.addCleanup(server.stop)
        return server

    def client(self, nick: str) -> Client:
        client = Client(self.directory, nick, self.server.port)
        self.addCleanup(client.stop)
        return client

    def joined(self, nick: str, *others: Client) -> Client:
        """A client that has joined as C{nick}, once every one of C{others} has seen it."""
        client = self.client(nick)
        client.stdout.expect(f"^{nick} connected to server!$")
        client.stdout.expect(r"^\*\*\* Type /help")
        for other in others:
            other.stdout.expect(f"^{nick} joined!$")
        return client

    def raw(self) -> socket.socket:
        """A plain TCP connection to the server, as C{nc 127.0.0.1 PORT} would make."""
        connection = socket.create_connection(("127.0.0.1", self.server.port), timeout=TIMEOUT)
        self.addCleanup(connection.close)
        return connection


class ChatTests(EndToEndTestCase):
    """Several real clients chatting through a real server."""

    def setUp(self) -> None:
        super().setUp()
        self.server.waitListening()

    def test_conversation(self) -> None:
        """
        Four clients join, chat, act, whisper, rename and leave with each quit word and with end
        of input; each prints exactly what the protocol promises, and each exits 0.
        """
        alice = self.joined("Alice")
        bob = self.joined("Bob", alice)
        carol = self.joined("Carol", alice, bob)

        alice.send("hello everyone\n")
        bob.stdout.expect("^Alice: hello everyone$")
        carol.stdout.expect("^Alice: hello everyone$")

        bob.send("/msg carol the password is swordfish\n")
        carol.stdout.expect(r"^\*Bob\* the password is swordfish$")
        bob.stdout.expect(r"^-> \*Carol\* the password is swordfish$")

        carol.send("/nick Caroline\n")
        for member in (alice, bob, carol):
            member.stdout.expect(r"^\*\*\* Carol is now known as Caroline$")

        alice.send("/me waves\n")
        bob.stdout.expect(r"^\* Alice waves$")
        carol.stdout.expect(r"^\* Alice waves$")

        bob.send("q\n")
        self.assertEqual(bob.wait(), 0)
        alice.stdout.expect("^Bob left!$")
        carol.stdout.expect("^Bob left!$")

        # Dave's whole input is piped at once, ending with a quit word; Erin's ends without one
        # and without a final newline.
        dave = self.client("Dave")
        dave.send("hi from dave\nexit\n")
        dave.closeStdin()
        self.assertEqual(dave.wait(), 0)
        for member in (alice, carol):
            member.stdout.expect("^Dave joined!$")
            member.stdout.expect("^Dave: hi from dave$")
            member.stdout.expect("^Dave left!$")

        erin = self.client("Erin")
        erin.send("who is here?\n/who\nbye")
        erin.closeStdin()
        self.assertEqual(erin.wait(), 0)
        for member in (alice, carol):
            member.stdout.expect("^Erin joined!$")
            member.stdout.expect(r"^Erin: who is here\?$")
            member.stdout.expect("^Erin: bye$")
            member.stdout.expect("^Erin left!$")

        carol.send("close\n")
        self.assertEqual(carol.wait(), 0)
        alice.stdout.expect("^Caroline left!$")

        frank = self.joined("Frank", alice)
        frank.send("disconnect\n")
        self.assertEqual(frank.wait(), 0)
        alice.stdout.expect("^Frank left!$")

        alice.closeStdin()
        self.assertEqual(alice.wait(), 0)

        self.assertEqual(
            alice.stdout.rest(),
            [
                "Alice connected to server!",
                "*** Members (1): Alice",
                WELCOME,
                "Bob joined!",
                "Carol joined!",
                "*** Carol is now known as Caroline",
                "Bob left!",
                "Dave joined!",
                "Dave: hi from dave",
                "Dave left!",
                "Erin joined!",
                "Erin: who is here?",
                "Erin: bye",
                "Erin left!",
                "Caroline left!",
                "Frank joined!",
                "Frank left!",
                "*** Goodbye, Alice!",
            ],
        )
        self.assertEqual(
            bob.stdout.rest(),
            [
                "Bob connected to server!",
                "*** Members (2): Alice, Bob",
                WELCOME,
                "Carol joined!",
                "Alice: hello everyone",
                "-> *Carol* the password is swordfish",
                "*** Carol is now known as Caroline",
                "* Alice waves",
                "*** Goodbye, Bob!",
            ],
        )
        self.assertEqual(
            carol.stdout.rest(),
            [
                "Carol connected to server!",
                "*** Members (3): Alice, Bob, Carol",
                WELCOME,
                "Alice: hello everyone",
                "*Bob* the password is swordfish",
                "*** Carol is now known as Caroline",
                "* Alice waves",
                "Bob left!",
                "Dave joined!",
                "Dave: hi from dave",
                "Dave left!",
                "Erin joined!",
                "Erin: who is here?",
                "Erin: bye",
                "Erin left!",
                "*** Goodbye, Caroline!",
            ],
        )
        # Newcomers are shown what was said in the lobby before they came, time-stamped.
        history = [
            "*** [T] Alice: hello everyone",
            "*** [T] * Alice waves",
        ]
        self.assertEqual(
            unstamped(dave.stdout.rest()),
            [
                "Dave connected to server!",
                "*** Members (3): Alice, Caroline, Dave",
                "*** History of lobby, last 2 messages:",
                *history,
                "*** End of history of lobby",
                WELCOME,
                "*** Goodbye, Dave!",
            ],
        )
        self.assertEqual(
            unstamped(erin.stdout.rest()),
            [
                "Erin connected to server!",
                "*** Members (3): Alice, Caroline, Erin",
                "*** History of lobby, last 3 messages:",
                *history,
                "*** [T] Dave: hi from dave",
                "*** End of history of lobby",
                WELCOME,
                "*** Members (3): Alice, Caroline, Erin",
                "*** Goodbye, Erin!",
            ],
        )
        for member in (alice, bob, carol, dave, erin, frank):
            self.assertEqual(member.stderr.rest(), [], member.nick)

    def test_nicknameRefused(self) -> None:
        """A client whose nickname is taken exits 1 with one line saying why."""
        self.joined("Alice")
        impostor = self.client("alice")
        impostor.closeStdin()
        self.assertEqual(impostor.wait(), 1)
        (message,) = impostor.stderr.rest()
        self.assertIn("already in use", message)
        self.assertNotIn("Traceback", message)

    def test_netcatSession(self) -> None:
        """A raw socket, as nc uses, gets the protocol's lines and useful errors."""
        alice = self.joined("Alice")
        connection = self.raw()
        stream = connection.makefile("rwb")
        self.assertEqual(stream.readline(), b"GET_NAME\r\n")
        stream.write(b"\n\xff\nnc user\nNed\n")
        stream.flush()
        self.assertEqual(stream.readline(), b"*** Error: line is not valid UTF-8; it was discarded\r\n")
        self.assertEqual(stream.readline(), b"GET_NAME\r\n")
        self.assertEqual(stream.readline(), b"*** Error: a nickname may not contain spaces\r\n")
        self.assertEqual(stream.readline(), b"GET_NAME\r\n")
        self.assertEqual(stream.readline(), b"Ned connected to server!\r\n")
        alice.stdout.expect("^Ned joined!$")
        stream.write(("x" * 5000 + "\n/bogus\n\x1b[31mred\n").encode())
        stream.flush()
        for expected in [
            b"*** Members (2): Alice, Ned\r\n",
            WELCOME.encode() + b"\r\n",
            b"*** Error: line too long (over 4096 bytes); it was discarded\r\n",
            b"*** Error: unknown command /bogus (try /help)\r\n",
        ]:
            self.assertEqual(stream.readline(), expected)
        alice.stdout.expect(r"^Ned: \^\[\[31mred$")
        stream.close()  # the socket closes with its last reference
        connection.close()
        alice.stdout.expect(r"^Ned left! \(connection lost\)$")


class ShutdownTests(EndToEndTestCase):
    """Stopping the server."""

    def test_sigterm(self) -> None:
        """
        On SIGTERM the server tells its members it is going down and exits 0; a client that
        did not ask to leave exits 1 with the reason.
        """
        self.server.waitListening()
        alice = self.joined("Alice")
        self.assertEqual(self.server.terminate(), 0)
        self.assertEqual(alice.wait(), 1)
        self.assertEqual(alice.stdout.rest()[-1], "*** Disconnected: server shutting down")
        (message,) = alice.stderr.rest()
        self.assertIn("server shutting down", message)


class JSONLogTests(EndToEndTestCase):
    """C{--log-format json} with twistd's C{-l FILE}."""

    def setUp(self) -> None:
        self.directory = Path(self.mktemp()).resolve()
        self.directory.mkdir()
        self.logPath = self.directory / "chat.log"
        self.server = self.startServer(
            "--log-format", "json", twistdOptions=("--logfile", str(self.logPath))
        )

    def test_jsonLinesInLogFile(self) -> None:
        """Every line of the log file is a JSON object; the member's life is in it."""
        self.server.port = self.waitForPortInLog()
        alice = self.joined("Alice")
        alice.send("/nick Alicia\nq\n")
        self.assertEqual(alice.wait(), 0)
        self.assertEqual(self.server.terminate(), 0)
        records = [json.loads(line) for line in self.logPath.read_text("utf-8").splitlines()]
        events = [record["event"] for record in records]
        for name in [
            "server_listening",
            "startup_objects_frozen",
            "connection_opened",
            "member_joined",
            "member_renamed",
            "member_left",
            "connection_closed",
            "server_stopping",
        ]:
            self.assertIn(name, events)
        joined = records[events.index("member_joined")]
        self.assertEqual((joined["nick"], joined["members"], joined["level"]), ("Alice", 1, "info"))
        # Set aside once the reactor runs: what the modules made, tens of thousands of objects.
        frozen = records[events.index("startup_objects_frozen")]
        self.assertGreater(frozen["objects"], 10_000)

    def waitForPortInLog(self) -> int:
        """The port, once the server has written its listening line to the log file."""
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            if self.logPath.exists():
                match = re.search(r'"address": "127\.0\.0\.1:(\d+)"', self.logPath.read_text("utf-8"))
                if match:
                    return int(match.group(1))
            if self.server.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"server did not log its port: {self.server.stderr.rest()}")


def selfSignedCertificate(directory: Path) -> tuple[Path, Path]:
    """A private key and a certificate for 127.0.0.1, signed by that key, written as PEM."""
    from datetime import datetime, timedelta, timezone
    from ipaddress import IPv4Address

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(IPv4Address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    keyPath, certificatePath = directory / "key.pem", directory / "cert.pem"
    keyPath.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    certificatePath.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return keyPath, certificatePath


class TLSTests(EndToEndTestCase):
    """A TLS endpoint (C{--listen ssl:...}) beside the plain one, into the same rooms."""

    def setUp(self) -> None:
        self.directory = Path(self.mktemp()).resolve()
        self.directory.mkdir()
        self.keyPath, self.certificatePath = selfSignedCertificate(self.directory)
        self.server = self.startServer(
            "--listen",
            f"ssl:0:interface=127.0.0.1:privateKey={self.keyPath}:certKey={self.certificatePath}",
        )

    def test_tlsAndPlainMembersTalk(self) -> None:
        """
        A member over TLS (verifying the server's certificate) and one over plain TCP see each
        other's lines, one at a time and a paste of many at once, in order and complete.
        """
        self.server.waitListening()
        tlsPort = int(self.server.stdout.expect(r"server_listening.*127\.0\.0\.1:(\d+)").group(1))
        alice = self.joined("Alice")
        context = ssl.create_default_context(cafile=str(self.certificatePath))
        plain = socket.create_connection(("127.0.0.1", tlsPort), timeout=TIMEOUT)
        self.addCleanup(plain.close)
        connection = context.wrap_socket(plain, server_hostname="127.0.0.1")
        stream = connection.makefile("rwb")
        self.assertEqual(stream.readline(), b"GET_NAME\r\n")
        stream.write(b"Tess\n")
        stream.flush()
        self.assertEqual(stream.readline(), b"Tess connected to server!\r\n")
        self.assertEqual(stream.readline(), b"*** Members (2): Alice, Tess\r\n")
        self.assertEqual(stream.readline(), WELCOME.encode() + b"\r\n")
        alice.stdout.expect("^Tess joined!$")
        pasted = [f"line {number} " + "x" * 200 for number in range(15)]  # within the burst
        stream.write(("hello over TLS\n" + "".join(line + "\n" for line in pasted)).encode())
        stream.flush()
        alice.stdout.expect("^Tess: hello over TLS$")
        for line in pasted:
            alice.stdout.expect(f"^Tess: {line}$")
        alice.send("hello in plain\n")
        self.assertEqual(stream.readline(), b"Alice: hello in plain\r\n")
        stream.write(b"q\n")
        stream.flush()
        self.assertEqual(stream.readline(), b"*** Goodbye, Tess!\r\n")
        alice.stdout.expect("^Tess left!$")
