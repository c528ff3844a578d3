"""
Tests for moderation in the core: roles, kicks, bans and mutes (with expiry, across renames and
new addresses), room settings, invitations and the admins' commands, with a L{Clock}.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from chatsvc.chat import Accounts, ChatError, Hub, MemoryAccountStore, Moderated, nick_key
from chatsvc.chat.moderation import MemoryModerationStore, Moderation, parseDuration
from tests.chat.test_accounts import Member, PlainHasher
from tests.chat.test_history import PagingStore
from tests.chat.test_hub import arrive, settled


class ModerationTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.accounts = Accounts(self.clock, PlainHasher(), MemoryAccountStore())
        self.store = MemoryModerationStore()
        self.moderation = Moderation(self.clock, self.store)
        self.hub = Hub(self.clock, accounts=self.accounts, moderation=self.moderation)
        self._hosts = 0

    def account(self, nick: str) -> Member:
        """A registered member, logged in, from an address of its own."""
        self._hosts += 1
        member = Member(f"198.51.100.{self._hosts}")
        arrive(self.hub, member, nick)
        settled(self.hub.register(member, "sesame-open"))
        return member

    def guest(self, nick: str, host: str = "203.0.113.5") -> Member:
        member = Member(host)
        arrive(self.hub, member, nick)
        return member

    def refused(self, call: object, *args: object) -> str:
        with self.assertRaises(ChatError) as raised:
            call(*args)  # type: ignore[operator]
        return str(raised.exception)


class DurationTests(SynchronousTestCase):
    def test_durations(self) -> None:
        self.assertEqual([parseDuration(t) for t in ("30s", "10m", "2h", "7d", "1w")], [30, 600, 7200, 604800, 604800])
        for bad in ("10", "ten minutes", "0m", "400d", "-5m"):
            self.assertRaises(ChatError, parseDuration, bad)


class RoleTests(ModerationTestCase):
    def test_creatorOwns(self) -> None:
        """A registered member creating a room owns it; a guest's room has no owner."""
        alice, bob = self.account("Alice"), self.guest("Bob")
        games = self.hub.join(alice, "games")
        self.assertEqual(self.hub.roleOf(alice, games), "owner")
        self.assertEqual(self.store.rooms[games.key].owner, nick_key("Alice"))
        free = self.hub.join(bob, "free")
        settings = self.moderation.settings(free.key)
        self.assertTrue(settings is None or settings.owner is None)
        self.assertEqual(self.hub.roleOf(alice, self.hub.defaultRoom), None)

    def test_opAndVoice(self) -> None:
        alice, carol, dave = self.account("Alice"), self.account("Carol"), self.account("Dave")
        bob = self.guest("Bob")
        self.hub.join(alice, "games")
        for member in (bob, carol, dave):
            self.hub.join(member, "games")
        games = self.hub.room("games")
        event = self.hub.setRole(alice, "games", "carol", "op", True)
        self.assertEqual(event.describe(), "Carol is now an operator (by Alice)")
        self.assertIn(Moderated("games", "op", "Alice", "Carol"), dave.events)
        self.hub.setRole(carol, "games", "Dave", "voice", True)
        self.assertEqual(self.hub.rolesIn(games), {"Alice": "owner", "Carol": "op", "Dave": "voice"})
        # An operator cannot demote another, nor the owner; a guest cannot have a role.
        self.hub.setRole(alice, "games", "Dave", "op", True)
        self.assertIn("they are an operator", self.refused(self.hub.setRole, carol, "games", "Dave", "op", False))
        self.assertIn("not registered", self.refused(self.hub.setRole, alice, "games", "Bob", "voice", True))
        self.assertIn("only operators of games", self.refused(self.hub.setRole, bob, "games", "Dave", "voice", True))
        self.hub.setRole(alice, "games", "Dave", "op", False)
        self.assertIsNone(self.hub.roleOf(dave, games))


class KickBanMuteTests(ModerationTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.alice = self.account("Alice")
        self.hub.join(self.alice, "games")
        self.bob = self.guest("Bob")
        self.carol = self.account("Carol")
        self.hub.join(self.bob, "games")
        self.hub.join(self.carol, "games")
        self.games = self.hub.room("games")
        for member in (self.alice, self.bob, self.carol):
            member.events.clear()

    def test_kick(self) -> None:
        """Out of the room, everyone (the kicked too) told why; it may come back."""
        self.hub.kick(self.alice, "games", "bob", "spam")
        told = Moderated("games", "kick", "Alice", "Bob", "spam")
        self.assertIn(told, self.bob.events)
        self.assertIn(told, self.carol.events)
        self.assertEqual(told.describe(), "Bob was kicked by Alice (spam)")
        self.assertNotIn(self.bob, self.games)
        self.hub.join(self.bob, "games")
        self.assertIn("only operators", self.refused(self.hub.kick, self.bob, "games", "Alice"))
        self.hub.setRole(self.alice, "games", "Carol", "op", True)
        self.assertIn("they are the owner", self.refused(self.hub.kick, self.carol, "games", "Alice"))

    def test_banAccountHoldsAcrossReconnection(self) -> None:
        """A ban on an account keeps it out from any address, until it expires."""
        event = self.hub.sanction(self.alice, "ban", "games", "Carol", "10m", "rude")
        self.assertEqual(event.describe(), "Carol was banned by Alice for 10 minutes (rude)")
        self.assertNotIn(self.carol, self.games)
        self.hub.depart(self.carol)
        again = Member("192.0.2.200")
        settled(self.hub.arrive(again, "Carol", password="sesame-open"))
        message = self.refused(self.hub.join, again, "games")
        self.assertEqual(message, "you are banned from games for 10 minutes more (rude)")
        self.clock.advance(600)
        self.hub.join(again, "games")

    def test_banGuestHoldsOnNickAndAddress(self) -> None:
        """A guest's ban holds on its nickname (from anywhere) and on its address (as any guest)."""
        self.hub.sanction(self.alice, "ban", "games", "Bob")
        self.hub.depart(self.bob)
        sameName = self.guest("bob", "192.0.2.77")
        self.assertIn("until it is lifted", self.refused(self.hub.join, sameName, "games"))
        self.hub.depart(sameName)
        sameAddress = self.guest("Robert", "203.0.113.5")
        self.assertIn("banned", self.refused(self.hub.join, sameAddress, "games"))
        elsewhere = self.guest("Eve", "192.0.2.99")
        self.hub.join(elsewhere, "games")
        self.assertEqual([s.target for s in self.hub.sanctions(self.alice, "ban", "games")], ["Bob"])
        self.hub.lift(self.alice, "ban", "games", "bob")
        self.hub.join(sameAddress, "games")
        self.assertIn("not banned", self.refused(self.hub.lift, self.alice, "ban", "games", "bob"))

    def test_mute(self) -> None:
        """A muted member reads on, and is told how long it may not speak."""
        self.hub.sanction(self.alice, "mute", "games", "Carol", "9m")
        self.assertEqual(
            self.refused(self.hub.say, self.carol, self.games, "hello"),
            "you are muted in games for 9 minutes more",
        )
        self.hub.say(self.bob, self.games, "can you read this?")
        self.assertIn("can you read this?", [getattr(e, "text", None) for e in self.carol.events])
        self.hub.lift(self.alice, "mute", "games", "Carol")
        self.hub.say(self.carol, self.games, "yes")

    def test_settings(self) -> None:
        """Moderated, topiclock, registered and private, each refusing in its own words."""
        self.hub.setting(self.alice, "games", "moderated", True)
        self.assertIn("moderated", self.refused(self.hub.say, self.bob, self.games, "hi"))
        self.hub.setRole(self.alice, "games", "Carol", "voice", True)
        self.hub.say(self.carol, self.games, "voiced, so heard")
        self.hub.say(self.alice, self.games, "the owner too")
        self.hub.setting(self.alice, "games", "topiclock", True)
        self.assertIn("locked", self.refused(self.hub.setTopic, self.carol, self.games, "mine"))
        self.hub.setTopic(self.alice, self.games, "poker night")
        self.hub.setting(self.alice, "games", "registered", True)
        eve = self.guest("Eve", "192.0.2.9")
        self.assertIn("only registered members", self.refused(self.hub.join, eve, "games"))
        self.hub.setting(self.alice, "games", "private", True)
        dave = self.account("Dave")
        self.assertIn("private", self.refused(self.hub.join, dave, "games"))
        self.assertNotIn("games", [room.name for room in self.hub.roomsFor(dave)])
        self.assertIn("games", [room.name for room in self.hub.roomsFor(self.bob)])
        self.hub.invite(self.alice, "games", "Dave")
        self.assertIn(Moderated("games", "invite", "Alice", "Dave"), dave.events)
        self.hub.join(dave, "games")
        self.assertEqual(self.hub.roomSettings(self.games), {"private": True, "moderated": True, "topiclock": True, "registered": True})
        self.assertIn("no such setting", self.refused(self.hub.setting, self.alice, "games", "secret", True))

    def test_keptAcrossRestart(self) -> None:
        """Roles, settings and bans come back from the store."""
        self.hub.setRole(self.alice, "games", "Carol", "op", True)
        self.hub.setting(self.alice, "games", "moderated", True)
        self.hub.sanction(self.alice, "ban", "games", "Bob", "1h")
        moderation = Moderation(self.clock, self.store)
        settled(moderation.load())
        games = self.games.key
        self.assertEqual(moderation.role(nick_key("Carol"), games), "op")
        self.assertEqual(moderation.role(nick_key("Alice"), games), "owner")
        self.assertTrue(moderation.settings(games).moderated)  # type: ignore[union-attr]
        self.assertIsNotNone(moderation.sanction("ban", games, None, nick_key("Bob"), None))
        self.assertEqual([e.action for e in self.store.entries], ["op", "set", "ban"])


class AdminTests(ModerationTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.root = self.account("Root")
        self.store.adminKeys.add(nick_key("Root"))
        self.bob = self.guest("Bob")
        self.root.events.clear()
        self.bob.events.clear()

    def test_announce(self) -> None:
        event = settled(self.hub.announce(self.root, "maintenance at noon"))
        self.assertIn(event, self.bob.events)
        self.assertEqual(event.describe(), "Announcement from Root: maintenance at noon")
        with self.assertRaises(ChatError) as raised:
            settled(self.hub.announce(self.bob, "me too"))
        self.assertEqual(str(raised.exception), "only the server's admins can do that")

    def test_adminEverywhere(self) -> None:
        """An admin is above every owner: it joins private rooms and kicks anyone."""
        alice = self.account("Alice")
        self.hub.join(alice, "club")
        self.hub.setting(alice, "club", "private", True)
        settled(self.moderation.refreshAdmins())
        self.hub.join(self.root, "club")
        self.hub.kick(self.root, "club", "Alice")
        self.assertNotIn(alice, self.hub.room("club"))

    def test_kill(self) -> None:
        event = settled(self.hub.kill(self.root, "bob", "flooding"))
        self.assertIn(event, self.bob.events)
        self.assertEqual(event.describe(), "Bob was disconnected by Root (flooding)")

    def test_bannedFromTheDefaultRoom(self) -> None:
        """A member banned from the default room still arrives, in no room."""
        settled(self.moderation.refreshAdmins())
        self.hub.sanction(self.root, "ban", "lobby", "Bob")
        self.hub.depart(self.bob)
        bob = self.guest("Bob")
        self.assertEqual(self.hub.roomsOf(bob), [])


class SuspendLockdownWhoisTests(ModerationTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.root = self.account("Root")
        self.store.adminKeys.add(nick_key("Root"))
        self.carol = self.account("Carol")
        self.bob = self.guest("Bob")

    def test_suspend(self) -> None:
        """A suspended account is disconnected, may not log in (nor by token), until it ends."""
        token = settled(self.accounts.issueToken(self.accounts.registered("Carol")))  # type: ignore[arg-type]
        event = settled(self.hub.suspend(self.root, "carol", "7d", "harassment"))
        self.assertEqual(event.describe(), "Carol's account was suspended by Root for 7 days (harassment)")
        self.assertIn(event, self.carol.events)
        self.hub.depart(self.carol)
        with self.assertRaises(ChatError) as raised:
            settled(self.hub.arrive(Member(), "Carol", password="sesame-open"))
        self.assertEqual(str(raised.exception), "the account Carol is suspended for 7 days more (harassment)")
        with self.assertRaises(ChatError):
            settled(self.hub.arrive(Member(), "Carol", token=token))
        self.clock.advance(7 * 86400)
        settled(self.hub.arrive(Member(), "Carol", password="sesame-open"))

    def test_unsuspend(self) -> None:
        settled(self.hub.suspend(self.root, "Carol"))
        self.hub.depart(self.carol)
        with self.assertRaises(ChatError) as raised:
            settled(self.hub.arrive(Member(), "Carol", password="sesame-open"))
        self.assertIn("until an admin lifts it", str(raised.exception))
        settled(self.hub.suspend(self.root, "Carol", on=False))
        settled(self.hub.arrive(Member(), "Carol", password="sesame-open"))
        with self.assertRaises(ChatError):
            settled(self.hub.suspend(self.root, "Bob"))  # a guest has no account

    def test_lockdown(self) -> None:
        """No new guests and no registrations; those here stay, and accounts come in."""
        event = settled(self.hub.lockdown(self.root, True))
        self.assertIn(event, self.bob.events)
        with self.assertRaises(ChatError) as raised:
            arrive(self.hub, Member(), "Eve")
        self.assertIn("lockdown", str(raised.exception))
        with self.assertRaises(ChatError):
            settled(self.hub.register(self.bob, "sesame-open"))
        self.hub.depart(self.carol)
        settled(self.hub.arrive(Member(), "Carol", password="sesame-open"))
        settled(self.hub.lockdown(self.root, False))
        arrive(self.hub, Member(), "Eve")

    def test_whois(self) -> None:
        self.hub.join(self.carol, "games")
        self.hub.join(self.bob, "games")
        self.clock.advance(600)
        who = self.hub.whois(self.bob, "carol")
        self.assertEqual((who.nick, who.online, who.admin), ("Carol", True, False))
        self.assertEqual(who.rooms, ("lobby", "games"))
        self.assertEqual(who.roles, (("games", "owner"),))
        self.assertEqual(who.idle, 600)
        self.assertIsNone(self.hub.whois(self.carol, "Bob").registered)
        self.hub.depart(self.carol)
        self.assertFalse(self.hub.whois(self.bob, "Carol").online)
        with self.assertRaises(ChatError):
            self.hub.whois(self.bob, "Nobody")


class RemoveMessageTests(ModerationTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.store_ = PagingStore(60)
        self.hub = Hub(self.clock, self.store_, historyKept=20, accounts=self.accounts, moderation=self.moderation)
        self.hub.restore({"lobby": self.store_.messages[-20:]})
        self.alice = self.account("Alice")
        self.hub.join(self.alice, "games")
        self.bob = self.guest("Bob")
        self.hub.join(self.bob, "games")
        self.games = self.hub.room("games")

    def test_byNick(self) -> None:
        """An operator removes a member's latest message: gone from the history; the room told."""
        first = self.hub.say(self.bob, self.games, "first")
        spam = self.hub.say(self.bob, self.games, "spam spam")
        event = settled(self.hub.removeMessage(self.alice, "games", nick="bob"))
        self.assertEqual((event.action, event.target, event.message), ("remove", "Bob", spam.id))
        self.assertEqual(event.describe(), "Alice removed a message by Bob")
        self.assertIn(event, self.bob.events)
        messages, _ = settled(self.hub.history(self.games, None, None, 50))
        self.assertEqual([m.text for m in messages], ["first"])
        self.assertEqual(first.text, "first")

    def test_byIdFromTheStore(self) -> None:
        """A message no longer at hand is found in the store, and removed there."""
        self.store.adminKeys.add(nick_key("Alice"))
        settled(self.moderation.refreshAdmins())
        self.hub.join(self.alice, "lobby")
        event = settled(self.hub.removeMessage(self.alice, "lobby", id=5))
        self.assertEqual((event.target, event.message), ("Old", 5))
        self.assertNotIn(5, [m.id for m in self.store_.messages])

    def test_refusals(self) -> None:
        self.hub.say(self.alice, self.games, "mine")
        with self.assertRaises(ChatError) as raised:
            settled(self.hub.removeMessage(self.bob, "games", nick="Alice"))
        self.assertEqual(str(raised.exception), "only operators of games can remove messages")
        with self.assertRaises(ChatError) as raised:
            settled(self.hub.removeMessage(self.alice, "games", nick="Carol"))
        self.assertIn("no recent message by Carol", str(raised.exception))
        with self.assertRaises(ChatError) as raised:
            settled(self.hub.removeMessage(self.alice, "games", id=123456))
        self.assertEqual(str(raised.exception), "no such message in games")
