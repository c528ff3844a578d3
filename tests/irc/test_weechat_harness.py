"""
The WeeChat harness (L{tests.weechat}) against a fake IRC server of the test's own: a plain
socket on 127.0.0.1, served by a thread, that registers one client and plays one channel.
"""

from __future__ import annotations

import base64
import queue
import re
import socket
import ssl
import threading
import time
from pathlib import Path

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.certificates import serverCertificate
from tests.processes import TIMEOUT
from tests.weechat import WeeChat, fifoPlugin
from tests.web.test_browser_setup import executable, setEnvironment


class FakeIRCServer:
    """
    One connection's worth of IRC: the registration, C{001} and C{376}, then, on
    C{JOIN #test}, the join and a message from bob. Every line the client sent is in
    L{received}, in order.

    @param capabilities: what C{CAP LS} offers (none by default); those asked for with
        C{CAP REQ} are acknowledged if offered.
    @param sasl: the user name and password that C{AUTHENTICATE PLAIN} accepts.
    @param tls: a server context to speak TLS with.
    """

    def __init__(
        self,
        test: SynchronousTestCase,
        capabilities: str = "",
        sasl: tuple[str, str] | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.capabilities = capabilities
        self.sasl = sasl
        self.tls = tls
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(TIMEOUT)
        self.port: int = self.listener.getsockname()[1]
        self.received: queue.Queue[str] = queue.Queue()
        self.lines: list[str] = []
        self.errors: list[BaseException] = []
        self._connection: socket.socket | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        test.addCleanup(self.stop)

    def _serve(self) -> None:
        try:
            connection, _ = self.listener.accept()
            connection.settimeout(TIMEOUT)
            if self.tls is not None:
                connection = self.tls.wrap_socket(connection, server_side=True)
            self._connection = connection
            self._converse(connection)
        except (OSError, ssl.SSLError) as error:
            if not self._stopping.is_set():
                self.errors.append(error)

    def _converse(self, connection: socket.socket) -> None:
        nick: str | None = None
        user = False
        negotiating = False
        registered = False
        pending = b""
        while not self._stopping.is_set():
            data = connection.recv(4096)
            if not data:
                return
            pending += data
            *complete, pending = pending.split(b"\n")
            for raw in complete:
                line = raw.rstrip(b"\r").decode("utf-8", "replace")
                self.received.put(line)
                command, _, rest = line.partition(" ")
                command = command.upper()
                if command == "CAP" and rest.startswith("LS"):
                    negotiating = True
                    self._send(f":fake CAP * LS :{self.capabilities}")
                elif command == "CAP" and rest.startswith("REQ"):
                    asked = rest.partition(":")[2].split()
                    verb = "ACK" if set(asked) <= set(self.capabilities.split()) else "NAK"
                    self._send(f":fake CAP * {verb} :{' '.join(asked)}")
                elif command == "CAP" and rest.startswith("END"):
                    negotiating = False
                elif command == "AUTHENTICATE" and rest == "PLAIN":
                    self._send("AUTHENTICATE +")
                elif command == "AUTHENTICATE":
                    fields = base64.b64decode(rest).decode("utf-8").split("\0")
                    if self.sasl is not None and fields[1:] == list(self.sasl):
                        self._send(f":fake 900 * * {self.sasl[0]} :You are now logged in")
                        self._send(":fake 903 * :SASL authentication successful")
                    else:
                        self._send(":fake 904 * :SASL authentication failed")
                elif command == "NICK":
                    nick = rest.lstrip(":")
                elif command == "USER":
                    user = True
                elif command == "PING":
                    self._send(f":fake PONG fake {rest}")
                elif command == "JOIN" and rest == "#test" and registered:
                    self._send(f":{nick}!u@h JOIN #test")
                    self._send(":bob!u@h PRIVMSG #test :hello from bob")
                if not registered and nick and user and not negotiating:
                    registered = True
                    self._send(f":fake 001 {nick} :Welcome")
                    self._send(f":fake 376 {nick} :End")

    def _send(self, line: str) -> None:
        assert self._connection is not None
        self._connection.sendall(line.encode("utf-8") + b"\r\n")

    def expect(self, pattern: str, timeout: float = TIMEOUT) -> str:
        """Wait for a line from the client matching C{pattern} (searched); that line."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.received.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(
                    f"no line matching {pattern!r} from WeeChat within {timeout:g} s; got "
                    f"{self.lines!r} (errors: {self.errors!r})"
                ) from None
            self.lines.append(line)
            if re.search(pattern, line):
                return line

    def stop(self) -> None:
        self._stopping.set()
        for sock in (self._connection, self.listener):
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
        self._thread.join(TIMEOUT)


def _tlsContext(directory: Path) -> ssl.SSLContext:
    """A server context with a certificate for 127.0.0.1 from a CA of its own, in C{directory}/ca.pem."""
    directory.mkdir(parents=True)
    key, chain, _ = serverCertificate(directory)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain, key)
    return context


class WeeChatHarnessTests(SynchronousTestCase):
    def test_joinReadSay(self) -> None:
        """
        WeeChat registers with the fake server, joins #test, shows bob's message in the #test
        buffer, and sends what the test says there.
        """
        weechat = WeeChat(self)
        server = FakeIRCServer(self)
        weechat.addServer("fake", "127.0.0.1", server.port, "alice")
        weechat.connect("fake")
        server.expect(r"^NICK :?alice$")
        weechat.command("/join #test", buffer="irc.server.fake")
        server.expect(r"^JOIN #test$")
        line = weechat.waitFor("irc.fake.#test", r"^bob\thello from bob$")
        self.assertEqual((line.buffer, line.prefix, line.message), ("irc.fake.#test", "bob", "hello from bob"))
        weechat.say("irc.fake.#test", "hi bob")
        server.expect(r"^PRIVMSG #test :hi bob$")
        weechat.waitFor("irc.fake.#test", r"^alice\thi bob$")
        self.assertEqual(server.errors, [])

    def test_sayStartingWithSlash(self) -> None:
        """L{WeeChat.say} sends text starting with C{/} as a message, not as a command."""
        weechat = WeeChat(self)
        server = FakeIRCServer(self)
        weechat.addServer("fake", "127.0.0.1", server.port, "alice")
        weechat.connect("fake")
        weechat.command("/join #test", buffer="irc.server.fake")
        weechat.waitFor("irc.fake.#test", r"hello from bob")
        weechat.say("irc.fake.#test", "/not a command")
        server.expect(r"^PRIVMSG #test :/not a command$")

    def test_saslAndCapabilities(self) -> None:
        """
        WeeChat asks for the capabilities it was told to among those offered, and logs in with
        SASL PLAIN with the user name and password given (a password with a space, a C{;} and a
        quote reaches the server whole).
        """
        weechat = WeeChat(self)
        password = 'se cret;"x'
        server = FakeIRCServer(self, capabilities="sasl server-time away-notify", sasl=("alice", password))
        weechat.addServer(
            "fake", "127.0.0.1", server.port, "alice", sasl=("alice", password),
            capabilities="server-time",
        )
        weechat.connect("fake")
        requested = server.expect(r"^CAP REQ ")
        self.assertEqual(sorted(requested.partition(":")[2].split()), ["sasl", "server-time"])
        server.expect(r"^AUTHENTICATE PLAIN$")
        payload = server.expect(r"^AUTHENTICATE ").partition(" ")[2]
        self.assertEqual(base64.b64decode(payload), f"alice\0alice\0{password}".encode())
        weechat.waitFor("irc.server.fake", r"SASL authentication successful")

    def test_saslFailureFailsAtOnce(self) -> None:
        """A refused SASL login disconnects WeeChat, and L{WeeChat.connect} fails without waiting out its timeout."""
        weechat = WeeChat(self)
        server = FakeIRCServer(self, capabilities="sasl", sasl=("alice", "right"))
        weechat.addServer("fake", "127.0.0.1", server.port, "alice", sasl=("alice", "wrong"))
        started = time.monotonic()
        with self.assertRaises(self.failureException) as caught:
            weechat.connect("fake")
        self.assertLess(time.monotonic() - started, TIMEOUT / 2)
        self.assertIn("failed to connect to fake", str(caught.exception))
        self.assertIn("--\tirc: disconnected from server", str(caught.exception))

    def test_tls(self) -> None:
        """With C{tls} and C{ca}, WeeChat checks the server's certificate against that CA."""
        directory = Path(self.mktemp())
        weechat = WeeChat(self)
        server = FakeIRCServer(self, tls=_tlsContext(directory))
        weechat.addServer("fake", "127.0.0.1", server.port, "alice", tls=True, ca=directory / "ca.pem")
        weechat.connect("fake")
        weechat.command("/join #test", buffer="irc.server.fake")
        weechat.waitFor("irc.fake.#test", r"^bob\thello from bob$")

    def test_tlsUntrusted(self) -> None:
        """A certificate from another CA than C{ca}: WeeChat refuses it, and connect fails at once."""
        directory, other = Path(self.mktemp()), Path(self.mktemp())
        weechat = WeeChat(self)
        _tlsContext(other)
        server = FakeIRCServer(self, tls=_tlsContext(directory))
        weechat.addServer("fake", "127.0.0.1", server.port, "alice", tls=True, ca=other / "ca.pem")
        started = time.monotonic()
        with self.assertRaises(self.failureException) as caught:
            weechat.connect("fake")
        self.assertLess(time.monotonic() - started, TIMEOUT / 2)
        self.assertIn("=!=\tgnutls: peer's certificate is NOT trusted", str(caught.exception))

    def test_connectionRefused(self) -> None:
        """Nothing listening: L{WeeChat.connect} fails at once, showing WeeChat's error."""
        weechat = WeeChat(self)
        with socket.socket() as unused:
            unused.bind(("127.0.0.1", 0))
            port = unused.getsockname()[1]
        weechat.addServer("fake", "127.0.0.1", port, "alice")
        with self.assertRaises(self.failureException) as caught:
            weechat.connect("fake", timeout=TIMEOUT)
        self.assertIn("=!=\tirc: connection refused", str(caught.exception))

    def test_waitForFailsShowingTheLog(self) -> None:
        """A wait that times out fails the test, showing what the buffer logged."""
        weechat = WeeChat(self)
        weechat.command("/print something else")
        weechat.waitFor("core.weechat", "something else")
        with self.assertRaises(self.failureException) as caught:
            weechat.waitFor("core.weechat", "never printed", timeout=0.2)
        self.assertIn("no 'never printed' (x1) in core.weechat after 0.2 s", str(caught.exception))
        self.assertIn("\tsomething else", str(caught.exception))

    def test_buffersAndPatterns(self) -> None:
        """L{WeeChat.lines} takes a glob pattern over buffers' full names; times are parsed."""
        weechat = WeeChat(self)
        server = FakeIRCServer(self)
        weechat.addServer("fake", "127.0.0.1", server.port, "alice")
        weechat.connect("fake")
        weechat.command("/join #test", buffer="irc.server.fake")
        line = weechat.waitFor("irc.fake.*", r"hello from bob")
        self.assertEqual(line.buffer, "irc.fake.#test")
        self.assertLess(abs(time.time() - line.time.timestamp()), TIMEOUT * 2)
        self.assertEqual(weechat.buffers(), ["core.weechat", "irc.fake.#test", "irc.server.fake"])


class RuleTests(SynchronousTestCase):
    """Skip when WeeChat or its fifo plugin is missing, fail under C{CI=true}; no WeeChat runs."""

    def setUp(self) -> None:
        self.prefix = Path(self.mktemp()).resolve()
        (self.prefix / "bin").mkdir(parents=True)
        setEnvironment(self, "PATH", str(self.prefix / "bin"))

    def test_missingSkips(self) -> None:
        """Without weechat-headless, and C{CI} unset, the test skips, saying how to install it."""
        setEnvironment(self, "CI", None)
        with self.assertRaises(SkipTest) as caught:
            WeeChat(self)
        self.assertEqual(
            str(caught.exception), "weechat-headless is not installed (scripts/setup-irc installs it)"
        )

    def test_missingFailsUnderCI(self) -> None:
        """Without weechat-headless under C{CI=true}, the test fails, with the reason."""
        setEnvironment(self, "CI", "true")
        with self.assertRaises(self.failureException) as caught:
            WeeChat(self)
        self.assertIn("weechat-headless is not installed", str(caught.exception))
        self.assertIn("CI=true", str(caught.exception))

    def test_noFifoPluginSkips(self) -> None:
        """A weechat-headless without the fifo plugin next to it: skipped, saying which package has it."""
        setEnvironment(self, "CI", None)
        executable(self.prefix / "bin" / "weechat-headless", "#!/bin/sh\necho 3.8\n")
        with self.assertRaises(SkipTest) as caught:
            WeeChat(self)
        self.assertIn("fifo plugin is not installed", str(caught.exception))
        self.assertIn("weechat-plugins", str(caught.exception))

    def test_fifoPlugin(self) -> None:
        """L{fifoPlugin} looks in C{lib/*/weechat/plugins}, as Debian installs it, and C{lib/weechat/plugins}."""
        weechat = str(self.prefix / "bin" / "weechat-headless")
        self.assertIsNone(fifoPlugin(weechat))
        for where in ("lib/weechat/plugins", "lib/x86_64-linux-gnu/weechat/plugins"):
            plugin = self.prefix / where / "fifo.so"
            plugin.parent.mkdir(parents=True)
            plugin.write_bytes(b"")
            self.assertEqual(fifoPlugin(weechat), plugin)
