"""
The browser door end to end without a browser: a real C{twistd chatroom} process serving the
page and the WebSocket over plain TCP and over TLS (a certificate made for the test by trustme,
verified by Python's own TLS client), and raw WebSocket connections to it.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import struct
import time
import urllib.request
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.certificates import serverCertificate
from tests.processes import TIMEOUT, Client, Server
from tests.web.test_protocol import clientFrame


class WSPeer:
    """One WebSocket to the server, on a blocking socket, read frame by frame with a deadline."""

    def __init__(
        self,
        port: int,
        context: ssl.SSLContext | None = None,
        origin: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.socket: socket.socket = (
            context.wrap_socket(raw, server_hostname="localhost") if context else raw
        )
        host = f"localhost:{port}"
        request = [
            "GET /ws HTTP/1.1",
            f"Host: {host}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}",
            "Sec-WebSocket-Version: 13",
            f"Origin: {origin or ('https://' if context else 'http://') + host}",
            *(f"{name}: {value}" for name, value in (headers or {}).items()),
        ]
        self.socket.sendall(("\r\n".join(request) + "\r\n\r\n").encode())
        self._buffer = b""
        while b"\r\n\r\n" not in self._buffer:
            data = self.socket.recv(4096)
            if not data:
                break
            self._buffer += data
        head, _, self._buffer = self._buffer.partition(b"\r\n\r\n")
        self.status = int(head.split(b" ")[1])

    def send(self, message: dict[str, Any]) -> None:
        self.socket.sendall(clientFrame(json.dumps(message).encode()))

    def sendRaw(self, data: bytes) -> None:
        self.socket.sendall(data)

    def frame(self, deadline: float) -> tuple[int, bytes] | None:
        """The next frame, or L{None} once the server has closed the connection."""
        while True:
            if len(self._buffer) >= 2:
                length = self._buffer[1] & 0x7F
                offset = 2
                if length == 126 and len(self._buffer) >= 4:
                    (length,) = struct.unpack("!H", self._buffer[2:4])
                    offset = 4
                elif length == 127 and len(self._buffer) >= 10:
                    (length,) = struct.unpack("!Q", self._buffer[2:10])
                    offset = 10
                if length < 126 or offset > 2:
                    if len(self._buffer) >= offset + length:
                        opcode = self._buffer[0] & 0x0F
                        payload = self._buffer[offset : offset + length]
                        self._buffer = self._buffer[offset + length :]
                        return opcode, payload
            self.socket.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.socket.recv(65536)
            except (ssl.SSLEOFError, ConnectionResetError):
                data = b""
            except TimeoutError:
                raise AssertionError("no frame in time") from None
            if not data:
                return None
            self._buffer += data

    def expect(self, kind: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        """Read until a message of type C{kind} arrives; that message."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self.frame(deadline)
            if frame is None:
                raise AssertionError(f"closed before a {kind!r}")
            opcode, payload = frame
            if opcode == 0x1:
                message: dict[str, Any] = json.loads(payload)
                if message["type"] == kind:
                    return message

    def expectClose(self, timeout: float = TIMEOUT) -> int:
        """Read until the server's close frame; its status code."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self.frame(deadline)
            if frame is None:
                raise AssertionError("closed without a close frame")
            if frame[0] == 0x8:
                code: int = struct.unpack("!H", frame[1][:2])[0]
                return code

    def close(self) -> None:
        self.socket.close()


class PlainTests(SynchronousTestCase):
    """The web door over plain TCP."""

    def setUp(self) -> None:
        self.directory = Path(self.mktemp()).resolve()
        self.directory.mkdir()
        self.server = Server(
            self.directory,
            "--db",
            ":memory:",
            "--web-listen",
            "tcp:0:interface=127.0.0.1",
            "--web-trusted-proxy",
            "127.0.0.1",
            "--max-connections-per-address",
            "2",
        )
        self.addCleanup(self.server.stop)
        self.port = self.server.waitListening()
        self.webPort = self.server.waitWebListening()

    def peer(self, **options: Any) -> WSPeer:
        peer = WSPeer(self.webPort, **options)
        self.addCleanup(peer.close)
        return peer

    def test_pageAndHeaders(self) -> None:
        """The page comes with a strict Content-Security-Policy and its companions."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://127.0.0.1:{self.webPort}/", timeout=TIMEOUT) as response:
            body = response.read().decode()
            headers = response.headers
        self.assertIn("/static/", body)
        self.assertIn("script-src 'self'", headers["Content-Security-Policy"])
        self.assertIn("frame-ancestors 'none'", headers["Content-Security-Policy"])
        self.assertEqual(headers["X-Content-Type-Options"], "nosniff")
        self.assertEqual(headers["Referrer-Policy"], "no-referrer")

    def test_chatWithTheLineDoor(self) -> None:
        """A WebSocket member and a line-door member in one room."""
        web = self.peer()
        self.assertEqual(web.status, 101)
        web.expect("hello")
        web.send({"type": "name", "nick": "Web"})
        web.expect("room")
        line = Client(self.directory, "Line", self.port)
        self.addCleanup(line.stop)
        line.stdout.expect("Line connected to server!")
        web.expect("joined")
        line.send("hello web\n")
        self.assertEqual(web.expect("said")["text"], "hello web")
        web.send({"type": "say", "room": "lobby", "text": "hello line"})
        line.stdout.expect("Web: hello line")

    def test_foreignOriginRefused(self) -> None:
        """A page from another origin is refused the WebSocket, with 403."""
        self.assertEqual(self.peer(origin="https://evil.example").status, 403)

    def test_frameTooBig(self) -> None:
        """A frame over 64 KiB closes the connection with 1009, and the server goes on."""
        peer = self.peer()
        peer.expect("hello")
        peer.sendRaw(clientFrame(b"x" * (64 * 1024 + 1)))
        self.assertEqual(peer.expectClose(), 1009)
        other = self.peer()
        other.expect("hello")

    def test_forwardedForFromTrustedProxy(self) -> None:
        """
        Behind a trusted proxy, the client is the one X-Forwarded-For names: the per-address
        cap counts it, not the proxy.
        """
        peers = [
            self.peer(headers={"X-Forwarded-For": f"198.51.100.{n}"}) for n in range(1, 5)
        ]
        for peer in peers:
            peer.expect("hello")
        self.server.stdout.expect(r"connection_opened peer='198\.51\.100\.4")
        same = [self.peer(headers={"X-Forwarded-For": "203.0.113.9"}) for _ in range(3)]
        same[0].expect("hello")
        same[1].expect("hello")
        self.assertIn("too many connections", same[2].expect("bye")["reason"])
        self.assertEqual(same[2].expectClose(), 1013)

    def test_shutdown(self) -> None:
        """Stopping the server tells every web member why, and closes normally."""
        peer = self.peer()
        peer.send({"type": "name", "nick": "Web"})
        peer.expect("room")
        self.server.terminate()
        self.assertEqual(peer.expect("bye")["reason"], "Disconnected: server shutting down")
        self.assertEqual(peer.expectClose(), 1000)


class TLSTests(SynchronousTestCase):
    """The web door over TLS: https for the page, wss for the WebSocket."""

    def test_httpsAndWss(self) -> None:
        """The page over https and the WebSocket over wss, both verified against the test's CA."""
        directory = Path(self.mktemp()).resolve()
        directory.mkdir()
        key, chain, context = serverCertificate(directory)
        server = Server(
            directory,
            "--db",
            ":memory:",
            "--web-listen",
            f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={chain}",
        )
        self.addCleanup(server.stop)
        server.waitListening()
        port = server.waitWebListening()
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
        )
        with opener.open(f"https://localhost:{port}/", timeout=TIMEOUT) as response:
            self.assertEqual(response.status, 200)
        peer = WSPeer(port, context)
        self.addCleanup(peer.close)
        self.assertEqual(peer.status, 101)
        peer.expect("hello")
        peer.send({"type": "name", "nick": "Secure"})
        self.assertEqual(peer.expect("welcome")["nick"], "Secure")
        peer.send({"type": "say", "room": "lobby", "text": "over wss", "cid": "1"})
        self.assertEqual(peer.expect("said")["text"], "over wss")
        peer.send({"type": "quit"})
        self.assertEqual(peer.expectClose(), 1000)
