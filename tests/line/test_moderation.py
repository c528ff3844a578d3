"""
Tests for moderation on the line door: each command, what the room sees, role prefixes in
member lists, and the refusals, on in-memory transports.
"""

from __future__ import annotations

from twisted.internet.task import Clock

from chatsvc.chat import Accounts, Hub, MemoryAccountStore, nick_key
from chatsvc.chat.moderation import MemoryModerationStore, Moderation
from chatsvc.line.protocol import ChatFactory
from tests.chat.test_accounts import PlainHasher
from tests.line.test_protocol import Client, ProtocolTestCase


class LineModerationTests(ProtocolTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.store = MemoryModerationStore()
        accounts = Accounts(self.clock, PlainHasher(), MemoryAccountStore())
        self.room = Hub(self.clock, accounts=accounts, moderation=Moderation(self.clock, self.store))
        self.factory = ChatFactory(self.room, self.limits)
        self.alice = self.registered("Alice")
        self.alice.send("/join games\n")
        self.bob = self.join("Bob")
        self.carol = self.registered("Carol")
        for member in (self.bob, self.carol):
            member.send("/join games\n")
        for member in (self.alice, self.bob, self.carol):
            member.lines()

    def registered(self, nick: str) -> Client:
        client = self.join(nick)
        client.send("/register sesame-open\n")
        client.lines()
        return client

    def test_rolesShown(self) -> None:
        self.alice.send("/op Carol\n")
        self.assertEqual(self.bob.lines(), ["*** Carol is now an operator (by Alice)"])
        self.bob.send("/who\n")
        self.assertEqual(self.bob.lines(), ["*** Members (3): @Alice, Bob, @Carol"])
        self.alice.send("/deop Carol\n/voice Carol\n")
        self.bob.lines()
        self.bob.send("/who\n")
        self.assertEqual(self.bob.lines(), ["*** Members (3): @Alice, Bob, +Carol"])

    def test_kick(self) -> None:
        self.alice.send("/kick Bob spam\n")
        self.assertEqual(self.carol.lines(), ["*** Bob was kicked by Alice (spam)"])
        self.assertEqual(
            self.bob.lines(),
            ["*** Bob was kicked by Alice (spam)", "*** You are out of games; now talking in lobby"],
        )
        self.bob.send("back?\n")
        self.assertEqual(self.carol.lines(), ["[lobby] Bob: back?"])  # Bob talks in the lobby now
        self.assertEqual(self.bob.protocol.current.name, "lobby")  # type: ignore[union-attr]

    def test_refusals(self) -> None:
        self.bob.send("/kick Alice\n")
        self.assertEqual(self.bob.lines(), ["*** Error: only operators of games can kick"])
        self.alice.send("/op Bob\n")
        self.assertEqual(self.alice.lines(), ["*** Error: Bob is not registered: roles are for registered members"])
        self.alice.send("/ban\n")
        self.assertEqual(self.alice.lines(), ["*** Error: usage: /ban NICK [DURATION] [REASON]"])
        self.alice.send("/set loud on\n")
        self.assertIn("no such setting", self.alice.lines()[0])

    def test_banAndBans(self) -> None:
        self.alice.send("/ban Bob 2h flooding the room\n")
        self.assertEqual(self.carol.lines(), ["*** Bob was banned by Alice for 2 hours (flooding the room)"])
        self.bob.lines()
        self.bob.send("/join games\n")
        self.assertEqual(
            self.bob.lines(), ["*** Error: you are banned from games for 2 hours more (flooding the room)"]
        )
        self.alice.lines()
        self.alice.send("/bans\n")
        self.assertEqual(
            self.alice.lines(),
            ["*** Bans in games: 1", "***   Bob (2 hours more, by Alice): flooding the room"],
        )
        self.alice.send("/unban bob\n")
        self.alice.lines()
        self.assertEqual(self.bob.lines(), ["[games] *** Bob was unbanned by Alice"])
        self.bob.send("/join games\n")
        self.assertEqual(self.bob.lines()[0], "*** You joined games; now talking there")

    def test_muteAndModerated(self) -> None:
        self.alice.send("/mute Carol 10m\n")
        self.assertEqual(self.carol.lines(), ["*** Carol was muted by Alice for 10 minutes"])
        self.bob.lines()
        self.carol.send("hello\n")
        self.assertEqual(self.carol.lines(), ["*** Error: you are muted in games for 10 minutes more"])
        self.alice.send("/unmute Carol\n/set moderated on\n")
        self.assertEqual(self.bob.lines(), ["*** Carol was unmuted by Alice", "*** Alice turned moderated on"])
        self.bob.send("hi\n")
        self.assertEqual(self.bob.lines(), ["*** Error: games is moderated: only voiced members and operators speak"])
        self.alice.lines()
        self.alice.send("/set\n")
        self.assertEqual(
            self.alice.lines(),
            ["*** Settings of games: private off, moderated on, topiclock off, registered off"],
        )

    def test_admins(self) -> None:
        self.bob.send("/announce hello all\n")
        self.assertEqual(self.bob.lines(), ["*** Error: only the server's admins can do that"])
        self.store.adminKeys.add(nick_key("Carol"))
        self.carol.send("/announce maintenance at noon\n")
        self.assertEqual(self.bob.lines(), ["*** Announcement from Carol: maintenance at noon"])
        self.carol.send("/kill Bob flooding\n")
        self.assertEqual(
            self.bob.lines(),
            [
                "*** Bob was disconnected by Carol (flooding)",
                "*** Disconnected: by Carol (flooding)",
            ],
        )
        self.assertTrue(self.bob.closing)
        self.bob.drop()
        self.assertIn("Bob left! (by Carol (flooding))", self.alice.lines())

    def test_suspendLockdownWhois(self) -> None:
        self.store.adminKeys.add(nick_key("Alice"))
        self.bob.send("/whois Carol\n")
        lines = self.bob.lines()
        self.assertEqual(lines[0][:36], "*** Carol: registered since 2027-01-")
        self.assertEqual(lines[1:], ["***   active now", "***   rooms you share: lobby, games"])
        self.alice.send("/suspend Carol 1d trolling\n")
        self.assertEqual(
            self.carol.lines(),
            [
                "*** Carol's account was suspended by Alice for 1 day (trolling)",
                "*** Disconnected: by Alice (trolling)",
            ],
        )
        self.carol.drop()
        again = Client(self.factory)
        again.send("Carol\nsesame-open\n")
        self.assertIn("*** Error: the account Carol is suspended for 1 day more (trolling)", again.lines())
        self.alice.send("/lockdown on\n")
        self.assertIn(
            "*** Alice turned lockdown on: no new registrations, and only registered members may come in",
            self.bob.lines(),
        )
        newcomer = Client(self.factory)
        newcomer.send("Eve\n")
        self.assertIn(
            "*** Error: the server is in lockdown: only registered members may come in just now",
            newcomer.lines(),
        )
        self.bob.send("/lockdown off\n")
        self.assertIn("*** Error: only the server's admins can do that", self.bob.lines())

    def test_remove(self) -> None:
        self.bob.send("something awful\n")
        self.alice.lines(), self.carol.lines()
        self.alice.send("/remove Bob\n")
        self.assertEqual(self.carol.lines(), ["*** Alice removed a message by Bob"])
        self.carol.send("/history\n")
        self.assertNotIn("something awful", "\n".join(self.carol.lines()))
        self.bob.lines()
        self.bob.send("/remove Alice\n")
        self.assertEqual(self.bob.lines(), ["*** Error: only operators of games can remove messages"])
