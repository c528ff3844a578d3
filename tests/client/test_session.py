"""
Tests for L{chatsvc.client.session} and L{chatsvc.client.whereabouts}: the client on a terminal
across dropped connections, against the real line door connected in memory
(L{twisted.test.iosim}); time is a L{Clock}.
"""

from __future__ import annotations

import re
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.test.iosim import IOPump, connect, makeFakeClient, makeFakeServer
from twisted.trial.unittest import SynchronousTestCase

from chatsvc.chat import Accounts, Hub, MemoryAccountStore
from chatsvc.chat.moderation import MemoryModerationStore, Moderation
from chatsvc.client import ChatClient, _describe
from chatsvc.client.session import RETRY_MOST, TerminalSession
from chatsvc.client.whereabouts import Whereabouts
from chatsvc.line.protocol import ChatFactory, ChatProtocol
from chatsvc.line.wire import removalReason
from tests.chat.test_accounts import PlainHasher
from tests.line.test_protocol import Client


class FakeConsole:
    """What a L{TerminalSession} draws on: the lines shown, the prompt, a password asked for."""

    transport = None

    def __init__(self, session: TerminalSession) -> None:
        self.session = session
        self.lines: list[str] = []
        self.prompt: str | None = "?"
        self.nick: str | None = None
        self.secret: Deferred[str] | None = None
        self.asked: list[str] = []
        self.finished = False

    def show(self, text: str) -> None:
        self.lines.append(text)

    def offline(self) -> None:
        self.prompt = "(offline)"

    def inRoom(self, room: str | None) -> None:
        self.prompt = room

    def named(self, nick: str) -> None:
        self.nick = nick

    def askSecret(self, prompt: str) -> Deferred[str]:
        self.asked.append(prompt)
        self.secret = Deferred(lambda d: None)
        return self.secret

    def finish(self) -> None:
        self.finished = True

    def type(self, *lines: str) -> None:
        for line in lines:
            self.session.sendLine(line.encode("utf-8"))

    def since(self, mark: int) -> list[str]:
        return self.lines[mark:]


class Server:
    """A line door in memory that can go down and come back, its accounts kept (on disk)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.accounts = MemoryAccountStore()
        self.down = False
        self.pumps: list[IOPump] = []
        self.protocols: list[ChatProtocol] = []
        self.start()

    def start(self) -> None:
        accounts = Accounts(self.clock, PlainHasher(), self.accounts)
        accounts.load()
        moderation = Moderation(self.clock, MemoryModerationStore())
        self.hub = Hub(self.clock, accounts=accounts, moderation=moderation)
        self.factory = ChatFactory(self.hub)
        self.down = False

    def connect(self, client: Any) -> Deferred[object]:
        if self.down:
            return fail(ConnectionRefusedError())
        protocol = self.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50000 + len(self.pumps)))
        assert isinstance(protocol, ChatProtocol)
        self.protocols.append(protocol)
        self.pumps.append(
            connect(protocol, makeFakeServer(protocol), client, makeFakeClient(client), greet=False)
        )
        return succeed(client)

    def flush(self) -> None:
        for _ in range(4):
            for pump in self.pumps:
                pump.flush()
            self.clock.advance(0)

    def shutDown(self) -> None:
        """Stopped (SIGTERM): every member told, every connection closed; then down."""
        self.factory.closeAll("server shutting down")
        self.flush()
        self.down = True

    def member(self, nick: str) -> Client:
        member = Client(self.factory)
        member.send(nick + "\n")
        return member


class SessionTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.server = Server(self.clock)

    def session(self, nick: str = "Alice", **options: Any) -> tuple[TerminalSession, FakeConsole]:
        consoles: list[FakeConsole] = []

        def makeConsole(session: TerminalSession) -> FakeConsole:
            consoles.append(FakeConsole(session))
            return consoles[-1]

        def makeClient(**arguments: Any) -> ChatClient:
            return ChatClient(clock=self.clock, openConsole=lambda console: None, **arguments)

        options.setdefault("jitter", lambda: 0.5)
        session = TerminalSession(
            self.clock, makeConsole, lambda console: None, makeClient, self.server.connect, nick,
            serverName="the server", describe=lambda error: _describe(error, 10), **options,
        )
        session.start()
        self.server.flush()
        return session, consoles[0]

    def wait(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.server.flush()

    def roomsOf(self, nick: str) -> list[str]:
        """The rooms of C{nick}'s newest connection, as the server has them."""
        [connection] = [p for p in self.server.protocols if p.nick == nick][-1:]
        return [room.name for room in self.server.hub.roomsOf(connection)]


class ReconnectTests(SessionTestCase):
    def test_backInRoomsAfterRestart(self) -> None:
        """
        After the server restarts, the client is back with its nickname, in its rooms (and
        not in the one it had left), talking in the room it talked in.
        """
        session, console = self.session()
        console.type("/join games", "/join dev", "/join games", "/part lobby")
        self.server.flush()
        self.assertEqual(console.prompt, "games")
        mark = len(console.lines)
        self.server.shutDown()
        self.assertEqual(console.prompt, "(offline)")
        self.assertIn("*** Disconnected: server shutting down", console.lines)
        self.wait(1)  # refused: the server is still down
        self.server.start()
        self.wait(2)
        shown = console.since(mark)
        self.assertEqual(
            [line for line in shown if line.startswith("*** Error")],
            [
                "*** Error: disconnected by the server: server shutting down; connecting again in 1 s (Ctrl-C to quit)",
                "*** Error: cannot connect to the server: connection refused (is the server running?); "
                "connecting again in 2 s (Ctrl-C to quit)",
            ],
        )
        self.assertIn("Alice connected to server!", shown)
        self.assertIn("*** Back in games, dev", shown)
        self.assertEqual(self.roomsOf("Alice"), ["games", "dev"])
        self.assertEqual(self.server.protocols[-1].current.name, "games")  # type: ignore[union-attr]
        self.assertEqual(console.prompt, "games")
        self.assertFalse(session.done.called)

    def test_pausesDouble(self) -> None:
        """Each failure doubles the pause, up to RETRY_MOST; a join starts them again at 1 s."""
        session, console = self.session()
        self.server.shutDown()
        pauses = []
        for _ in range(8):
            pause = int(re.search(r"again in (\d+) s", console.lines[-1]).group(1))  # type: ignore[union-attr]
            pauses.append(pause)
            self.wait(pause)
        self.assertEqual(pauses, [1, 2, 4, 8, 16, 30, 30, 30])
        self.assertEqual(RETRY_MOST, 30)
        self.server.start()
        self.wait(30)
        self.assertEqual(console.prompt, "lobby")
        self.server.shutDown()
        self.assertIn("again in 1 s", console.lines[-1])

    def test_jitter(self) -> None:
        """Pauses vary by a quarter either way, so that many clients do not come back at once."""
        session, console = self.session(jitter=lambda: 0.0)
        self.server.shutDown()
        self.assertIn("again in 1 s", console.lines[-1])  # 0.75 s
        self.wait(0.74)
        self.assertNotIn("Connecting", console.lines[-1])
        self.wait(0.02)
        self.assertIn("again in 2 s", console.lines[-1])  # 1.5 s, after one refusal

    def test_loginAgainWithoutAsking(self) -> None:
        """A registered member is logged in again with the password it registered, unasked."""
        session, console = self.session()
        console.type("/register sesame-open", "/join games")
        self.server.flush()
        self.server.shutDown()
        self.server.start()
        self.wait(1)
        self.assertEqual(console.asked, [])
        self.assertIn("Alice connected to server!", console.lines[-10:])
        self.assertEqual(self.roomsOf("Alice"), ["lobby", "games"])
        # A changed password is the one used next time.
        console.type("/password sesame-open open-sesame")
        self.server.flush()
        self.assertEqual(console.lines[-1], "*** Your password is changed.")
        self.server.shutDown()
        self.server.start()
        self.wait(1)
        self.assertEqual(console.asked, [])
        self.assertEqual(self.roomsOf("Alice"), ["lobby", "games"])

    def test_passwordTypedOnTheTerminal(self) -> None:
        """The password is asked for in the terminal, again after a wrong one, and kept."""
        owner, ownerConsole = self.session()
        ownerConsole.type("/register sesame-open", "/quit")
        self.server.flush()
        self.assertEqual(self.successResultOf(owner.done), 0)
        session, console = self.session()
        self.assertEqual(console.asked, ["Password for Alice: "])
        assert console.secret is not None
        console.secret.callback("wrong")
        self.server.flush()
        self.assertIn("*** Error: wrong password for Alice", console.lines)
        self.assertEqual(len(console.asked), 2)
        console.secret.callback("sesame-open")
        self.server.flush()
        self.assertIn("Alice connected to server!", console.lines)
        self.server.shutDown()
        self.server.start()
        self.wait(1)
        self.assertEqual(len(console.asked), 2)
        self.assertEqual(self.roomsOf("Alice"), ["lobby"])

    def test_scriptedPassword(self) -> None:
        """A password from a file or the environment is used without asking."""
        owner, ownerConsole = self.session()
        ownerConsole.type("/register sesame-open", "/quit")
        self.server.flush()
        session, console = self.session(scriptedPassword=lambda nick: succeed("sesame-open"))
        self.assertEqual(console.asked, [])
        self.assertIn("Alice connected to server!", console.lines)

    def test_attachedStaysWhereTheAccountIs(self) -> None:
        """
        Back beside another connection of its account, the client takes the account's rooms
        as they are now, joining and leaving nothing.
        """
        session, console = self.session()
        console.type("/register sesame-open", "/join games")
        self.server.flush()
        phone, phoneConsole = self.session(scriptedPassword=lambda nick: succeed("sesame-open"))
        self.server.pumps[0].clientIO.loseConnection()  # the first connection drops
        self.server.flush()
        phoneConsole.type("/part games", "/join dev")
        self.server.flush()
        self.wait(1)
        self.assertIn("*** You are logged in from 2 connections; your rooms: lobby, dev", console.lines)
        self.assertEqual(self.roomsOf("Alice"), ["lobby", "dev"])
        self.assertEqual(session.whereabouts.rooms, ["lobby", "dev"])

    def test_nicknameHeldStillThenFreed(self) -> None:
        """
        A nickname still held (the old connection not yet noticed gone, or someone else took
        it) is tried again later; C{/nick} offline picks another at once.
        """
        session, console = self.session()
        self.server.shutDown()
        self.server.start()
        holder = self.server.member("Alice")
        self.wait(1)
        self.assertIn("nickname refused: nickname 'Alice' is already in use; connecting again in 2 s", console.lines[-1])
        holder.send("/quit\n")
        self.wait(2)
        self.assertEqual(console.prompt, "lobby")
        self.server.shutDown()
        self.server.start()
        holder = self.server.member("Alice")
        self.wait(1)
        console.type("/nick Alicia")
        self.server.flush()
        self.assertIn("*** You will be Alicia once connected", console.lines)
        self.assertIn("Alicia connected to server!", console.lines)
        self.assertEqual(console.nick, "Alicia")

    def test_linesOffline(self) -> None:
        """Offline, a line is not sent (and says so); a quit word leaves at once."""
        session, console = self.session()
        self.server.shutDown()
        console.type("hello?")
        self.assertEqual(
            console.lines[-1], "*** Error: not connected, so that line was not sent (Up brings it back)"
        )
        console.type("q")
        self.assertEqual(self.successResultOf(session.done), 1)
        self.assertEqual(
            session.error, "not connected (disconnected by the server: server shutting down)"
        )
        self.assertTrue(console.finished)
        self.wait(60)
        self.assertEqual(len(self.server.pumps), 1)  # no attempt after leaving

    def test_goodbyeEnds(self) -> None:
        session, console = self.session()
        console.type("/quit")
        self.server.flush()
        self.assertEqual(self.successResultOf(session.done), 0)
        self.assertIsNone(session.error)

    def test_noReconnect(self) -> None:
        """With --no-reconnect, a dropped connection ends the client, as on a pipe."""
        session, console = self.session(reconnect=False)
        self.server.shutDown()
        self.assertEqual(self.successResultOf(session.done), 1)
        self.assertEqual(session.error, "disconnected by the server: server shutting down")

    def test_notAfterAModerator(self) -> None:
        """A moderator's disconnect is not undone by connecting again; another reason is."""
        session, console = self.session()
        self.server.protocols[-1].disconnect("send queue exceeded")
        self.server.flush()
        self.wait(1)
        self.assertEqual(console.prompt, "lobby")
        self.server.protocols[-1].disconnect(removalReason("Root", "spam"))
        self.server.flush()
        self.assertEqual(self.successResultOf(session.done), 1)
        self.assertEqual(session.error, "disconnected by the server: by Root (spam)")

    def test_firstConnectionFails(self) -> None:
        """A server that cannot be reached at first is an error, not a wait."""
        self.server.down = True
        session, console = self.session()
        self.assertEqual(self.successResultOf(session.done), 1)
        self.assertEqual(
            session.error, "cannot connect to the server: connection refused (is the server running?)"
        )

    def test_leaveWhileConnecting(self) -> None:
        """Ctrl-C while a connection is being made stops making it."""
        cancelled: list[object] = []
        self.server.connect = lambda client: Deferred(cancelled.append)  # type: ignore[method-assign]
        session, console = self.session()
        session.leave()
        self.assertEqual(self.successResultOf(session.done), 1)
        self.assertEqual(len(cancelled), 1)

    def test_leaveWhileAskedForPassword(self) -> None:
        owner, ownerConsole = self.session()
        ownerConsole.type("/register sesame-open", "/quit")
        self.server.flush()
        session, console = self.session()
        self.assertEqual(len(console.asked), 1)
        session.leave()
        self.server.flush()
        self.assertEqual(self.successResultOf(session.done), 1)
        self.assertEqual(session.error, "left before joining")


class WhereaboutsTests(SessionTestCase):
    """The client follows what the real server says of the member's rooms and nickname."""

    def test_followsTheServer(self) -> None:
        session, console = self.session()
        where = session.whereabouts
        self.assertEqual((where.rooms, where.current), (["lobby"], "lobby"))
        console.type("/join games", "/join dev")
        self.server.flush()
        self.assertEqual((where.rooms, where.current), (["lobby", "games", "dev"], "dev"))
        console.type("/join games")
        self.server.flush()
        self.assertEqual(where.current, "games")
        console.type("/part")
        self.server.flush()
        self.assertEqual((where.rooms, where.current), (["lobby", "dev"], "dev"))
        console.type("/nick Alicia")
        self.server.flush()
        self.assertEqual((where.nick, console.nick), ("Alicia", "Alicia"))
        console.type("/part dev", "/part lobby")
        self.server.flush()
        self.assertEqual((where.rooms, where.current, console.prompt), ([], None, None))

    def test_kickedOut(self) -> None:
        """Kicked from a room, the member is out of it: not rejoined after a reconnection."""
        owner = self.server.member("Bob")
        owner.send("/register sesame-open\n/join games\n")
        session, console = self.session()
        console.type("/join games")
        self.server.flush()
        owner.send("/kick Alice enough\n")
        self.server.flush()
        self.assertEqual(
            console.lines[-2:],
            ["*** Alice was kicked by Bob (enough)", "*** You are out of games; now talking in lobby"],
        )
        self.assertEqual((session.whereabouts.rooms, console.prompt), (["lobby"], "lobby"))

    def test_renamedByOthersIgnored(self) -> None:
        where = Whereabouts("Alice")
        self.assertFalse(where.learn("*** Bob is now known as Alice2"))
        self.assertTrue(where.learn("*** alice is now known as Ally"))
        self.assertEqual(where.nick, "Ally")

    def test_passwordOnlyOnceTaken(self) -> None:
        """A password typed is kept only once the server says it took it."""
        where = Whereabouts("Alice")
        where.typed("/register hunter2")
        self.assertIsNone(where.password)
        where.learn("*** Error: registration is closed")
        where.learn("*** Bob is registered: nobody else may use it, and you log in with ...")
        self.assertIsNone(where.password)
        where.learn("*** Alice is registered: nobody else may use it, and you log in with ...")
        self.assertEqual(where.password, "hunter2")

    def test_rejoin(self) -> None:
        was = Whereabouts("Alice")
        was.rooms, was.current = ["lobby", "games", "dev"], "games"
        now = Whereabouts("Alice")
        now.learn("*** Type /help for commands, /quit to leave; you are talking in lobby.")
        self.assertEqual(was.rejoin(now), ["/join games", "/join dev", "/join games"])
        was.rooms, was.current = ["lobby"], "lobby"
        self.assertEqual(was.rejoin(now), [])
        was.rooms, was.current = [], None
        self.assertEqual(was.rejoin(now), ["/part lobby"])
