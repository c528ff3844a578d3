"""
Tests for L{chatsvc.irc.protocol}: the IRC door on in-memory transports, message by message,
numerics included, with line-door members in the same rooms.
"""

from __future__ import annotations

import base64

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from chatsvc.chat import Accounts, Hub, MemoryAccountStore, NicknameTaken, nick_key
from chatsvc.chat.moderation import MemoryModerationStore, Moderation
from chatsvc.irc.message import Message, parse, serverTime
from chatsvc.irc.protocol import IrcFactory, IrcProtocol, stripFormatting
from chatsvc.line.protocol import ChatFactory
from chatsvc.sessions.admission import Admission
from chatsvc.sessions.limits import Limits
from chatsvc.sessions.outbox import Outbox
from tests.chat.test_accounts import PlainHasher
from tests.chat.test_nicknames import SlowNicknames
from tests.line.test_protocol import Client as LineClient

_port = [41000]


class IrcClient:
    """One in-memory connection to an L{IrcFactory}, and what the server wrote to it."""

    def __init__(self, factory: IrcFactory) -> None:
        _port[0] += 1
        address = IPv4Address("TCP", "127.0.0.1", _port[0])
        self.transport = StringTransport(peerAddress=address)
        protocol = factory.buildProtocol(address)
        assert isinstance(protocol, IrcProtocol)
        self.protocol = protocol
        self.clock = factory.clock
        protocol.makeConnection(self.transport)

    def send(self, *lines: str) -> None:
        for line in lines:
            self.protocol.dataReceived(line.encode("utf-8") + b"\r\n")
            assert isinstance(self.clock, Clock)
            self.clock.advance(0)

    def lines(self) -> list[str]:
        value = self.transport.value()
        self.transport.clear()
        assert value == b"" or value.endswith(b"\r\n"), value
        return value.decode("utf-8").split("\r\n")[:-1] if value else []

    def messages(self) -> list[Message]:
        return [parse(line) for line in self.lines()]

    def commands(self) -> list[str]:
        return [message.command for message in self.messages()]

    def register(self, nick: str, *caps: str) -> None:
        """Register as C{nick}, asking for C{caps}; what the server answers is left to read."""
        if caps:
            self.send("CAP LS 302", f"CAP REQ :{' '.join(caps)}")
            self.transport.clear()
        self.send(f"NICK {nick}", f"USER {nick.lower()} 0 * :{nick} Example")
        if caps:
            self.send("CAP END")


class IrcTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        limits = Limits()
        self.accounts = Accounts(self.clock, PlainHasher(), MemoryAccountStore())
        moderation = Moderation(self.clock, MemoryModerationStore())
        self.hub = Hub(self.clock, accounts=self.accounts, moderation=moderation)
        admission = Admission(self.clock, limits)
        outbox = Outbox(self.clock)
        self.factory = IrcFactory(self.hub, limits, admission, outbox, serverName="irc.test", network="TestNet",
                                  pingInterval=0)
        self.lineFactory = ChatFactory(self.hub, limits, admission=admission, outbox=outbox)

    def irc(self, nick: str | None = None, *caps: str) -> IrcClient:
        client = IrcClient(self.factory)
        if nick is not None:
            client.register(nick, *caps)
            if client.protocol.nick is not None:
                client.lines()  # the welcome (RegistrationTests read it)
        return client

    def line(self, nick: str) -> LineClient:
        member = LineClient(self.lineFactory)
        member.send(nick + "\n")
        member.lines()
        return member

    def registered(self, nick: str, password: str = "sesame-open") -> None:
        member = self.line(nick)
        member.send(f"/register {password}\n/quit\n")


class RegistrationTests(IrcTestCase):
    def test_welcomeBurst(self) -> None:
        """NICK and USER: the welcome numerics in order, the MOTD's absence, then #lobby."""
        client = self.irc()
        client.send("NICK Alice", "USER alice 0 * :Alice Example")
        messages = client.messages()
        commands = [m.command for m in messages]
        self.assertEqual(
            commands[:5], ["001", "002", "003", "004", "005"]
        )
        self.assertEqual(messages[0].params[0], "Alice")
        self.assertIn("Welcome to TestNet", messages[0].params[1])
        self.assertEqual(messages[0].source, "irc.test")
        tokens = [t for m in messages if m.command == "005" for t in m.params[1:-1]]
        for token in ("CASEMAPPING=ascii", "CHANTYPES=#", "PREFIX=(ov)@+", "CHANMODES=b,,,imntR",
                      "NICKLEN=32", "CHANNELLEN=33", "UTF8ONLY", "NETWORK=TestNet"):
            self.assertIn(token, tokens)
        self.assertTrue(any(t.startswith("TOPICLEN=") for t in tokens))
        after = commands[commands.index("005"):]
        self.assertLess(after.index("251"), after.index("422"))
        self.assertEqual(commands[-4:], ["221", "JOIN", "353", "366"])
        join = messages[-3]
        self.assertEqual((join.source, join.params), ("Alice!chat@chatsvc", ("#lobby",)))
        self.assertEqual(messages[-2].params[-1], "Alice")

    def test_motd(self) -> None:
        self.factory.motd = ["Be kind.", "Have fun."]
        client = self.irc("Alice")
        client.lines()
        client.send("MOTD")
        self.assertEqual(
            [(m.command, m.params[-1]) for m in client.messages()],
            [("375", "- irc.test Message of the day - "), ("372", "- Be kind."), ("372", "- Have fun."),
             ("376", "End of /MOTD command.")],
        )

    def test_capabilities(self) -> None:
        """CAP LS 302 lists what is offered (sasl with its mechanisms); REQ is all or nothing."""
        client = self.irc()
        client.send("CAP LS 302")
        [listed] = client.messages()
        offered = listed.params[-1].split()
        for name in ("server-time", "message-tags", "multi-prefix", "echo-message", "batch",
                     "sasl=PLAIN", "account-tag", "extended-join", "userhost-in-names", "cap-notify"):
            self.assertIn(name, offered)
        client.send("CAP REQ :server-time bogus")
        self.assertEqual(client.messages()[0].params[1:], ("NAK", "server-time bogus"))
        client.send("CAP REQ :server-time echo-message")
        self.assertEqual(client.messages()[0].params[1:], ("ACK", "server-time echo-message"))
        client.send("NICK Alice", "USER a 0 * :A")
        self.assertEqual(client.lines(), [])  # negotiation is not over
        client.send("CAP END")
        self.assertEqual(client.commands()[0], "001")
        client.send("CAP LIST")
        self.assertEqual(client.messages()[0].params[-1], "cap-notify echo-message server-time")

    def test_notRegisteredYet(self) -> None:
        client = self.irc()
        client.send("JOIN #games", "FROB", "PING :x")
        self.assertEqual(client.commands(), ["451", "451", "PONG"])

    def test_unknownCommand(self) -> None:
        client = self.irc("Alice")
        client.lines()
        client.send("FROB x")
        [refusal] = client.messages()
        self.assertEqual((refusal.command, refusal.params), ("421", ("Alice", "FROB", "Unknown command")))

    def test_nickInUseAcrossDoors(self) -> None:
        """A nickname a line-door member holds is refused (433), in another case too."""
        self.line("Alice")
        client = self.irc("ALICE")
        [refusal] = client.messages()
        self.assertEqual(refusal.command, "433")
        self.assertEqual(refusal.params[:2], ("*", "ALICE"))
        self.assertIn("already in use", refusal.params[2])
        client.send("NICK Alicia")
        self.assertEqual(client.commands()[0], "001")

    def test_invalidNick(self) -> None:
        client = self.irc()
        client.send("NICK /bad", "USER a 0 * :A")
        [refusal] = client.messages()
        self.assertEqual(refusal.command, "432")

    def test_registeredNickNeedsLogin(self) -> None:
        self.registered("Alice")
        client = self.irc("Alice")
        [refusal] = client.messages()
        self.assertEqual(refusal.command, "433")
        self.assertIn("log in with SASL", refusal.params[-1])

    def test_sasl(self) -> None:
        """SASL PLAIN logs in to the account; the nickname is the account's."""
        self.registered("Alice")
        client = self.irc()
        client.send("CAP LS 302", "CAP REQ :sasl", "NICK alice_", "USER a 0 * :A", "AUTHENTICATE PLAIN")
        self.assertEqual(client.lines()[-1], "AUTHENTICATE +")
        payload = base64.b64encode(b"\0Alice\0sesame-open").decode()
        client.send(f"AUTHENTICATE {payload}")
        messages = client.messages()
        self.assertEqual([m.command for m in messages], ["900", "903"])
        self.assertEqual(messages[0].params[2], "Alice")
        client.send("CAP END")
        messages = client.messages()
        self.assertEqual((messages[0].command, messages[0].params[0]), ("001", "Alice"))
        self.assertIn(("221", ("Alice", "+r")), [(m.command, m.params) for m in messages])

    def test_saslWrongPassword(self) -> None:
        self.registered("Alice")
        client = self.irc()
        client.send("CAP REQ :sasl", "AUTHENTICATE PLAIN")
        client.lines()
        client.send("AUTHENTICATE " + base64.b64encode(b"Alice\0Alice\0wrong-one").decode())
        [failed] = client.messages()
        self.assertEqual(failed.command, "904")
        self.assertIn("wrong password", failed.params[-1])
        client.send("AUTHENTICATE FOO")
        self.assertEqual(client.commands(), ["908", "904"])
        client.send("AUTHENTICATE *")
        self.assertEqual(client.commands(), ["906"])

    def test_passFallback(self) -> None:
        """PASS account:password logs in as SASL would."""
        self.registered("Alice")
        client = self.irc()
        client.send("PASS Alice:sesame-open", "NICK whoever", "USER a 0 * :A")
        messages = client.messages()
        self.assertEqual([m.command for m in messages][:2], ["900", "001"])
        self.assertEqual(messages[1].params[0], "Alice")

    def test_passWrong(self) -> None:
        self.registered("Alice")
        client = self.irc()
        client.send("PASS Alice:nope-nope", "NICK Alice", "USER a 0 * :A")
        self.assertEqual(client.commands(), ["464", "ERROR"])

    def test_registrationTimeout(self) -> None:
        client = self.irc()
        client.send("NICK Alice")
        self.clock.advance(61)
        self.assertEqual(client.lines(), ["ERROR :Closing link: Registration timed out"])
        self.assertTrue(client.transport.disconnecting)

    def test_ping(self) -> None:
        client = self.irc("Alice")
        client.lines()
        client.send("PING :abc")
        self.assertEqual(client.lines(), [":irc.test PONG irc.test abc"])


class KeepAliveTests(IrcTestCase):
    def test_pingTimeout(self) -> None:
        """Silent for an interval: pinged; silent for another: cut, and the others told."""
        self.factory = IrcFactory(self.hub, Limits(), serverName="irc.test", pingInterval=30)
        alice = self.irc("Alice")
        bob = self.line("Bob")
        alice.lines()
        self.clock.advance(30)
        self.clock.advance(30)
        self.assertEqual(alice.lines(), [":irc.test PING irc.test"])
        self.clock.advance(30)
        self.assertEqual(alice.lines(), ["ERROR :Closing link: Ping timeout: 60 seconds"])
        self.assertEqual(bob.lines(), ["Alice left! (Ping timeout: 60 seconds)"])

    def test_answeredPing(self) -> None:
        self.factory = IrcFactory(self.hub, Limits(), serverName="irc.test", pingInterval=30)
        alice = self.irc("Alice")
        self.clock.advance(60)
        alice.send("PONG :irc.test")
        self.clock.advance(30)
        self.clock.advance(30)
        self.assertFalse(alice.transport.disconnecting)


class ChannelTests(IrcTestCase):
    def test_talkAcrossDoors(self) -> None:
        """An IRC member and a line-door member talk in #lobby / lobby, both ways."""
        alice = self.irc("Alice")
        bob = self.line("Bob")
        self.assertEqual(alice.lines(), [":Bob!chat@chatsvc JOIN #lobby"])
        alice.send("PRIVMSG #lobby :hi \x02Bob\x02")
        self.assertEqual(bob.lines(), ["Alice: hi Bob"])
        bob.send("hello alice\n")
        self.assertEqual(alice.lines(), [":Bob!chat@chatsvc PRIVMSG #lobby :hello alice"])
        bob.send("/me waves\n")
        self.assertEqual(alice.lines(), [":Bob!chat@chatsvc PRIVMSG #lobby :\x01ACTION waves\x01"])
        alice.send("PRIVMSG #lobby :\x01ACTION bows\x01")
        self.assertEqual(bob.lines(), ["* Alice bows"])
        alice.send("PRIVMSG #lobby :\x01VERSION\x01")
        self.assertEqual(bob.lines(), [])

    def test_tagsAndEcho(self) -> None:
        """server-time, msgid (the event's id) and echo-message."""
        alice = self.irc("Alice", "server-time", "message-tags", "echo-message")
        alice.lines()
        bob = self.line("Bob")
        alice.lines()
        bob.send("hello\n")
        [said] = alice.messages()
        self.assertEqual(said.tags["time"], serverTime(self.clock.seconds()))
        self.assertTrue(said.tags["msgid"].isdigit())
        alice.send("PRIVMSG #lobby :back at you")
        [echo] = alice.messages()
        self.assertEqual((echo.source, echo.params), ("Alice!chat@chatsvc", ("#lobby", "back at you")))
        stored = self.hub.room("lobby").history(1)[0]
        self.assertEqual(echo.tags["msgid"], str(stored.id))

    def test_joinPartTopicNames(self) -> None:
        alice = self.irc("Alice")
        alice.lines()
        alice.send("JOIN #games,#chess,nope")
        messages = alice.messages()
        self.assertEqual(
            [(m.command, m.params[0] if m.command == "JOIN" else m.params[1]) for m in messages],
            [("JOIN", "#games"), ("353", "="), ("366", "#games"), ("JOIN", "#chess"), ("353", "="),
             ("366", "#chess"), ("403", "nope")],
        )
        alice.send("TOPIC #games :board games \x0304here")
        self.assertEqual(alice.lines(), [":Alice!chat@chatsvc TOPIC #games :board games here"])
        alice.send("TOPIC #games")
        self.assertEqual(alice.messages()[0].params, ("Alice", "#games", "board games here"))
        bob = self.line("Bob")
        bob.send("/join games\n")
        alice.lines()
        alice.send("NAMES #games")
        self.assertEqual(alice.messages()[0].params[-1], "Alice Bob")
        bob.lines()
        alice.send("PART #games :bye now")
        self.assertEqual(alice.lines(), [":Alice!chat@chatsvc PART #games :bye now"])
        self.assertEqual(bob.lines(), ["Alice left! (bye now)"])
        alice.send("PART #games")
        self.assertEqual(alice.commands(), ["442"])

    def test_history(self) -> None:
        """Joining, a client gets the recent history: in a batch, with the original times."""
        bob = self.line("Bob")
        bob.send("/join games\n")
        bob.send("first\n")
        said = self.clock.seconds()
        self.clock.advance(60)
        bob.send("/me second\n")
        alice = self.irc("Alice", "server-time", "batch", "message-tags")
        alice.lines()
        alice.send("JOIN #games")
        messages = alice.messages()[3:]
        self.assertEqual([m.command for m in messages], ["BATCH", "PRIVMSG", "PRIVMSG", "BATCH"])
        self.assertEqual(messages[0].params[1:], ("chathistory", "#games"))
        batch = messages[0].params[0][1:]
        self.assertEqual(messages[1].tags["batch"], batch)
        self.assertEqual(messages[1].tags["time"], serverTime(said))
        self.assertEqual(messages[1].params, ("#games", "first"))
        self.assertEqual(messages[2].params, ("#games", "\x01ACTION second\x01"))
        self.assertEqual(messages[3].params, (f"-{batch}",))
        # Without server-time, history is told as dated notices.
        carol = self.irc("Carol")
        carol.lines()
        carol.send("JOIN #games")
        notices = [m.params[-1] for m in carol.messages() if m.command == "NOTICE"]
        self.assertEqual(len(notices), 2)
        self.assertRegex(notices[0], r"^\[\d{4}-\d\d-\d\d \d\d:\d\d UTC\] <Bob> first$")

    def test_longLineSplit(self) -> None:
        """A 3,000-byte line from the line door reaches IRC in pieces within 512 bytes, whole."""
        alice = self.irc("Alice")
        bob = self.line("Bob")
        alice.lines()
        text = ("ünïcödé 🎉👩‍👩‍👧 " * 200)[:1500]
        self.assertGreater(len(text.encode("utf-8")), 2500)
        bob.send(text + "\n")
        raw = alice.transport.value().split(b"\r\n")[:-1]
        alice.transport.clear()
        self.assertGreater(len(raw), 5)
        for line in raw:
            self.assertLessEqual(len(line) + 2, 512)
            line.decode("utf-8")  # never cut inside a code point
        pieces = [parse(line.decode("utf-8")).params[1] for line in raw]
        self.assertEqual("".join(pieces), text)
        self.assertFalse(any(piece.startswith("\u200d") for piece in pieces))

    def test_privateMessages(self) -> None:
        alice = self.irc("Alice")
        bob = self.line("Bob")
        alice.lines()
        alice.send("PRIVMSG Bob :psst")
        self.assertEqual(bob.lines(), ["*Alice* psst"])
        bob.send("/msg Alice hush\n")
        self.assertEqual(alice.lines(), [":Bob!chat@chatsvc PRIVMSG Alice :hush"])
        alice.send("PRIVMSG Nobody :hello?")
        self.assertEqual(alice.commands(), ["401"])
        alice.send("NOTICE Nobody :hello?")
        self.assertEqual(alice.lines(), [])

    def test_errors(self) -> None:
        alice = self.irc("Alice")
        alice.lines()
        alice.send("PRIVMSG #nowhere :x", "PRIVMSG", "PRIVMSG #lobby", "JOIN", "TOPIC #nowhere")
        self.assertEqual(alice.commands(), ["403", "411", "412", "461", "403"])
        self.line("Bob").send("/join games\n")
        alice.lines()
        alice.send("PRIVMSG #games :not in it")
        self.assertEqual(alice.commands(), ["404"])

    def test_rename(self) -> None:
        alice = self.irc("Alice")
        bob = self.line("Bob")
        alice.lines()
        alice.send("NICK Alicia")
        self.assertEqual(alice.lines(), [":Alice!chat@chatsvc NICK Alicia"])
        self.assertEqual(bob.lines(), ["*** Alice is now known as Alicia"])
        alice.send("NICK Bob")
        self.assertEqual(alice.commands(), ["433"])
        bob.send("/nick Bobby\n")
        self.assertEqual(alice.lines(), [":Bob!chat@chatsvc NICK Bobby"])

    def test_quit(self) -> None:
        alice = self.irc("Alice")
        bob = self.line("Bob")
        alice.send("QUIT :see you")
        self.assertEqual(alice.lines()[-1], "ERROR :Closing link: Quit: see you")
        self.assertEqual(bob.lines(), ["Alice left! (Quit: see you)"])

    def test_crowdedRoom(self) -> None:
        """
        In a crowded room, joins the core holds come together as notices (not a JOIN each), and
        a newcomer's NAMES lists those with a role and itself, saying how many there are; NAMES
        asked for lists everyone.
        """
        self.hub.crowdSize = 2
        alice = self.irc("Alice")
        self.line("Bob")
        self.line("Carol")
        dave = self.irc("Dave")
        self.line("Erin")
        self.clock.advance(self.hub.crowdInterval)
        # Dave joined among them: told only of those after him.
        self.assertEqual([m.params[1] for m in dave.messages() if m.command == "NOTICE"], ["*** Joined: Erin"])
        messages = alice.messages()
        joins = [m.source.split("!")[0] for m in messages if m.command == "JOIN" and m.source]
        notices = [m.params[1] for m in messages if m.command == "NOTICE"]
        self.assertEqual(joins, ["Bob"])  # alone, before the room was crowded
        self.assertEqual(notices, ["*** Joined: Carol, Dave, Erin"])
        frank = self.irc()
        frank.register("Frank")
        frank.send("NAMES #lobby")
        named = [(m.command, m.params[-1]) for m in frank.messages() if m.command in ("353", "366", "NOTICE")]
        self.assertEqual(named[:3], [
            ("353", "Frank"), ("366", "End of /NAMES list"),
            ("NOTICE", "*** #lobby has 6 members, too many to list on joining: NAMES #lobby lists them all"),
        ])
        self.assertEqual(named[3], ("353", "Alice Bob Carol Dave Erin Frank"))

class QueryTests(IrcTestCase):
    def test_whoWhoisListIsonUserhost(self) -> None:
        alice = self.irc("Alice")
        self.line("Bob")
        alice.lines()
        alice.send("WHO #lobby")
        who = alice.messages()
        self.assertEqual([m.command for m in who], ["352", "352", "315"])
        self.assertEqual(who[0].params[1:7], ("#lobby", "chat", "chatsvc", "irc.test", "Alice", "H"))
        alice.send("WHOIS Bob")
        self.assertEqual([m.command for m in alice.messages()], ["311", "319", "312", "317", "318"])
        alice.send("WHOIS Nobody")
        self.assertEqual(alice.commands(), ["401", "318"])
        alice.send("LIST")
        listed = alice.messages()
        self.assertEqual([m.command for m in listed], ["321", "322", "323"])
        self.assertEqual(listed[1].params[1:3], ("#lobby", "2"))
        alice.send("ISON Bob Nobody alice", "USERHOST Bob")
        messages = alice.messages()
        self.assertEqual(messages[0].params[-1], "Bob Alice")
        self.assertEqual(messages[1].params[-1], "Bob=+chat@chatsvc")


class ChatHistoryTests(IrcTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.bob = self.line("Bob")
        self.bob.send("/join games\n")
        self.times = []
        for n in range(1, 11):
            self.times.append(self.clock.seconds())
            self.bob.send(f"m{n}\n")
            self.clock.advance(60)
        self.ids = [m.id for m in self.hub.room("games").history(10)]
        self.alice = self.irc("Alice", "batch", "server-time", "message-tags", "draft/chathistory")
        self.alice.send("JOIN #games")

    def texts(self) -> list[str]:
        messages = self.alice.messages()
        self.assertEqual((messages[0].command, messages[-1].command), ("BATCH", "BATCH"))
        self.assertEqual(messages[0].params[1:], ("chathistory", "#games"))
        return [m.params[1] for m in messages[1:-1]]

    def test_noneOnJoin(self) -> None:
        """A client with chathistory asks for history itself: none is sent on JOIN."""
        self.assertNotIn("PRIVMSG", [m.command for m in self.alice.messages()])

    def test_latestBeforeAfter(self) -> None:
        self.alice.lines()
        self.alice.send("CHATHISTORY LATEST #games * 3")
        self.assertEqual(self.texts(), ["m8", "m9", "m10"])
        self.alice.send(f"CHATHISTORY BEFORE #games msgid={self.ids[4]} 2")
        self.assertEqual(self.texts(), ["m3", "m4"])
        self.alice.send(f"CHATHISTORY AFTER #games msgid={self.ids[4]} 2")
        self.assertEqual(self.texts(), ["m6", "m7"])
        self.alice.send(f"CHATHISTORY LATEST #games msgid={self.ids[7]} 5")
        self.assertEqual(self.texts(), ["m9", "m10"])

    def test_aroundBetweenTimestamps(self) -> None:
        self.alice.lines()
        self.alice.send(f"CHATHISTORY AROUND #games msgid={self.ids[4]} 3")
        self.assertEqual(self.texts(), ["m4", "m5", "m6"])
        start, end = serverTime(self.times[1] + 1), serverTime(self.times[4] + 1)
        self.alice.send(f"CHATHISTORY BETWEEN #games timestamp={start} timestamp={end} 10")
        self.assertEqual(self.texts(), ["m3", "m4", "m5"])
        self.alice.send(f"CHATHISTORY BETWEEN #games timestamp={end} timestamp={start} 10")
        self.assertEqual(self.texts(), ["m3", "m4", "m5"])

    def test_targets(self) -> None:
        self.alice.lines()
        self.alice.send(f"CHATHISTORY TARGETS timestamp={serverTime(0)} timestamp={serverTime(self.clock.seconds())} 10")
        messages = self.alice.messages()
        self.assertEqual(messages[0].params[1:], ("draft/chathistory-targets",))
        self.assertEqual(messages[1].params[:2], ("TARGETS", "#games"))
        self.assertEqual(messages[1].params[2], serverTime(self.times[-1]))

    def test_refusals(self) -> None:
        self.alice.lines()
        self.alice.send("CHATHISTORY LATEST #games * x", "CHATHISTORY LATEST #nowhere * 5",
                        "CHATHISTORY BEFORE #games nonsense 5", "CHATHISTORY FROB #games * 5", "CHATHISTORY")
        self.assertEqual(
            [m.params[:2] for m in self.alice.messages()],
            [("CHATHISTORY", "INVALID_PARAMS"), ("CHATHISTORY", "INVALID_TARGET"),
             ("CHATHISTORY", "INVALID_PARAMS"), ("CHATHISTORY", "INVALID_PARAMS"),
             ("CHATHISTORY", "NEED_MORE_PARAMS")],
        )
        self.alice.send("CHATHISTORY LATEST Bob * 5")
        self.assertEqual([m.command for m in self.alice.messages()], ["BATCH", "BATCH"])


class LabeledResponseTests(IrcTestCase):
    def test_labels(self) -> None:
        """One line of answer carries the label; several come in a batch; none, an ACK."""
        alice = self.irc("Alice", "labeled-response", "batch", "message-tags")
        alice.lines()
        alice.send("@label=one PING :x")
        [pong] = alice.messages()
        self.assertEqual((pong.command, pong.tags), ("PONG", {"label": "one"}))
        alice.send("@label=two;+other=x WHOIS Alice")
        messages = alice.messages()
        self.assertEqual((messages[0].command, messages[0].tags["label"]), ("BATCH", "two"))
        self.assertEqual(messages[0].params[1], "labeled-response")
        batch = messages[0].params[0][1:]
        self.assertEqual({m.tags.get("batch") for m in messages[1:-1]}, {batch})
        self.assertEqual(messages[-1].params, (f"-{batch}",))
        alice.send("@label=three PONG :x")
        [ack] = alice.messages()
        self.assertEqual((ack.command, ack.tags), ("ACK", {"label": "three"}))
        alice.send("@label=a\\sb PRIVMSG #nowhere :x")
        [refused] = alice.messages()
        self.assertEqual((refused.command, refused.tags["label"]), ("403", "a b"))

    def test_laterAnswer(self) -> None:
        """A command the core answers later (a rename) gets its label when the answer comes."""
        nicknames = SlowNicknames()
        self.hub = Hub(self.clock, nicknames=nicknames)
        self.factory = IrcFactory(self.hub, Limits(), serverName="irc.test", pingInterval=0)
        alice = self.irc()
        alice.register("Alice", "labeled-response", "batch")
        nicknames.grant(nick_key("Alice"))
        self.clock.advance(0)
        alice.lines()
        alice.send("@label=n NICK Alicia")
        self.assertEqual(alice.lines(), [])
        nicknames.grant(nick_key("Alicia"))
        self.clock.advance(0)
        [renamed] = alice.messages()
        self.assertEqual((renamed.command, renamed.tags), ("NICK", {"label": "n"}))
        alice.send("@label=m NICK Bob")
        nicknames.refuse(nick_key("Bob"), NicknameTaken("Bob"))
        self.clock.advance(0)
        [refused] = alice.messages()
        self.assertEqual((refused.command, refused.tags), ("433", {"label": "m"}))

    def test_nestedBatch(self) -> None:
        """History asked for with a label: its chathistory batch inside the labeled one."""
        bob = self.line("Bob")
        bob.send("hello\n")
        alice = self.irc("Alice", "labeled-response", "batch", "server-time", "message-tags", "draft/chathistory")
        alice.lines()
        alice.send("@label=h CHATHISTORY LATEST #lobby * 5")
        messages = alice.messages()
        outer = messages[0].params[0][1:]
        inner = messages[1]
        self.assertEqual((inner.command, inner.tags["batch"], inner.params[1]), ("BATCH", outer, "chathistory"))
        self.assertEqual(messages[2].tags["batch"], inner.params[0][1:])
        self.assertEqual(messages[2].params[1], "hello")


class PresenceTests(IrcTestCase):
    def test_away(self) -> None:
        """AWAY marks a member away on every door: 301 to who messages it, G in WHO, WHOIS."""
        alice = self.irc("Alice", "away-notify")
        bob = self.irc("Bob")
        carol = self.line("Carol")
        alice.lines()
        bob.lines()
        bob.send("AWAY :at lunch")
        self.assertEqual(bob.messages()[0].command, "306")
        self.assertEqual(alice.lines(), [":Bob!chat@chatsvc AWAY :at lunch"])
        self.assertEqual(self.hub.awayOf("Bob"), "at lunch")
        alice.send("PRIVMSG Bob :lunch?")
        self.assertEqual(alice.messages()[0].params, ("Alice", "Bob", "at lunch"))
        alice.send("WHO #lobby")
        flags = {m.params[5]: m.params[6] for m in alice.messages() if m.command == "352"}
        self.assertEqual(flags, {"Alice": "H", "Bob": "G", "Carol": "H"})
        alice.send("WHOIS Bob")
        self.assertIn(("301", ("Alice", "Bob", "at lunch")), [(m.command, m.params) for m in alice.messages()])
        bob.lines()
        bob.send("AWAY")
        self.assertEqual(bob.messages()[0].command, "305")
        self.assertEqual(alice.lines(), [":Bob!chat@chatsvc AWAY"])
        carol.lines()

    def test_accountNotifyAndAwayOnJoin(self) -> None:
        alice = self.irc("Alice", "account-notify", "away-notify")
        bob = self.irc("Bob")
        alice.lines()
        bob.send("AWAY :brb")
        alice.lines()
        carol = self.line("Carol")
        alice.lines()
        carol.send("/register sesame-open\n")
        self.assertEqual(alice.lines(), [":Carol!chat@chatsvc ACCOUNT Carol"])
        bob.send("JOIN #games")
        alice.send("JOIN #games")
        alice.lines()
        dave = self.irc()
        dave.register("Dave")
        dave.send("AWAY :not here", "JOIN #games")
        self.assertEqual(alice.lines()[-2:], [":Dave!chat@chatsvc JOIN #games", ":Dave!chat@chatsvc AWAY :not here"])

    def test_monitor(self) -> None:
        alice = self.irc("Alice")
        alice.lines()
        alice.send("MONITOR + Bob,Carol")
        self.assertEqual([(m.command, m.params[-1]) for m in alice.messages()], [("731", "Bob,Carol")])
        bob = self.line("Bob")
        self.assertEqual(alice.messages()[0].params, ("Alice", "Bob!chat@chatsvc"))
        bob.send("/nick Bobby\n")
        self.assertEqual([m.command for m in alice.messages()], ["NICK", "731"])
        alice.send("MONITOR L")
        self.assertEqual([m.params[-1] for m in alice.messages()], ["Bob,Carol", "End of MONITOR list"])
        alice.send("MONITOR - Bob", "MONITOR S")
        self.assertEqual([(m.command, m.params[-1]) for m in alice.messages()], [("731", "Carol")])
        self.irc("Carol")
        self.assertEqual(alice.messages()[0].command, "730")
        alice.send("MONITOR C", "MONITOR L")
        self.assertEqual([m.command for m in alice.messages()], ["733"])

    def test_monitorFull(self) -> None:
        alice = self.irc("Alice")
        alice.lines()
        alice.send("MONITOR + " + ",".join(f"n{i}" for i in range(105)))
        full = alice.messages()[0]
        self.assertEqual((full.command, full.params[1]), ("734", "100"))
        self.assertEqual(len(alice.protocol.monitoring), 100)

    def test_setnameAndWhox(self) -> None:
        alice = self.irc("Alice", "setname")
        bob = self.irc("Bob", "setname")
        alice.lines()
        bob.send("SETNAME :Bob the Builder")
        self.assertEqual(alice.lines(), [":Bob!chat@chatsvc SETNAME :Bob the Builder"])
        self.assertEqual(bob.lines(), [":Bob!chat@chatsvc SETNAME :Bob the Builder"])
        alice.send("WHO #lobby %tcnfar,42")
        whox = [m.params for m in alice.messages() if m.command == "354"]
        self.assertIn(("Alice", "42", "#lobby", "Bob", "H", "0", "Bob the Builder"), whox)


class ModerationTests(IrcTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.registered("Alice")
        self.alice = self.irc()
        self.alice.send("PASS Alice:sesame-open", "NICK Alice", "USER a 0 * :A", "JOIN #games")
        self.alice.lines()
        self.bob = self.line("Bob")
        self.bob.send("/join games\n")
        self.bob.lines()
        self.alice.lines()

    def test_modes(self) -> None:
        self.alice.send("MODE #games")
        self.assertEqual(self.alice.messages()[0].params, ("Alice", "#games", "+n"))
        self.alice.send("MODE #games +mt")
        self.assertEqual(
            self.alice.lines(),
            [":Alice!chat@chatsvc MODE #games +m", ":Alice!chat@chatsvc MODE #games +t"],
        )
        self.assertEqual(self.bob.lines(), ["*** Alice turned moderated on", "*** Alice turned topiclock on"])
        self.alice.send("MODE #games")
        self.assertEqual(self.alice.messages()[0].params[-1], "+nmt")
        self.bob.send("/mode\n")
        self.bob.lines()
        self.alice.send("MODE #games +o Bob")
        [refused] = self.alice.messages()
        self.assertEqual(refused.command, "482")
        self.assertIn("not registered", refused.params[-1])
        self.alice.send("MODE Alice")
        self.assertEqual(self.alice.messages()[0].params, ("Alice", "+r"))

    def test_kickAndBan(self) -> None:
        self.alice.send("KICK #games Bob :enough")
        self.assertEqual(self.alice.lines(), [":Alice!chat@chatsvc KICK #games Bob enough"])
        self.assertEqual(self.bob.lines()[-1], "*** You are out of games; now talking in lobby")
        self.bob.send("/join games\n")
        self.bob.lines()
        self.alice.lines()
        self.alice.send("MODE #games +b Bob!*@*")
        self.assertEqual(
            [m.command for m in self.alice.messages()], ["MODE", "KICK"]
        )
        self.alice.send("MODE #games b")
        ban, end = self.alice.messages()
        self.assertEqual((ban.command, ban.params[2]), ("367", "Bob!*@*"))
        self.assertEqual(end.command, "368")
        self.alice.send("KICK #games Nobody")
        self.assertEqual(self.alice.commands(), ["441"])

    def test_inviteNotify(self) -> None:
        """An invitation: the invited get INVITE; the room sees it (INVITE with invite-notify)."""
        watcher = self.irc("Dave", "invite-notify")
        watcher.send("JOIN #games")
        plain = self.irc("Erin")
        plain.send("JOIN #games")
        carol = self.irc("Carol")
        for client in (watcher, plain, carol, self.alice):
            client.lines()
        self.bob.lines()
        self.alice.send("INVITE Carol #games")
        self.assertEqual(self.alice.messages()[0].command, "341")
        self.assertEqual(carol.lines(), [":Alice!chat@chatsvc INVITE Carol #games"])
        self.assertEqual(watcher.lines(), [":Alice!chat@chatsvc INVITE Carol #games"])
        self.assertEqual(plain.messages()[0].params, ("#games", "*** Alice invited Carol"))
        self.assertEqual(self.bob.lines(), ["*** Alice invited Carol"])

    def test_notAnOperator(self) -> None:
        carol = self.irc("Carol")
        carol.send("JOIN #games")
        carol.lines()
        carol.send("KICK #games Bob")
        self.assertEqual(carol.commands(), ["482"])


class HostileInputTests(IrcTestCase):
    def test_overlongLine(self) -> None:
        """An over-long line is refused (417), in one read or several; the lines after it go on."""
        alice = self.irc("Alice")
        alice.lines()
        long = b"PRIVMSG #lobby :" + b"x" * 9000
        alice.protocol.dataReceived(long + b"\r\nPING :one\r\n")
        self.clock.advance(0)
        self.assertEqual(alice.commands(), ["417", "PONG"])
        alice.protocol.dataReceived(long[:5000])
        alice.protocol.dataReceived(long[5000:])
        alice.protocol.dataReceived(b" more of it\r\nPING :two\r\n")
        self.clock.advance(0)
        self.assertEqual([(m.command, m.params[-1]) for m in alice.messages()], [("417", "Input line was too long"), ("PONG", "two")])

    def test_notUtf8(self) -> None:
        alice = self.irc("Alice")
        bob = self.line("Bob")
        alice.lines()
        alice.protocol.dataReceived(b"PRIVMSG #lobby :caf\xe9\r\n")
        self.clock.advance(0)
        self.assertEqual(alice.messages()[0].params[:2], ("*", "INVALID_UTF8"))
        self.assertEqual(bob.lines(), [])

    def test_controlsNeutralized(self) -> None:
        """Controls other than IRC's formatting reach the other doors made visible."""
        alice = self.irc("Alice")
        bob = self.line("Bob")
        alice.send("PRIVMSG #lobby :\x1b[2Jhi\x07 \x02bold\x02")
        self.assertEqual(bob.lines(), ["Alice: ^[[2Jhi^G bold"])

    def test_flood(self) -> None:
        """Past the flood burst, lines are delayed, with a notice; none is lost."""
        alice = self.irc("Alice")
        bob = self.line("Bob")
        alice.lines()
        bob.lines()
        burst = Limits().floodBurst
        alice.protocol.dataReceived(b"".join(b"PRIVMSG #lobby :line %d\r\n" % n for n in range(burst + 5)))
        self.clock.advance(0)
        self.assertEqual(len(bob.lines()), burst)
        self.assertIn("too fast", alice.messages()[-1].params[-1])
        self.clock.advance(5)
        self.assertEqual(bob.lines(), [f"Alice: line {n}" for n in range(burst, burst + 5)])


class FormattingTests(SynchronousTestCase):
    def test_stripped(self) -> None:
        self.assertEqual(stripFormatting("\x02bold\x02 \x0304,12red\x03 \x1ditalic\x0f"), "bold red italic")
        self.assertEqual(stripFormatting("\x04ff0000hex\x04"), "hex")
        self.assertEqual(stripFormatting("plain"), "plain")
