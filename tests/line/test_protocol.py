"""
Tests for L{chatsvc.line.protocol}: the line protocol against in-memory transports.
"""

from __future__ import annotations

import socket
from typing import Any, cast

from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Protocol
from twisted.internet.interfaces import ITCPTransport
from twisted.internet.task import Clock
from twisted.internet.abstract import FileDescriptor
from twisted.internet.tcp import Connection as TCPConnection
from twisted.internet.testing import EventLoggingObserver, MemoryReactor, StringTransport
from twisted.logger import LogLevel, globalLogPublisher
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import alsoProvides
from zope.interface.verify import verifyObject

from chatsvc.chat import MAX_NICK_LENGTH, Hub, IMember, NicknameTaken
from chatsvc.sessions.limits import Limits
from chatsvc.line.protocol import ChatFactory, ChatProtocol, unsentBytes
from chatsvc.sessions.outbox import FLUSH_CHUNK
from tests.chat.test_nicknames import SlowNicknames

_nextPort = [40000]


class Client:
    """One in-memory connection to a L{ChatFactory}, and what the server wrote to it."""

    def __init__(self, factory: ChatFactory, transport: StringTransport | None = None) -> None:
        _nextPort[0] += 1
        address = IPv4Address("TCP", "127.0.0.1", _nextPort[0])
        self.transport = transport or StringTransport(peerAddress=address)
        protocol = factory.buildProtocol(address)
        assert isinstance(protocol, ChatProtocol)
        self.protocol: ChatProtocol = protocol
        self.clock = factory.clock
        protocol.makeConnection(self.transport)

    def send(self, data: str | bytes) -> None:
        """Send C{data} as the client would, all at once, in one turn of the reactor."""
        self.protocol.dataReceived(data.encode("utf-8") if isinstance(data, str) else data)
        assert isinstance(self.clock, Clock)
        self.clock.advance(0)

    def lines(self) -> list[str]:
        """The lines written to the client since the last call, decoded."""
        value = self.transport.value()
        self.transport.clear()
        assert value == b"" or value.endswith(b"\r\n"), value
        return value.decode("utf-8").split("\r\n")[:-1] if value else []

    def drop(self) -> None:
        """The connection closes (however it was closed)."""
        self.protocol.connectionLost()

    @property
    def closing(self) -> bool:
        """Whether the server has asked to close this connection."""
        return bool(self.transport.disconnecting)


class ProtocolTestCase(SynchronousTestCase):
    """Helpers: a factory with a fresh room, and clients that join it."""

    limits = Limits()

    def setUp(self) -> None:
        self.clock = Clock()
        self.room = Hub(self.clock)
        self.factory = ChatFactory(self.room, self.limits)

    def connect(self) -> Client:
        """A new connection that has received its C{GET_NAME}."""
        client = Client(self.factory)
        self.assertEqual(client.lines(), ["GET_NAME"])
        return client

    def join(self, nick: str) -> Client:
        """A new connection that has joined as C{nick}; everyone's output so far is cleared."""
        client = self.connect()
        client.send(nick + "\n")
        self.assertEqual(client.lines()[0], f"{nick} connected to server!")
        for other in self.factory.connections:
            cast(StringTransport, other.transport).clear()
        return client


class HandshakeTests(ProtocolTestCase):
    """C{GET_NAME}, nicknames, and the newcomer's welcome."""

    def test_providesIMember(self) -> None:
        """A connection is a room member like any other."""
        verifyObject(IMember, self.connect().protocol)

    def test_greeting(self) -> None:
        """A new connection is asked for its nickname, and nothing else."""
        client = Client(self.factory)
        self.assertEqual(client.lines(), ["GET_NAME"])
        self.assertEqual(len(self.room), 0)
        self.assertEqual(self.factory.connectionCount, 1)

    def test_join(self) -> None:
        """The newcomer is welcomed with the members list; the others see it join."""
        alice = self.join("Alice")
        bob = self.connect()
        bob.send("Bob\n")
        self.assertEqual(
            bob.lines(),
            [
                "Bob connected to server!",
                "*** Members (2): Alice, Bob",
                "*** Type /help for commands, /quit to leave; you are talking in lobby.",
            ],
        )
        self.assertEqual(alice.lines(), ["Bob joined!"])

    def test_invalidNickname(self) -> None:
        """An invalid nickname gets an error and GET_NAME again, on the same connection."""
        client = self.connect()
        client.send("two words\n")
        self.assertEqual(
            client.lines(), ["*** Error: a nickname may not contain spaces", "GET_NAME"]
        )
        client.send("/who\n")
        self.assertEqual(
            client.lines(), ["*** Error: a nickname may not start with '/'", "GET_NAME"]
        )
        client.send("Alice\n")
        self.assertEqual(client.lines()[0], "Alice connected to server!")
        self.assertFalse(client.closing)

    def test_nicknameInUse(self) -> None:
        """A nickname in use, in any case, is refused; the holder is not disturbed."""
        alice = self.join("Alice")
        client = self.connect()
        client.send("aLiCe\r\n")
        self.assertEqual(
            client.lines(), ["*** Error: nickname 'aLiCe' is already in use", "GET_NAME"]
        )
        self.assertEqual(alice.lines(), [])
        self.assertEqual(self.room.nicks(), ["Alice"])

    def test_quitAtNamePrompt(self) -> None:
        """A quit word instead of a nickname ends the session without joining."""
        for word in ["q", "exit", "close", "disconnect", "/quit", "/QUIT bye"]:
            with self.subTest(word=word):
                client = self.connect()
                client.send(word + "\n")
                self.assertEqual(client.lines(), ["*** Goodbye!"])
                self.assertTrue(client.closing)
                client.drop()
        self.assertEqual(len(self.room), 0)
        self.assertEqual(self.factory.connectionCount, 0)

    def test_quitWordsAreNoNicknames(self) -> None:
        """
        A quit word in another case (which does not end the session) is refused as a nickname,
        and so is renaming oneself to one: the quit words are the line door's to refuse.
        """
        client = self.connect()
        client.send("EXIT\n")
        self.assertEqual(
            client.lines(), ["*** Error: 'EXIT' is a quit word and cannot be a nickname", "GET_NAME"]
        )
        alice = self.join("Alice")
        alice.send("/nick q\n/nick Close\n")
        self.assertEqual(
            alice.lines(),
            [
                "*** Error: 'q' is a quit word and cannot be a nickname",
                "*** Error: 'Close' is a quit word and cannot be a nickname",
            ],
        )
        self.assertEqual(self.room.nicks(), ["Alice"])

    def test_nicknameSplitAcrossReads(self) -> None:
        """A nickname arriving a byte at a time, UTF-8 split mid-character, works."""
        client = self.connect()
        for byte in "Zoë\n".encode():
            client.send(bytes([byte]))
        self.assertEqual(client.lines()[0], "Zoë connected to server!")

    def test_linesPipelinedWithNickname(self) -> None:
        """Lines sent right behind the nickname, in the same read, are chat."""
        alice = self.join("Alice")
        bob = self.connect()
        bob.send("Bob\nhello\n")
        self.assertEqual(alice.lines(), ["Bob joined!", "Bob: hello"])

    def test_tcpOptions(self) -> None:
        """
        On TCP, Nagle's algorithm is off so that each line leaves at once, and keepalive is on
        with the configured idle time, so that dead peers are found.
        """
        handle = socket.socket()
        self.addCleanup(handle.close)

        class TCPTransport(StringTransport):
            noDelay = keepAlive = False

            def setTcpNoDelay(self, enabled: bool) -> None:
                self.noDelay = enabled

            def setTcpKeepAlive(self, enabled: bool) -> None:
                self.keepAlive = enabled

        transport = TCPTransport()
        transport.socket = handle  # type: ignore[attr-defined]
        alsoProvides(transport, ITCPTransport)
        Client(self.factory, transport)
        self.assertTrue(transport.noDelay)
        self.assertTrue(transport.keepAlive)
        if hasattr(socket, "TCP_KEEPIDLE"):
            self.assertEqual(
                handle.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
                self.limits.keepAliveIdle,
            )


class ChatTests(ProtocolTestCase):
    """Chat lines, commands, and what each member sees."""

    def test_chat(self) -> None:
        """A line reaches every other member with the sender's nick; not the sender."""
        alice, bob, carol = self.join("Alice"), self.join("Bob"), self.join("Carol")
        alice.send("hello, world\n")
        self.assertEqual(bob.lines(), ["Alice: hello, world"])
        self.assertEqual(carol.lines(), ["Alice: hello, world"])
        self.assertEqual(alice.lines(), [])

    def test_cannotSpeakAsAnother(self) -> None:
        """Text that looks like someone else's line still carries the real sender's prefix."""
        alice, bob = self.join("Alice"), self.join("Bob")
        alice.send("Bob: I owe Alice money\n")
        self.assertEqual(bob.lines(), ["Alice: Bob: I owe Alice money"])

    def test_crlfAndSplitLines(self) -> None:
        """CRLF and LF both end lines; lines split across reads are joined."""
        alice, bob = self.join("Alice"), self.join("Bob")
        alice.send("one\r\ntw")
        alice.send("o\nthr")
        self.assertEqual(bob.lines(), ["Alice: one", "Alice: two"])
        alice.send("ee\r\n")
        self.assertEqual(bob.lines(), ["Alice: three"])

    def test_unicode(self) -> None:
        """UTF-8 text in any script, emoji included, is relayed intact."""
        alice, bob = self.join("Alice"), self.join("Bob")
        alice.send("héllo 你好 👋🏽 👨‍👩‍👧\n")
        self.assertEqual(bob.lines(), ["Alice: héllo 你好 👋🏽 👨‍👩‍👧"])

    def test_terminalInjectionNeutralized(self) -> None:
        """Escape sequences and control characters reach nobody's terminal."""
        alice, bob = self.join("Alice"), self.join("Bob")
        alice.send("\x1b[2J\x1b]0;owned\x07 x\x08y \x9b1m \u202etxt.exe\rfake\n")
        self.assertEqual(
            bob.lines(), ["Alice: ^[[2J^[]0;owned^G x^Hy <U+009B>1m <U+202E>txt.exe^Mfake"]
        )

    def test_emptyLinesIgnored(self) -> None:
        """Empty and blank lines are ignored without an error."""
        alice, bob = self.join("Alice"), self.join("Bob")
        alice.send("\n\r\n   \n\t\n")
        self.assertEqual(bob.lines(), [])
        self.assertEqual(alice.lines(), [])

    def test_invalidUTF8(self) -> None:
        """Invalid UTF-8 is refused to its sender; the line before and after still go out."""
        alice, bob = self.join("Alice"), self.join("Bob")
        alice.send(b"before\n\xff\xfe bad\nafter\n")
        self.assertEqual(alice.lines(), ["*** Error: line is not valid UTF-8; it was discarded"])
        self.assertEqual(bob.lines(), ["Alice: before", "Alice: after"])
        self.assertFalse(alice.closing)

    def test_invalidUTF8Nickname(self) -> None:
        """An undecodable nickname is refused and asked for again."""
        client = self.connect()
        client.send(b"\xc3(\n")
        self.assertEqual(
            client.lines(), ["*** Error: line is not valid UTF-8; it was discarded", "GET_NAME"]
        )

    def test_whoAndHelp(self) -> None:
        """/who lists the members, sorted; /help lists every command."""
        alice = self.join("carol")
        self.join("Alice")
        self.join("bob")
        alice.send("/who\n")
        self.assertEqual(alice.lines(), ["*** Members (3): Alice, bob, carol"])
        alice.send("/HELP\n")
        helpLines = alice.lines()
        self.assertTrue(all(line.startswith("*** ") for line in helpLines))
        for command in ["/who", "/nick", "/me", "/msg", "/say", "//", "/quit", "/help"]:
            self.assertTrue(any(command in line for line in helpLines), command)

    def test_nick(self) -> None:
        """/nick renames and tells everyone, the renamed member included."""
        alice, bob = self.join("Alice"), self.join("Bob")
        alice.send("/nick Alicia\n")
        self.assertEqual(alice.lines(), ["*** Alice is now known as Alicia"])
        self.assertEqual(bob.lines(), ["*** Alice is now known as Alicia"])
        alice.send("hi\n")
        self.assertEqual(bob.lines(), ["Alicia: hi"])

    def test_nickErrors(self) -> None:
        """/nick with no name, a bad name or a taken one gets a clear error."""
        alice, bob = self.join("Alice"), self.join("Bob")
        alice.send("/nick\n/nick BOB\n/nick a:b\n")
        self.assertEqual(
            alice.lines(),
            [
                "*** Error: usage: /nick NEWNAME",
                "*** Error: nickname 'BOB' is already in use",
                "*** Error: a nickname may not contain ':'",
            ],
        )
        self.assertEqual(bob.lines(), [])

    def test_me(self) -> None:
        """/me sends an action to the others."""
        alice, bob = self.join("Alice"), self.join("Bob")
        alice.send("/me waves\n/me\n")
        self.assertEqual(bob.lines(), ["* Alice waves"])
        self.assertEqual(alice.lines(), ["*** Error: usage: /me ACTION"])

    def test_msg(self) -> None:
        """/msg reaches only its recipient; the sender gets a receipt."""
        alice, bob, carol = self.join("Alice"), self.join("Bob"), self.join("Carol")
        alice.send("/msg bob  meet at 5\n")
        self.assertEqual(bob.lines(), ["*Alice* meet at 5"])
        self.assertEqual(alice.lines(), ["-> *Bob* meet at 5"])
        self.assertEqual(carol.lines(), [])

    def test_msgErrors(self) -> None:
        """/msg to an unknown nick, or without text, is an error, and sends nothing."""
        alice, bob = self.join("Alice"), self.join("Bob")
        alice.send("/msg Zed hi\n/msg Bob\n/msg\n")
        self.assertEqual(
            alice.lines(),
            [
                "*** Error: no such member: Zed",
                "*** Error: usage: /msg NICK TEXT",
                "*** Error: usage: /msg NICK TEXT",
            ],
        )
        self.assertEqual(bob.lines(), [])

    def test_escapes(self) -> None:
        """/say and // send text that would otherwise be a command or a quit word."""
        alice, bob = self.join("Alice"), self.join("Bob")
        alice.send("/say q\n//shrug\n/say /quit\n")
        self.assertEqual(bob.lines(), ["Alice: q", "Alice: /shrug", "Alice: /quit"])
        self.assertFalse(alice.closing)

    def test_unknownCommand(self) -> None:
        """An unknown command is an error for its sender and nobody else hears of it."""
        alice, bob = self.join("Alice"), self.join("Bob")
        alice.send("/frobnicate now\n/\x1b[31m\n")
        self.assertEqual(
            alice.lines(),
            [
                "*** Error: unknown command /frobnicate (try /help)",
                "*** Error: unknown command /^[[31m (try /help)",
            ],
        )
        self.assertEqual(bob.lines(), [])

    def test_noLogPerMessage(self) -> None:
        """Chat lines are not logged at info level (or above)."""
        alice, bob = self.join("Alice"), self.join("Bob")
        observer = EventLoggingObserver.createWithCleanup(
            self, globalLogPublisher  # type: ignore[arg-type]  # any trial test case works
        )
        alice.send("hello\n/me waves\n/msg Bob hi\n")
        self.assertEqual([e for e in observer if e["log_level"] >= LogLevel.info], [])


class LongLineTests(ProtocolTestCase):
    """Over-long lines are refused and skipped without closing the connection."""

    maxLineLength = 300
    limits = Limits(maxLineLength=maxLineLength, floodBurst=10_000, addressFloodBurst=10_000)

    def error(self) -> str:
        return f"*** Error: line too long (over {self.maxLineLength} bytes); it was discarded"

    def test_atTheLimit(self) -> None:
        """A line of exactly the limit, with LF or CRLF, is accepted."""
        alice, bob = self.join("Alice"), self.join("Bob")
        text = "x" * (self.maxLineLength)
        alice.send(text + "\n" + text + "\r\n")
        self.assertEqual(bob.lines(), ["Alice: " + text] * 2)

    def test_overTheLimitInOneRead(self) -> None:
        """A long line between two good ones is refused; both neighbours go out."""
        alice, bob = self.join("Alice"), self.join("Bob")
        alice.send("before\n" + "y" * (self.maxLineLength + 1) + "\nafter\n")
        self.assertEqual(alice.lines(), [self.error()])
        self.assertEqual(bob.lines(), ["Alice: before", "Alice: after"])
        self.assertFalse(alice.closing)

    def test_overTheLimitAcrossReads(self) -> None:
        """A huge line arriving in many reads gets one error and is skipped to its end."""
        alice, bob = self.join("Alice"), self.join("Bob")
        for _ in range(50):
            alice.send("z" * 1000)
        alice.send("zzz\r\nafter\n")
        self.assertEqual(alice.lines(), [self.error()])
        self.assertEqual(bob.lines(), ["Alice: after"])

    def test_manyLongLinesInOneRead(self) -> None:
        """Many long lines in one read each get an error, with no deep recursion."""
        alice, bob = self.join("Alice"), self.join("Bob")
        alice.send(("w" * (self.maxLineLength + 5) + "\n") * 1000 + "ok\n")
        self.assertEqual(alice.lines(), [self.error()] * 1000)
        self.assertEqual(bob.lines(), ["Alice: ok"])

    def test_longNickname(self) -> None:
        """An over-long first line is refused and the nickname asked for again."""
        client = self.connect()
        client.send("n" * 5000 + "\nNed\n")
        self.assertEqual(client.lines()[:3], [self.error(), "GET_NAME", "Ned connected to server!"])


class LeavingTests(ProtocolTestCase):
    """Quit words, /quit, and dropped connections."""

    def test_quitWords(self) -> None:
        """Each quit word says goodbye, closes, and tells the others once."""
        for word in ["q", "exit", "close", "disconnect", "  q  "]:
            with self.subTest(word=word):
                leaver, stayer = self.join("Leaver"), self.join("Stayer")
                leaver.send(word + "\n")
                self.assertEqual(leaver.lines(), ["*** Goodbye, Leaver!"])
                self.assertTrue(leaver.closing)
                leaver.drop()
                self.assertEqual(stayer.lines(), ["Leaver left!"])
                stayer.send("q\n")
                stayer.drop()
        self.assertEqual(len(self.room), 0)

    def test_quitWithReason(self) -> None:
        """/quit REASON shows the reason to the others."""
        alice, bob = self.join("Alice"), self.join("Bob")
        alice.send("/quit off to lunch\n")
        self.assertEqual(alice.lines(), ["*** Goodbye, Alice!"])
        self.assertEqual(bob.lines(), ["Alice left! (off to lunch)"])

    def test_linesAfterQuitIgnored(self) -> None:
        """Nothing sent after a quit, even in the same read, reaches anyone."""
        alice, bob = self.join("Alice"), self.join("Bob")
        alice.send("bye all\nq\nstill here?\n")
        self.assertEqual(bob.lines(), ["Alice: bye all", "Alice left!"])
        alice.send("anyone?\n")
        self.assertEqual(bob.lines(), [])

    def test_drop(self) -> None:
        """A dropped connection is a leave, announced once, and frees the nickname."""
        alice, bob = self.join("Alice"), self.join("Bob")
        alice.drop()
        self.assertEqual(bob.lines(), ["Alice left! (connection lost)"])
        self.assertEqual(self.room.nicks(), ["Bob"])
        self.assertEqual(self.factory.connectionCount, 1)
        self.join("alice")

    def test_dropBeforeNaming(self) -> None:
        """A connection that never named itself leaves no trace in the room."""
        alice = self.join("Alice")
        client = self.connect()
        client.drop()
        self.assertEqual(alice.lines(), [])
        self.assertEqual(self.factory.connectionCount, 1)

    def test_serverDisconnect(self) -> None:
        """The server closing a connection tells its member why, and the others."""
        alice, bob = self.join("Alice"), self.join("Bob")
        alice.protocol.disconnect("server shutting down")
        self.assertEqual(alice.lines(), ["*** Disconnected: server shutting down"])
        self.assertEqual(bob.lines(), ["Alice left! (server shutting down)"])
        alice.drop()
        self.assertEqual(bob.lines(), [])


class LoggingTests(ProtocolTestCase):
    """The server's log events for connections and members."""

    def events(self, observer: Any) -> list[dict[str, Any]]:
        return [e["chatsvc_fields"] for e in observer if "chatsvc_fields" in e]

    def test_lifecycleLogged(self) -> None:
        """Connections and members are logged with counts; a peer's address is included."""
        observer = EventLoggingObserver.createWithCleanup(
            self, globalLogPublisher  # type: ignore[arg-type]  # any trial test case works
        )
        alice = self.join("Alice")
        alice.send("/nick Alicia\n")
        alice.send("q\n")
        alice.drop()
        events = self.events(observer)
        self.assertEqual(
            [e["event"] for e in events],
            [
                "connection_opened",
                "member_joined",
                "member_renamed",
                "member_left",
                "connection_closed",
            ],
        )
        joined = events[1]
        self.assertEqual(joined["nick"], "Alice")
        self.assertEqual(joined["members"], 1)
        self.assertEqual(joined["connections"], 1)
        self.assertTrue(joined["peer"].startswith("127.0.0.1:"))
        self.assertEqual(events[2]["old"], "Alice")
        self.assertEqual(events[3]["members"], 0)
        self.assertEqual(events[4]["connections"], 0)


class FloodTests(ProtocolTestCase):
    """The per-connection rate limit: a token bucket; past it, lines are delayed, not lost."""

    limits = Limits(floodRate=5, floodBurst=20)

    def test_pasteIsNotLimited(self) -> None:
        """A paste of up to the burst goes out at once, with no notice."""
        alice, bob = self.join("Alice"), self.join("Bob")
        alice.send("".join(f"line {n}\n" for n in range(20)))
        self.assertEqual(bob.lines(), [f"Alice: line {n}" for n in range(20)])
        self.assertEqual(alice.lines(), [])

    def test_typingIsNotLimited(self) -> None:
        """A fast typist (two lines a second, for ten minutes) is never slowed down."""
        alice, bob = self.join("Alice"), self.join("Bob")
        for n in range(1200):
            alice.send(f"{n}\n")
            self.clock.advance(0.5)
        self.assertEqual(len(bob.lines()), 1200)
        self.assertEqual(alice.lines(), [])
        self.assertFalse(alice.protocol.paused)

    def test_floodIsDelayedNotDropped(self) -> None:
        """
        Past the burst, lines wait and go out at the rate, in order; the sender is told once,
        and the socket is not read meanwhile.
        """
        alice, bob = self.join("Alice"), self.join("Bob")
        alice.send("".join(f"{n}\n" for n in range(30)))
        self.assertEqual(bob.lines(), [f"Alice: {n}" for n in range(20)])
        self.assertEqual(
            alice.lines(), ["*** You are sending too fast; your lines are being delayed."]
        )
        self.assertEqual(alice.transport.producerState, "paused")
        self.clock.advance(0.2)
        self.assertEqual(bob.lines(), ["Alice: 20"])
        self.clock.advance(1.8)
        self.assertEqual(bob.lines(), [f"Alice: {n}" for n in range(21, 30)])
        self.assertEqual(alice.lines(), [])
        self.clock.advance(10)
        self.assertEqual(alice.transport.producerState, "producing")
        self.assertFalse(alice.protocol.paused)

    def test_floodNoticeAtMostEvery30Seconds(self) -> None:
        """A sustained flood gets one notice per 30 seconds, not one per line."""
        alice = self.join("Alice")
        self.join("Bob")
        alice.send("x\n" * 200)
        for _ in range(40):
            self.clock.advance(1)
        notices = [line for line in alice.lines() if "too fast" in line]
        self.assertEqual(len(notices), 2)

    def test_longLinesCount(self) -> None:
        """Over-long lines count against the limit too, so errors cannot be flooded out."""
        alice = self.join("Alice")
        alice.send(("x" * 5000 + "\n") * 40)
        self.assertEqual(len(alice.lines()), 21)  # 20 errors and the notice
        self.clock.advance(0.2)
        self.assertEqual(len(alice.lines()), 1)

    def test_dropWhileDelayed(self) -> None:
        """A connection dropped while its lines wait leaves no timer behind."""
        alice = self.join("Alice")
        alice.send("x\n" * 50)
        alice.drop()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_quitWhileDelayed(self) -> None:
        """A quit word waiting behind a flood still ends the session when its turn comes."""
        alice, bob = self.join("Alice"), self.join("Bob")
        alice.send("x\n" * 25 + "q\n")
        bob.lines()
        self.clock.advance(2)
        self.assertEqual(bob.lines(), ["Alice: x"] * 5 + ["Alice left!"])
        self.assertTrue(alice.closing)


class NameTimeoutTests(ProtocolTestCase):
    """Connections that never choose a nickname."""

    limits = Limits(nameTimeout=30)

    def test_timeout(self) -> None:
        """A connection without a nickname after the timeout is told why and closed."""
        client = self.connect()
        self.clock.advance(29.9)
        self.assertFalse(client.closing)
        self.clock.advance(0.1)
        self.assertEqual(client.lines(), ["*** Disconnected: no nickname within 30 seconds"])
        self.assertTrue(client.closing)

    def test_failedAttemptsDoNotExtend(self) -> None:
        """Refused nicknames do not restart the clock."""
        client = self.connect()
        for _ in range(5):
            self.clock.advance(5)
            client.send("bad nick\n")
        self.clock.advance(5)
        self.assertTrue(client.closing)

    def test_namedMembersStay(self) -> None:
        """A member who chose a nickname in time is not timed out, however quiet."""
        alice = self.join("Alice")
        self.clock.advance(3600)
        self.assertFalse(alice.closing)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class LaterNicknameTests(ProtocolTestCase):
    """
    A nickname registry that answers later (as a cluster's does): the connection waits for the
    answer without reading, and then goes on with what it was sent meanwhile, in order.
    """

    limits = Limits(nameTimeout=30)

    def setUp(self) -> None:
        self.clock = Clock()
        self.registry = SlowNicknames()
        self.room = Hub(self.clock, nicknames=self.registry)
        self.factory = ChatFactory(self.room, self.limits)
        self.alice = self.connect()
        self.alice.send("Alice\n")
        self.grant("alice")
        self.alice.lines()

    def grant(self, key: str) -> None:
        """The registry grants C{key}; the reactor then writes what that caused."""
        self.registry.grant(key)
        self.clock.advance(0)

    def refuse(self, key: str, error: Exception) -> None:
        """The registry refuses C{key}; the reactor then writes what that caused."""
        self.registry.refuse(key, error)
        self.clock.advance(0)

    def test_linesWaitForTheAnswer(self) -> None:
        """
        Lines sent with the nickname are not read until it is granted, then handled in order:
        the welcome, the line said, the rename (itself waiting for its answer).
        """
        bob = self.connect()
        bob.send("Bob\nhello\n/nick Robert\nbye\n")
        self.assertEqual(bob.lines(), [])
        self.assertEqual(bob.transport.producerState, "paused")
        self.assertEqual(self.alice.lines(), [])
        self.grant("bob")
        self.assertEqual(
            bob.lines(),
            [
                "Bob connected to server!",
                "*** Members (2): Alice, Bob",
                "*** Type /help for commands, /quit to leave; you are talking in lobby.",
            ],
        )
        self.assertEqual(self.alice.lines(), ["Bob joined!", "Bob: hello"])
        self.assertEqual(list(self.registry.pending), ["robert"])
        self.assertEqual(bob.transport.producerState, "paused")
        self.grant("robert")
        self.clock.advance(0)
        self.assertEqual(bob.lines(), ["*** Bob is now known as Robert"])
        self.assertEqual(
            self.alice.lines(), ["*** Bob is now known as Robert", "Robert: bye"]
        )
        self.assertEqual(bob.transport.producerState, "producing")
        self.assertEqual(bob.protocol.nick, "Robert")

    def test_refused(self) -> None:
        """A nickname the registry refuses is an error and C{GET_NAME} again; reading goes on."""
        bob = self.connect()
        bob.send("Bob\n")
        self.refuse("bob", NicknameTaken("Bob"))
        self.assertEqual(
            bob.lines(), ["*** Error: nickname 'Bob' is already in use", "GET_NAME"]
        )
        self.assertEqual(bob.transport.producerState, "producing")
        bob.send("Bobby\n")
        self.grant("bobby")
        self.assertEqual(bob.lines()[0], "Bobby connected to server!")

    def test_renameRefused(self) -> None:
        """A rename the registry refuses is an error; the member keeps its nickname."""
        self.alice.send("/nick Bob\n")
        self.refuse("bob", ConnectionError("out of reach"))
        self.assertEqual(
            self.alice.lines(), ["*** Error: nickname 'Bob' cannot be claimed just now; try again"]
        )
        self.assertEqual(self.alice.protocol.nick, "Alice")
        self.assertEqual(self.alice.transport.producerState, "producing")

    def test_nameTimeoutWhileWaiting(self) -> None:
        """
        The name timeout still holds while the answer is awaited; a claim granted after the
        connection closed is given back, and nobody is told of a member who never arrived.
        """
        bob = self.connect()
        bob.send("Bob\n")
        self.clock.advance(30)
        self.assertEqual(bob.lines(), ["*** Disconnected: no nickname within 30 seconds"])
        bob.drop()
        self.grant("bob")
        self.clock.advance(0)
        self.assertEqual(bob.lines(), [])
        self.assertEqual(self.alice.lines(), [])
        self.assertEqual(self.registry.released, ["bob"])
        self.assertEqual(len(self.room), 1)

    def test_dropWhileRenaming(self) -> None:
        """A member gone during its rename gives both nicknames back, and is announced as left."""
        bob = self.connect()
        bob.send("Bob\n")
        self.grant("bob")
        self.alice.lines()
        bob.send("/nick Robert\n")
        bob.drop()
        self.assertEqual(self.alice.lines(), ["Bob left! (connection lost)"])
        self.grant("robert")
        self.assertEqual(self.registry.released, ["bob", "robert"])
        self.assertEqual(self.alice.lines(), [])


class SlowReaderTests(ProtocolTestCase):
    """
    Members that stop reading are cut before their backlog grows without bound. On a transport
    whose buffer cannot be measured (as here, L{StringTransport}), what is written after the
    transport says it is full is counted instead.
    """

    limits = Limits(maxSendQueue=10_000, floodBurst=100_000, addressFloodBurst=100_000)

    def test_cutPastTheBound(self) -> None:
        """
        Once the transport says its buffer is full, at most maxSendQueue more bytes are queued;
        then the member is cut and the room sees it leave, with the reason.
        """
        alice, slow, carol = self.join("Alice"), self.join("Slow"), self.join("Carol")
        assert slow.transport.producer is not None
        slow.transport.producer.pauseProducing()
        line = "m" * 90  # "Alice: " + 90 + CRLF = 99 bytes per line
        for _ in range(101):
            alice.send(f"{line}\n")
            slow.transport.producer.pauseProducing()  # as Twisted does on each write when full
        self.assertEqual(len(slow.lines()), 101)  # 9999 bytes: still within the bound
        self.assertFalse(slow.closing)
        alice.send(f"{line}\n")
        self.assertTrue(slow.transport.disconnected)  # aborted, not politely closed
        self.assertEqual(slow.lines(), [])
        # The cut happens while that line is being delivered, after Carol was given it.
        self.assertEqual(carol.lines()[-2:], [f"Alice: {line}", "Slow left! (send queue exceeded)"])
        self.assertEqual(self.room.nicks(), ["Alice", "Carol"])
        alice.send("still here\n")
        self.assertEqual(carol.lines(), ["Alice: still here"])
        self.assertEqual(slow.lines(), [])
        slow.drop()
        self.assertEqual(carol.lines(), [])

    def test_catchingUpResetsTheCount(self) -> None:
        """A member that reads again starts afresh; slow moments are forgiven."""
        alice, slow = self.join("Alice"), self.join("Slow")
        producer = slow.transport.producer
        assert producer is not None
        for _ in range(5):
            producer.pauseProducing()
            alice.send(("z" * 90 + "\n") * 80)
            producer.resumeProducing()
        self.assertFalse(slow.closing)
        self.assertEqual(len(slow.lines()), 400)

    def test_unmeasurable(self) -> None:
        """L{unsentBytes} has no answer for a transport without a Twisted write buffer."""
        self.assertIsNone(unsentBytes(StringTransport()))
        self.assertIsNone(unsentBytes(object()))

    def test_defaultFitsABusyRoom(self) -> None:
        """
        The default bound holds, at once, the flood burst of maximum-length lines of a dozen
        members with the longest nicknames.
        """
        defaults = Limits()
        line = MAX_NICK_LENGTH + len(": ") + defaults.maxLineLength + len("\r\n")
        self.assertGreaterEqual(defaults.maxSendQueue, 12 * defaults.floodBurst * line)


class BufferedTransport(FileDescriptor):
    """
    Twisted's own write buffering (L{FileDescriptor}: paused past 64 KiB, resumed only once
    empty), in front of a pretend kernel socket that takes only what the test lets the peer read.
    """

    def __init__(self, peer: IPv4Address) -> None:
        super().__init__(MemoryReactor())
        self.connected = 1
        self._peer = peer
        self._room = 0
        self.received = bytearray()
        self.aborted = False

    def writeSomeData(self, data: bytes) -> int:
        taken = min(len(data), self._room)
        self.received += data[:taken]
        self._room -= taken
        return taken

    def read(self, count: int | None = None) -> None:
        """The peer reads C{count} more bytes (everything, if L{None}), and the kernel sends."""
        unsent = unsentBytes(self)
        assert unsent is not None
        self._room += unsent if count is None else count
        self.doWrite()

    def lines(self) -> list[str]:
        """The lines the peer has read since the last call, decoded."""
        value = bytes(self.received)
        complete = value[: value.rfind(b"\r\n") + 2]
        del self.received[: len(complete)]
        return complete.decode("utf-8").split("\r\n")[:-1]

    def getPeer(self) -> IPv4Address:
        return self._peer

    def getHost(self) -> IPv4Address:
        return IPv4Address("TCP", "127.0.0.1", 5051)

    def abortConnection(self) -> None:
        self.aborted = True
        self.connected = 0


class MeasuredSendQueueTests(ProtocolTestCase):
    """
    On Twisted's own transports, the bound is on what really waits for the member: bytes
    written to the transport and not yet taken by the kernel.
    """

    limits = Limits(maxSendQueue=150_000, floodBurst=100_000, addressFloodBurst=100_000)
    text = "p" * 3993  # "Alice: " + text + CRLF = 4002 bytes

    def joinBuffered(self, nick: str) -> tuple[ChatProtocol, BufferedTransport]:
        """A member on a L{BufferedTransport}, joined, all its output read."""
        address = IPv4Address("TCP", "127.0.0.1", 45000)
        transport = BufferedTransport(address)
        protocol = self.factory.buildProtocol(address)
        assert isinstance(protocol, ChatProtocol)
        protocol.makeConnection(transport)
        protocol.dataReceived(f"{nick}\n".encode())
        self.clock.advance(0)
        transport.read()
        self.assertEqual(transport.lines()[:2], ["GET_NAME", f"{nick} connected to server!"])
        for other in self.factory.connections:
            if isinstance(other.transport, StringTransport):
                other.transport.clear()
        return protocol, transport

    def test_unsentBytes(self) -> None:
        """L{unsentBytes} counts what a L{FileDescriptor} holds and has not sent yet."""
        transport = BufferedTransport(IPv4Address("TCP", "127.0.0.1", 45000))
        self.assertEqual(unsentBytes(transport), 0)
        transport.write(b"a" * 1000)
        transport.write(b"b" * 500)
        self.assertEqual(unsentBytes(transport), 1500)
        transport.read(600)  # joins the pending writes, sends part of them
        self.assertEqual(unsentBytes(transport), 900)
        transport.write(b"c" * 100)
        self.assertEqual(unsentBytes(transport), 1000)
        transport.read()
        self.assertEqual(unsentBytes(transport), 0)
        self.assertEqual(bytes(transport.received), b"a" * 1000 + b"b" * 500 + b"c" * 100)

    def test_wrappedTransport(self) -> None:
        """
        Behind a protocol wrapper (as TLS is), what waits in the transport beneath is measured.
        """
        transport = BufferedTransport(IPv4Address("TCP", "127.0.0.1", 45000))
        wrapper = ProtocolWrapper(WrappingFactory(self.factory), Protocol())
        wrapper.makeConnection(transport)
        wrapper.write(b"x" * 700)
        self.assertEqual(unsentBytes(wrapper), 700)
        transport.read(200)
        self.assertEqual(unsentBytes(wrapper), 500)

    def test_readingMemberNeverCut(self) -> None:
        """
        A member who keeps reading under heavy traffic stays connected, even though its
        transport stays paused (its buffer never empties) while far more than maxSendQueue is
        written through it; and it gets every line, in order.
        """
        senders = [self.join(f"Sender{n}") for n in range(5)]
        reader, transport = self.joinBuffered("Reader")
        length = len(f"Sender0: {self.text}\r\n")
        expected = []
        writtenWhilePaused = 0
        # Five members paste 20 long lines each. The reader falls one paste behind at first;
        # from then on it reads as fast as lines arrive, but never catches up completely.
        for n in range(100):
            text = f"{n:03d} {self.text[4:]}"
            senders[n // 20].send(text + "\n")
            expected.append(f"Sender{n // 20}: {text}")
            if n >= 20:
                transport.read(length)
            if transport.producerPaused:
                writtenWhilePaused += length
        self.assertFalse(transport.aborted)
        self.assertIn("Reader", self.room.nicks())
        self.assertTrue(transport.producerPaused)
        self.assertGreater(writtenWhilePaused, 2 * self.limits.maxSendQueue)
        self.assertEqual(unsentBytes(transport), 20 * length)
        transport.read()
        self.assertFalse(transport.producerPaused)
        self.assertEqual(transport.lines(), expected)

    def test_nonReadingMemberCut(self) -> None:
        """
        A member who does not read is cut by the write that would leave more than
        maxSendQueue bytes unsent; the room sees it leave, with the reason, and the log says how
        much was waiting.
        """
        observer = EventLoggingObserver.createWithCleanup(
            self, globalLogPublisher  # type: ignore[arg-type]  # any trial test case works
        )
        alice, carol = self.join("Alice"), self.join("Carol")
        slow, transport = self.joinBuffered("Slow")
        transport.read(1000)  # a little, early on; then nothing
        line = len(f"Alice: {self.text}\r\n")
        fits = self.limits.maxSendQueue // line
        for _ in range(fits):
            alice.send(self.text + "\n")
        self.assertTrue(transport.producerPaused)
        self.assertFalse(transport.aborted)
        self.assertEqual(unsentBytes(transport), fits * line)
        alice.send(self.text + "\n")
        self.assertTrue(transport.aborted)
        # Slow joined after Carol, so the line that cut it had reached Carol already.
        self.assertEqual(
            carol.lines()[-2:], [f"Alice: {self.text}", "Slow left! (send queue exceeded)"]
        )
        self.assertEqual(self.room.nicks(), ["Alice", "Carol"])
        cut = [
            e["chatsvc_fields"]
            for e in observer
            if e.get("chatsvc_fields", {}).get("event") == "connection_cut"
        ]
        self.assertEqual(len(cut), 1)
        self.assertEqual(cut[0]["nick"], "Slow")
        self.assertEqual(cut[0]["reason"], "send queue exceeded")
        self.assertEqual(cut[0]["queued"], (fits + 1) * line)
        # Nothing more is written to the cut connection, and its end is no second leave.
        alice.send("still here\n")
        self.assertEqual(unsentBytes(transport), fits * line)
        slow.connectionLost()
        self.assertEqual(carol.lines(), ["Alice: still here"])

    def test_slowButReading(self) -> None:
        """
        A member who reads slower than the room talks is cut only once the backlog really
        passes the bound, not when the total written while its buffer was full does.
        """
        alice = self.join("Alice")
        slow, transport = self.joinBuffered("Slow")
        line = len(f"Alice: {self.text}\r\n")
        sent = 0
        while not transport.aborted:
            alice.send(self.text + "\n")
            sent += line
            transport.read(line // 2)
        # About twice the bound went out while paused before the backlog reached it.
        self.assertGreater(sent, 2 * self.limits.maxSendQueue - 2 * line)
        self.assertLess(sent, 2 * self.limits.maxSendQueue + 4 * line)


class ConnectionLimitTests(ProtocolTestCase):
    """The global and per-address connection caps."""

    limits = Limits(maxConnections=4, maxConnectionsPerAddress=2)

    def connectFrom(self, host: str) -> StringTransport:
        address = IPv4Address("TCP", host, 1234)
        transport = StringTransport(peerAddress=address)
        protocol = self.factory.buildProtocol(address)
        assert protocol is not None
        protocol.makeConnection(transport)
        return transport

    def test_perAddress(self) -> None:
        """A third connection from one address is refused with one line; others still get in."""
        first, second = self.connectFrom("10.0.0.1"), self.connectFrom("10.0.0.1")
        third = self.connectFrom("10.0.0.1")
        self.assertEqual(third.value(), b"*** Disconnected: too many connections from your address\r\n")
        self.assertTrue(third.disconnecting)
        self.assertEqual(first.value(), b"GET_NAME\r\n")
        self.assertFalse(first.disconnecting or second.disconnecting)
        self.assertEqual(self.connectFrom("10.0.0.2").value(), b"GET_NAME\r\n")

    def test_global(self) -> None:
        """Past the global cap, newcomers are told the server is full."""
        for n in range(4):
            self.assertEqual(self.connectFrom(f"10.0.1.{n}").value(), b"GET_NAME\r\n")
        refused = self.connectFrom("10.0.1.99")
        self.assertEqual(refused.value(), b"*** Disconnected: the server is full, try again later\r\n")
        self.assertEqual(self.factory.connectionCount, 4)

    def test_closingFreesASlot(self) -> None:
        """When a connection closes, its address may connect again."""
        self.connectFrom("10.0.0.1")
        client = Client(self.factory)  # from 127.0.0.1
        Client(self.factory)
        client.drop()
        self.assertEqual(Client(self.factory).transport.value(), b"GET_NAME\r\n")


class CloseAllTests(ProtocolTestCase):
    """Shutting down: everyone is told, and nobody holds the server up for long."""

    limits = Limits(shutdownGrace=5)

    def test_closeAll(self) -> None:
        """Every connection is told why; the result fires once they have all closed."""
        alice, bob = self.join("Alice"), self.join("Bob")
        waiting = self.connect()
        closed = self.factory.closeAll("server shutting down")
        for client in (alice, bob, waiting):
            self.assertEqual(client.lines()[-1], "*** Disconnected: server shutting down")
            self.assertTrue(client.closing)
        self.assertNoResult(closed)
        for client in (alice, bob, waiting):
            client.drop()
        self.successResultOf(closed)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stragglersCut(self) -> None:
        """Connections that do not close within the grace period are cut."""
        alice = self.join("Alice")
        closed = self.factory.closeAll("server shutting down")
        self.clock.advance(5)
        self.assertTrue(alice.transport.disconnected)
        alice.drop()
        self.successResultOf(closed)

    def test_nobodyConnected(self) -> None:
        """With no connections, closing is immediate."""
        self.successResultOf(self.factory.closeAll("server shutting down"))


class RoomCommandTests(ProtocolTestCase):
    """Several rooms through the line protocol: commands, the current room, marked lines."""

    def test_joinAndTalk(self) -> None:
        """
        C{/join} makes the room current: plain text goes there; a member whose current room is
        another sees the line marked with the room; the lobby hears nothing of it.
        """
        alice, bob, carol = self.join("Alice"), self.join("Bob"), self.join("Carol")
        alice.send("/join #Games\n")
        self.assertEqual(
            alice.lines(),
            ["*** You joined Games; now talking there", "*** Members (1): Alice"],
        )
        bob.send("/join games\n")
        self.assertEqual(alice.lines(), ["Bob joined!"])
        bob.lines()
        bob.send("/join lobby\n")
        self.assertEqual(bob.lines(), ["*** Now talking in lobby"])
        alice.send("gg\n/me bows\n")
        self.assertEqual(bob.lines(), ["[Games] Alice: gg", "[Games] * Alice bows"])
        self.assertEqual(carol.lines(), [])
        carol.send("hi lobby\n")
        self.assertEqual(bob.lines(), ["Carol: hi lobby"])
        self.assertEqual(alice.lines(), ["[lobby] Carol: hi lobby"])

    def test_part(self) -> None:
        """C{/part} leaves the current room (or a named one); the current room falls back."""
        alice, bob = self.join("Alice"), self.join("Bob")
        alice.send("/join games\n/join chess\n")
        alice.lines()
        alice.send("/part\n")
        self.assertEqual(alice.lines(), ["*** You left chess; now talking in games"])
        alice.send("/part lobby\n")
        self.assertEqual(alice.lines(), ["*** You left lobby; now talking in games"])
        self.assertEqual(bob.lines(), ["Alice left!"])
        alice.send("/part\n")
        self.assertEqual(alice.lines(), ["*** You left games; you are in no room now (/join one)"])
        alice.send("anyone?\n/me waits\n/part\n/topic\n/history\n/who\n")
        self.assertEqual(
            alice.lines(),
            ["*** Error: you are in no room; /join one (/rooms lists them)"] * 6,
        )
        alice.send("/part games\n")
        self.assertEqual(alice.lines(), ["*** Error: you are not in room games"])
        alice.send("/msg bob still here\n")
        self.assertEqual(bob.lines(), ["*Alice* still here"])

    def test_rooms(self) -> None:
        """C{/rooms} lists every room with its member count and topic."""
        alice, bob = self.join("Alice"), self.join("Bob")
        alice.send("/join games\n/topic chess at 5\n")
        alice.lines()
        bob.send("/rooms\n")
        self.assertEqual(
            bob.lines(),
            [
                "*** Rooms (2):",
                "***   games (1 member): chess at 5",
                "***   lobby (2 members)",
            ],
        )

    def test_topic(self) -> None:
        """A topic is set for, shown to, and announced in its room only; C{/topic -} clears it."""
        alice, bob, carol = self.join("Alice"), self.join("Bob"), self.join("Carol")
        alice.send("/join games\n")
        bob.send("/join games\n/join lobby\n")
        alice.lines()
        bob.lines()
        alice.send("/topic chess \x1b[5mat 5\n")
        self.assertEqual(alice.lines(), ["*** Alice set the topic of games: chess ^[[5mat 5"])
        self.assertEqual(bob.lines(), ["[games] *** Alice set the topic of games: chess ^[[5mat 5"])
        self.assertEqual(carol.lines(), [])
        carol.send("/join games\n")
        self.assertEqual(
            carol.lines(),
            [
                "*** You joined games; now talking there",
                "*** Topic of games: chess ^[[5mat 5",
                "*** Members (3): Alice, Bob, Carol",
            ],
        )
        carol.send("/topic\n/topic -\n/topic\n")
        self.assertEqual(
            carol.lines(),
            [
                "*** Topic of games: chess ^[[5mat 5",
                "*** Carol cleared the topic of games",
                "*** games has no topic",
            ],
        )

    def test_who(self) -> None:
        """C{/who ROOM} lists any room's members; an unknown room is an error."""
        alice, bob = self.join("Alice"), self.join("Bob")
        bob.send("/join games\n")
        alice.send("/who games\n/who #GAMES\n/who nowhere\n/who\n")
        self.assertEqual(
            alice.lines(),
            [
                "*** Members (1): Bob",
                "*** Members (1): Bob",
                "*** Error: no such room: nowhere",
                "*** Members (2): Alice, Bob",
            ],
        )

    def test_badRoomNames(self) -> None:
        """Invalid room names get clear errors, and nothing changes."""
        alice = self.join("Alice")
        alice.send("/join\n/join two words\n/join -x\n/join " + "r" * 40 + "\n/join a\x1bb\n")
        self.assertEqual(
            alice.lines(),
            [
                "*** Error: usage: /join ROOM",
                "*** Error: usage: /join ROOM",
                "*** Error: a room name must start with a letter or a digit",
                "*** Error: a room name may be at most 32 characters long",
                "*** Error: a room name may contain only letters, digits, '-', '_' and '.'",
            ],
        )
        self.assertEqual([room.name for room in self.room.rooms()], ["lobby"])

    def test_renameOnceAcrossRooms(self) -> None:
        """A rename reaches a member sharing two rooms with the renamed one once, unmarked."""
        alice, bob = self.join("Alice"), self.join("Bob")
        alice.send("/join games\n")
        bob.send("/join games\n")
        alice.lines()
        bob.lines()
        alice.send("/nick Alicia\n")
        self.assertEqual(bob.lines(), ["*** Alice is now known as Alicia"])
        self.assertEqual(alice.lines(), ["*** Alice is now known as Alicia"])

    def test_leaveEveryRoom(self) -> None:
        """Quitting is announced once in each room, marked where the room is not current."""
        alice, bob = self.join("Alice"), self.join("Bob")
        alice.send("/join games\n")
        bob.send("/join games\n/join lobby\n")
        bob.lines()
        alice.send("/quit off to bed\n")
        self.assertEqual(
            bob.lines(), ["Alice left! (off to bed)", "[games] Alice left! (off to bed)"]
        )


class HistoryCommandTests(ProtocolTestCase):
    """History on joining, and C{/history}."""

    def setUp(self) -> None:
        super().setUp()
        self.clock.advance(1764079380)  # 2025-11-25 14:03 UTC

    def test_historyOnJoin(self) -> None:
        """A newcomer sees the room's recent messages, as time-stamped server lines."""
        alice = self.join("Alice")
        alice.send("hello\n/me waves\n/msg nobody x\n")
        bob = self.connect()
        bob.send("Bob\n")
        self.assertEqual(
            bob.lines(),
            [
                "Bob connected to server!",
                "*** Members (2): Alice, Bob",
                "*** History of lobby, last 2 messages:",
                "*** [2025-11-25 14:03 UTC] Alice: hello",
                "*** [2025-11-25 14:03 UTC] * Alice waves",
                "*** End of history of lobby",
                "*** Type /help for commands, /quit to leave; you are talking in lobby.",
            ],
        )

    def test_historyCommand(self) -> None:
        """C{/history N} shows the last N messages of the current room, capped; bad N is refused."""
        self.factory.historyLines = 2
        alice = self.join("Alice")
        for number in range(5):
            alice.send(f"m{number}\n")
        alice.send("/history\n")
        self.assertEqual(
            alice.lines(),
            [
                "*** History of lobby, last 2 messages:",
                "*** [2025-11-25 14:03 UTC] Alice: m3",
                "*** [2025-11-25 14:03 UTC] Alice: m4",
                "*** End of history of lobby",
            ],
        )
        alice.send("/history 4000\n")
        self.assertEqual(len(alice.lines()), 7)
        alice.send("/history 0\n/history x\n/join empty\n")
        alice.lines()
        alice.send("/history\n")
        self.assertEqual(alice.lines(), ["*** No history in empty"])
        alice.send("/history -1\n")
        self.assertEqual(alice.lines(), ["*** Error: usage: /history [N], N from 1 to 100"])

    def test_historyPerRoom(self) -> None:
        """Each room's history is its own."""
        alice = self.join("Alice")
        alice.send("in lobby\n/join games\nin games\n")
        bob = self.join("Bob")
        bob.send("/join games\n")
        lines = bob.lines()
        self.assertIn("*** [2025-11-25 14:03 UTC] Alice: in games", lines)
        self.assertNotIn("*** [2025-11-25 14:03 UTC] Alice: in lobby", lines)


class WriteRecorder(StringTransport):
    """A transport that remembers each write separately."""

    def __init__(self) -> None:
        super().__init__(peerAddress=IPv4Address("TCP", "127.0.0.1", 46000))
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        super().write(data)


class GatheringTests(ProtocolTestCase):
    """What one read of several lines causes goes to each member in one write."""

    def recorded(self, nick: str) -> WriteRecorder:
        transport = WriteRecorder()
        Client(self.factory, transport).send(f"{nick}\n")
        transport.writes.clear()
        transport.clear()
        return transport

    def test_oneWritePerRead(self) -> None:
        """Several lines in one read reach each other member in one write, in order."""
        alice = self.join("Alice")
        bob = self.recorded("Bob")
        alice.send("one\n/me two\nthree\n")
        self.assertEqual(bob.writes, [b"Alice: one\r\n* Alice two\r\nAlice: three\r\n"])
        self.assertFalse(self.factory.outbox.gathering)
        self.assertEqual(list(self.factory.outbox.unflushed), [])

    def test_singleLineStraightThrough(self) -> None:
        """A read of one line is written to each member at once, as it is."""
        alice = self.join("Alice")
        bob = self.recorded("Bob")
        alice.send("one\n")
        alice.send("two\n")
        self.assertEqual(bob.writes, [b"Alice: one\r\n", b"Alice: two\r\n"])

    def test_sendersOwnRepliesInOrder(self) -> None:
        """The sender's own replies, gathered too, keep their place among its lines' effects."""
        alice = self.recorded("Alice")
        self.join("Bob")
        alice.writes.clear()
        alice.clear()
        protocol = next(p for p in self.factory.connections if p.nick == "Alice")
        protocol.dataReceived(b"/who\n/bogus\nhi\n")
        self.clock.advance(0)
        self.assertEqual(
            alice.writes,
            [b"*** Members (2): Alice, Bob\r\n*** Error: unknown command /bogus (try /help)\r\n"],
        )

    def test_quitInTheMiddle(self) -> None:
        """A quit among the lines of a read: the goodbye is written before the close."""
        alice = self.recorded("Alice")
        protocol = next(p for p in self.factory.connections if p.nick == "Alice")
        protocol.dataReceived(b"/who\nq\nafter\n")
        self.clock.advance(0)
        self.assertEqual(
            alice.writes, [b"*** Members (1): Alice\r\n*** Goodbye, Alice!\r\n"]
        )
        self.assertTrue(alice.disconnecting)


class ChunkedFlushTests(ProtocolTestCase):
    """
    A room of more than L{FLUSH_CHUNK} members is written to a chunk at a time, and what the
    reactor reads between chunks joins the round in progress.
    """

    limits = Limits(maxConnectionsPerAddress=1000, addressFloodBurst=10**6)

    def setUp(self) -> None:
        super().setUp()
        self.members = [self.recordedMember(f"m{number:03d}") for number in range(FLUSH_CHUNK + 20)]
        for _, transport in self.members:
            transport.writes.clear()

    def recordedMember(self, nick: str) -> tuple[ChatProtocol, WriteRecorder]:
        transport = WriteRecorder()
        client = Client(self.factory, transport)
        client.send(f"{nick}\n")
        return client.protocol, transport

    def test_linesBetweenChunksJoinTheRound(self) -> None:
        """
        After the first chunk, a line read before the rest are written goes to them in the
        same write as the line before it, and to those written to already in a write of its
        own; every member gets both, in order.
        """
        (first, _), (second, _) = self.members[:2]
        first.dataReceived(b"one\n")
        self.factory.outbox.flush()  # the first chunk; the rest wait for the reactor's next turn
        written = [transport.writes for _, transport in self.members[1:]]
        self.assertEqual(written[:FLUSH_CHUNK], [[b"m000: one\r\n"]] * FLUSH_CHUNK)
        self.assertEqual(written[FLUSH_CHUNK:], [[]] * 19)
        self.assertTrue(self.factory.outbox.gathering)
        second.dataReceived(b"two\n")  # read in that next turn, before the flush goes on
        self.clock.advance(0)
        self.assertEqual(self.members[0][1].writes, [b"m001: two\r\n"])
        self.assertEqual(self.members[1][1].writes, [b"m000: one\r\n"])
        self.assertEqual(
            [transport.writes for _, transport in self.members[2 : FLUSH_CHUNK + 1]],
            [[b"m000: one\r\n", b"m001: two\r\n"]] * (FLUSH_CHUNK - 1),
        )
        self.assertEqual(
            [transport.writes for _, transport in self.members[FLUSH_CHUNK + 1 :]],
            [[b"m000: one\r\nm001: two\r\n"]] * 19,
        )
        self.assertFalse(self.factory.outbox.gathering)
        self.assertEqual(list(self.factory.outbox.unflushed), [])


class BreakableTransport(StringTransport):
    """A transport whose writes fail once it is broken."""

    broken = False

    def write(self, data: bytes) -> None:
        if self.broken:
            raise RuntimeError("this transport cannot be written to")
        super().write(data)


class FailedWriteTests(ProtocolTestCase):
    """A member whose connection cannot be written to does not hold up anyone else."""

    def setUp(self) -> None:
        """Alice, then Broken, whose writes fail from now on, then Carol, in the lobby."""
        super().setUp()
        self.alice = self.join("Alice")
        broken = BreakableTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 46001))
        Client(self.factory, broken).send("Broken\n")
        self.carol = self.join("Carol")
        broken.broken = True

    def test_othersStillServed(self) -> None:
        """
        A write that raises is logged; the members written to after it in the round, and
        every later round, still get their lines.
        """
        alice, carol = self.alice, self.carol
        alice.send("one\n")
        alice.send("two\n")
        self.assertEqual(carol.lines(), ["Alice: one", "Alice: two"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)
        self.assertFalse(self.factory.outbox.gathering)

    def test_broadcastOutsideATurn(self) -> None:
        """
        A broadcast that is not the effect of a read (a timer's, say) writes at once; a write
        that raises then is the hub's delivery failure, and the others still get the line.
        """
        alice, carol = self.alice, self.carol
        sender = next(p for p in self.factory.connections if p.nick == "Alice")
        self.room.say(sender, self.room.room("lobby"), "from a timer")
        self.assertEqual(carol.lines(), ["Alice: from a timer"])
        self.assertEqual(alice.lines(), [])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class LoopbackConnection(TCPConnection):
    """
    Twisted's own TCP connection class on one end of a real loopback TCP connection, with the
    addresses a server's connection has; its reactor is a L{MemoryReactor}, so the test does
    what the reactor would: it calls L{doWrite} once the peer has read.
    """

    def __init__(self, skt: socket.socket, protocol: Protocol, reactor: MemoryReactor) -> None:
        super().__init__(skt, protocol, reactor)
        self.connected = 1

    def getPeer(self) -> IPv4Address:
        host, port = self.socket.getpeername()
        return IPv4Address("TCP", host, port)

    def getHost(self) -> IPv4Address:
        host, port = self.socket.getsockname()
        return IPv4Address("TCP", host, port)


class WriteThroughTests(ProtocolTestCase):
    """
    On a TCP connection, a member's lines go straight to the kernel while nothing waits in
    Twisted's buffer before them; what the kernel does not take waits there, in order.
    """

    limits = Limits(floodBurst=1000, addressFloodBurst=10**6, maxConnectionsPerAddress=1000)

    def loopbackMember(self, nick: str, sendBuffer: int | None = None) -> tuple[
        LoopbackConnection, socket.socket, MemoryReactor
    ]:
        """A member on a real loopback TCP connection, joined; the peer's socket."""
        listener = socket.create_server(("127.0.0.1", 0))
        self.addCleanup(listener.close)
        peer = socket.create_connection(listener.getsockname(), timeout=10)
        self.addCleanup(peer.close)
        server, _ = listener.accept()
        if sendBuffer is not None:
            server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sendBuffer)
        reactor = MemoryReactor()
        protocol = self.factory.buildProtocol(None)
        assert isinstance(protocol, ChatProtocol)
        connection = LoopbackConnection(server, protocol, reactor)
        self.addCleanup(server.close)
        protocol.makeConnection(connection)
        self.assertEqual(self.receive(peer, b"GET_NAME\r\n"), b"GET_NAME\r\n")
        protocol.dataReceived(f"{nick}\n".encode())
        self.clock.advance(0)
        welcome = self.receive(peer, b"you are talking in lobby.\r\n")
        self.assertTrue(welcome.startswith(f"{nick} connected to server!\r\n".encode()))
        return connection, peer, reactor

    def receive(self, peer: socket.socket, end: bytes) -> bytes:
        """Read from C{peer} until what has arrived ends with C{end} (or 10 s pass)."""
        received = b""
        while not received.endswith(end):
            chunk = peer.recv(65536)
            if not chunk:
                break
            received += chunk
        return received

    def test_straightToTheKernel(self) -> None:
        """
        A line goes out at once: the peer can read it before the reactor runs again, and the
        reactor was never asked to watch the socket for writing.
        """
        alice = self.join("Alice")
        connection, peer, reactor = self.loopbackMember("Bob")
        alice.send("hello\nand more\n")
        lines = b"Alice: hello\r\nAlice: and more\r\n"
        self.assertEqual(self.receive(peer, lines), lines)
        self.assertEqual(unsentBytes(connection), 0)
        self.assertNotIn(connection, reactor.writers)

    def test_whatTheKernelLeavesWaitsInOrder(self) -> None:
        """
        Once the kernel's buffers are full, the rest waits in Twisted's buffer, and later lines
        queue behind it even when the kernel has room again; everything arrives in order.
        """
        alice = self.join("Alice")
        connection, peer, reactor = self.loopbackMember("Bob", sendBuffer=4096)
        expected = []
        for number in range(100):
            text = f"{number:02d} " + "x" * 3000
            alice.send(text + "\n")
            expected.append(f"Alice: {text}\r\n".encode())
        waiting = unsentBytes(connection)
        assert waiting is not None
        self.assertGreater(waiting, 0)
        self.assertIn(connection, reactor.writers)
        # The peer reads a little, so the kernel has room again, and another line comes
        # before the reactor has written what was waiting: it must wait behind it.
        received = peer.recv(65536)
        alice.send("late\n")
        expected.append(b"Alice: late\r\n")
        wanted = b"".join(expected)
        while len(received) < len(wanted):
            connection.doWrite()  # the reactor would: the socket is writable again
            chunk = peer.recv(65536)
            self.assertTrue(chunk, "the connection closed")
            received += chunk
        self.assertEqual(received, wanted)
        self.assertEqual(unsentBytes(connection), 0)

    def test_failedConnection(self) -> None:
        """
        A line to a connection the peer has reset is handed to Twisted, which meets the
        failure as ever; nothing is raised to the member who spoke.
        """
        alice = self.join("Alice")
        connection, peer, reactor = self.loopbackMember("Bob")
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        peer.close()  # a reset, not a polite close
        for number in range(3):  # the first send may still succeed; then the reset is seen
            alice.send(f"line {number}\n")
        self.assertGreater(unsentBytes(connection) or 0, 0)
        self.assertIn(connection, reactor.writers)
        self.assertIsInstance(connection.doWrite(), Exception)


class CrowdedRoomTests(ProtocolTestCase):
    """How joins and leaves in crowded rooms, and long member lists, are shown."""

    def setUp(self) -> None:
        super().setUp()
        self.room = Hub(self.clock, crowdSize=3, crowdInterval=1.0)
        self.factory = ChatFactory(self.room, Limits(floodBurst=10**6, addressFloodBurst=10**6, maxConnectionsPerAddress=10**6))

    def quiet(self, *clients: Client) -> None:
        """Let any announcement be made, then an interval pass; clear every output."""
        self.clock.advance(1)
        self.clock.advance(10)
        for client in clients:
            client.lines()

    def test_summaryLines(self) -> None:
        """
        Joins and leaves held in a crowded room come as C{*** Joined:} and C{*** Left:} lines,
        in the order they happened, at most 50 names a line; a newcomer with no member list
        in a crowded room is told how many there are.
        """
        alice, bob, carol = self.join("Alice"), self.join("Bob"), self.join("Carol")
        self.quiet(alice, bob, carol)
        dave = self.connect()
        dave.send("Dave\n")
        self.assertEqual(
            dave.lines(),
            [
                "Dave connected to server!",
                "*** Members (4): too many to list here; /who shows them all",
                "*** Type /help for commands, /quit to leave; you are talking in lobby.",
            ],
        )
        self.assertEqual(alice.lines(), ["Dave joined!"])
        newcomers = [self.join(f"n{number:03}") for number in range(60)]
        bob.send("q\n")
        self.clock.advance(1)
        names = [f"n{number:03}" for number in range(60)]
        self.assertEqual(
            alice.lines(),
            [
                "*** Joined: " + ", ".join(names[:50]),
                "*** Joined: " + ", ".join(names[50:]),
                "*** Left: Bob",
            ],
        )
        self.assertEqual(newcomers[57].lines(), ["*** Joined: n058, n059", "*** Left: Bob"])
        self.assertEqual(
            newcomers[10].lines(),
            [
                "*** Joined: " + ", ".join(names[11:50]),
                "*** Joined: " + ", ".join(names[50:]),
                "*** Left: Bob",
            ],
        )
        self.assertEqual(newcomers[59].lines(), ["*** Left: Bob"])

    def test_summaryMarked(self) -> None:
        """Each line of a summary from a room other than the current one is marked with it."""
        clients = [self.join(nick) for nick in ("Alice", "Bob", "Carol", "Dave")]
        for client in clients:
            client.send("/join games\n")
        clients[0].send("/join lobby\n")
        self.quiet(*clients)
        for nick in ("Erin", "Frank", "Gina"):
            self.connect().send(f"{nick}\n/join games\n")
        self.clock.advance(1)
        self.assertEqual(
            clients[0].lines(),
            [
                "Erin joined!",
                "[games] Erin joined!",
                "*** Joined: Frank, Gina",
                "[games] *** Joined: Frank, Gina",
            ],
        )
        self.assertEqual(
            clients[1].lines(),
            [
                "[lobby] Erin joined!",
                "Erin joined!",
                "[lobby] *** Joined: Frank, Gina",
                "*** Joined: Frank, Gina",
            ],
        )

    def test_whoLongList(self) -> None:
        """C{/who} lists every member, a hundred names a line."""
        alice = self.join("Alice")
        names = [f"n{number:03}" for number in range(249)]
        for name in names:
            self.join(name)
        alice.lines()
        alice.send("/who\n")
        everyone = sorted(["Alice", *names], key=str.casefold)
        self.assertEqual(
            alice.lines(),
            [
                "*** Members (250): " + ", ".join(everyone[:100]),
                "***   " + ", ".join(everyone[100:200]),
                "***   " + ", ".join(everyone[200:]),
            ],
        )
