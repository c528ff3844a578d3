"""Tests for away messages and the hub's presence watchers (L{Hub.setAway}, L{Hub.watch})."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from chatsvc.chat import MAX_AWAY_LENGTH, Accounts, ChatError, Hub, IMember, MemoryAccountStore
from tests.chat.test_accounts import PlainHasher
from tests.chat.test_refusals import Member


class Watcher:
    def __init__(self) -> None:
        self.seen: list[tuple[object, ...]] = []

    def online(self, nick: str) -> None:
        self.seen.append(("online", nick))

    def offline(self, nick: str) -> None:
        self.seen.append(("offline", nick))

    def renamed(self, old: str, new: str) -> None:
        self.seen.append(("renamed", old, new))

    def awayChanged(self, member: IMember, nick: str, message: str | None) -> None:
        self.seen.append(("away", nick, message))

    def loggedIn(self, member: IMember, nick: str, account: str) -> None:
        self.seen.append(("account", nick, account))


class PresenceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.hub = Hub(self.clock, accounts=Accounts(self.clock, PlainHasher(), MemoryAccountStore()))
        self.watcher = Watcher()
        self.hub.watch(self.watcher)
        self.alice = Member()
        self.successResultOf(self.hub.arrive(self.alice, "Alice"))  # type: ignore[arg-type]

    def test_comingAndGoing(self) -> None:
        self.successResultOf(self.hub.rename(self.alice, "Alicia"))  # type: ignore[arg-type]
        self.hub.depart(self.alice)  # type: ignore[arg-type]
        self.assertEqual(
            self.watcher.seen, [("online", "Alice"), ("renamed", "Alice", "Alicia"), ("offline", "Alicia")]
        )

    def test_away(self) -> None:
        """Away with a message (made safe), shown by whois; back with none; told once each."""
        member = self.alice
        self.assertEqual(self.hub.setAway(member, " lunch\x07 "), "lunch^G")  # type: ignore[arg-type]
        self.assertEqual(self.hub.setAway(member, "lunch\x07"), "lunch^G")  # type: ignore[arg-type]
        self.assertEqual(self.hub.awayOf("alice"), "lunch^G")
        bob = Member()
        self.successResultOf(self.hub.arrive(bob, "Bob"))  # type: ignore[arg-type]
        self.assertEqual(self.hub.whois(bob, "Alice").away, "lunch^G")  # type: ignore[arg-type]
        self.assertIsNone(self.hub.setAway(member, "  "))  # type: ignore[arg-type]
        self.assertIsNone(self.hub.awayOf("Alice"))
        aways = [seen for seen in self.watcher.seen if seen[0] == "away"]
        self.assertEqual(aways, [("away", "Alice", "lunch^G"), ("away", "Alice", None)])
        with self.assertRaises(ChatError):
            self.hub.setAway(member, "x" * (MAX_AWAY_LENGTH + 1))  # type: ignore[arg-type]

    def test_registered(self) -> None:
        self.successResultOf(self.hub.register(self.alice, "sesame-open"))  # type: ignore[arg-type]
        self.assertEqual(self.watcher.seen[-1], ("account", "Alice", "Alice"))
