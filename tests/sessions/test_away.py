"""
Tests for L{chatsvc.sessions.away}: who is away, by nickname, as a door's factory follows it
from the hub, checked against the hub itself.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from chatsvc.chat import Event, Hub, IMember
from chatsvc.sessions.away import AwayNicks
from tests.chat.test_hub import arrive, rename


@implementer(IMember)
class Member:
    def deliver(self, event: Event) -> None:
        pass


class Follower:
    """A watcher keeping an L{AwayNicks}, as the doors' factories do."""

    def __init__(self) -> None:
        self.away = AwayNicks()

    def online(self, nick: str) -> None:
        pass

    def offline(self, nick: str) -> None:
        self.away.gone(nick)

    def renamed(self, old: str, new: str) -> None:
        self.away.renamed(old, new)

    def awayChanged(self, member: IMember, nick: str, message: str | None) -> None:
        self.away.changed(nick, message)

    def loggedIn(self, member: IMember, nick: str, account: str) -> None:
        pass


class AwayNicksTests(SynchronousTestCase):
    def test_followsTheHub(self) -> None:
        """Away, back, renamed while away, gone: what it holds is what the hub says."""
        hub = Hub(Clock())
        follower = Follower()
        hub.watch(follower)
        alice, bob, carol = Member(), Member(), Member()
        for member, nick in ((alice, "Alice"), (bob, "Bob"), (carol, "Carol")):
            arrive(hub, member, nick)

        def check() -> None:
            expected = {nick: hub.awayOf(nick) for nick in hub.nicks() if hub.awayOf(nick) is not None}
            self.assertEqual(dict(follower.away.messages), expected)
            self.assertEqual(follower.away.among(hub.nicks()), expected)

        self.assertEqual(follower.away.among(hub.nicks()), {})
        hub.setAway(alice, "lunch")
        hub.setAway(carol, "meeting")
        check()
        self.assertEqual(list(follower.away.among(["Carol", "Bob", "Alice"])), ["Carol", "Alice"])
        rename(hub, alice, "Alicia")
        check()
        self.assertEqual(follower.away.messages, {"Alicia": "lunch", "Carol": "meeting"})
        hub.setAway(carol, None)
        hub.depart(alice)
        check()
        self.assertEqual(follower.away.messages, {})
        rename(hub, bob, "Alice")  # a new Alice is not away
        check()
