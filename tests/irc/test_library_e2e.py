"""
End to end with a Python IRC client library: irctokens reads and writes every line, and ircstates
(the state tracking of the ircrobots framework) follows the session from them as a client does:
capabilities, ISUPPORT, channels, members and their modes, topics. A real C{twistd -n chatroom},
with members of the line door (netcat) and of the page's WebSocket in the same rooms.

What ircstates makes of the server's lines is the check: a numeric or message a client library
could not parse, or parses to the wrong state, fails here.
"""

from __future__ import annotations

import base64
import socket
import time
from pathlib import Path

from ircstates.server import Server as IrcState
from irctokens.line import Line, build
from twisted.trial.unittest import SynchronousTestCase

from chatsvc.irc.protocol import CAPABILITIES
from tests.processes import TIMEOUT, Server
from tests.test_accounts_e2e import Netcat, member
from tests.web.test_web_e2e import WSPeer


class LibraryClient:
    """An IRC connection whose lines go through irctokens, and whose state ircstates keeps."""

    def __init__(self, test: SynchronousTestCase, port: int) -> None:
        self.socket = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        test.addCleanup(self.socket.close)
        self.state = IrcState("chatsvc")
        self.pending: list[Line] = []
        self.raw: list[bytes] = []

    def send(self, command: str, *params: str, tags: dict[str, str] | None = None) -> None:
        line = build(command, list(params), tags=tags)
        self.socket.sendall(line.format().encode("utf-8") + b"\r\n")

    def read(self, deadline: float) -> Line:
        while not self.pending:
            self.socket.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.socket.recv(65536)
            except TimeoutError:
                raise AssertionError("no line in time") from None
            if not data:
                raise AssertionError("the server closed the connection")
            self.raw.extend(line for line in data.split(b"\r\n") if line)
            for line in self.state.recv(data):
                self.state.parse_tokens(line)
                self.pending.append(line)
        return self.pending.pop(0)

    def expect(self, command: str, *params: str, timeout: float = TIMEOUT) -> Line:
        """Read until a line of C{command} whose first parameters are C{params}; that line."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.read(deadline)
            if line.command == "PING":
                self.send("PONG", line.params[-1])
            elif line.command == command and line.params[: len(params)] == list(params):
                return line

    def register(self, nick: str, caps: list[str] | None = None, sasl: tuple[str, str] | None = None) -> None:
        self.send("CAP", "LS", "302")
        self.expect("CAP", "*", "LS")
        if caps:
            self.send("CAP", "REQ", " ".join(caps))
            self.expect("CAP", "*", "ACK")
        self.send("NICK", nick)
        self.send("USER", nick.lower(), "0", "*", f"{nick} Example")
        if sasl:
            self.send("AUTHENTICATE", "PLAIN")
            self.expect("AUTHENTICATE", "+")
            self.send("AUTHENTICATE", base64.b64encode(f"\0{sasl[0]}\0{sasl[1]}".encode()).decode())
            self.expect("903")
        self.send("CAP", "END")
        self.expect("001")
        self.expect("366", self.state.nickname, "#lobby")


class LibraryTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = Path(self.mktemp()).resolve()
        self.directory.mkdir()
        self.server = Server(self.directory, "--db", str(self.directory / "chat.db"), "--server-name", "irc.test")
        self.addCleanup(self.server.stop)
        self.port = self.server.waitListening()
        self.webPort = self.server.waitWebListening()
        self.ircPort = self.server.waitIrcListening()

    def client(self) -> LibraryClient:
        return LibraryClient(self, self.ircPort)

    def netcat(self, nick: str, register: str | None = None) -> Netcat:
        return member(self, self.port, nick, register)

    def page(self, nick: str) -> WSPeer:
        peer = WSPeer(self.webPort)
        self.addCleanup(peer.close)
        peer.expect("hello")
        peer.send({"type": "name", "nick": nick})
        peer.expect("welcome")
        return peer

    def test_everyCapability(self) -> None:
        """Every capability offered is negotiated; ISUPPORT reads as the library expects."""
        alice = self.client()
        wanted = sorted(name for name in CAPABILITIES)
        alice.register("Alice", wanted)
        state = alice.state
        self.assertEqual(set(state.agreed_caps), set(wanted))
        self.assertIn("sasl", state.available_caps)
        self.assertEqual(state.available_caps["sasl"], "PLAIN")
        isupport = state.isupport
        self.assertEqual(isupport.casemapping.name.lower(), "ascii")
        self.assertEqual(isupport.chantypes, ["#"])
        self.assertEqual((isupport.prefix.modes, isupport.prefix.prefixes), (["o", "v"], ["@", "+"]))
        self.assertEqual(isupport.chanmodes.a_modes, ["b"])
        self.assertEqual(isupport.nicklen, 32)
        self.assertEqual(isupport.network, "irc.test")
        self.assertEqual(isupport.monitor, 100)
        self.assertTrue(isupport.whox)
        self.assertEqual(state.nickname, "Alice")
        self.assertIn("#lobby", state.channels)

    def test_channelsAcrossDoors(self) -> None:
        """The library's view of #games follows members of every door: joins, modes, topic, kick."""
        owner = self.netcat("Owner", register="owner-pass")
        owner.send("/join games")
        owner.expect("You joined games")
        alice = self.client()
        alice.register("Alice", ["multi-prefix", "userhost-in-names", "extended-join", "away-notify"])
        alice.send("JOIN", "#games")
        alice.expect("366", "Alice", "#games")
        games = alice.state.channels["#games"]
        self.assertEqual(set(games.users), {"alice", "owner"})
        self.assertEqual(games.users["owner"].modes, {"o"})
        bob = self.page("Bob")
        bob.send({"type": "join", "room": "games"})
        alice.expect("JOIN", "#games")
        self.assertIn("bob", games.users)
        owner.send("/topic board games tonight")
        alice.expect("TOPIC", "#games")
        self.assertEqual(games.topic, "board games tonight")
        owner.send("/set moderated on")
        alice.expect("MODE", "#games")
        self.assertIn("m", games.modes)
        owner.send("/kick Bob enough")
        alice.expect("KICK", "#games", "Bob")
        self.assertNotIn("bob", games.users)
        eve = self.netcat("Eve")
        eve.send("/join games")
        alice.expect("JOIN", "#games")
        eve.send("/nick Evelyn")
        alice.expect("NICK", "Evelyn")
        self.assertIn("evelyn", games.users)
        self.assertNotIn("eve", games.users)

    def test_nickCollisionWithThePage(self) -> None:
        """A nickname a page member holds is refused on IRC, in another case too."""
        self.page("Carol")
        carol = self.client()
        carol.send("NICK", "CAROL")
        carol.send("USER", "c", "0", "*", "C")
        refused = carol.expect("433")
        self.assertEqual(refused.params[1], "CAROL")

    def test_lineFromThePageSplitAndWhole(self) -> None:
        """A 3,000-byte line from the page arrives split in messages of 512 bytes, whole, with the page's id."""
        alice = self.client()
        alice.register("Alice", ["message-tags", "server-time"])
        bob = self.page("Bob")
        alice.expect("JOIN", "#lobby")
        text = ("Grüße aus Köln, 你好, 👋🏽 " * 150)[:1950]
        self.assertGreater(len(text.encode("utf-8")), 3000)
        bob.send({"type": "say", "room": "lobby", "text": text, "cid": "1"})
        said = bob.expect("said")
        pieces: list[str] = []
        ids: set[str | None] = set()
        while "".join(pieces) != text:
            line = alice.expect("PRIVMSG", "#lobby")
            pieces.append(line.params[1])
            ids.add(line.tags["msgid"] if line.tags else None)
        self.assertGreater(len(pieces), 6)
        self.assertEqual(ids, {str(said["id"])})
        for raw in alice.raw:
            tags, _, rest = raw.partition(b" ") if raw.startswith(b"@") else (b"", b"", raw)
            self.assertLessEqual(len(rest) + 2, 512, raw)

    def test_everyCommand(self) -> None:
        """
        Every command a client sends, once, against the real server, each answer read by the
        library (and its state checked where it keeps one).
        """
        owner = self.netcat("Owner", register="owner-pass")
        alice = self.client()
        alice.register("Alice", ["labeled-response", "batch", "server-time", "message-tags",
                                 "draft/chathistory", "setname", "invite-notify", "away-notify"])
        alice.send("JOIN", "#games,#chess")
        alice.expect("366", "Alice", "#games")
        alice.expect("366", "Alice", "#chess")
        self.assertEqual(set(alice.state.channels), {"#lobby", "#games", "#chess"})
        alice.send("PART", "#chess", "not today")
        alice.expect("PART", "#chess")
        self.assertNotIn("#chess", alice.state.channels)
        alice.send("TOPIC", "#games", "board games")
        alice.expect("TOPIC", "#games")
        self.assertEqual(alice.state.channels["#games"].topic, "board games")
        alice.send("PRIVMSG", "#games", "hello")
        alice.send("NOTICE", "#games", "a notice")
        alice.send("TAGMSG", "#games", tags={"+typing": "active"})
        alice.send("PRIVMSG", "Owner", "psst")
        owner.expect(r"^\*Alice\* psst$")
        alice.send("NAMES", "#games")
        alice.expect("366", "Alice", "#games")
        alice.send("LIST")
        listed = alice.expect("322", "Alice", "#games")
        self.assertEqual(listed.params[2:], ["1", "board games"])
        alice.expect("323")
        alice.send("WHO", "#lobby")
        alice.expect("315", "Alice", "#lobby")
        alice.send("WHO", "#lobby", "%tnf,7")
        self.assertEqual(alice.expect("354").params[1], "7")
        alice.send("WHOIS", "Owner")
        self.assertEqual(alice.expect("330").params[1:3], ["Owner", "Owner"])
        alice.send("ISON", "Owner", "Nobody")
        self.assertEqual(alice.expect("303").params[-1], "Owner")
        alice.send("USERHOST", "Owner")
        self.assertEqual(alice.expect("302").params[-1], "Owner=+chat@chatsvc")
        alice.send("MODE", "#games")
        alice.expect("324", "Alice", "#games")
        alice.send("MODE", "Alice")
        alice.expect("221", "Alice")
        alice.send("AWAY", "lunch")
        alice.expect("306")
        alice.send("AWAY")
        alice.expect("305")
        alice.send("SETNAME", "Alice Example")
        alice.expect("SETNAME", "Alice Example")
        self.assertEqual(alice.state.realname, "Alice Example")
        alice.send("MONITOR", "+", "Zed")
        alice.expect("731")
        zed = self.netcat("Zed")
        alice.expect("730")
        alice.send("CHATHISTORY", "LATEST", "#games", "*", "10")
        alice.expect("BATCH")
        alice.send("PRIVMSG", "#games", "labelled", tags={"label": "x1"})
        alice.send("MOTD")
        alice.expect("422")
        alice.send("LUSERS")
        alice.expect("266")
        alice.send("NICK", "Alicia")
        alice.expect("NICK", "Alicia")
        self.assertEqual(alice.state.nickname, "Alicia")
        # The owner of a room of its own invites and kicks.
        owner.send("/join cards")
        owner.expect("You joined cards")
        owner.send("/invite Alicia")
        invited = alice.expect("INVITE", "Alicia", "#cards")
        self.assertEqual(invited.hostmask.nickname, "Owner")
        alice.send("JOIN", "#cards")
        alice.expect("366", "Alicia", "#cards")
        owner.send("/kick Alicia out")
        alice.expect("KICK", "#cards", "Alicia")
        self.assertNotIn("#cards", alice.state.channels)
        alice.send("INVITE", "Zed", "#games")
        alice.expect("482")  # a guest is no operator of #games
        zed.send("/quit")
        alice.send("QUIT", "bye")
        alice.expect("ERROR")

    def test_sasl(self) -> None:
        owner = self.netcat("Dave", register="dave-pass")
        owner.send("/quit")
        dave = self.client()
        dave.register("dave_", ["sasl", "account-tag"], sasl=("Dave", "dave-pass"))
        self.assertEqual(dave.state.nickname, "Dave")
        self.assertEqual(dave.state.account, "Dave")
