"""
End to end over TLS: a real C{twistd -n chatroom} listening on an C{ssl:} endpoint with a
certificate made for the test (trustme), and Python's own TLS client, verifying it.

Every way the server ends a connection must close a TLS connection too, not only a plain one.
"""

from __future__ import annotations

import signal
import socket
import ssl
import time
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from tests.certificates import serverCertificate
from tests.processes import TIMEOUT, Server


class TLSPeer:
    """A verified TLS connection to the server, read line by line with a deadline."""

    def __init__(self, port: int, context: ssl.SSLContext, receiveBuffer: int | None = None) -> None:
        raw = socket.socket()
        if receiveBuffer is not None:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receiveBuffer)
        raw.settimeout(TIMEOUT)
        raw.connect(("127.0.0.1", port))
        self.socket = context.wrap_socket(raw, server_hostname="localhost")
        self._buffer = b""
        self.lines: list[str] = []

    def send(self, text: str) -> None:
        """Send C{text} as it is."""
        self.socket.sendall(text.encode("utf-8"))

    def readLine(self, deadline: float) -> str | None:
        """The next line, or L{None} once the server has closed the connection."""
        while b"\r\n" not in self._buffer:
            self.socket.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.socket.recv(4096)
            except (ssl.SSLEOFError, ConnectionResetError):
                data = b""
            except TimeoutError:
                raise AssertionError(f"still open, after {self.lines!r}") from None
            if not data:
                return None
            self._buffer += data
        line, self._buffer = self._buffer.split(b"\r\n", 1)
        self.lines.append(line.decode("utf-8"))
        return self.lines[-1]

    def expect(self, text: str, timeout: float = TIMEOUT) -> None:
        """Read until the line C{text} arrives."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.readLine(deadline)
            if line is None:
                raise AssertionError(f"closed before {text!r}: {self.lines!r}")
            if line == text:
                return

    def expectClosed(self, timeout: float = TIMEOUT) -> list[str]:
        """
        Read until the server closes the connection, within C{timeout}, then close this end,
        as a client does when its server goes; the lines read.
        """
        deadline = time.monotonic() + timeout
        while self.readLine(deadline) is not None:
            pass
        self.close()
        return self.lines

    def close(self) -> None:
        self.socket.close()


class TLSCloseTests(SynchronousTestCase):
    """
    A server listening with TLS (and plain TCP beside it) ends TLS connections in every way it
    ends plain ones: a quit, the name timeout, and shutting down.
    """

    def setUp(self) -> None:
        directory = Path(self.mktemp()).resolve()
        directory.mkdir()
        key, chain, self.context = serverCertificate(directory)
        self.server = Server(
            directory,
            "--listen",
            f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={chain}",
            "--name-timeout",
            "2",
            "--db",
            ":memory:",
            "--max-send-queue",
            "65536",
            "--flood-burst",
            "1000",
            "--address-flood-burst",
            "1000",
        )
        self.addCleanup(self.server.stop)
        self.server.waitListening()
        match = self.server.stdout.expect(r"server_listening.*ssl:.*127\.0\.0\.1:(\d+)")
        self.tlsPort = int(match.group(1))

    def connect(self) -> TLSPeer:
        """A new, verified TLS connection that has been asked for its nickname."""
        peer = TLSPeer(self.tlsPort, self.context)
        self.addCleanup(peer.close)
        peer.expect("GET_NAME")
        return peer

    def test_quit(self) -> None:
        """A member who types C{q} is told goodbye and the connection closes at once."""
        peer = self.connect()
        peer.send("Alice\n")
        peer.expect("Alice connected to server!")
        started = time.monotonic()
        peer.send("q\n")
        lines = peer.expectClosed(timeout=5)
        self.assertIn("*** Goodbye, Alice!", lines)
        self.assertLess(time.monotonic() - started, 5)

    def test_quitBeforeNaming(self) -> None:
        """A quit word in answer to GET_NAME closes the TLS connection too."""
        peer = self.connect()
        peer.send("exit\n")
        self.assertIn("*** Goodbye!", peer.expectClosed(timeout=5))

    def test_nameTimeout(self) -> None:
        """A connection that never chooses a nickname is told so and closed."""
        peer = self.connect()
        lines = peer.expectClosed(timeout=10)
        self.assertIn("*** Disconnected: no nickname within 2 seconds", lines)

    def test_shutdown(self) -> None:
        """On SIGTERM every TLS member is told and closed, and the server exits 0 in time."""
        peer = self.connect()
        peer.send("Alice\n")
        peer.expect("Alice connected to server!")
        started = time.monotonic()
        self.server.process.send_signal(signal.SIGTERM)
        self.assertIn("*** Disconnected: server shutting down", peer.expectClosed(timeout=5))
        self.assertEqual(self.server.wait(), 0)
        # Well within the shutdown grace period (5 s): nobody had to be cut.
        self.assertLess(time.monotonic() - started, 4)
        self.assertNotIn("connections_cut", "\n".join(self.server.stdout.rest()))

    def test_sendQueueCut(self) -> None:
        """
        A TLS member who stops reading is cut once what waits for it (encrypted) passes the
        bound, and the room is told why; the member who talks goes on.
        """
        slow = TLSPeer(self.tlsPort, self.context, receiveBuffer=4096)
        self.addCleanup(slow.close)
        slow.expect("GET_NAME")
        slow.send("Slow\n")
        slow.expect("Slow connected to server!")
        talker = TLSPeer(self.tlsPort, self.context)
        self.addCleanup(talker.close)
        talker.expect("GET_NAME")
        talker.send("Talker\n")
        talker.expect("Talker connected to server!")
        line = "t" * 4000
        for _ in range(10):  # far more than the kernel's buffers and the bound, in bursts
            talker.send("".join(f"{line}\n" for _ in range(100)))
        talker.expect("Slow left! (send queue exceeded)")
        self.server.stdout.expect(r"connection_cut .*nick='Slow'")
        talker.send("/who\n")
        talker.expect("*** Members (1): Talker")
