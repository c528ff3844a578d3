"""
A plain IRC connection for end-to-end tests: lines in and out over a real socket to a real
server, each read parsed (L{chatsvc.irc.message.parse}), every wait bounded.
"""

from __future__ import annotations

import base64
import socket
import ssl
import time

from chatsvc.irc.message import Message, parse
from tests.processes import TIMEOUT

__all__ = ["IrcSocket"]


class IrcSocket:
    """One connection to an IRC door on 127.0.0.1."""

    def __init__(self, port: int, context: ssl.SSLContext | None = None) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.socket = context.wrap_socket(raw, server_hostname="localhost") if context else raw
        self.file = self.socket.makefile("rb")
        self.seen: list[Message] = []

    def send(self, *lines: str) -> None:
        for line in lines:
            self.socket.sendall(line.encode("utf-8") + b"\r\n")

    def raw(self) -> bytes:
        """The next line as sent, its C{\\r\\n} included (b"" once the server closed)."""
        return self.file.readline()

    def read(self) -> Message:
        line = self.raw()
        if not line:
            raise AssertionError("the server closed the connection")
        message = parse(line.decode("utf-8").rstrip("\r\n"))
        self.seen.append(message)
        return message

    def expect(self, command: str, *params: str, timeout: float = TIMEOUT) -> Message:
        """
        Read until a message with C{command} whose first parameters are C{params} (each a
        literal, or C{None}... none here: literals only); that message. PINGs are answered.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self.read()
            if message.command == "PING":
                self.send(f"PONG :{message.params[-1]}")
                continue
            if message.command == command and message.params[: len(params)] == params:
                return message
        raise AssertionError(f"no {command} {params} within {timeout:g} s")

    def register(self, nick: str, *caps: str, sasl: tuple[str, str] | None = None) -> Message:
        """Register (negotiating C{caps}, logging in with SASL PLAIN if given); the 001."""
        self.send("CAP LS 302")
        self.expect("CAP", "*", "LS")
        wanted = list(caps) + (["sasl"] if sasl else [])
        if wanted:
            self.send(f"CAP REQ :{' '.join(wanted)}")
            self.expect("CAP", "*", "ACK")
        self.send(f"NICK {nick}", f"USER {nick.lower()} 0 * :{nick}")
        if sasl:
            self.send("AUTHENTICATE PLAIN")
            self.expect("AUTHENTICATE", "+")
            account, password = sasl
            self.send("AUTHENTICATE " + base64.b64encode(f"\0{account}\0{password}".encode()).decode())
            self.expect("903")
        self.send("CAP END")
        return self.expect("001")

    def close(self) -> None:
        self.file.close()
        self.socket.close()
