"""
Tests for the kinds of the core's refusals that a door tells apart (L{NameInUse},
L{LoginRefused}), and for arriving with an account a door logged in to already.
"""

from __future__ import annotations

from attrs import evolve
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from chatsvc.chat import Accounts, ChatError, Hub, LoginRefused, MemoryAccountStore, NameInUse, describeSpan
from tests.chat.test_accounts import PlainHasher


class Member:
    """The least a member is: something that takes events."""

    def __init__(self) -> None:
        self.events: list[object] = []

    def deliver(self, event: object) -> None:
        self.events.append(event)


class CountingHasher(PlainHasher):
    """A L{PlainHasher} that counts the passwords it checks."""

    verified = 0

    def verify(self, passwordHash: str, password: str) -> Deferred[bool]:
        self.verified += 1
        return super().verify(passwordHash, password)


class RefusalKindTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.hasher = CountingHasher()
        self.accounts = Accounts(self.clock, self.hasher, MemoryAccountStore())
        self.hub = Hub(self.clock, accounts=self.accounts)
        owner = Member()
        self.successResultOf(self.hub.arrive(owner, "Alice"))  # type: ignore[arg-type]
        self.successResultOf(self.hub.register(owner, "sesame-open"))  # type: ignore[arg-type]
        self.hub.depart(owner)  # type: ignore[arg-type]

    def test_nameInUse(self) -> None:
        self.successResultOf(self.hub.arrive(Member(), "Bob"))  # type: ignore[arg-type]
        failure = self.failureResultOf(self.hub.arrive(Member(), "BOB"), ChatError)  # type: ignore[arg-type]
        self.assertIsInstance(failure.value, NameInUse)

    def test_loginRefused(self) -> None:
        for nick, password in (("Alice", "wrong-one"), ("Nobody", "whatever1")):
            failure = self.failureResultOf(self.accounts.login(nick, password, None), ChatError)
            self.assertIsInstance(failure.value, LoginRefused)

    def test_arriveLoggedIn(self) -> None:
        """An account the door logged in to already is not checked again."""
        account = self.successResultOf(self.accounts.login("Alice", "sesame-open", None))
        checked = self.hasher.verified
        member = Member()
        self.assertEqual(self.successResultOf(self.hub.arrive(member, "Alice", loggedIn=account)), "Alice")  # type: ignore[arg-type]
        self.assertEqual(self.hub.accountOf(member), account)  # type: ignore[arg-type]
        self.assertEqual(self.hasher.verified, checked)


class TightenedRulesTests(SynchronousTestCase):
    """An account registered under a nickname the rules have since refused."""

    def test_shownByTheSpellingLoggedInWith(self) -> None:
        clock = Clock()
        store = MemoryAccountStore()
        accounts = Accounts(clock, PlainHasher(), store)
        hub = Hub(clock, accounts=accounts)
        member = Member()
        self.successResultOf(hub.arrive(member, "user_1"))  # type: ignore[arg-type]
        account = self.successResultOf(hub.register(member, "sesame-open"))  # type: ignore[arg-type]
        hub.depart(member)  # type: ignore[arg-type]
        # As if registered when '.' was allowed: the stored spelling is no longer valid.
        store.accounts[account.key] = evolve(account, nick="user.1")
        accounts.load()
        self.failureResultOf(hub.arrive(Member(), "user.1", password="sesame-open"), ChatError)  # type: ignore[arg-type]
        again = Member()
        self.assertEqual(
            self.successResultOf(hub.arrive(again, "user_1", password="sesame-open")), "user_1"  # type: ignore[arg-type]
        )
        self.assertEqual(hub.accountOf(again).key, account.key)  # type: ignore[arg-type, union-attr]


class SpanTests(SynchronousTestCase):
    """L{describeSpan}: durations as people say them, also a moment short of a whole unit."""

    def test_spans(self) -> None:
        cases = {0: "1 second", 59.4: "59 seconds", 59.6: "1 minute", 2700: "45 minutes",
                 3540: "59 minutes", 3599.4: "1 hour", 7200: "2 hours", 86399: "1 day", 7 * 86400: "7 days"}
        for seconds, said in cases.items():
            self.assertEqual(describeSpan(seconds), said, seconds)
