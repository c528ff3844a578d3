"""
Property-based tests of the line protocol, server side: arbitrary byte streams, split at arbitrary
points, from one connection or from many at once, and what the room and every connection look like
afterwards.

The inputs mix fully arbitrary bytes with lines built to get past the nickname handshake (valid and
invalid nicknames, chat text full of control characters, every command, quit words, over-long
lines, invalid UTF-8, bare carriage returns, NUL, blank lines), so that examples reach members
chatting, renaming, whispering and leaving, not only C{GET_NAME}.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import ILogObserver, LogEvent, LogLevel, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from chatsvc.line.wire import QUIT_WORDS
from chatsvc.chat import (
    ChatError,
    Event,
    Hub,
    IMember,
    Joined,
    JoinsAndLeaves,
    Left,
    Renamed,
    nick_key,
    showText,
    validate_nick,
)
from chatsvc.sessions.limits import Limits
from chatsvc.line.protocol import ChatFactory, ChatProtocol
from chatsvc.text import UNSAFE_CHARACTERS
from tests.chat.test_hub import arrive, rename

MAX_LINE = 40
"""A small line length limit, so that over-long lines are cheap to generate."""

FLOOD_NOTICE = "*** You are sending too fast; your lines are being delayed."

_UNSAFE = frozenset(chr(code) for code in UNSAFE_CHARACTERS)

T = TypeVar("T")


# Strategies: the pieces a client may send


def weighted(*choices: tuple[int, st.SearchStrategy[T]]) -> st.SearchStrategy[T]:
    """Draw from one of the strategies in C{choices}, each picked in proportion to its weight."""
    table = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.integers(0, len(table) - 1).flatmap(lambda index: table[index])


# Characters a hostile or careless member may type: every unsafe one, and a few that are safe but
# unusual (tab, zero-width space, byte order mark, combining accent, fullwidth, CJK, emoji).
_TRICKY_CHARACTERS = sorted(_UNSAFE) + [
    "\t",
    "\u200b",
    "\ufeff",
    "\u0301",
    "Ａ",
    "李",
    "é",
    "🎉",
    "\u200d",
    "👨",
    " ",
    ":",
    ",",
    "*",
    "/",
]

_characters = st.one_of(
    st.sampled_from(_TRICKY_CHARACTERS),
    st.characters(codec="utf-8"),
    st.sampled_from("abcxyzABC019 _-."),
)

text = st.text(_characters, max_size=24)
"""Anything a member might type on one line (and sometimes more than one line)."""

# A pool of nicknames small enough that the same names (in other cases, or other normal forms)
# come up on several connections, and that /msg and /nick find the members they name.
NICKNAMES = [
    "Alice",
    "alice",
    "ALICE",
    "Ａｌｉｃｅ",
    "Bob",
    "bob",
    "Watcher",
    "Zoë",
    "Zoe\u0308",
    "李雷",
    "dj_42",
    "GET_NAME",
    "a->",
    "a[b]",
    "foo|bar",
    "n" * 32,
]

BAD_NICKNAMES = [
    "two words",
    "a:b",
    "a,b",
    "*star",
    "#chan",
    "@op",
    "/who",
    "->",
    "a*b",
    "a.b",
    "a!b",
    "1bot",
    "n" * 33,
    "Q",
    "EXIT",
    "esc\x1b[31m",
    "\u202eevil",
    "nul\x00",
    "zero\u200bwidth",
    "tab\tbed",
    "nel\x85",
    "\u2028",
]

nicknames = st.one_of(
    st.sampled_from(NICKNAMES),
    st.sampled_from(BAD_NICKNAMES),
    st.text(_characters, min_size=1, max_size=6),
)

_commands = st.one_of(
    st.builds(lambda nick: "/nick " + nick, nicknames),
    st.builds(lambda nick, words: f"/msg {nick} {words}", nicknames, text),
    st.builds(lambda words: "/me " + words, text),
    st.builds(lambda words: "/say " + words, text),
    st.builds(lambda words: "//" + words, text),
    st.builds(lambda name, words: f"/{name} {words}", text, text),
    st.sampled_from(
        [
            "/who",
            "/WHO",
            "/help",
            "/nick",
            "/NICK ALICE",
            "/msg",
            "/msg Bob",
            "/msg Watcher    hi there",
            "/me",
            "/say",
            "/say q",
            "/frobnicate",
            "/",
            "/ nick Bob",
            "/\x1b[31m",
        ]
    ),
)

_quits = st.one_of(
    st.sampled_from(sorted(QUIT_WORDS) + ["  q  ", "/quit", "/QUIT"]),
    st.builds(lambda reason: "/quit " + reason, text),
)

_specialLines = st.sampled_from(
    [
        b"",
        b" ",
        b" \t ",
        b"\x00",
        b"a\x00b",
        b"\r",
        b"mid\rline",
        b"\xff",
        b"\xc3",
        b"caf\xc3",
        b"\xc3(",
        b"\xed\xa0\x80",
        b"\xc0\xaf",
        b"\x80abc",
        b"\xf4\x90\x80\x80",
        b"\x1b[2J\x1b]0;owned\x07",
        "\u202etxt.exe".encode(),
        "\u2028\u2029\x85".encode(),
    ]
)

_longLines = st.one_of(
    st.integers(MAX_LINE - 2, MAX_LINE + 3).map(lambda length: b"y" * length),
    st.integers(MAX_LINE + 1, 4 * MAX_LINE).map(lambda length: b"z" * length),
)


def _encoded(strategy: st.SearchStrategy[str]) -> st.SearchStrategy[bytes]:
    return strategy.map(lambda line: line.encode("utf-8"))


lineBodies = weighted(
    # Mostly chat and commands; sometimes a quit, which ends the session.
    (4, _encoded(text)),
    (3, _encoded(_commands)),
    (1, _specialLines),
    (1, _longLines),
    (1, st.binary(max_size=12)),
    (1, _encoded(nicknames)),
    (1, _encoded(_quits)),
)
"""The body of one line, without its ending."""

lineEndings = st.sampled_from([b"\n", b"\r\n", b"\n", b"\r\n", b"\r", b"", b"\r\r\n", b"\n\n"])

lines = st.builds(lambda body, ending: body + ending, lineBodies, lineEndings)
"""One line, with an ending that may be missing, doubled, or a bare carriage return."""

_nicknameLines = weighted(
    (3, st.sampled_from(NICKNAMES).map(lambda nick: nick.encode("utf-8") + b"\n")),
    (1, lines),
)
"""A first line: usually a valid nickname (perhaps taken already), else any line."""

_sessions = st.builds(
    lambda first, rest: first + b"".join(rest),
    _nicknameLines,
    st.lists(lines, max_size=14),
)

streams = weighted((3, _sessions), (1, st.binary(max_size=300)))
"""What one client sends over a whole connection: usually a nickname, then lines; or any bytes."""


chatTexts = st.text(_characters, max_size=30).map(
    lambda typed: typed.replace("\n", "").rstrip("\r")
)
"""
Text for the rest of a chat line: anything but a line feed, and no carriage return at the end,
where it would be taken for part of the line ending.
"""


def chunked(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    """C{data} cut at each offset in C{cuts} (in any order; out-of-range ones are ignored)."""
    offsets = sorted({cut for cut in cuts if 0 < cut < len(data)})
    bounds = [0, *offsets, len(data)]
    return [data[start:end] for start, end in zip(bounds, bounds[1:]) if end > start]


# The world: a factory, its room and clock, in-memory connections, and the log


class Connection:
    """One in-memory client connection, and everything the server ever wrote to it."""

    def __init__(self, factory: ChatFactory, port: int) -> None:
        address = IPv4Address("TCP", "127.0.0.1", port)
        self.transport = StringTransport(peerAddress=address)
        protocol = factory.buildProtocol(address)
        assert isinstance(protocol, ChatProtocol)
        self.protocol: ChatProtocol = protocol
        self.factory = factory
        self.lost = False
        protocol.makeConnection(self.transport)

    def send(self, data: bytes) -> None:
        """Data arrives from the client (nothing does once the connection is lost)."""
        if not self.lost:
            self.protocol.dataReceived(data)
            clock = self.factory.clock
            assert isinstance(clock, Clock)
            clock.advance(0)  # the end of the reactor's turn

    def drop(self) -> None:
        """The connection closes, as the reactor reports it: once."""
        if not self.lost:
            self.lost = True
            self.protocol.connectionLost(Failure(ConnectionDone()))

    def output(self) -> bytes:
        """Every byte the server wrote to this connection."""
        written: bytes = self.transport.value()
        return written

    def lines(self) -> list[str]:
        """The lines the server wrote to this connection, without their endings."""
        return self.output().decode("utf-8").split("\r\n")[:-1]


_NICK = r"(?P<nick>[^ ]+)"
_LINE_FORMS: list[re.Pattern[str]] = [
    re.compile(pattern)
    for pattern in [
        r"GET_NAME",
        r"\*\*\* .+",
        r"-> \*" + _NICK + r"\* .+",
        r"\* " + _NICK + r" .+",
        r"\*" + _NICK + r"\* .+",
        _NICK + r" connected to server!",
        _NICK + r" joined!",
        _NICK + r" left!(?: \(.+\))?",
        r"(?P<nick>[^ :]+): .+",
    ]
]


@implementer(ILogObserver)
class TroubleObserver:
    """A log observer keeping every event that is logged as an error, or carries a failure."""

    def __init__(self) -> None:
        self.events: list[LogEvent] = []

    def __call__(self, event: LogEvent) -> None:
        if "log_failure" in event or event.get("log_level") in (LogLevel.error, LogLevel.critical):
            self.events.append(event)


class World:
    """
    A chat server in memory: a room, a factory with C{limits}, a clock that moves only when told,
    and the connections made to it; and every log event that reports trouble.
    """

    def __init__(self, case: SynchronousTestCase, limits: Limits, crowdSize: int = 100) -> None:
        self.case = case
        self.clock = Clock()
        self.room = Hub(self.clock, crowdSize=crowdSize)
        self.factory = ChatFactory(self.room, limits)
        self.connections: list[Connection] = []
        self.trouble = TroubleObserver()

    @contextmanager
    def observingLog(self) -> Iterator[World]:
        """Collect, while in this block, every log event that is an error or carries a failure."""
        globalLogPublisher.addObserver(self.trouble)
        try:
            yield self
        finally:
            globalLogPublisher.removeObserver(self.trouble)

    def connect(self) -> Connection:
        """A new connection (which has been sent its C{GET_NAME})."""
        connection = Connection(self.factory, 40000 + len(self.connections))
        self.connections.append(connection)
        return connection

    def join(self, nick: str) -> Connection:
        """A new connection that has joined the room as C{nick}."""
        connection = self.connect()
        connection.send(nick.encode("utf-8") + b"\r\n")
        self.case.assertIn(connection.protocol, self.room)
        return connection

    def settle(self, limit: int = 10_000) -> None:
        """Move the clock on to each pending timer in turn, until none is left."""
        for _ in range(limit):
            calls = self.clock.getDelayedCalls()
            if not calls:
                return
            due = min(call.getTime() for call in calls)
            self.clock.advance(max(0.0, due - self.clock.seconds()))
        self.case.fail(f"timers still pending after {limit} steps: {self.clock.getDelayedCalls()}")

    def dropAll(self) -> None:
        """Every connection closes."""
        for connection in self.connections:
            connection.drop()

    # Checks

    def assertNoTrouble(self) -> None:
        """Nothing was logged as an error, and no failure was logged."""
        if self.trouble.events:
            reports = []
            for logged in self.trouble.events:
                failure = logged.get("log_failure")
                detail = failure.getTraceback() if isinstance(failure, Failure) else ""
                reports.append(f"{formatEvent(logged)}\n{detail}")
            self.case.fail("trouble in the log:\n" + "\n".join(reports))

    def assertRoomConsistent(self) -> None:
        """
        The room's invariants: its members are exactly the open, named connections that have not
        been told to close, each once, under the nickname it believes it has; nicknames are valid
        and unique case-insensitively; the factory knows exactly the connections not yet lost.
        """
        case, room = self.case, self.room
        members = list(room.members())
        case.assertEqual(len(members), len(set(members)))
        case.assertEqual(len(members), len(room))
        nicks = room.nicks()
        case.assertEqual(len(nicks), len(members))
        case.assertEqual(len({nick_key(nick) for nick in nicks}), len(nicks), nicks)
        expected = {
            connection.protocol
            for connection in self.connections
            if not connection.lost
            and not connection.transport.disconnecting
            and connection.protocol.nick is not None
        }
        case.assertEqual(set(members), expected)
        for member in members:
            assert isinstance(member, ChatProtocol)
            nick = room.nickOf(member)
            case.assertEqual(nick, member.nick)
            case.assertIs(room.memberNamed(nick), member)
            case.assertEqual(validate_nick(nick), nick)
        case.assertEqual(
            self.factory.connections,
            {connection.protocol for connection in self.connections if not connection.lost},
        )
        case.assertEqual(self.factory.connectionCount, len(self.factory.connections))

    def assertOutputSafe(self) -> None:
        """
        What every connection received is valid UTF-8, made only of whole lines ending in
        CR LF, none holding an unsafe character, and each one of the forms the protocol
        documents, with a valid nickname wherever a form names a member.
        """
        for index, connection in enumerate(self.connections):
            output = connection.output()
            try:
                decoded = output.decode("utf-8")
            except UnicodeDecodeError as error:
                self.case.fail(f"connection {index} received invalid UTF-8 ({error}): {output!r}")
            if decoded and not decoded.endswith("\r\n"):
                self.case.fail(f"connection {index} received a partial line: {decoded!r}")
            for line in decoded.split("\r\n")[:-1]:
                unsafe = sorted(_UNSAFE.intersection(line))
                if unsafe:
                    self.case.fail(f"connection {index} received {unsafe!r} in {line!r}")
                self.assertDocumentedLine(line)

    def assertDocumentedLine(self, line: str) -> None:
        """C{line} is one of the lines docs/protocol.md says the server sends."""
        for form in _LINE_FORMS:
            match = form.fullmatch(line)
            if match is None:
                continue
            nick = match.groupdict().get("nick")
            if nick is None:
                return
            try:
                if validate_nick(nick) == nick:
                    return
            except ChatError:
                pass
        self.case.fail(f"undocumented line from the server: {line!r}")

    def assertAllGone(self) -> None:
        """After every connection closed: nobody in the room, no connection, no timer left."""
        self.case.assertEqual(len(self.room), 0)
        self.case.assertEqual(self.room.nicks(), [])
        self.case.assertEqual(self.factory.connections, set())
        self.case.assertEqual(self.factory.connectionCount, 0)
        self.case.assertEqual(self.clock.getDelayedCalls(), [])


def _limits(**overrides: Any) -> Limits:
    """Limits with a short line length, and C{overrides}."""
    return Limits(**{"maxLineLength": MAX_LINE, **overrides})


def examples(count: int) -> settings:
    """Settings for a test that runs C{count} examples, however long each one takes."""
    return settings(
        max_examples=count, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )


class ArbitraryStreamTests(SynchronousTestCase):
    """One client sends anything at all, in pieces of any size, while a member listens."""

    @examples(600)
    @given(stream=streams, data=st.data())
    def test_arbitraryStream(self, stream: bytes, data: st.DataObject) -> None:
        """
        Whatever bytes arrive, split wherever, nothing is logged as an error, no exception
        escapes, the room's invariants hold, every connection's output is safe; once the timers
        have run and everyone has disconnected, nobody is left behind.
        """
        cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=20), label="cuts")
        world = World(self, _limits(floodBurst=6))
        with world.observingLog():
            watcher = world.join("Watcher")
            client = world.connect()
            for chunk in chunked(stream, cuts):
                client.send(chunk)
                world.assertRoomConsistent()
            event(f"client joined: {client.protocol.nick is not None}")
            world.settle()
            world.assertRoomConsistent()
            world.assertOutputSafe()
            client.drop()
            world.assertRoomConsistent()
            watcher.drop()
            world.assertAllGone()
            world.assertNoTrouble()


Snapshot = tuple[list[bytes], list[str], bool]
"""What the watcher and the client received, the room's nicknames, whether the client is closing."""


class SplitInvarianceTests(SynchronousTestCase):
    """Where a stream is cut into reads changes nothing."""

    def deliver(self, limits: Limits, stream: bytes, chunks: list[bytes]) -> list[Snapshot]:
        """
        Deliver C{chunks} to a new client of a fresh server where C{Watcher} is a member.

        @return: snapshots of the server once the chunks are delivered, and again once every
            timer has run.
        """
        self.assertEqual(b"".join(chunks), stream)
        world = World(self, limits)
        snapshots = []
        with world.observingLog():
            watcher = world.join("Watcher")
            client = world.connect()
            for chunk in chunks:
                client.send(chunk)
            for _ in range(2):
                world.assertRoomConsistent()
                world.assertNoTrouble()
                snapshots.append(
                    (
                        [watcher.output(), client.output()],
                        world.room.nicks(),
                        bool(client.transport.disconnecting),
                    )
                )
                world.settle()
        return snapshots

    def assertChunkingDoesNotMatter(self, limits: Limits, stream: bytes, cuts: list[int]) -> None:
        """
        Delivering C{stream} in one read, in one read per byte, and cut at C{cuts} gives the
        same snapshots.
        """
        whole = self.deliver(limits, stream, [stream] if stream else [])
        bytewise = self.deliver(limits, stream, [stream[i : i + 1] for i in range(len(stream))])
        arbitrary = self.deliver(limits, stream, chunked(stream, cuts))
        self.assertEqual(bytewise, whole)
        self.assertEqual(arbitrary, whole)

    @examples(400)
    @given(stream=streams, cuts=st.lists(st.integers(0, 400), max_size=30))
    def test_chunkingDoesNotMatter(self, stream: bytes, cuts: list[int]) -> None:
        """
        With no flood limit in the way, the same stream delivered in one read, one byte per
        read, and cut at arbitrary points gives every connection exactly the same output and
        leaves the room in the same state.
        """
        self.assertChunkingDoesNotMatter(
            _limits(floodRate=1e9, floodBurst=10**9), stream, cuts
        )

    @examples(300)
    @given(stream=streams, cuts=st.lists(st.integers(0, 400), max_size=30))
    def test_chunkingDoesNotMatterUnderFlood(self, stream: bytes, cuts: list[int]) -> None:
        """
        With a tight flood limit, however the stream is cut, every connection has the same
        output and the room the same state both when the stream has arrived (and the flood
        limit holds part of it back) and once the clock has run every timer.
        """
        self.assertChunkingDoesNotMatter(_limits(floodBurst=3), stream, cuts)


class FloodTests(SynchronousTestCase):
    """The flood limit delays lines and never loses one."""

    @examples(300)
    @given(
        texts=st.lists(chatTexts, min_size=1, max_size=8),
        count=st.integers(1, 90),
        ending=st.sampled_from([b"\n", b"\r\n"]),
        data=st.data(),
    )
    def test_delayedNeverDropped(
        self, texts: list[str], count: int, ending: bytes, data: st.DataObject
    ) -> None:
        """
        With the default limits, a member sending many chat lines at once (in reads of any size,
        with any pauses between them) has every one delivered to each other member, in order,
        exactly once, when the clock has moved on far enough; the sender hears at most the
        flood notice, and its connection is read again at the end.
        """
        # Numbered, so that any loss, duplication or reordering shows.
        said = [f"{number} {texts[number % len(texts)]}" for number in range(count)]
        stream = b"".join(line.encode("utf-8") + ending for line in said)
        cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=10), label="cuts")
        pauses = data.draw(
            st.lists(st.sampled_from([0.0, 0.0, 0.05, 0.2, 1.0, 3.0]), max_size=11),
            label="pauses",
        )
        limits = Limits()
        event(f"past the burst: {count > limits.floodBurst}")
        world = World(self, limits)
        with world.observingLog():
            alice, bob, carol = world.join("Alice"), world.join("Bob"), world.join("Carol")
            for connection in world.connections:
                connection.transport.clear()
            for index, chunk in enumerate(chunked(stream, cuts)):
                alice.send(chunk)
                if index < len(pauses):
                    world.clock.advance(pauses[index])
            expected = [f"Alice: {showText(line)}" for line in said]
            if world.clock.seconds() == 0:
                # All at once: the burst goes out now, the rest waits.
                self.assertEqual(bob.lines(), expected[: limits.floodBurst])
            world.settle()
            self.assertEqual(bob.lines(), expected)
            self.assertEqual(carol.lines(), expected)
            self.assertLessEqual(set(alice.lines()), {FLOOD_NOTICE})
            self.assertFalse(alice.protocol.paused)
            self.assertEqual(alice.transport.producerState, "producing")
            world.assertOutputSafe()
            world.dropAll()
            world.assertAllGone()
            world.assertNoTrouble()


# Actions on a server with several connections at once

_actions = weighted(
    # (what, which connection or how many seconds, what it sends)
    (5, st.tuples(st.just("send"), st.integers(0, 7), lines)),
    (2, st.tuples(st.just("send"), st.integers(0, 7), streams)),
    (1, st.tuples(st.just("drop"), st.integers(0, 7), st.just(b""))),
    (1, st.tuples(st.just("connect"), st.just(0), st.just(b""))),
    (1, st.tuples(st.just("advance"), st.sampled_from([0, 1, 5, 20, 31, 61]), st.just(b""))),
)


class InterleavingTests(SynchronousTestCase):
    """Several clients at once, sending anything, coming and going, while time passes."""

    @examples(400)
    @given(
        openings=st.lists(_nicknameLines, min_size=1, max_size=4),
        actions=st.lists(_actions, max_size=40),
        crowdSize=st.sampled_from([1, 2, 100]),
    )
    def test_roomInvariantsHold(
        self, openings: list[bytes], actions: list[tuple[str, int, bytes]], crowdSize: int
    ) -> None:
        """
        Clients interleaving arbitrary input (nicknames, chat, commands, quit words, over-long
        lines, invalid UTF-8, floods), arbitrary disconnects and the passing of time: after every
        step the room's invariants hold and nothing is logged as an error; every byte sent to
        anyone is safe; once all have disconnected the room is empty, the factory holds no
        connection and no timer is left.
        """
        world = World(self, _limits(floodBurst=5, nameTimeout=30), crowdSize)
        with world.observingLog():
            for opening in openings:
                world.connect().send(opening)
                world.assertRoomConsistent()
            for kind, index, payload in actions:
                if kind == "connect":
                    world.connect()
                elif kind == "advance":
                    world.clock.advance(index)
                elif world.connections:
                    connection = world.connections[index % len(world.connections)]
                    if kind == "send":
                        connection.send(payload)
                    else:
                        connection.drop()
                world.assertRoomConsistent()
                world.assertNoTrouble()
            event("members before the end", payload=str(min(len(world.room), 3)))
            world.assertOutputSafe()
            world.dropAll()
            world.assertAllGone()
            world.assertOutputSafe()
            world.assertNoTrouble()


_hostileText = st.text(st.sampled_from(_TRICKY_CHARACTERS + list("ab")), min_size=1, max_size=16)

_hostileLines = st.one_of(
    _hostileText,
    st.builds(lambda words: "/me " + words, _hostileText),
    st.builds(lambda nick, words: f"/msg {nick} {words}", _hostileText, _hostileText),
    st.builds(lambda nick, words: f"/msg {nick} {words}", st.sampled_from(NICKNAMES), _hostileText),
    st.builds(lambda nick: "/nick " + nick, _hostileText),
    st.builds(lambda name: "/" + name, _hostileText),
    st.builds(lambda words: "/say " + words, _hostileText),
    st.builds(lambda reason: "/quit " + reason, _hostileText),
)


class OutputSafetyTests(SynchronousTestCase):
    """No member can put control sequences on another's terminal."""

    @examples(300)
    @given(
        said=st.lists(st.tuples(st.integers(0, 2), _hostileLines), max_size=12),
        nicknameAttempts=st.lists(_hostileText, max_size=4),
    )
    def test_nothingUnsafeReachesATerminal(
        self, said: list[tuple[int, str]], nicknameAttempts: list[str]
    ) -> None:
        """
        Members typing text, actions, private messages, renames, unknown commands and quit
        reasons full of escape, control, C1 and bidirectional characters, and a newcomer trying
        such nicknames: every line anyone receives is safe and of a documented form, and every
        nickname in the room is free of unsafe characters.
        """
        world = World(self, _limits(floodBurst=10**6))
        with world.observingLog():
            members = [world.join("Alice"), world.join("Bob"), world.join("Zoë")]
            newcomer = world.connect()
            for attempt in nicknameAttempts:
                newcomer.send(attempt.encode("utf-8") + b"\n")
            for index, line in said:
                members[index].send(line.encode("utf-8") + b"\r\n")
            world.assertRoomConsistent()
            for nick in world.room.nicks():
                self.assertEqual(_UNSAFE.intersection(nick), set(), nick)
            world.assertOutputSafe()
            world.dropAll()
            world.assertAllGone()
            world.assertNoTrouble()


# Joins and leaves in crowded rooms


@implementer(IMember)
class Onlooker:
    """A member that keeps its own picture of a room's members from what it is told."""

    def __init__(self, hub: Hub, nick: str) -> None:
        self.errors: list[str] = []
        arrive(hub, self, nick)
        self.picture = set(hub.nicks(hub.defaultRoom))

    def deliver(self, event: Event) -> None:
        # Told of a join of someone it knows, or of a leave of someone it does not: an
        # error (which the hub logs, and the test sees as a picture that does not match).
        if isinstance(event, Joined):
            self.change(True, event.nick)
        elif isinstance(event, Left):
            self.change(False, event.nick)
        elif isinstance(event, JoinsAndLeaves):
            for joined, nicks in event.shown():
                for nick in nicks:
                    self.change(joined, nick)
        elif isinstance(event, Renamed) and event.old in self.picture:
            self.picture.remove(event.old)
            self.picture.add(event.new)

    def change(self, joined: bool, nick: str) -> None:
        if joined:
            if nick in self.picture:
                self.errors.append(f"told twice that {nick} joined")
            self.picture.add(nick)
        else:
            if nick not in self.picture:
                self.errors.append(f"told that {nick} left, never having been told of it")
            self.picture.discard(nick)


_crowdActions = weighted(
    (4, st.tuples(st.just("arrive"), st.integers(0, 50))),
    (2, st.tuples(st.just("depart"), st.integers(0, 50))),
    (1, st.tuples(st.just("part"), st.integers(0, 50))),
    (1, st.tuples(st.just("rejoin"), st.integers(0, 50))),
    (1, st.tuples(st.just("rename"), st.integers(0, 50))),
    (2, st.tuples(st.just("advance"), st.sampled_from([0.0, 0.3, 0.7, 1.0, 5.0]))),
)


class CrowdTests(SynchronousTestCase):
    """What members are told of a crowded room's joins and leaves adds up to its members."""

    @examples(500)
    @given(
        actions=st.lists(_crowdActions, max_size=60),
        crowdSize=st.sampled_from([1, 2, 4, 100]),
    )
    def test_picturesMatchTheRoom(
        self, actions: list[tuple[str, float]], crowdSize: int
    ) -> None:
        """
        Members arriving, departing, leaving and joining the room again and renaming, while
        time passes: once every held announcement has been made, each member's picture of the
        room, built from its member list on arrival and every join, leave, summary and renaming
        it was told of since, is the room's members exactly (nothing told twice, nothing
        missed, nothing told of before one's own arrival); and no timer is left behind.
        """
        clock = Clock()
        hub = Hub(clock, crowdSize=crowdSize, crowdInterval=1.0)
        room = hub.defaultRoom
        onlookers: list[Onlooker] = []
        serial = 0
        for kind, value in actions:
            if kind == "advance":
                clock.advance(value)
                continue
            if kind == "arrive":
                serial += 1
                onlookers.append(Onlooker(hub, f"m{serial}"))
                continue
            present = [onlooker for onlooker in onlookers if onlooker in hub]
            if not present:
                continue
            onlooker = present[int(value) % len(present)]
            if kind == "depart":
                hub.depart(onlooker)
            elif kind == "part" and onlooker in room:
                hub.part(onlooker, room.name)
            elif kind == "rejoin" and onlooker not in room:
                hub.join(onlooker, room.name)
                onlooker.picture = set(hub.nicks(room))
            elif kind == "rename":
                serial += 1
                rename(hub, onlooker, f"m{serial}")
        clock.advance(1)
        members = set(hub.nicks(room))
        for onlooker in onlookers:
            self.assertEqual(onlooker.errors, [])
            if onlooker in room:
                self.assertEqual(onlooker.picture, members)
        event(f"crowded at the end: {hub.crowded(room)}")
        for onlooker in onlookers:
            hub.depart(onlooker)
        self.assertEqual(clock.getDelayedCalls(), [])
